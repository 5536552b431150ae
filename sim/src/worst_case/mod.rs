//! Worst-case device variation: the per-cell programming-variation pattern, bounded by
//! `|ε| ≤ k`, that hurts a crossbar program's accuracy most on a batch, found by first-order
//! search.
//!
//! `docs/hardware-model.md` §5: a cell holding weight slice `u_j` conducts `u_j·(1 + σ·ε)`. Under a
//! pattern ε the effective weight code of a crossbar layer is
//! `w_eff[k,n] = Σ_j 2^(j·b_c)·(u⁺_j(1+σε⁺_j) − u⁻_j(1+σε⁻_j))` (differential) or
//! `Σ_j 2^(j·b_c)·u_j(1+σε_j) − 2^(b_w−1)` (offset; flipped: a slice whose row tile stores
//! complements contributes `2^(j·b_c)·((2^b_c − 1) − ū_j(1+σε_j))`, the variation on the stored
//! cell `ū_j`), and the dequantized weight is
//! `s_w[n]·w_eff[k,n]`. The search runs on a float *surrogate*: the float graph the program
//! was compiled from, with each crossbar layer's weights and bias replaced by the program's
//! dequantized ones ([`layers`]). Its loss gradient with respect to the weights
//! ([`cimc_interp::grad`]) gives, by the chain rule, the gradient with respect to every cell's ε
//! (`∂L/∂ε = ∂L/∂W[k,n]·s_w[n]·(±2^(j·b_c)·u_j·σ)`); the sign of that is the FGSM pattern,
//! and projected sign-gradient steps from it are PGD ([`search`]). Patterns are then judged on
//! the crossbar program itself (through the noise API) and on the surrogate.
//!
//! Why a surrogate: the crossbar program is integer arithmetic with ADC rounding, which has
//! no useful gradient; the float graph with the same weights is its first-order model.

pub mod search;

use cimc_backends::program::{Crossbar, MatrixKind, Program};
use cimc_interp::{InterpError, Result};
use cimc_ir::WeightEncoding;
use cimc_ir::{Graph, Op, ValueId};

/// How a layer's float weight tensor is laid out, relative to the program's `(k, n)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[N, K]` (Conv `[M, C/g, kh, kw]`, Gemm with `transB`): element `n·K + k`.
    OutputMajor,
    /// `[K, N]` (Gemm without `transB`, MatMul): element `k·N + n`.
    InputMajor,
}

/// One crossbar layer of a program, tied to the float graph's weight constant.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The program step's index.
    pub step: usize,
    /// The IR node it comes from (the float graph's node of the same name).
    pub origin: String,
    pub weight: ValueId,
    pub bias: Option<ValueId>,
    /// Rows of the weight matrix (within one group) and output columns (over all groups).
    pub k: usize,
    pub n: usize,
    /// The program's weight codes, as `w[n·K + k]`.
    pub codes: Vec<i32>,
    /// The weight scale `s_w[n]` (from the step's requantization and its buffers' scales).
    pub scale: Vec<f64>,
    /// The real bias `s_x·s_w[n]·b[n]` of the program.
    pub bias_real: Vec<f64>,
    pub layout: WeightLayout,
    pub xbar: Crossbar,
    /// Flipped encoding: per `[n][row tile][slice]`, whether the slice's column stores
    /// complements in that row tile (the one rule, `CrossbarGeometry::flips`); empty otherwise.
    pub flips: Vec<bool>,
}

impl Layer {
    /// Cells per weight: `2·S_w` (differential: w⁺ then w⁻) or `S_w` (offset).
    pub fn cells_per_weight(&self) -> usize {
        self.xbar.columns_per_output()
    }

    pub fn slices(&self) -> usize {
        self.xbar.weight_slices() as usize
    }

    /// The cells of weight `(k, n)`: `(negative, slice, signed contribution 2^(j·b_c)·u_j
    /// with the sign of its polarity)`, in cell order (index within the weight's cells).
    pub fn cells(&self, k: usize, n: usize) -> impl Iterator<Item = (bool, u32, f64)> + '_ {
        let w = self.codes[n * self.k + k] as i64;
        let cb = self.xbar.geometry.cell_bits;
        let s = self.xbar.weight_slices();
        let mask = (1i64 << cb) - 1;
        let (pos, neg, polarities) = match self.xbar.geometry.encoding {
            WeightEncoding::Differential => (w.max(0), (-w).max(0), 2),
            WeightEncoding::Offset | WeightEncoding::Flipped => {
                (w + (1i64 << (self.xbar.weight_bits - 1)), 0, 1)
            }
        };
        (0..polarities).flat_map(move |p| {
            let (u, sign) = if p == 0 { (pos, 1.0) } else { (neg, -1.0) };
            (0..s).map(move |j| {
                let uj = (u >> (j * cb)) & mask;
                if self.flipped(k, n, j) {
                    // The stored cell is the complement: its variation enters negated.
                    return (false, j, -((mask - uj) << (j * cb)) as f64);
                }
                (p == 1, j, sign * (uj << (j * cb)) as f64)
            })
        })
    }

    /// Whether slice `j` of weight `(k, n)` is stored flipped (flipped encoding only).
    fn flipped(&self, k: usize, n: usize, j: u32) -> bool {
        if self.flips.is_empty() {
            return false;
        }
        let (tiles, s) = (self.k.div_ceil(self.xbar.geometry.rows), self.slices());
        self.flips[(n * tiles + k / self.xbar.geometry.rows) * s + j as usize]
    }

    /// The part of weight `(k, n)`'s effective code that no cell variation changes: `0`
    /// (differential), `−2^(b_w−1)` (offset), and with the flipped encoding also
    /// `(2^b_c − 1)·2^(j·b_c)` per flipped slice `j` (the digital `Σx` term).
    pub fn constant(&self, k: usize, n: usize) -> f64 {
        let half = (1i64 << (self.xbar.weight_bits - 1)) as f64;
        let cb = self.xbar.geometry.cell_bits;
        let cmax = self.xbar.geometry.cell_max() as f64;
        match self.xbar.geometry.encoding {
            WeightEncoding::Differential => 0.0,
            WeightEncoding::Offset => -half,
            WeightEncoding::Flipped => {
                let flipped = (0..self.slices() as u32).filter(|&j| self.flipped(k, n, j));
                flipped.map(|j| cmax * (1u64 << (j * cb)) as f64).sum::<f64>() - half
            }
        }
    }

    /// The float weight tensor's element index of `(k, n)`.
    pub fn float_index(&self, k: usize, n: usize) -> usize {
        match self.layout {
            WeightLayout::OutputMajor => n * self.k + k,
            WeightLayout::InputMajor => k * self.n + n,
        }
    }
}

/// The flipped encoding's choice for every `[n][row tile][slice]` of codes `w[n·K + k]`: the
/// cells of each slice column summed over the tile's rows, judged by the one rule
/// (`CrossbarGeometry::flips`); empty for the other encodings.
fn flip_flags(codes: &[i32], k: usize, n: usize, x: &Crossbar) -> Vec<bool> {
    if x.geometry.encoding != WeightEncoding::Flipped {
        return Vec::new();
    }
    let (rows, cb) = (x.geometry.rows.max(1), x.geometry.cell_bits);
    let (half, cmax, s) =
        (1i64 << (x.weight_bits - 1), x.geometry.cell_max() as i64, x.weight_slices());
    let mut out = Vec::with_capacity(n * k.div_ceil(rows) * s as usize);
    for nn in 0..n {
        for k0 in (0..k).step_by(rows) {
            let tile = &codes[nn * k + k0..nn * k + (k0 + rows).min(k)];
            for j in 0..s {
                let sum: i64 = tile.iter().map(|&w| ((w as i64 + half) >> (j * cb)) & cmax).sum();
                out.push(x.geometry.flips(tile.len(), sum as u64));
            }
        }
    }
    out
}

fn user(origin: &str, msg: impl Into<String>) -> InterpError {
    InterpError::Node { node: origin.to_string(), op: "worst-case".into(), msg: msg.into() }
}

/// The crossbar layers of `program`, each tied to the node of `graph` it was compiled from
/// (same name: `graph` is the float graph after the passes that precede quantization, e.g.
/// `fold-bn` and `canonicalize`). Errors name the step whose node is missing or whose weights
/// do not fit.
pub fn layers(program: &Program, graph: &Graph) -> Result<Vec<Layer>> {
    let mut out = Vec::new();
    for (i, step) in program.steps.iter().enumerate() {
        // The crossbar layers only.
        let Some(ms) = step.as_matrix() else { continue };
        let Some(xbar) = ms.crossbar else { continue };
        let (input, output, weights, bias, requant) =
            (ms.input, ms.output, ms.weights, ms.bias, ms.requant);
        let is_conv = match ms.kind {
            MatrixKind::Conv { .. } => true,
            MatrixKind::Gemm => false,
        };
        let origin = program.origins.get(i).cloned().unwrap_or_default();
        let node = graph
            .nodes()
            .find(|(_, n)| n.name == origin)
            .map(|(_, n)| n)
            .ok_or_else(|| user(&origin, "no node of this name in the float graph"))?;
        let wv = *node.inputs.get(1).ok_or_else(|| user(&origin, "the node has no weights"))?;
        if !graph.value(wv).is_const() {
            return Err(user(&origin, "the float node's weights are not constant"));
        }
        let ws = graph.ty(wv).shape.clone();
        let (k, n, layout) = if is_conv {
            if !matches!(node.op, Op::Conv(_)) || ws != weights.shape {
                return Err(user(
                    &origin,
                    format!(
                        "program conv weights {:?}, float node {} with weights {ws:?}",
                        weights.shape,
                        node.op.name()
                    ),
                ));
            }
            (ws[1..].iter().product::<usize>(), ws[0], WeightLayout::OutputMajor)
        } else {
            let (kk, nn) = (weights.shape[0], weights.shape[1]);
            let layout = match node.op {
                Op::Gemm { trans_b: true, .. } => WeightLayout::OutputMajor,
                Op::Gemm { .. } | Op::MatMul => WeightLayout::InputMajor,
                _ => return Err(user(&origin, format!("float node is a {}", node.op.name()))),
            };
            let want = if layout == WeightLayout::OutputMajor { [nn, kk] } else { [kk, nn] };
            if ws != want {
                return Err(user(&origin, format!("float weights {ws:?}, expected {want:?}")));
            }
            (kk, nn, layout)
        };
        // Program codes as w[n·K + k].
        let codes: Vec<i32> = if is_conv {
            weights.data.clone()
        } else {
            let mut c = vec![0; k * n];
            for kk in 0..k {
                for nn in 0..n {
                    c[nn * k + kk] = weights.data[kk * n + nn];
                }
            }
            c
        };
        let scale_of = |b: usize| {
            program.buffers.get(b).and_then(|d| d.quant.as_ref()).and_then(|q| q.scale.first())
        };
        let (Some(&s_x), Some(&s_y)) = (scale_of(input), scale_of(output)) else {
            return Err(user(&origin, "input or output buffer has no quantization scale"));
        };
        let mult = |c: usize| requant.mult[if requant.mult.len() == 1 { 0 } else { c }].to_real();
        let scale: Vec<f64> = (0..n).map(|c| mult(c) * s_y as f64 / s_x as f64).collect();
        let bias_real: Vec<f64> = (0..n)
            .map(|c| s_x as f64 * scale[c] * bias.get(c).copied().unwrap_or(0) as f64)
            .collect();
        let bv = node.inputs.get(2).copied().filter(|&b| graph.value(b).is_const());
        if let Some(b) = bv {
            if graph.ty(b).numel() != n {
                return Err(user(&origin, "the float bias is not one per output"));
            }
        }
        let flips = flip_flags(&codes, k, n, xbar);
        out.push(Layer {
            step: i,
            origin,
            weight: wv,
            bias: bv,
            k,
            n,
            codes,
            scale,
            bias_real,
            layout,
            flips,
            xbar: xbar.clone(),
        });
    }
    if out.is_empty() {
        return Err(user(
            &program.name,
            "the program has no crossbar layer (compile with --target)",
        ));
    }
    Ok(out)
}

/// A per-cell variation pattern: ε of every cell of every crossbar layer, indexed as
/// `eps[layer][(n·K + k)·cells_per_weight + cell]` (cells in [`Layer::cells`] order).
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// Program step index → layer position.
    steps: Vec<Option<usize>>,
    /// Per layer: K and cells per weight, slices, differential or not.
    shape: Vec<(usize, usize, usize, bool)>,
    pub eps: Vec<Vec<f32>>,
}

impl Pattern {
    /// The all-zero pattern (no variation) over `layers`.
    pub fn zeros(layers: &[Layer]) -> Pattern {
        let n_steps = layers.iter().map(|l| l.step + 1).max().unwrap_or(0);
        let mut steps = vec![None; n_steps];
        for (i, l) in layers.iter().enumerate() {
            steps[l.step] = Some(i);
        }
        Pattern {
            steps,
            shape: layers
                .iter()
                .map(|l| {
                    (
                        l.k,
                        l.cells_per_weight(),
                        l.slices(),
                        l.xbar.geometry.encoding == WeightEncoding::Differential,
                    )
                })
                .collect(),
            eps: layers.iter().map(|l| vec![0.0; l.k * l.n * l.cells_per_weight()]).collect(),
        }
    }

    /// ε of one cell, addressed as the noise API addresses it (0 for a step with no layer).
    pub fn epsilon(&self, step: usize, k: usize, n: usize, negative: bool, slice: u32) -> f32 {
        let Some(Some(li)) = self.steps.get(step) else { return 0.0 };
        let (kk, cpw, s, diff) = self.shape[*li];
        let cell = if negative && diff { s + slice as usize } else { slice as usize };
        self.eps[*li].get((n * kk + k) * cpw + cell).copied().unwrap_or(0.0)
    }

    /// The number of cells.
    pub fn len(&self) -> usize {
        self.eps.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A counter-based generator: the same `(seed, stream, index)` always gives the same number,
/// whatever the order or thread, so patterns are deterministic.
pub fn hash64(seed: u64, stream: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(index.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7));
    for _ in 0..2 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// A standard normal draw (Box–Muller on two counter-based uniforms).
pub fn normal(seed: u64, stream: u64, index: u64) -> f64 {
    let u =
        |i: u64| ((hash64(seed, stream, 2 * index + i) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-2.0 * u(0).ln()).sqrt() * (2.0 * std::f64::consts::PI * u(1)).cos()
}

/// Clips the output of each crossbar layer's node in `graph` to the real range of the
/// program's output codes, `s_y·(lo − z_y) ..= s_y·(hi − z_y)` (intersected with the node's own
/// fused clamp): the surrogate then saturates where the program's activation quantization
/// does, which is what bounds a variation pattern's damage on the chip. Returns the number of
/// nodes clamped (a MatMul node has no clamp and is left as it is).
pub fn clamp_to_program_ranges(graph: &mut Graph, program: &Program) -> Result<usize> {
    let mut count = 0;
    for l in layers(program, graph)? {
        let Some(ms) = program.steps[l.step].as_matrix() else { continue };
        let (output, requant) = (ms.output, ms.requant);
        let Some(s_y) = program.buffers[output].quant.as_ref().and_then(|q| q.scale.first()) else {
            continue;
        };
        let lo = *s_y as f64 * (requant.lo - requant.zero_point) as f64;
        let hi = *s_y as f64 * (requant.hi - requant.zero_point) as f64;
        let Some(id) = graph.node_ids().into_iter().find(|&id| graph.node(id).name == l.origin)
        else {
            continue;
        };
        let meet = |c: Option<(f32, f32)>| {
            let (a, b) = c.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
            Some((a.max(lo as f32), b.min(hi as f32)))
        };
        match &mut graph.node_mut(id).op {
            Op::Conv(a) => a.clamp = meet(a.clamp),
            Op::Gemm { clamp, .. } => *clamp = meet(*clamp),
            _ => continue,
        }
        count += 1;
    }
    Ok(count)
}
