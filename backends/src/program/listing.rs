//! The readable text listing of a program: buffers with their sizes and quantization, then one
//! block per step with its integer parameters (per-channel multipliers and shifts, clamp ranges,
//! weights — in full when small, as shape, range and checksum when large). Deterministic.

use super::{
    BufferDecl, Elem, FloatRequant, IntTensor, Program, Requant, ResizeAxis, Step, Window,
    GATHER_ZERO_POINT,
};
use crate::arith::FixedMultiplier;
use std::fmt::Write;

/// Weights with at most this many values are printed in full.
const FULL_WEIGHTS: usize = 64;

pub fn listing(p: &Program) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "program {} (format v{})", p.name, super::FORMAT_VERSION);
    if let Some(t) = &p.target {
        let _ = writeln!(s, "target {}", t.stamp_line());
    }
    let total: usize = p.buffers.iter().map(buffer_bytes).sum();
    let _ =
        writeln!(s, "buffers: {} ({} bytes if each is its own allocation)", p.buffers.len(), total);
    for (i, b) in p.buffers.iter().enumerate() {
        let _ = writeln!(s, "  b{i:<4} {:<28} {}", b.name, buffer_type(b));
    }
    let _ = writeln!(s, "inputs:  {}", bufs(&p.inputs));
    let _ = writeln!(s, "outputs: {}", bufs(&p.outputs));
    let _ = writeln!(s, "steps: {}", p.steps.len());
    for (i, st) in p.steps.iter().enumerate() {
        let _ = writeln!(s, "  {i:>4}: ; {}", p.origins.get(i).map_or("", String::as_str));
        let _ = write!(s, "        ");
        step(&mut s, st);
    }
    s
}

fn bufs(b: &[usize]) -> String {
    b.iter().map(|b| format!("b{b}")).collect::<Vec<_>>().join(", ")
}

fn buffer_bytes(b: &BufferDecl) -> usize {
    let per = match b.elem {
        Elem::F32 => 4,
        Elem::Code(c) => (c.bits as usize).div_ceil(8),
    };
    b.numel() * per
}

fn buffer_type(b: &BufferDecl) -> String {
    let shape = b.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
    let mut t = match b.elem {
        Elem::F32 => format!("f32[{shape}]"),
        Elem::Code(c) => format!("{}{}[{shape}]", if c.signed { "s" } else { "u" }, c.bits),
    };
    if let Some(q) = &b.quant {
        let _ = write!(t, " scale={} zp={}", list_f32(&q.scale), list_i32(&q.zero_point));
        if let Some(a) = q.axis {
            let _ = write!(t, " axis={a}");
        }
    }
    t
}

fn list_f32(v: &[f32]) -> String {
    format!("[{}]", v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", "))
}

fn list_i32(v: &[i32]) -> String {
    format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

fn list_i64(v: &[i64]) -> String {
    format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

fn mults(v: &[FixedMultiplier]) -> String {
    format!(
        "[{}]",
        v.iter().map(|m| format!("{}>>{}", m.m, 31 + m.sh)).collect::<Vec<_>>().join(", ")
    )
}

fn requant(r: &Requant) -> String {
    format!("requant(m>>s={}, zp={}, clamp=[{}, {}])", mults(&r.mult), r.zero_point, r.lo, r.hi)
}

fn window(w: &Window) -> String {
    format!(
        "kernel={:?} strides={:?} dilations={:?} pads={:?}",
        w.kernel, w.strides, w.dilations, w.pads
    )
}

/// FNV-1a over the values: a short fingerprint of large weights.
fn checksum(d: &[i32]) -> u64 {
    d.iter()
        .fold(0xcbf29ce484222325u64, |h, &v| (h ^ (v as u32 as u64)).wrapping_mul(0x100000001b3))
}

fn weights(w: &IntTensor) -> String {
    if w.data.len() <= FULL_WEIGHTS {
        format!("w=i{}{:?} {}", w.bits, w.shape, list_i32(&w.data))
    } else {
        let lo = w.data.iter().min().copied().unwrap_or(0);
        let hi = w.data.iter().max().copied().unwrap_or(0);
        format!("w=i{}{:?} range=[{lo}, {hi}] fnv={:016x}", w.bits, w.shape, checksum(&w.data))
    }
}

fn crossbar(x: &Option<super::Crossbar>) -> String {
    let Some(x) = x else { return String::new() };
    format!(
        "\n        xbar {:?} rows={} cols={} cell_bits={} dac_bits={} adc_bits={} weight_bits={} magnitude_bits={} input_bits={} input_min={} adc_step={:?}",
        x.geometry.encoding, x.geometry.rows, x.geometry.cols, x.geometry.cell_bits,
        x.geometry.dac_bits, x.geometry.adc_bits, x.weight_bits,
        x.magnitude_bits, x.input_bits, x.input_min, x.adc_step
    )
}

fn step(s: &mut String, st: &Step) {
    let _ = match st {
        Step::Quantize { input, output, scale, zero_point, lo, hi } => {
            writeln!(s, "quantize b{input} -> b{output} scale={scale:?} zp={zero_point} clamp=[{lo}, {hi}]")
        }
        Step::Dequantize { input, output } => writeln!(s, "dequantize b{input} -> b{output}"),
        Step::Conv { input, output, input_zero_point, weights: w, bias, window: win, group, requant: r, crossbar: x } => writeln!(
            s,
            "conv b{input} -> b{output} in_zp={input_zero_point} group={group} {}\n        {}\n        bias={}\n        {}{}",
            window(win),
            weights(w),
            list_i64(bias),
            requant(r),
            crossbar(x)
        ),
        Step::Gemm { input, output, input_zero_point, weights: w, bias, requant: r, crossbar: x } => writeln!(
            s,
            "gemm b{input} -> b{output} in_zp={input_zero_point}\n        {}\n        bias={}\n        {}{}",
            weights(w),
            list_i64(bias),
            requant(r),
            crossbar(x)
        ),
        Step::Affine { input, output, input_zero_point, scale, bias, requant: r } => writeln!(
            s,
            "affine b{input} -> b{output} in_zp={input_zero_point} scale={} bias={}\n        {}",
            list_i32(scale),
            list_i64(bias),
            requant(r)
        ),
        Step::Rescale { input, output, input_zero_point, requant: r } => {
            writeln!(s, "rescale b{input} -> b{output} in_zp={input_zero_point} {}", requant(r))
        }
        Step::MaxPool { input, output, window: w, ceil_mode } => {
            writeln!(s, "max_pool b{input} -> b{output} {} ceil_mode={ceil_mode}", window(w))
        }
        Step::AvgPool { input, output, window: w, ceil_mode, count_include_pad, input_zero_point, mult_by_count, zero_point, lo, hi } => writeln!(
            s,
            "avg_pool b{input} -> b{output} {} ceil_mode={ceil_mode} count_include_pad={count_include_pad} in_zp={input_zero_point}\n        m>>s by count={} zp={zero_point} clamp=[{lo}, {hi}]",
            window(w),
            mults(mult_by_count)
        ),
        Step::GlobalAvgPool { input, output, input_zero_point, requant: r } => {
            writeln!(s, "global_avg_pool b{input} -> b{output} in_zp={input_zero_point} {}", requant(r))
        }
        Step::Add { a, b, output, a_zero_point, b_zero_point, headroom, a_mult, b_mult, requant: r } => writeln!(
            s,
            "add b{a}, b{b} -> b{output} zp=({a_zero_point}, {b_zero_point}) headroom={headroom} a:{} b:{}\n        {}",
            mults(&[*a_mult]),
            mults(&[*b_mult]),
            requant(r)
        ),
        Step::Concat { inputs, output, axis, rescale } => {
            let r: Vec<String> = rescale
                .iter()
                .map(|r| r.as_ref().map_or("copy".to_string(), |(z, q)| format!("in_zp={z} {}", requant(q))))
                .collect();
            writeln!(s, "concat {} -> b{output} axis={axis} [{}]", bufs(inputs), r.join("; "))
        }
        Step::Reshape { input, output } => writeln!(s, "reshape b{input} -> b{output}"),
        Step::Transpose { input, output, perm } => writeln!(s, "transpose b{input} -> b{output} perm={perm:?}"),
        Step::Pad { input, output, pads, code } => writeln!(s, "pad b{input} -> b{output} pads={pads:?} code={code}"),
        Step::Softmax { input, output, axis } => writeln!(s, "softmax b{input} -> b{output} axis={axis} (f32)"),
        Step::Lut { input, output, input_min, table } => {
            writeln!(s, "lut b{input} -> b{output} from={input_min} {}", table_text(table))
        }
        Step::Sub { a, b, output, a_zero_point, b_zero_point, headroom, a_mult, b_mult, requant: r } => writeln!(
            s,
            "sub b{a}, b{b} -> b{output} zp=({a_zero_point}, {b_zero_point}) headroom={headroom} a:{} b:{}\n        {}",
            mults(&[*a_mult]),
            mults(&[*b_mult]),
            requant(r)
        ),
        Step::Mul { a, b, output, a_zero_point, b_zero_point, requant: r } => writeln!(
            s,
            "mul b{a}, b{b} -> b{output} zp=({a_zero_point}, {b_zero_point})\n        {}",
            requant(r)
        ),
        Step::Div { a, b, output, a_zero_point, b_zero_point, b_min, reciprocal, requant: r } => writeln!(
            s,
            "div b{a}, b{b} -> b{output} zp=({a_zero_point}, {b_zero_point}) reciprocal from={b_min} {}\n        {}",
            wide_table_text(reciprocal),
            requant(r)
        ),
        Step::Gather { input, output, index } => {
            // The indices in full for small steps, else their count and first ones.
            let shown: Vec<String> = index
                .iter()
                .take(32)
                .map(|&i| if i == GATHER_ZERO_POINT { "z".into() } else { i.to_string() })
                .collect();
            let more = if index.len() > 32 { format!(", … ({} in all)", index.len()) } else { String::new() };
            writeln!(s, "gather b{input} -> b{output} index=[{}{more}]", shown.join(", "))
        }
        Step::MatMulCodes { a, b, output, a_zero_point, b_zero_point, requant: r } => writeln!(
            s,
            "matmul_codes b{a}, b{b} -> b{output} zp=({a_zero_point}, {b_zero_point})\n        {}",
            requant(r)
        ),
        Step::GatherRows { indices, output, rows, table } => {
            writeln!(s, "gather_rows b{indices} -> b{output} rows={rows} {}", table_text(table))
        }
        Step::Resize { input, output, input_zero_point, axes, requant: r } => writeln!(
            s,
            "resize b{input} -> b{output} zx={input_zero_point} {}{}",
            requant(r),
            resize_axes_text(axes)
        ),
        Step::IntSoftmax { input, output, axis, exp_table, requant: r } => writeln!(
            s,
            "int_softmax b{input} -> b{output} axis={axis} exp {}\n        {}",
            wide_table_text(exp_table),
            requant(r)
        ),
        Step::LutPerElement { input, output, input_min, table_shape, tables } => writeln!(
            s,
            "lut_per_element b{input} -> b{output} from={input_min} tables={table_shape:?} {}",
            table_text(tables)
        ),
        Step::Lrn { input, output, size, alpha, beta, bias, rounding } => writeln!(
            s,
            "lrn b{input} -> b{output} size={size} alpha={alpha:?} beta={beta:?} bias={bias:?}\n        {}",
            float_requant(rounding)
        ),
        Step::Normalize { input, output, axis, epsilon, affine_shape, scale, bias, rounding } => writeln!(
            s,
            "normalize b{input} -> b{output} axis={axis} epsilon={epsilon:?} affine={affine_shape:?} scale={} bias={}\n        {}",
            floats_text(scale),
            floats_text(bias),
            float_requant(rounding)
        ),
        Step::IntLayerNorm {
            input, output, axis, input_zero_point, epsilon_term, gamma, beta, requant: r
        } => writeln!(
            s,
            "int_layer_norm b{input} -> b{output} axis={axis} zx={input_zero_point} eps={epsilon_term} gamma {} beta {}\n        {}",
            table_text(gamma),
            wide_table_text(beta),
            requant(r)
        ),
    };
}

/// Float parameters in full when few, else their count and range.
fn floats_text(v: &[f32]) -> String {
    if v.len() <= FULL_WEIGHTS {
        return list_f32(v);
    }
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    format!("[{} values in [{lo:?}, {hi:?}]]", v.len())
}

/// The f64 route of a step from input codes to output codes.
fn float_requant(r: &FloatRequant) -> String {
    format!(
        "f64 from scale={:?} zp={} to scale={:?} zp={} clamp=[{}, {}]",
        r.input_scale, r.input_zero_point, r.output_scale, r.output_zero_point, r.lo, r.hi
    )
}

/// A resize step's axes, one line each: every output index's taps as `i0*w0+i1*w1`, the first
/// ones when many.
fn resize_axes_text(axes: &[ResizeAxis]) -> String {
    let mut out = String::new();
    for a in axes {
        let shown: Vec<String> = a
            .index
            .iter()
            .zip(&a.weight)
            .take(16)
            .map(|(i, w)| format!("{}*{}+{}*{}", i[0], w[0], i[1], w[1]))
            .collect();
        let more = if a.index.len() > 16 {
            format!(", … ({} in all)", a.index.len())
        } else {
            String::new()
        };
        let _ = write!(out, "\n        axis {}: taps=[{}{more}]", a.axis, shown.join(", "));
    }
    out
}

/// A table of codes: in full when small, else its length, range and checksum.
fn table_text(t: &[i32]) -> String {
    if t.len() <= FULL_WEIGHTS {
        format!("table={}", list_i32(t))
    } else {
        let lo = t.iter().min().copied().unwrap_or(0);
        let hi = t.iter().max().copied().unwrap_or(0);
        format!("table[{}] range=[{lo}, {hi}] fnv={:016x}", t.len(), checksum(t))
    }
}

/// A table of wide integers, as [`table_text`] (the checksum over their low 32 bits and high
/// 32 bits).
fn wide_table_text(t: &[i64]) -> String {
    if t.len() <= FULL_WEIGHTS {
        format!("table={}", list_i64(t))
    } else {
        let lo = t.iter().min().copied().unwrap_or(0);
        let hi = t.iter().max().copied().unwrap_or(0);
        let halves: Vec<i32> = t.iter().flat_map(|&v| [v as i32, (v >> 32) as i32]).collect();
        format!("table[{}] range=[{lo}, {hi}] fnv={:016x}", t.len(), checksum(&halves))
    }
}
