//! The execution of one program step: [`ProgramRunner::step`] dispatches on the step's kind to
//! one function per kind, each computing the step's output from the buffers written so far.

use super::{
    approx, broadcast_index, dequantize, kernels, pad, pool, softmax, step_err, Data, Noise,
    ProgramRunner, StepAdcStats,
};
use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::{
    Buf, Elem, FloatRequant, Program, Requant, ResizeAxis, Step, Window, GATHER_ZERO_POINT,
};
use cimc_interp::{InterpError, Result};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

/// The step being run: what its functions read, and where their errors point.
struct Running<'r> {
    p: &'r Program,
    i: usize,
    s: &'r Step,
    bufs: &'r [Option<Data>],
}

impl<'r> Running<'r> {
    fn err(&self, msg: impl Into<String>) -> InterpError {
        step_err(self.i, self.s, msg)
    }

    fn shape(&self, b: Buf) -> &'r [usize] {
        self.p.buffers[b].shape.as_slice()
    }

    fn get(&self, b: Buf) -> Result<&'r Data> {
        self.bufs[b]
            .as_ref()
            .ok_or_else(|| self.err(format!("reads buffer b{b} before it is written")))
    }

    fn codes(&self, b: Buf) -> Result<&'r [i32]> {
        match self.get(b)? {
            Data::Codes(v) => Ok(v),
            Data::F32(_) => Err(self.err(format!("buffer b{b} holds f32 values, codes expected"))),
        }
    }

    fn floats(&self, b: Buf) -> Result<&'r [f32]> {
        match self.get(b)? {
            Data::F32(v) => Ok(v),
            Data::Codes(_) => Err(self.err(format!("buffer b{b} holds codes, f32 expected"))),
        }
    }
}

/// One operand of an Add step: its buffer, zero point and rescaling multiplier.
struct AddOperand {
    buf: Buf,
    zero_point: i32,
    mult: FixedMultiplier,
}

impl ProgramRunner {
    /// Step `i`'s output from the buffers written so far. Every step kind has its function;
    /// a new kind fails to compile here until it has one.
    pub(super) fn step(
        &self,
        i: usize,
        s: &Step,
        bufs: &[Option<Data>],
        stats: Option<&mut StepAdcStats>,
        noise: Option<Noise<'_>>,
    ) -> Result<Data> {
        let r = Running { p: &self.program, i, s, bufs };
        match s {
            Step::Quantize { input, scale, zero_point, lo, hi, .. } => {
                quantize(&r, *input, *scale, *zero_point, (*lo, *hi))
            }
            Step::Dequantize { input, .. } => dequantize_step(&r, *input),
            Step::Conv { input, output, requant, .. }
            | Step::Gemm { input, output, requant, .. } => {
                self.matrix(&r, (*input, *output), requant, stats, noise)
            }
            Step::Affine { input, input_zero_point, scale, bias, requant, .. } => {
                affine(&r, *input, *input_zero_point, (scale, bias), requant)
            }
            Step::Rescale { input, input_zero_point, requant, .. } => {
                rescale(&r, *input, *input_zero_point, requant)
            }
            Step::MaxPool { input, output, window, ceil_mode } => {
                max_pool(&r, (*input, *output), window, *ceil_mode)
            }
            Step::AvgPool {
                input,
                output,
                window,
                ceil_mode: _,
                count_include_pad,
                input_zero_point,
                mult_by_count,
                zero_point,
                lo,
                hi,
            } => {
                let rq =
                    pool::CountRequant { mult_by_count, zero_point: *zero_point, lo: *lo, hi: *hi };
                let zero = (*input_zero_point, *count_include_pad);
                avg_pool(&r, (*input, *output), window, zero, &rq)
            }
            Step::GlobalAvgPool { input, input_zero_point, requant, .. } => {
                global_avg_pool(&r, *input, *input_zero_point, requant)
            }
            Step::Add {
                a,
                b,
                output,
                a_zero_point,
                b_zero_point,
                headroom,
                a_mult,
                b_mult,
                requant,
            } => {
                let a = AddOperand { buf: *a, zero_point: *a_zero_point, mult: *a_mult };
                let b = AddOperand { buf: *b, zero_point: *b_zero_point, mult: *b_mult };
                add(&r, [a, b], *output, *headroom, requant)
            }
            Step::Concat { inputs, output, axis, rescale } => {
                concat(&r, inputs, *output, *axis, rescale)
            }
            Step::Reshape { input, .. } => Ok(r.get(*input)?.clone()),
            Step::Transpose { input, perm, .. } => transpose(&r, *input, perm),
            Step::Gather { input, output, index } => gather(&r, *input, *output, index),
            Step::Resize { input, output, input_zero_point, axes, requant } => {
                resize(&r, (*input, *output), *input_zero_point, axes, requant)
            }
            Step::Pad { input, output, pads, code } => {
                let x = r.codes(*input)?;
                let (si, so) = (r.shape(*input), r.shape(*output));
                Ok(Data::Codes(pad(x, si, so, pads, *code).map_err(|m| r.err(m))?))
            }
            Step::Softmax { input, axis, .. } => {
                let x = r.floats(*input)?;
                Ok(Data::F32(softmax(x, r.shape(*input), *axis).map_err(|m| r.err(m))?))
            }
            Step::Lut { input, input_min, table, .. } => lut(&r, *input, *input_min, table),
            Step::Sub {
                a,
                b,
                output,
                a_zero_point,
                b_zero_point,
                headroom,
                a_mult,
                b_mult,
                requant,
            } => {
                let a = AddOperand { buf: *a, zero_point: *a_zero_point, mult: *a_mult };
                let b = AddOperand { buf: *b, zero_point: *b_zero_point, mult: *b_mult };
                sub(&r, [a, b], *output, *headroom, requant)
            }
            Step::Mul { a, b, output, a_zero_point, b_zero_point, requant } => {
                let (za, zb) = (*a_zero_point as i64, *b_zero_point as i64);
                pairwise(&r, (*a, *b), *output, |qa, qb| {
                    requant.apply((qa as i64 - za) * (qb as i64 - zb), 0)
                })
            }
            Step::Div { a, b, output, a_zero_point, b_zero_point, b_min, reciprocal, requant } => {
                let div = Divide { a_zero_point: *a_zero_point, b_zero_point: *b_zero_point };
                let table = (*b_min, reciprocal.as_slice());
                pairwise(&r, (*a, *b), *output, |qa, qb| div.apply(qa, qb, table, requant))
            }
            Step::MatMulCodes { a, b, output, a_zero_point, b_zero_point, requant } => {
                let zero = (*a_zero_point as i64, *b_zero_point as i64);
                matmul_codes(&r, (*a, *b), *output, zero, requant)
            }
            Step::GatherRows { indices, rows, table, .. } => {
                let idx = r.codes(*indices)?;
                let row = table.len() / (*rows).max(1);
                let mut out = Vec::with_capacity(idx.len() * row);
                for &k in idx {
                    let at = if k < 0 { k as i64 + *rows as i64 } else { k as i64 };
                    if at < 0 || at >= *rows as i64 {
                        return Err(r.err(format!("index {k} outside [-{rows}, {rows})")));
                    }
                    let at = at as usize * row;
                    out.extend_from_slice(&table[at..at + row]);
                }
                Ok(Data::Codes(out))
            }
            Step::IntSoftmax { input, axis, exp_table, requant, .. } => {
                let x = r.codes(*input)?;
                let y = int_softmax(x, r.shape(*input), *axis, exp_table, requant);
                Ok(Data::Codes(y.map_err(|m| r.err(m))?))
            }
            Step::LutPerElement { input, output, input_min, table_shape, tables } => {
                lut_per_element(&r, (*input, *output), *input_min, (table_shape, tables))
            }
            Step::Lrn { input, size, alpha, beta, bias, rounding, .. } => {
                let x = r.codes(*input)?;
                let params = LrnParams { size: *size, alpha: *alpha, beta: *beta, bias: *bias };
                Ok(Data::Codes(lrn(x, r.shape(*input), &params, rounding)))
            }
            Step::Normalize {
                input, axis, epsilon, affine_shape, scale, bias, rounding, ..
            } => {
                let x = r.codes(*input)?;
                let affine = Affine { shape: affine_shape, scale, bias };
                let y = normalize(x, r.shape(*input), *axis, *epsilon, &affine, rounding);
                Ok(Data::Codes(y.map_err(|m| r.err(m))?))
            }
            Step::IntLayerNorm {
                input,
                axis,
                input_zero_point,
                epsilon_term,
                gamma,
                beta,
                requant,
                ..
            } => {
                let x = r.codes(*input)?;
                let n: usize =
                    r.shape(*input)[(*axis).min(r.shape(*input).len())..].iter().product();
                let p = LayerNormCodes {
                    zero_point: *input_zero_point,
                    epsilon_term: *epsilon_term,
                    gamma,
                    beta,
                    requant,
                };
                Ok(Data::Codes(int_layer_norm(x, n, &p).map_err(|m| r.err(m))?))
            }
        }
    }

    /// A Conv or Gemm step: with its prepared (or, in a lean runner, freshly converted)
    /// weights, on the noisy chip, through an approximate multiplier, at a derived weight width
    /// or as compiled.
    fn matrix(
        &self,
        r: &Running,
        (input, output): (Buf, Buf),
        requant: &Requant,
        stats: Option<&mut StepAdcStats>,
        noise: Option<Noise<'_>>,
    ) -> Result<Data> {
        let (i, s) = (r.i, r.s);
        let e = |m: String| r.err(m);
        let x = r.codes(input)?;
        let converted;
        let prep = match (&self.prepared[i], &self.lean) {
            (Some(prep), _) => prep,
            (None, Some(_)) => {
                converted = kernels::prepare_checked(s, &r.p.buffers)
                    .map_err(e)?
                    .ok_or_else(|| InterpError::Internal("a matrix step without weights".into()))?;
                &converted
            }
            (None, None) => return Err(InterpError::Internal("unprepared matrix step".into())),
        };
        let (si, so) = (r.shape(input), r.shape(output));
        let noisy = noise.and_then(|(chip, first)| chip.step(i).map(|n| (n, first)));
        let out = match (
            noisy,
            prep.crossbar(),
            self.cascade.get(i).and_then(Option::as_ref),
            self.approx.get(i).and_then(Option::as_ref),
        ) {
            (Some((nx, first)), Some(xb), None, _) => {
                crate::noise::run::run_with(s, xb, nx, x, si, so, first, &|a, n| {
                    requant.apply(a, n)
                })
            }
            (_, _, _, Some(lut)) => approx::run_step(s, lut, x, si, so),
            (_, _, Some(c), _) => c.run(s, prep, x, si, so, stats),
            _ => kernels::run_matrix(s, prep, x, si, so, stats),
        };
        Ok(Data::Codes(out.map_err(e)?))
    }
}

/// f32 → codes.
fn quantize(
    r: &Running,
    input: Buf,
    scale: f32,
    zero_point: i32,
    (lo, hi): (i32, i32),
) -> Result<Data> {
    let x = r.floats(input)?;
    Ok(Data::Codes(
        x.iter()
            .map(|&v| cimc_backends::arith::quantize_value(v, scale, zero_point, lo, hi))
            .collect(),
    ))
}

/// codes → f32 with the input buffer's quantization.
fn dequantize_step(r: &Running, input: Buf) -> Result<Data> {
    let x = r.codes(input)?;
    let decl = &r.p.buffers[input];
    let q = decl.quant.as_ref().ok_or_else(|| r.err(format!("buffer b{input} has no scale")))?;
    Ok(Data::F32(dequantize(x, &decl.shape, q).map_err(|m| r.err(m))?))
}

/// `(q − z_x) · scale[c] + bias[c]` along axis 1, requantized.
fn affine(
    r: &Running,
    input: Buf,
    z: i32,
    (scale, bias): (&[i32], &[i64]),
    requant: &Requant,
) -> Result<Data> {
    let x = r.codes(input)?;
    let sh = r.shape(input);
    let c = sh.get(1).copied().unwrap_or(1);
    let inner: usize = sh.iter().skip(2).product();
    if scale.len() != c || bias.len() != c {
        return Err(r.err(format!(
            "{c} channels but {} scales, {} biases",
            scale.len(),
            bias.len()
        )));
    }
    Ok(Data::Codes(
        x.iter()
            .enumerate()
            .map(|(k, &q)| {
                let ch = (k / inner.max(1)) % c;
                let acc = (q - z) as i64 * scale[ch] as i64 + bias[ch];
                requant.apply(acc, ch)
            })
            .collect(),
    ))
}

/// `q − z_x` requantized.
fn rescale(r: &Running, input: Buf, z: i32, requant: &Requant) -> Result<Data> {
    let x = r.codes(input)?;
    Ok(Data::Codes(x.iter().map(|&q| requant.apply((q - z) as i64, 0)).collect()))
}

fn max_pool(
    r: &Running,
    (input, output): (Buf, Buf),
    window: &Window,
    ceil_mode: bool,
) -> Result<Data> {
    let x = r.codes(input)?;
    let y = pool::max_pool(x, r.shape(input), r.shape(output), window, ceil_mode);
    Ok(Data::Codes(y.map_err(|m| r.err(m))?))
}

/// Average pooling: the sum of `q − z_x` over each window requantized with the multiplier of
/// its count (the output shape decides the windows, so `ceil_mode` has done its work).
fn avg_pool(
    r: &Running,
    (input, output): (Buf, Buf),
    window: &Window,
    zero: (i32, bool),
    rq: &pool::CountRequant,
) -> Result<Data> {
    let x = r.codes(input)?;
    let y = pool::avg_pool(x, (r.shape(input), r.shape(output)), window, zero, rq);
    Ok(Data::Codes(y.map_err(|m| r.err(m))?))
}

/// The sum of `q − z_x` over all spatial positions of each channel, requantized.
fn global_avg_pool(r: &Running, input: Buf, z: i32, requant: &Requant) -> Result<Data> {
    let x = r.codes(input)?;
    let hw: usize = r.shape(input).iter().skip(2).product::<usize>().max(1);
    Ok(Data::Codes(
        x.chunks(hw)
            .map(|win| requant.apply(win.iter().map(|&q| (q - z) as i64).sum(), 0))
            .collect(),
    ))
}

/// The Add recipe (`docs/hardware-model.md` §4): each operand minus its zero point, shifted
/// left by `headroom`, rescaled with its multiplier (one rounding), summed, requantized.
fn add(
    r: &Running,
    [a, b]: [AddOperand; 2],
    output: Buf,
    headroom: u32,
    requant: &Requant,
) -> Result<Data> {
    let xa = r.codes(a.buf)?;
    let xb = r.codes(b.buf)?;
    let (sa, sb, so) = (r.shape(a.buf), r.shape(b.buf), r.shape(output));
    let rescale = |q: i32, z: i32, m| {
        cimc_backends::arith::requantize(((q - z) as i64) << headroom, m, 0, i32::MIN, i32::MAX)
            as i64
    };
    // Each input's rescaled value depends on its code alone: one table over the code range (at
    // most 2^16 entries) instead of a rounding per element.
    let table = |o: &AddOperand| -> Result<(i32, Vec<i64>)> {
        let Elem::Code(c) = r.p.buffers[o.buf].elem else {
            return Err(r.err(format!("buffer b{} holds f32 values, codes expected", o.buf)));
        };
        let (lo, hi) = c.range();
        Ok((lo, (lo..=hi).map(|q| rescale(q, o.zero_point, o.mult)).collect()))
    };
    let (alo, ta) = table(&a)?;
    let (blo, tb) = table(&b)?;
    // A code outside its type's range (a malformed program) is rescaled directly.
    let look_a = |q: i32| {
        ta.get(q.wrapping_sub(alo) as usize)
            .copied()
            .unwrap_or_else(|| rescale(q, a.zero_point, a.mult))
    };
    let look_b = |q: i32| {
        tb.get(q.wrapping_sub(blo) as usize)
            .copied()
            .unwrap_or_else(|| rescale(q, b.zero_point, b.mult))
    };
    if sa == so && sb == so {
        return Ok(Data::Codes(
            xa.par_iter()
                .zip(xb.par_iter())
                .map(|(&qa, &qb)| requant.apply(look_a(qa) + look_b(qb), 0))
                .collect(),
        ));
    }
    let ia = broadcast_index(sa, so).map_err(|m| r.err(m))?;
    let ib = broadcast_index(sb, so).map_err(|m| r.err(m))?;
    Ok(Data::Codes(
        (0..so.iter().product::<usize>())
            .into_par_iter()
            .map(|k| requant.apply(look_a(xa[ia(k)]) + look_b(xb[ib(k)]), 0))
            .collect(),
    ))
}

/// `table[q − input_min]` for every code (the program was validated: the table covers the
/// input's code type; a code outside it is an error).
fn lut(r: &Running, input: Buf, input_min: i32, table: &[i32]) -> Result<Data> {
    let x = r.codes(input)?;
    let y: Option<Vec<i32>> =
        x.par_iter().map(|&q| table.get(q.wrapping_sub(input_min) as usize).copied()).collect();
    Ok(Data::Codes(y.ok_or_else(|| r.err("a code outside the table"))?))
}

/// `tables[t·n + q − input_min]` for every output element, `t` and `q` the table and the input
/// code it broadcasts from (the program was validated: the shapes broadcast and the tables cover
/// the input's code type; a code outside it is an error).
fn lut_per_element(
    r: &Running,
    (input, output): (Buf, Buf),
    input_min: i32,
    tables: (&[usize], &[i32]),
) -> Result<Data> {
    let x = r.codes(input)?;
    let shapes = (r.shape(input), r.shape(output));
    let y = lut_per_element_codes(x, shapes, input_min, tables).map_err(|m| r.err(m))?;
    Ok(Data::Codes(y))
}

/// The codes of a `LutPerElement` step: the input `x` of shape `si` broadcast to `so`, each
/// element looked up in its table (the stream simulator's `lut_per_element` calls this too).
pub(crate) fn lut_per_element_codes(
    x: &[i32],
    (si, so): (&[usize], &[usize]),
    input_min: i32,
    (table_shape, tables): (&[usize], &[i32]),
) -> std::result::Result<Vec<i32>, String> {
    let n_tables: usize = table_shape.iter().product();
    let n = tables.len() / n_tables.max(1);
    let ix = broadcast_index(si, so)?;
    let it = broadcast_index(table_shape, so)?;
    let y: Option<Vec<i32>> = (0..so.iter().product::<usize>())
        .into_par_iter()
        .map(|k| {
            let e = x[ix(k)].wrapping_sub(input_min) as usize;
            if e < n {
                tables.get(it(k) * n + e).copied()
            } else {
                None
            }
        })
        .collect();
    y.ok_or_else(|| "a code outside the table".to_string())
}

/// The attributes of an `Lrn` step.
pub(crate) struct LrnParams {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// LRN on codes (`[N, C, ..]`, validated rank ≥ 3 and size ≥ 1): the window's `Σ (q − z_x)²`
/// exactly in i64, then `s_x·(q − z_x)·(bias + alpha/size·s_x²·Σ)^−beta` in f64, rounded once.
pub(crate) fn lrn(x: &[i32], shape: &[usize], p: &LrnParams, r: &FloatRequant) -> Vec<i32> {
    let (c, inner) = (shape[1], shape[2..].iter().product::<usize>());
    let (before, after) = ((p.size - 1) / 2, (p.size - 1).div_ceil(2));
    let s_x = r.input_scale as f64;
    let k = p.alpha as f64 / p.size as f64 * s_x * s_x;
    let (beta, bias) = (p.beta as f64, p.bias as f64);
    let z = r.input_zero_point as i64;
    let mut y = vec![0i32; x.len()];
    // One (sample, channel) plane per task: its outputs read the planes of the window.
    y.par_chunks_mut(inner.max(1)).enumerate().for_each(|(plane, out)| {
        let (b, ch) = (plane / c, plane % c);
        let (c0, c1) = (ch.saturating_sub(before), (ch + after).min(c - 1));
        for (pos, o) in out.iter_mut().enumerate() {
            let at = |k: usize| x[(b * c + k) * inner + pos] as i64 - z;
            let sum: i64 = (c0..=c1).map(|k| at(k) * at(k)).sum();
            let v = s_x * at(ch) as f64 * (bias + k * sum as f64).powf(-beta);
            *o = r.code(v);
        }
    });
    y
}

/// The per-element scale and bias of a `Normalize` step, broadcast from `shape`.
pub(crate) struct Affine<'a> {
    pub shape: &'a [usize],
    pub scale: &'a [f32],
    pub bias: &'a [f32],
}

/// Normalization over the axes from `axis` on: per group, `S1 = Σ (q − z_x)` and
/// `S2 = Σ (q − z_x)²` exactly in integers, then each element in f64 from them, rounded once
/// (`Step::Normalize`).
pub(crate) fn normalize(
    x: &[i32],
    shape: &[usize],
    axis: usize,
    epsilon: f32,
    affine: &Affine,
    r: &FloatRequant,
) -> std::result::Result<Vec<i32>, String> {
    let n: usize = shape[axis.min(shape.len())..].iter().product();
    let ia = broadcast_index(affine.shape, shape)?;
    let s_x = r.input_scale as f64;
    let z = r.input_zero_point as i64;
    let mut y = vec![0i32; x.len()];
    y.par_chunks_mut(n.max(1)).zip(x.par_chunks(n.max(1))).enumerate().for_each(
        |(g, (out, xs))| {
            let s1: i128 = xs.iter().map(|&q| (q as i64 - z) as i128).sum();
            let s2: i128 = xs.iter().map(|&q| ((q as i64 - z) as i128).pow(2)).sum();
            let nn = n as i128;
            // n·S2 − S1² = n²·variance in codes², exact.
            let spread = (nn * s2 - s1 * s1) as f64;
            let var = s_x * s_x * (spread / (nn * nn) as f64);
            let inv = s_x / (n as f64 * (var + epsilon as f64).sqrt());
            for (j, (o, &q)) in out.iter_mut().zip(xs).enumerate() {
                let a = ia(g * n + j);
                let d = (nn * (q as i64 - z) as i128 - s1) as f64;
                *o = r.code(affine.scale[a] as f64 * d * inv + affine.bias[a] as f64);
            }
        },
    );
    Ok(y)
}

/// The parameters of a [`Step::IntLayerNorm`] besides its shape.
pub(crate) struct LayerNormCodes<'a> {
    pub zero_point: i32,
    pub epsilon_term: i64,
    pub gamma: &'a [i32],
    pub beta: &'a [i64],
    pub requant: &'a Requant,
}

/// LayerNormalization on codes in integers only, over consecutive groups of `n` codes
/// (`Step::IntLayerNorm`; `docs/hardware-model.md` §4, "LayerNorm on codes").
pub(crate) fn int_layer_norm(
    x: &[i32],
    n: usize,
    p: &LayerNormCodes,
) -> std::result::Result<Vec<i32>, String> {
    use cimc_backends::program::{LN_EPS_BITS, LN_FRAC_BITS, LN_ROOT_BITS};
    if n == 0 || !x.len().is_multiple_of(n) || p.gamma.len() != n || p.beta.len() != n {
        return Err(format!("{} codes in groups of {n} with {} scales", x.len(), p.gamma.len()));
    }
    let mut y = vec![0i32; x.len()];
    y.par_chunks_mut(n).zip(x.par_chunks(n)).try_for_each(|(out, xs)| {
        let z = p.zero_point as i128;
        let s1: i128 = xs.iter().map(|&q| q as i128 - z).sum();
        let s2: i128 = xs.iter().map(|&q| (q as i128 - z).pow(2)).sum();
        let nn = n as i128;
        // n·S2 − S1² = n²·variance ≥ 0 exactly (Cauchy–Schwarz), plus n²·ε/s_x², both with
        // LN_EPS_BITS fraction bits.
        let v = (((nn * s2 - s1 * s1) << LN_EPS_BITS) + p.epsilon_term as i128) as u128;
        let r = cimc_backends::arith::isqrt(v << (2 * LN_ROOT_BITS - LN_EPS_BITS)) as i128;
        for (j, (o, &q)) in out.iter_mut().zip(xs).enumerate() {
            let num = (nn * (q as i128 - z) - s1) << (LN_FRAC_BITS + LN_ROOT_BITS);
            let t = if r == 0 { 0 } else { num.signum() * ((num.abs() + r / 2) / r) };
            let acc = t
                .checked_mul(p.gamma[j] as i128)
                .and_then(|a| a.checked_add(p.beta[j] as i128))
                .and_then(|a| i64::try_from(a).ok())
                .ok_or_else(|| {
                    format!("t·gamma + beta = {t}·{} + {} overflows", p.gamma[j], p.beta[j])
                })?;
            *o = p.requant.apply(acc, 0);
        }
        Ok::<(), String>(())
    })?;
    Ok(y)
}

/// The Add recipe on `a` and on `b` negated about its zero point: `r_a + r'_b` with
/// `r'_b = requantize((z_b − q_b) << headroom, M_b)` (`docs/hardware-model.md` §4).
fn sub(
    r: &Running,
    [a, b]: [AddOperand; 2],
    output: Buf,
    headroom: u32,
    requant: &Requant,
) -> Result<Data> {
    let rescale = |centered: i64, m| {
        cimc_backends::arith::requantize(centered << headroom, m, 0, i32::MIN, i32::MAX) as i64
    };
    let (za, zb) = (a.zero_point as i64, b.zero_point as i64);
    pairwise(r, (a.buf, b.buf), output, |qa, qb| {
        requant.apply(rescale(qa as i64 - za, a.mult) + rescale(zb - qb as i64, b.mult), 0)
    })
}

/// A `Div` step's divisor: its zero point and, with the reciprocal table, the quotient.
struct Divide {
    a_zero_point: i32,
    b_zero_point: i32,
}

impl Divide {
    /// `(q_a − z_a)·reciprocal[q_b − b_min]` requantized; a divisor of real 0 gives the clamp
    /// bound of the dividend's sign (the zero point for 0 / 0), as the float quotient ±∞ or NaN
    /// quantizes.
    #[inline]
    fn apply(&self, qa: i32, qb: i32, (b_min, table): (i32, &[i64]), requant: &Requant) -> i32 {
        let da = qa as i64 - self.a_zero_point as i64;
        if qb == self.b_zero_point {
            return match da.signum() {
                1 => requant.hi,
                -1 => requant.lo,
                _ => requant.zero_point.clamp(requant.lo, requant.hi),
            };
        }
        // The program was validated: the table covers the divisor's code type.
        let recip = table.get(qb.wrapping_sub(b_min) as usize).copied().unwrap_or(0);
        requant.apply(da * recip, 0)
    }
}

/// `f(q_a, q_b)` for every output element, the operands numpy-broadcast to the output's shape.
fn pairwise(
    r: &Running,
    (a, b): (Buf, Buf),
    output: Buf,
    f: impl Fn(i32, i32) -> i32 + Sync,
) -> Result<Data> {
    let xa = r.codes(a)?;
    let xb = r.codes(b)?;
    let (sa, sb, so) = (r.shape(a), r.shape(b), r.shape(output));
    if sa == so && sb == so {
        return Ok(Data::Codes(
            xa.par_iter().zip(xb.par_iter()).map(|(&qa, &qb)| f(qa, qb)).collect(),
        ));
    }
    let ia = broadcast_index(sa, so).map_err(|m| r.err(m))?;
    let ib = broadcast_index(sb, so).map_err(|m| r.err(m))?;
    Ok(Data::Codes(
        (0..so.iter().product::<usize>())
            .into_par_iter()
            .map(|k| f(xa[ia(k)], xb[ib(k)]))
            .collect(),
    ))
}

/// `Σ_k (q_a − z_a)(q_b − z_b)` of every output element, in i64, requantized: the batch axes
/// broadcast as ONNX MatMul's (a 1-D `a` a row, a 1-D `b` a column).
fn matmul_codes(
    r: &Running,
    (a, b): (Buf, Buf),
    output: Buf,
    (za, zb): (i64, i64),
    requant: &Requant,
) -> Result<Data> {
    let (xa, xb) = (r.codes(a)?, r.codes(b)?);
    let (sa, sb, so) = (r.shape(a), r.shape(b), r.shape(output));
    if cimc_backends::program::matmul_shape(sa, sb).as_deref() != Some(so) {
        return Err(r.err(format!("a matrix product of {sa:?} and {sb:?} into {so:?}")));
    }
    let out = matmul_code_slices((xa, sa), (xb, sb), (za, zb), requant).map_err(|m| r.err(m))?;
    Ok(Data::Codes(out))
}

/// The arithmetic of [`Step::MatMulCodes`] on the operands' codes and shapes (which must have
/// a matrix product), shared with the stream simulator's `matmul`.
pub(crate) fn matmul_code_slices(
    (xa, sa): (&[i32], &[usize]),
    (xb, sb): (&[i32], &[usize]),
    (za, zb): (i64, i64),
    requant: &Requant,
) -> std::result::Result<Vec<i32>, String> {
    // Both operands at rank ≥ 2, and the output with both matrix axes.
    let a2: Vec<usize> = if sa.len() == 1 { vec![1, sa[0]] } else { sa.to_vec() };
    let b2: Vec<usize> = if sb.len() == 1 { vec![sb[0], 1] } else { sb.to_vec() };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let batch_a = &a2[..a2.len() - 2];
    let batch_b = &b2[..b2.len() - 2];
    let rank = batch_a.len().max(batch_b.len());
    let mut batch = vec![1usize; rank];
    for (d, slot) in batch.iter_mut().enumerate() {
        let da = (d + batch_a.len()).checked_sub(rank).map_or(1, |i| batch_a[i]);
        let db = (d + batch_b.len()).checked_sub(rank).map_or(1, |i| batch_b[i]);
        *slot = da.max(db);
    }
    let ia = broadcast_index(batch_a, &batch)?;
    let ib = broadcast_index(batch_b, &batch)?;
    let count: usize = batch.iter().product();
    if xa.len() < sa.iter().product::<usize>() || xb.len() < sb.iter().product::<usize>() {
        return Err(format!("operands of {} and {} codes for {sa:?} × {sb:?}", xa.len(), xb.len()));
    }
    let mut out = vec![0i32; count * m * n];
    if n == 0 {
        return Ok(out);
    }
    // Row by row: output row `i` of batch `t` accumulates `(a[i,l] − za) · (b[l,:] − zb)` over
    // `l`, contiguous rows of B (vectorizable), in i32 when no sum can leave it (every sum is
    // exact either way: the same codes as a dot product per output).
    let bound = |x: &[i32], z: i64| x.iter().map(|&v| (v as i64 - z).unsigned_abs()).max();
    let (ba, bb) = (bound(xa, za).unwrap_or(0), bound(xb, zb).unwrap_or(0));
    let narrow = ba.max(bb) <= i32::MAX as u64
        && (ba as u128) * (bb as u128) * (k as u128) <= i32::MAX as u128;
    let row = |e: usize| (ia(e / m) * m * k + (e % m) * k, ib(e / m) * k * n);
    if narrow {
        // |x − z| fits i32 here (its product with the other bound and K does).
        let a: Vec<i32> = xa.iter().map(|&v| (v as i64 - za) as i32).collect();
        let b: Vec<i32> = xb.iter().map(|&v| (v as i64 - zb) as i32).collect();
        out.par_chunks_mut(n).enumerate().for_each_init(
            || vec![0i32; n],
            |acc, (e, o)| {
                let (pa, pb) = row(e);
                crate::program::kernels::axpy_rows_i32(&a[pa..][..k], &b[pb..][..k * n], acc);
                for (o, &v) in o.iter_mut().zip(acc.iter()) {
                    *o = requant.apply(v as i64, 0);
                }
            },
        );
    } else {
        out.par_chunks_mut(n).enumerate().for_each_init(
            || vec![0i64; n],
            |acc, (e, o)| {
                let (pa, pb) = row(e);
                acc.fill(0);
                for (l, &av) in xa[pa..][..k].iter().enumerate() {
                    let av = av as i64 - za;
                    for (s, &bv) in acc.iter_mut().zip(&xb[pb + l * n..][..n]) {
                        *s += av * (bv as i64 - zb);
                    }
                }
                for (o, &v) in o.iter_mut().zip(acc.iter()) {
                    *o = requant.apply(v, 0);
                }
            },
        );
    }
    Ok(out)
}

/// Softmax on codes along `axis` (`docs/hardware-model.md` §4): per row, `e = exp_table[max − q]`,
/// `t = round_half_up(e·2^32 / Σ e)`, requantized.
pub(crate) fn int_softmax(
    x: &[i32],
    shape: &[usize],
    axis: usize,
    exp_table: &[i64],
    requant: &Requant,
) -> std::result::Result<Vec<i32>, String> {
    let n = *shape.get(axis).ok_or("softmax axis out of range")?;
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut y = vec![0i32; x.len()];
    let mut e = vec![0i64; n];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let max = (0..n).map(|k| x[at(k)]).max().unwrap_or(0);
            let mut sum = 0i64;
            for (k, ek) in e.iter_mut().enumerate() {
                let d = max.wrapping_sub(x[at(k)]) as usize;
                *ek = *exp_table.get(d).ok_or("a code outside the exponential table")?;
                sum += *ek;
            }
            // exp_table[0] > 0 (validated), and the maximum has d = 0: the sum is positive.
            let sum = sum.max(1) as i128;
            for (k, &ek) in e.iter().enumerate() {
                let t = (((ek as i128) << 32) + sum / 2) / sum;
                y[at(k)] = requant.apply(t as i64, 0);
            }
        }
    }
    Ok(y)
}

/// The inputs side by side along `axis`, each requantized first when its scale differs.
fn concat(
    r: &Running,
    inputs: &[Buf],
    output: Buf,
    axis: usize,
    rescale: &[Option<(i32, Requant)>],
) -> Result<Data> {
    let so = r.shape(output);
    let outer: usize = so[..axis].iter().product();
    let mut parts = Vec::with_capacity(inputs.len());
    for (k, &b) in inputs.iter().enumerate() {
        let x = r.codes(b)?;
        let inner: usize = r.shape(b)[axis..].iter().product();
        let x: Vec<i32> = match rescale.get(k).and_then(|r| r.as_ref()) {
            Some((z, q)) => x.iter().map(|&v| q.apply((v - z) as i64, 0)).collect(),
            None => x.to_vec(),
        };
        parts.push((x, inner));
    }
    let mut out = Vec::with_capacity(so.iter().product());
    for o in 0..outer {
        for (x, inner) in &parts {
            out.extend_from_slice(&x[o * inner..(o + 1) * inner]);
        }
    }
    Ok(Data::Codes(out))
}

fn transpose(r: &Running, input: Buf, perm: &[usize]) -> Result<Data> {
    let x = r.codes(input)?;
    let a = ArrayD::from_shape_vec(IxDyn(r.shape(input)), x.to_vec())
        .map_err(|er| r.err(er.to_string()))?;
    if perm.len() != a.ndim() {
        return Err(r.err(format!("perm {perm:?} for a rank-{} tensor", a.ndim())));
    }
    Ok(Data::Codes(a.permuted_axes(IxDyn(perm)).iter().copied().collect()))
}

/// Output element `i` is input element `index[i]`, or the output's zero point where the index
/// says so ([`GATHER_ZERO_POINT`]).
fn gather(r: &Running, input: Buf, output: Buf, index: &[u32]) -> Result<Data> {
    let x = r.codes(input)?;
    let zero = r.p.buffers[output].quant.as_ref().map_or(0, |q| q.zero_point[0]);
    let pick = |i: u32| if i == GATHER_ZERO_POINT { zero } else { x[i as usize] };
    Ok(Data::Codes(index.iter().map(|&i| pick(i)).collect()))
}

/// Linear Resize on codes: per output element, the weighted sum of `(q − z_x)` over every
/// combination of one tap per resized axis (weights multiplied), then one requantization.
fn resize(
    r: &Running,
    (input, output): (Buf, Buf),
    z_x: i32,
    axes: &[ResizeAxis],
    requant: &Requant,
) -> Result<Data> {
    let x = r.codes(input)?;
    let (si, so) = (r.shape(input), r.shape(output));
    let rank = si.len();
    // Row-major strides of the input, and which resize axis (if any) each axis is.
    let mut stride = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * si[d + 1];
    }
    let which: Vec<Option<&ResizeAxis>> =
        (0..rank).map(|d| axes.iter().find(|a| a.axis == d)).collect();
    let n_out: usize = so.iter().product();
    let combos = 1usize << axes.len();
    let y = (0..n_out)
        .into_par_iter()
        .map(|o| {
            // The output's index along each axis, and its taps' offsets and weights.
            let (mut rest, mut base) = (o, 0usize);
            let mut per_axis: Vec<([usize; 2], [i64; 2])> = Vec::with_capacity(axes.len());
            for d in (0..rank).rev() {
                let i = rest % so[d];
                rest /= so[d];
                match which[d] {
                    None => base += i * stride[d],
                    Some(a) => per_axis.push((
                        [a.index[i][0] as usize * stride[d], a.index[i][1] as usize * stride[d]],
                        [a.weight[i][0] as i64, a.weight[i][1] as i64],
                    )),
                }
            }
            let mut acc = 0i64;
            for c in 0..combos {
                let (mut at, mut w) = (base, 1i64);
                for (k, (off, wt)) in per_axis.iter().enumerate() {
                    let bit = (c >> k) & 1;
                    at += off[bit];
                    w *= wt[bit];
                }
                acc += w * (x[at] as i64 - z_x as i64);
            }
            requant.apply(acc, 0)
        })
        .collect();
    Ok(Data::Codes(y))
}
