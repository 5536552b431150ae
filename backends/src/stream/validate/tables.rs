//! Checks of the stream's tables, each entry on its own (what instructions do with them is
//! checked where they are used). Every size an executor computes from an entry is proven to fit
//! in 32 bits here, so that `WindowEntry::source_len` and the like never overflow.

use super::super::{AddEntry, GroupEntry, HostEntry, Io, PermEntry, RequantEntry, WindowEntry};
use crate::arith::{FixedMultiplier, MAX_SHIFT};
use crate::program::{BufQuant, Elem};

pub(super) type Check = std::result::Result<(), String>;

/// A size that must fit in 32 bits (a memory holds at most 2^32 words).
pub(super) fn words(what: &str, n: Option<u128>) -> std::result::Result<u64, String> {
    match n {
        Some(n) if n <= u32::MAX as u128 => Ok(n as u64),
        Some(n) => Err(format!("{what} has {n} words (a memory holds at most 2^32)")),
        None => Err(format!("{what} has more than 2^128 words")),
    }
}

/// The product of `dims`, `None` on overflow.
pub(super) fn product<I: IntoIterator<Item = u128>>(dims: I) -> Option<u128> {
    dims.into_iter().try_fold(1u128, |a, d| a.checked_mul(d))
}

pub(super) fn multiplier(what: &str, m: &FixedMultiplier) -> Check {
    if m.m < 1 << 30 || !(-30..=MAX_SHIFT).contains(&m.sh) {
        return Err(format!(
            "{what} (m = {}, sh = {}) is not a multiplier m·2^(−31−sh) with m in [2^30, 2^31) and sh in −30..={MAX_SHIFT}",
            m.m, m.sh
        ));
    }
    Ok(())
}

fn clamp_range(lo: i32, hi: i32) -> Check {
    if lo > hi {
        return Err(format!("the clamp range {lo}..={hi} is empty"));
    }
    Ok(())
}

pub(super) fn io(io: &Io, global_words: u32) -> Check {
    let n = words("the tensor", product(io.shape.iter().map(|&d| d as u128)))?;
    let end = io.addr as u64 + n;
    if end > global_words as u64 {
        return Err(format!(
            "words {}..{end} lie outside the global memory ({global_words} words)",
            io.addr
        ));
    }
    if let Elem::Code(c) = io.elem {
        // 32-bit codes are the integers of an embedding's token ids (codes are i32, as in
        // programs).
        if !(1..=32).contains(&c.bits) {
            return Err(format!("codes of {} bits (1..=32 supported)", c.bits));
        }
    }
    Ok(())
}

/// The group's own consistency (its use by instructions is checked with them).
pub(super) fn group(g: &GroupEntry, arrays: u32, cores: usize, layers: usize) -> Check {
    if g.core as usize >= cores {
        return Err(format!("core {} does not exist ({cores} cores)", g.core));
    }
    if g.layer as usize >= layers {
        return Err(format!("layer {} does not exist ({layers} layers)", g.layer));
    }
    if g.k == 0 || g.n == 0 || g.conv_groups == 0 {
        return Err(format!(
            "k = {}, n = {}, conv_groups = {}: none may be 0",
            g.k, g.n, g.conv_groups
        ));
    }
    if !g.n.is_multiple_of(g.conv_groups) {
        return Err(format!("n = {} outputs do not split into {} conv groups", g.n, g.conv_groups));
    }
    if g.weights.len() as u128 != g.n as u128 * g.k as u128 {
        return Err(format!(
            "{} weights for n·k = {}·{} = {}",
            g.weights.len(),
            g.n,
            g.k,
            g.n as u64 * g.k as u64
        ));
    }
    if !(2..=16).contains(&g.weight_bits) {
        return Err(format!("weight_bits = {} (2..=16)", g.weight_bits));
    }
    let (lo, hi) = crate::arith::code_range(g.weight_bits, true);
    if let Some((i, w)) = g.weights.iter().enumerate().find(|(_, &w)| w < lo || w > hi) {
        return Err(format!(
            "weight {i} (output {}, row {}) = {w} is outside the {}-bit range {lo}..={hi}",
            i as u64 / g.k as u64,
            i as u64 % g.k as u64,
            g.weight_bits
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for &a in &g.arrays {
        if a >= arrays {
            return Err(format!("array {a} does not exist (the chip has {arrays})"));
        }
        if !seen.insert(a) {
            return Err(format!("array {a} is listed twice"));
        }
    }
    Ok(())
}

pub(super) fn window(w: &WindowEntry) -> Check {
    let dims = [
        ("channels", w.channels),
        ("height", w.height),
        ("width", w.width),
        ("kernel height", w.kernel[0]),
        ("kernel width", w.kernel[1]),
        ("vertical stride", w.strides[0]),
        ("horizontal stride", w.strides[1]),
        ("vertical dilation", w.dilations[0]),
        ("horizontal dilation", w.dilations[1]),
        ("conv_groups", w.conv_groups),
        ("out_height", w.out_height),
        ("out_width", w.out_width),
    ];
    if let Some((name, _)) = dims.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{name} is 0"));
    }
    if !w.channels.is_multiple_of(w.conv_groups) {
        return Err(format!(
            "{} channels do not split into {} conv groups",
            w.channels, w.conv_groups
        ));
    }
    let outputs = w.out_height as u64 * w.out_width as u64;
    if w.first_position as u64 + w.positions as u64 > outputs {
        return Err(format!(
            "positions {}..{} are beyond the {}x{} outputs",
            w.first_position,
            w.first_position as u64 + w.positions as u64,
            w.out_height,
            w.out_width
        ));
    }
    let axes = [
        (
            "height",
            w.height,
            w.kernel[0],
            w.strides[0],
            w.dilations[0],
            w.pads[0],
            w.pads[2],
            w.out_height,
        ),
        (
            "width",
            w.width,
            w.kernel[1],
            w.strides[1],
            w.dilations[1],
            w.pads[1],
            w.pads[3],
            w.out_width,
        ),
    ];
    for (name, len, k, s, d, p0, p1, out) in axes {
        // The outputs of floor mode, or one more in ceil mode.
        let span = (k as u64 - 1) * d as u64 + 1;
        let ext = len as u64 + p0 as u64 + p1 as u64;
        let ok = span <= ext && {
            let floor = (ext - span) / s as u64 + 1;
            let ceil = (ext - span).div_ceil(s as u64) + 1;
            (floor..=ceil).contains(&(out as u64))
        };
        if !ok {
            return Err(format!(
                "out_{name} {out} is not the output of {name} {len} with kernel {k}, stride {s}, dilation {d}, pads {p0}+{p1}"
            ));
        }
    }
    let source = [w.channels, w.height, w.width].map(|d| d as u128);
    words("the source image", product(source))?;
    let k = (w.channels / w.conv_groups) as u128 * w.kernel[0] as u128 * w.kernel[1] as u128;
    words("one conv group's im2col vector", Some(k))?;
    words("the im2col output", product([w.positions as u128, w.conv_groups as u128, k]))?;
    words("the pooling output", product([w.channels as u128, w.positions as u128]))?;
    Ok(())
}

pub(super) fn requant(r: &RequantEntry) -> Check {
    if r.mult.is_empty() {
        return Err("no multiplier".into());
    }
    let c = r.channels();
    for (name, len, may_be_empty) in [
        ("scales", r.scale.len(), true),
        ("biases", r.bias.len(), true),
        ("multipliers", r.mult.len(), false),
    ] {
        if !(len == 1 || len == c || (len == 0 && may_be_empty)) {
            return Err(format!("{len} {name} for {c} channels (1 or {c} expected)"));
        }
    }
    for (i, m) in r.mult.iter().enumerate() {
        multiplier(&format!("multiplier {i}"), m)?;
    }
    clamp_range(r.lo, r.hi)
}

pub(super) fn add(a: &AddEntry) -> Check {
    multiplier("the first operand's multiplier", &a.a_mult)?;
    multiplier("the second operand's multiplier", &a.b_mult)?;
    multiplier("the output multiplier", &a.mult)?;
    if a.headroom > 62 {
        return Err(format!("headroom {} (at most 62 bits)", a.headroom));
    }
    clamp_range(a.lo, a.hi)
}

pub(super) fn perm(p: &PermEntry) -> Check {
    if p.perm.len() != p.shape.len() {
        return Err(format!(
            "a permutation of {} axes for a rank-{} shape",
            p.perm.len(),
            p.shape.len()
        ));
    }
    let mut seen = vec![false; p.perm.len()];
    for &a in &p.perm {
        match seen.get_mut(a as usize) {
            Some(s) if !*s => *s = true,
            _ => return Err(format!("{:?} is not a permutation of 0..{}", p.perm, p.perm.len())),
        }
    }
    words("the tensor", product(p.shape.iter().map(|&d| d as u128)))?;
    Ok(())
}

/// A host entry's global ranges `(start, words)` read and written, after checking its
/// parameters.
pub(super) fn host(h: &HostEntry) -> std::result::Result<[(u32, u64); 2], String> {
    match h {
        HostEntry::Quantize { src, dst, len, lo, hi, .. } => {
            clamp_range(*lo, *hi)?;
            Ok([(*src, *len as u64), (*dst, *len as u64)])
        }
        HostEntry::Dequantize { src, dst, shape, quant } => {
            let n = words("the tensor", product(shape.iter().map(|&d| d as u128)))?;
            dequant(quant, shape)?;
            Ok([(*src, n), (*dst, n)])
        }
        HostEntry::Softmax { src, dst, shape, axis } => {
            let n = words("the tensor", product(shape.iter().map(|&d| d as u128)))?;
            if *axis as usize >= shape.len() {
                return Err(format!("axis {axis} of a rank-{} tensor", shape.len()));
            }
            Ok([(*src, n), (*dst, n)])
        }
    }
}

fn dequant(q: &BufQuant, shape: &[u32]) -> Check {
    let channels = match q.axis {
        None => 1,
        Some(a) => {
            *shape.get(a).ok_or_else(|| format!("axis {a} of a rank-{} tensor", shape.len()))?
                as usize
        }
    };
    let per_tensor = q.axis.is_none() && !q.scale.is_empty() && !q.zero_point.is_empty();
    if !per_tensor && (q.scale.len() != channels || q.zero_point.len() != channels) {
        return Err(format!(
            "{} scales and {} zero points for {channels} channel(s)",
            q.scale.len(),
            q.zero_point.len()
        ));
    }
    Ok(())
}

/// A program requantization inside a digital entry: one multiplier, a clamp range.
fn one_requant(r: &crate::program::Requant) -> Check {
    if r.mult.len() != 1 {
        return Err(format!("{} multipliers (1 expected)", r.mult.len()));
    }
    multiplier("the multiplier", &r.mult[0])?;
    clamp_range(r.lo, r.hi)
}

/// A digital entry on its own: tables of the sizes the program's validator allows, sizes that
/// fit in 32 bits, indices inside their source, and the bounds that keep the arithmetic inside
/// i64 (`Program::validate` checks the same of the step the entry comes from).
pub(super) fn digital(d: &super::super::DigitalEntry) -> Check {
    use super::super::DigitalEntry as D;
    use crate::program::{EXP_BITS, LN_GAMMA_BITS, LN_MAX_GROUP, MAX_TABLE};
    let dims = |s: &[u32]| product(s.iter().map(|&d| d as u128));
    match d {
        D::Lut { table, .. } => {
            if table.is_empty() || table.len() > MAX_TABLE {
                return Err(format!("a table of {} entries (1..={MAX_TABLE})", table.len()));
            }
            Ok(())
        }
        D::Mul { requant, .. } => one_requant(requant),
        D::Softmax { shape, axis, exp_table, requant } => {
            words("the tensor", dims(shape))?;
            if *axis as usize >= shape.len() {
                return Err(format!("softmax axis {axis} of a rank-{} tensor", shape.len()));
            }
            let ok = !exp_table.is_empty()
                && exp_table.len() <= MAX_TABLE
                && exp_table[0] > 0
                && exp_table.iter().all(|&e| (0..=1i64 << EXP_BITS).contains(&e));
            if !ok {
                return Err(format!(
                    "an exponential table of {} entries (1..={MAX_TABLE}, in [0, 2^{EXP_BITS}], the first > 0)",
                    exp_table.len()
                ));
            }
            one_requant(requant)
        }
        D::LayerNorm { groups, n, epsilon_term, gamma, beta, requant, .. } => {
            words("the tensor", product([*groups as u128, *n as u128]))?;
            let n = *n as usize;
            if n == 0 || n > LN_MAX_GROUP || gamma.len() != n || beta.len() != n {
                return Err(format!(
                    "{} scales and {} biases for groups of {n} codes (1..={LN_MAX_GROUP})",
                    gamma.len(),
                    beta.len()
                ));
            }
            let g_max = 1i32 << (LN_GAMMA_BITS - 1);
            let ok = (0..=1i64 << 62).contains(epsilon_term)
                && gamma.iter().all(|g| (-g_max..=g_max).contains(g))
                && beta.iter().all(|b| b.unsigned_abs() <= 1 << 62);
            if !ok {
                return Err("epsilon term, scales or biases out of range".into());
            }
            one_requant(requant)
        }
        D::Gather { src_len, index, .. } => {
            words("the gathered tensor", Some(index.len() as u128))?;
            let bad = index.iter().find(|&&i| i != u32::MAX && i >= *src_len);
            match bad {
                Some(i) => Err(format!("index {i} beyond a source of {src_len} codes")),
                None => Ok(()),
            }
        }
        D::GatherRows { count, rows, table } => {
            if *rows == 0 || table.len() % *rows as usize != 0 {
                return Err(format!("{} table entries in {rows} rows", table.len()));
            }
            let row = (table.len() / *rows as usize) as u128;
            words("the gathered rows", product([*count as u128, row])).map(|_| ())
        }
        D::LutPerElement { shape, table_shape, tables, .. } => {
            use crate::program::MAX_TABLE_ENTRIES;
            words("the tensor", dims(shape))?;
            let fits = table_shape.len() == shape.len()
                && table_shape.iter().zip(shape).all(|(&t, &d)| t == 1 || t == d);
            if !fits {
                return Err(format!("tables of shape {table_shape:?} for a tensor {shape:?}"));
            }
            let n_tables = dims(table_shape).unwrap_or(u128::MAX);
            let whole = n_tables != 0 && (tables.len() as u128).is_multiple_of(n_tables);
            let n = if whole { tables.len() as u128 / n_tables } else { 0 };
            if n == 0 || n > MAX_TABLE as u128 || tables.len() > MAX_TABLE_ENTRIES {
                return Err(format!(
                    "{} table entries for tables of shape {table_shape:?} (1..={MAX_TABLE} \
                     each, {MAX_TABLE_ENTRIES} in all)",
                    tables.len()
                ));
            }
            Ok(())
        }
        D::MatMul { a_shape, b_shape, requant, .. } => {
            words("the first operand", dims(a_shape))?;
            words("the second operand", dims(b_shape))?;
            let a: Vec<usize> = a_shape.iter().map(|&d| d as usize).collect();
            let b: Vec<usize> = b_shape.iter().map(|&d| d as usize).collect();
            let out = crate::program::matmul_shape(&a, &b)
                .ok_or_else(|| format!("no matrix product of {a_shape:?} and {b_shape:?}"))?;
            words("the product", product(out.iter().map(|&d| d as u128)))?;
            one_requant(requant)
        }
    }
}
