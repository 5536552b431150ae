//! Integer Conv and Gemm of the program, computed exactly: by the integer kernels
//! (`int_gemm/`: u8 × i8 products in i32) when the code widths admit them, else with f64 GEMMs.

use super::crossbar::StepAdcStats;
use super::float_exact;
use crate::int_gemm::{ConvWindow, Finish, IntKernel, OutLayout, PackedWeights, WeightSpec};
use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::{
    BufferDecl, Elem, IntTensor, MatrixKind, MatrixStep, Requant, Step, Window,
};
use rayon::prelude::*;

/// Weights converted for the exact product.
pub(crate) struct PreparedMatrix {
    /// `None` for a crossbar step whose conversions are not all exact: it never takes the
    /// exact product ([`run_matrix`]), so its weights are not converted for it.
    w: Option<ExactWeights>,
    /// The crossbar execution, for a step with `crossbar: Some(..)`.
    xbar: Option<super::crossbar::PreparedCrossbar>,
}

/// Whether `K` products of magnitude at most `bound_x · bound_w` sum exactly in f64: every
/// partial sum is then an integer below 2^53, which f64 represents exactly, so the GEMM's
/// additions (in any order) never round.
pub(crate) fn exact_in_f64(k: usize, bound_x: i64, bound_w: i64) -> bool {
    (k as u128) * (bound_x as u128) * (bound_w as u128) < (1u128 << 53)
}

fn weight_bound(w: &IntTensor) -> i64 {
    w.data.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0)
}

fn input_bound(decl: &BufferDecl, zero_point: i32) -> Result<i64, String> {
    match decl.elem {
        Elem::Code(c) => {
            let (lo, hi) = c.range();
            // In i64: a zero point from a file may lie anywhere in i32.
            let z = zero_point as i64;
            Ok((lo as i64 - z).abs().max((hi as i64 - z).abs()))
        }
        Elem::F32 => Err(format!("input buffer '{}' holds f32 values, codes expected", decl.name)),
    }
}

/// What [`prepare`] checks of a matrix step, without converting its weights (a lean runner's
/// check of every step before it runs): `None` for the other steps and for exact ones, else
/// the crossbar step's empty ADC statistics record (or why it cannot have one).
pub(crate) fn check(
    s: &Step,
    bufs: &[BufferDecl],
) -> Result<Option<Result<StepAdcStats, String>>, String> {
    let Some(ms) = s.as_matrix() else { return Ok(None) };
    check_exact(&ms, bufs)?;
    Ok(match ms.crossbar {
        Some(x) => {
            super::crossbar::check(s, x, bufs)?;
            Some(super::crossbar::new_stats(x))
        }
        None => None,
    })
}

/// The exact product's bound: every sum of `K` products exact in f64.
fn check_exact(ms: &MatrixStep<'_>, bufs: &[BufferDecl]) -> Result<(), String> {
    let k = ms.k_and_m().0;
    let bx = input_bound(&bufs[ms.input], ms.input_zero_point)?;
    if !exact_in_f64(k, bx, weight_bound(ms.weights)) {
        return Err(format!("K = {k} with these code widths could overflow 2^53"));
    }
    Ok(())
}

/// The weights of a matrix step as f64 (and its crossbar's bit planes); `None` for the other
/// steps.
pub(crate) fn prepare(s: &Step, bufs: &[BufferDecl]) -> Result<Option<PreparedMatrix>, String> {
    let Some(ms) = s.as_matrix() else { return Ok(None) };
    check_exact(&ms, bufs)?;
    let xbar = match ms.crossbar {
        Some(x) => Some(super::crossbar::prepare(s, x, bufs)?),
        None => None,
    };
    if xbar.as_ref().is_some_and(|x| !x.lossless) {
        return Ok(Some(PreparedMatrix { w: None, xbar }));
    }
    let k = ms.k_and_m().0;
    let bx = input_bound(&bufs[ms.input], ms.input_zero_point)?;
    let kernel = IntKernel::best();
    let f32_chunk = (k > 0).then(|| f32_chunk(bx, weight_bound(ms.weights))).flatten();
    let w = match (kernel, f32_chunk) {
        // The baseline build of the integer kernel (a CPU without AVX2): exact f32 GEMMs over
        // chunks of K are faster (the GEMM picks the CPU's float instructions at run time;
        // docs/performance.md).
        (IntKernel::Portable, Some(chunk)) if ms.weights.data.len() == k * ms.k_and_m().1 => {
            ExactWeights::F32 { w: ms.weights.data.iter().map(|&v| v as f32).collect(), chunk }
        }
        _ => match pack_for(&ms, &bufs[ms.input], kernel) {
            Some(p) => ExactWeights::Int(p),
            None => ExactWeights::F64(ms.weights.data.iter().map(|&v| v as f64).collect()),
        },
    };
    Ok(Some(PreparedMatrix { w: Some(w), xbar }))
}

/// As [`prepare`] for a step [`check`] accepted when a lean runner was built: a crossbar step
/// whose conversions are not all exact gets its bit planes without its weights checked again
/// (the program cannot change inside the runner); any other step as [`prepare`] makes it.
pub(crate) fn prepare_checked(
    s: &Step,
    bufs: &[BufferDecl],
) -> Result<Option<PreparedMatrix>, String> {
    if let Some(x) =
        s.as_matrix().and_then(|ms| ms.crossbar.filter(|x| !x.is_lossless(ms.k_and_m().0)))
    {
        let xbar = super::crossbar::prepare_checked(s, x)?;
        return Ok(Some(PreparedMatrix { w: None, xbar: Some(xbar) }));
    }
    prepare(s, bufs)
}

/// The weights of the exact product: packed for the integer kernels, or as floats for a GEMM.
enum ExactWeights {
    Int(PackedWeights),
    /// Per group `[M/g, K]` row-major (Conv) or `[K, N]` (Gemm).
    F64(Vec<f64>),
    /// As `F64`, in f32, for products over `chunk` rows of K at a time: every partial sum of
    /// a chunk is an integer below 2^24, exact in f32 ([`f32_chunk`]); the chunks' sums are
    /// added in i64.
    F32 {
        w: Vec<f32>,
        chunk: usize,
    },
}

/// The most rows of K whose products (inputs up to `bound_x`, weights up to `bound_w` in
/// magnitude) sum exactly in f32, in any order: `chunk · bound_x · bound_w < 2^24`. `None`
/// when fewer than 64 (then the f32 GEMMs would be too short to pay).
fn f32_chunk(bound_x: i64, bound_w: i64) -> Option<usize> {
    let per_row = (bound_x.max(1) as u128) * (bound_w.max(1) as u128);
    let chunk = ((1u128 << 24) - 1) / per_row;
    (chunk >= 64).then_some(chunk.min(1 << 20) as usize)
}

/// The weights of step `ms` packed for the best integer kernel that takes its code widths:
/// `kernel`, or, for codes wider than VNNI's bytes, the 16-bit AVX2 kernel. `None` for the
/// baseline build (its 8-bit codes take the f32 chunks; it is not measured against the f64
/// GEMM for wider ones) and for widths no kernel takes.
fn pack_for(ms: &MatrixStep<'_>, decl: &BufferDecl, kernel: IntKernel) -> Option<PackedWeights> {
    match kernel {
        IntKernel::Avx512Vnni => pack(ms, decl, kernel).or_else(|| {
            IntKernel::Avx2.available().then(|| pack(ms, decl, IntKernel::Avx2)).flatten()
        }),
        IntKernel::Avx2 => pack(ms, decl, kernel),
        IntKernel::Portable => None,
    }
}

/// The weights of step `ms` packed for `kernel`, when its code widths admit the integer kernels.
fn pack(ms: &MatrixStep<'_>, decl: &BufferDecl, kernel: IntKernel) -> Option<PackedWeights> {
    let Elem::Code(ct) = decl.elem else { return None };
    let weights = ms.weights;
    let (k, m) = ms.k_and_m();
    let (taps, channels) = match ms.kind {
        MatrixKind::Conv { .. } => {
            let taps: usize = weights.shape.iter().skip(2).product();
            (taps, weights.shape.get(1).copied()?)
        }
        MatrixKind::Gemm => (1, k),
    };
    if taps * channels != k || weights.data.len() != k * m {
        return None;
    }
    let data = &weights.data;
    let spec = WeightSpec {
        groups: ms.groups(),
        m,
        taps,
        channels,
        w: |n: usize, t: usize, c: usize| match ms.kind {
            MatrixKind::Conv { .. } => data[(n * channels + c) * taps + t],
            MatrixKind::Gemm => data[c * m + n],
        },
        range: ct.range(),
        zero_point: ms.input_zero_point,
    };
    PackedWeights::new(&spec, kernel)
}

impl PreparedMatrix {
    /// The crossbar execution, for a crossbar step.
    pub(crate) fn crossbar(&self) -> Option<&super::crossbar::PreparedCrossbar> {
        self.xbar.as_ref()
    }

    /// An empty ADC statistics record for a crossbar step (`None` for an exact step).
    pub(crate) fn new_stats(&self) -> Option<Result<StepAdcStats, String>> {
        self.xbar.as_ref().map(|x| x.new_stats())
    }
}

/// The rows of a Gemm step's input `[.., K]` (its `x.len()` codes) against an output
/// `[rows, n]`: the number of rows, or the error naming the shape that does not fit.
pub(crate) fn gemm_rows(
    si: &[usize],
    so: &[usize],
    numel: usize,
    k: usize,
    n: usize,
) -> Result<usize, String> {
    if si.last() != Some(&k) {
        return Err(format!("input {si:?} does not end in K = {k}"));
    }
    let rows = numel / k.max(1);
    if so.iter().product::<usize>() != rows * n {
        return Err(format!("output {so:?} is not [{rows}, {n}]"));
    }
    Ok(rows)
}

/// The shape of an integer convolution, rank 3 (1-D) read as rank 4 with height 1.
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub m: usize,
    pub oh: usize,
    pub ow: usize,
    pub g: usize,
    pub cg: usize,
    pub mg: usize,
    pub kh: usize,
    pub kw: usize,
    pub strides: [usize; 2],
    pub dil: [usize; 2],
    /// Padding at the beginning of each spatial axis.
    pub pads: [usize; 2],
}

impl ConvGeom {
    pub(crate) fn new(
        weights: &IntTensor,
        window: &Window,
        group: usize,
        si: &[usize],
        so: &[usize],
        numel: usize,
    ) -> Result<ConvGeom, String> {
        let at = |v: &[usize], i: usize| v.get(i).copied().ok_or("window too short");
        let (si, so, kernel, strides, dil, pads) = match si.len() {
            4 if so.len() == 4 => (
                si.to_vec(),
                so.to_vec(),
                [at(&window.kernel, 0)?, at(&window.kernel, 1)?],
                [at(&window.strides, 0)?, at(&window.strides, 1)?],
                [at(&window.dilations, 0)?, at(&window.dilations, 1)?],
                [at(&window.pads, 0)?, at(&window.pads, 1)?],
            ),
            3 if so.len() == 3 => (
                vec![si[0], si[1], 1, si[2]],
                vec![so[0], so[1], 1, so[2]],
                [1, at(&window.kernel, 0)?],
                [1, at(&window.strides, 0)?],
                [1, at(&window.dilations, 0)?],
                [0, at(&window.pads, 0)?],
            ),
            r => {
                return Err(format!("integer conv of rank {r} is not supported (1-D and 2-D are)"))
            }
        };
        let (n, c, h, w) = (si[0], si[1], si[2], si[3]);
        let (m, oh, ow) = (so[1], so[2], so[3]);
        let g = group;
        if g == 0
            || c % g != 0
            || m % g != 0
            || weights.shape.len() < 3
            || weights.shape[0] != m
            || weights.shape[1] * g != c
            || (weights.shape[2..] != window.kernel[..] && weights.shape[2..] != kernel[..])
        {
            return Err(format!(
                "weights {:?} do not fit input {si:?} with group {g}",
                weights.shape
            ));
        }
        if numel != n * c * h * w {
            return Err("input size does not match its shape".into());
        }
        Ok(ConvGeom {
            n,
            c,
            h,
            w,
            m,
            oh,
            ow,
            g,
            cg: c / g,
            mg: m / g,
            kh: kernel[0],
            kw: kernel[1],
            strides,
            dil,
            pads,
        })
    }
}

pub(crate) fn run_matrix(
    s: &Step,
    p: &PreparedMatrix,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    stats: Option<&mut StepAdcStats>,
) -> Result<Vec<i32>, String> {
    // The crossbar's arithmetic, unless every conversion is exact (then it is the exact
    // product below); statistics need every partial sum, so they always take this path.
    if let Some(xb) = &p.xbar {
        if stats.is_some() || !xb.lossless {
            return super::crossbar::run(s, xb, x, si, so, stats);
        }
    }
    run_exact(s, p, x, si, so, &RequantFinish::of(s)?)
}

/// A matrix step's finish of an accumulator (no bias) of output channel `ch`: its bias, then
/// its requantization to an output code — what every kernel's `fin` is outside calibration.
pub(crate) fn finisher(s: &Step) -> Result<impl Fn(i64, usize) -> i32 + Sync + '_, String> {
    let ms = s.as_matrix().ok_or("not a matrix step")?;
    let (bias, requant) = (ms.bias, ms.requant);
    Ok(move |a: i64, ch: usize| requant.apply(a + bias[ch], ch))
}

/// A matrix step's finish as [`finisher`] computes it, a whole output channel at a time: the
/// bias and multiplier looked up once per channel, and the i64 form of
/// [`cimc_backends::arith::requantize`] (the same integers) over the channel in vector
/// instructions; any accumulator outside that form's range (`|acc| ≥ 2^31`) sends the channel
/// through `requantize` itself.
pub(crate) struct RequantFinish<'a> {
    bias: &'a [i64],
    requant: &'a Requant,
}

impl<'a> RequantFinish<'a> {
    pub(crate) fn of(s: &'a Step) -> Result<RequantFinish<'a>, String> {
        let ms = s.as_matrix().ok_or("not a matrix step")?;
        Ok(RequantFinish { bias: ms.bias, requant: ms.requant })
    }

    /// [`Finish::channel`] in the i64 form: `None` when some accumulator lies outside its range
    /// (`out` then holds nothing useful).
    #[inline(always)]
    fn channel_i64(
        c: i64,
        m: FixedMultiplier,
        rq: &Requant,
        accs: &[i32],
        out: &mut [i32],
    ) -> bool {
        let shift = (31 + m.sh) as u32;
        let (mm, round) = (m.m as i64, 1i64 << (shift - 1));
        let (zp, lo, hi) = (rq.zero_point as i64, rq.lo as i64, rq.hi as i64);
        let mut wide = false;
        for (o, &a) in out.iter_mut().zip(accs) {
            let acc = a as i64 + c;
            wide |= acc.unsigned_abs() >= 1 << 31;
            // Wrapping: a product that could wrap belongs to a wide accumulator, whose value is
            // recomputed.
            let y = (acc.wrapping_mul(mm).wrapping_add(round) >> shift) + zp;
            *o = y.clamp(lo, hi) as i32;
        }
        !wide
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
fn channel_i64_avx512(
    c: i64,
    m: FixedMultiplier,
    rq: &Requant,
    accs: &[i32],
    out: &mut [i32],
) -> bool {
    RequantFinish::channel_i64(c, m, rq, accs, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn channel_i64_avx2(
    c: i64,
    m: FixedMultiplier,
    rq: &Requant,
    accs: &[i32],
    out: &mut [i32],
) -> bool {
    RequantFinish::channel_i64(c, m, rq, accs, out)
}

impl Finish<i32> for RequantFinish<'_> {
    fn one(&self, acc: i64, n: usize) -> i32 {
        self.requant.apply(acc + self.bias[n], n)
    }

    fn channel(&self, n: usize, konst: i64, accs: &[i32], out: &mut [i32]) {
        let rq = self.requant;
        let c = konst + self.bias[n];
        let m = if rq.mult.len() == 1 { rq.mult[0] } else { rq.mult[n] };
        if (1..=62).contains(&(31 + m.sh)) {
            let fast = {
                #[cfg(target_arch = "x86_64")]
                {
                    if std::is_x86_feature_detected!("avx512dq")
                        && std::is_x86_feature_detected!("avx512vl")
                        && std::is_x86_feature_detected!("avx512bw")
                        && !cimc_interp::portable_kernels_forced()
                    {
                        // SAFETY: the CPU has the function's target features (checked above).
                        unsafe { channel_i64_avx512(c, m, rq, accs, out) }
                    } else if std::is_x86_feature_detected!("avx2") {
                        // SAFETY: the CPU has AVX2 (checked above).
                        unsafe { channel_i64_avx2(c, m, rq, accs, out) }
                    } else {
                        RequantFinish::channel_i64(c, m, rq, accs, out)
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                RequantFinish::channel_i64(c, m, rq, accs, out)
            };
            if fast {
                return;
            }
        }
        for (o, &a) in out.iter_mut().zip(accs) {
            *o = cimc_backends::arith::requantize(a as i64 + c, m, rq.zero_point, rq.lo, rq.hi);
        }
    }
}

/// The exact product of the step's geometry with the prepared weights (never the crossbar):
/// every output's accumulator `Σ_k (q_x[k] − z_x)·w[k,n]` (no bias) goes through
/// `fin(acc, channel)`, in the output buffer's layout. The integer kernels when the weights
/// were packed for them and every input code lies in its buffer's range; the f64 GEMM
/// otherwise (the same integers).
pub(crate) fn run_exact<T, F>(
    s: &Step,
    p: &PreparedMatrix,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    fin: &F,
) -> Result<Vec<T>, String>
where
    T: Copy + Default + Send,
    F: Finish<T>,
{
    let each = |a: i64, n: usize| fin.one(a, n);
    let Some(w) = &p.w else {
        return Err("internal: the exact product of a crossbar step that is not lossless".into());
    };
    match w {
        ExactWeights::F64(w) => float_exact::run(s, w, usize::MAX, x, si, so, &each),
        ExactWeights::F32 { w, chunk } => float_exact::run(s, w, *chunk, x, si, so, &each),
        ExactWeights::Int(pw) => match run_int(s, pw, x, si, so, fin)? {
            Some(out) => Ok(out),
            None => {
                // A code outside its buffer's range: the f64 GEMM, as before the integer
                // kernels (weights converted for this run only).
                let ms = s.as_matrix().ok_or("not a matrix step")?;
                let w: Vec<f64> = ms.weights.data.iter().map(|&v| v as f64).collect();
                float_exact::run(s, &w, usize::MAX, x, si, so, &each)
            }
        },
    }
}

/// [`run_exact`] on the integer kernels; `None` when an input code lies outside the range the
/// weights were packed for.
fn run_int<T, F>(
    s: &Step,
    pw: &PackedWeights,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    fin: &F,
) -> Result<Option<Vec<T>>, String>
where
    T: Copy + Default + Send,
    F: Finish<T>,
{
    let ms = s.as_matrix().ok_or("not a matrix step")?;
    let weights = ms.weights;
    match ms.kind {
        MatrixKind::Conv { window, group } => {
            let ConvGeom { n, c, h, w, m, oh, ow, g, cg, kh, kw, strides, dil, pads, .. } =
                ConvGeom::new(weights, window, group, si, so, x.len())?;
            let pixels = oh * ow;
            let mut out = vec![T::default(); n * m * pixels];
            let win = ConvWindow { c: cg, h, w, oh, ow, kernel: [kh, kw], strides, dil, pads };
            // One sample's groups into its `[M][pixels]` part of the output; `None` when a code
            // lies outside the packed range.
            let sample = |b: usize, out: &mut [T]| -> Option<()> {
                for gi in 0..g {
                    let xs = &x[(b * c + gi * cg) * h * w..][..cg * h * w];
                    let img = pw.conv_image(xs, &win)?;
                    let layout = OutLayout { base: 0, n_stride: pixels, p_stride: 1 };
                    pw.run(gi, &img, pixels, out, layout, fin);
                }
                Some(())
            };
            let per_sample = (m * pixels).max(1);
            // A batch: one task per sample (the samples' own parallel loops then run inside
            // busy workers), not a parallel region per sample, whose start and end cost more
            // than a small layer's work (mnist_cnn at batch 500; docs/performance.md).
            let fits = if n > 1 {
                out.par_chunks_mut(per_sample).enumerate().all(|(b, o)| sample(b, o).is_some())
            } else {
                out.chunks_mut(per_sample).enumerate().all(|(b, o)| sample(b, o).is_some())
            };
            Ok(fits.then_some(out))
        }
        MatrixKind::Gemm => {
            let (k, nn) = (weights.shape[0], weights.shape[1]);
            let rows = gemm_rows(si, so, x.len(), k, nn)?;
            let Some(img) = pw.rows_image(x, rows, k) else { return Ok(None) };
            let mut out = vec![T::default(); rows * nn];
            pw.run(0, &img, rows, &mut out, OutLayout { base: 0, n_stride: 1, p_stride: nn }, fin);
            Ok(Some(out))
        }
    }
}

/// `acc[j] = Σ_l a[l] · b[l·n + j]` for `n = acc.len()` (`b` holds `a.len()` rows of `n`), in
/// i32: the caller has bounded every sum inside it. Rows with `a[l] = 0` are skipped; the AVX2
/// build runs where the CPU has it (the same integers).
pub(crate) fn axpy_rows_i32(a: &[i32], b: &[i32], acc: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above); the body is safe Rust.
        return unsafe { axpy_rows_i32_avx2(a, b, acc) };
    }
    axpy_rows_i32_body(a, b, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_rows_i32_avx2(a: &[i32], b: &[i32], acc: &mut [i32]) {
    axpy_rows_i32_body(a, b, acc)
}

#[inline(always)]
fn axpy_rows_i32_body(a: &[i32], b: &[i32], acc: &mut [i32]) {
    let n = acc.len();
    acc.fill(0);
    for (&av, row) in a.iter().zip(b.chunks_exact(n)) {
        if av == 0 {
            continue;
        }
        for (s, &bv) in acc.iter_mut().zip(row) {
            *s += av * bv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::SplitMix64;

    /// `RequantFinish::channel` (vector i64 form, with its fallback) gives what `requant.apply`
    /// gives element by element: random multipliers and shifts (the extremes included), zero
    /// points, clamps, biases and accumulators, narrow and wide (|acc| ≥ 2^31).
    #[test]
    fn requant_finish_channel_equals_apply_per_output() {
        let mut rng = SplitMix64(0x5eed_f1a1);
        for case in 0..400 {
            let m = 1 + (rng.next_u64() % (i32::MAX as u64)) as i32;
            let sh = [-30, -20, -1, 0, 5, 31, 40, 62][case % 8];
            let mult = vec![FixedMultiplier { m, sh }, FixedMultiplier { m: m / 3 + 1, sh }];
            let zero_point = (rng.next_u64() % 256) as i32 - 128;
            let (lo, hi) = if case % 3 == 0 { (i32::MIN, i32::MAX) } else { (-128, 127) };
            let requant = Requant { mult, zero_point, lo, hi };
            let bias: Vec<i64> = (0..2)
                .map(|_| {
                    let b = (rng.next_u64() % (1 << 33)) as i64 - (1 << 32);
                    if case % 4 == 0 {
                        b
                    } else {
                        b >> 20
                    }
                })
                .collect();
            let fin = RequantFinish { bias: &bias, requant: &requant };
            let accs: Vec<i32> = (0..37).map(|_| rng.next_u64() as i32 >> (case % 30)).collect();
            let konst = (rng.next_u64() % (1 << 31)) as i64 - (1 << 30);
            for n in 0..2 {
                let mut got = vec![0i32; accs.len()];
                fin.channel(n, konst, &accs, &mut got);
                let want: Vec<i32> =
                    accs.iter().map(|&a| requant.apply(a as i64 + konst + bias[n], n)).collect();
                assert_eq!(got, want, "case {case}, output {n}");
            }
        }
    }
}
