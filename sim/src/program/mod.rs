//! The executor of the bit-accurate interpreter program (`cimc_backends::program`).
//!
//! Integer arithmetic only: codes are kept as i32, accumulators as i64, and every code produced
//! from an accumulator goes through `cimc_backends::arith::requantize` (via `Requant::apply`).
//! The matrix products run as f64 GEMMs: exact, because every product and partial sum is an
//! integer of magnitude below 2^53 (checked when the program is prepared; see
//! [`kernels::exact_in_f64`]), and f64 represents every such integer exactly.

mod adc_run;
mod approx;
mod cascade;
pub(crate) mod crossbar;
mod float_exact;
pub(crate) mod kernels;
pub mod multiplier;
pub(crate) mod pool;
mod resume;
pub(crate) mod steps;

pub use cascade::{cascade_codes, cascade_step, derive, Derivation, TopSlices, WeightWidths};
pub use crossbar::kernel::path_name as crossbar_kernel_path;
pub use crossbar::{AdcStats, StepAdcStats};
pub use resume::RunState;

use cimc_backends::program::{BufferDecl, Elem, Program, Step};
use cimc_interp::Tensor;
use cimc_interp::{InterpError, Result};
use ndarray::{ArrayD, IxDyn};

/// A noisy run: the programmed chip and the index of the batch's first image.
pub(crate) type Noise<'a> = (&'a crate::noise::NoisyChip, u64);

/// The contents of one buffer while a program runs.
#[derive(Clone, Debug)]
pub(crate) enum Data {
    Codes(Vec<i32>),
    F32(Vec<f32>),
}

/// A program prepared for repeated runs (weights converted once), or, built with
/// [`ProgramRunner::lean`], for a few runs in little memory (each matrix step converted while it
/// runs).
pub struct ProgramRunner {
    program: Program,
    /// The converted weights of every matrix step (`None` for the other steps, and for every
    /// step of a lean runner).
    prepared: Vec<Option<kernels::PreparedMatrix>>,
    /// A lean runner's empty ADC statistics record of each crossbar step (or why it has none),
    /// made while the steps were checked; `None` for a runner with prepared steps.
    lean: Option<Vec<Option<std::result::Result<StepAdcStats, String>>>>,
    last_use: Vec<usize>,
    /// Crossbar steps run at a lower weight width ([`ProgramRunner::with_weight_widths`]);
    /// empty for a program run as compiled.
    cascade: Vec<Option<cascade::Derived>>,
    /// Digital matrix steps run with an approximate multiplier
    /// ([`ProgramRunner::with_multiplier`]); empty for exact products.
    approx: Vec<Option<approx::LutMatrix>>,
}

fn step_err(i: usize, s: &Step, msg: impl Into<String>) -> InterpError {
    InterpError::Node { node: format!("step {i}"), op: s.name().to_string(), msg: msg.into() }
}

impl ProgramRunner {
    pub fn new(program: &Program) -> Result<ProgramRunner> {
        Self::new_except(program, &[])
    }

    /// A runner that takes `program` over (no copy of its weights) and converts each matrix
    /// step's weights only while the step runs, dropping them after: the memory of one layer's
    /// converted weights instead of the whole model's (`docs/compile-memory.md`). Every step
    /// is checked here as [`ProgramRunner::new`] checks it, and runs compute the same numbers;
    /// each run converts the weights again, so this suits passes that run a large program on a
    /// few calibration batches. Noisy runs need [`ProgramRunner::new`].
    pub fn lean(program: Program) -> Result<ProgramRunner> {
        Self::build(program, &[], true)
    }

    /// As [`ProgramRunner::new`], leaving the steps `i` with `skip[i]` unprepared (for the
    /// caller to fill).
    fn new_except(program: &Program, skip: &[bool]) -> Result<ProgramRunner> {
        Self::build(program.clone(), skip, false)
    }

    fn build(program: Program, skip: &[bool], lean: bool) -> Result<ProgramRunner> {
        program
            .validate()
            .map_err(|e| InterpError::Input { name: "program".into(), msg: e.to_string() })?;
        let mut prepared = Vec::with_capacity(program.steps.len());
        let mut templates = Vec::new();
        for (i, s) in program.steps.iter().enumerate() {
            if skip.get(i).copied().unwrap_or(false) {
                prepared.push(None);
                templates.push(None);
                continue;
            }
            if lean {
                // Checked and its statistics record sized; its weights are converted when it
                // runs.
                templates.push(kernels::check(s, &program.buffers).map_err(|m| step_err(i, s, m))?);
                prepared.push(None);
            } else {
                let prep = kernels::prepare(s, &program.buffers).map_err(|m| step_err(i, s, m))?;
                prepared.push(prep);
            }
        }
        let mut last_use = vec![usize::MAX; program.buffers.len()];
        for (i, s) in program.steps.iter().enumerate() {
            for b in cimc_backends::program::step_buffers(s) {
                last_use[b] = i;
            }
        }
        for &b in &program.outputs {
            last_use[b] = usize::MAX;
        }
        Ok(ProgramRunner {
            program,
            prepared,
            lean: lean.then_some(templates),
            last_use,
            cascade: Vec::new(),
            approx: Vec::new(),
        })
    }

    /// The program with every digital Conv/Gemm step (no crossbar) multiplying through
    /// `multiplier`'s product table (`approx.rs` says which operands, `docs/approximate.md`);
    /// crossbar steps stay analog. Fails on a step whose codes are wider than 8 bits.
    pub fn with_multiplier(
        program: &Program,
        multiplier: &multiplier::Multiplier,
    ) -> Result<ProgramRunner> {
        Self::with_multiplier_kernel(program, multiplier, multiplier::LutKernel::best())
    }

    /// As [`ProgramRunner::with_multiplier`], with the table kernel chosen (the outputs are the
    /// same whichever runs; the choice is for tests and measurements). Fails when this CPU
    /// cannot run `kernel`.
    pub fn with_multiplier_kernel(
        program: &Program,
        multiplier: &multiplier::Multiplier,
        kernel: multiplier::LutKernel,
    ) -> Result<ProgramRunner> {
        if !kernel.available() {
            return Err(InterpError::Input {
                name: "multiplier".into(),
                msg: format!("this CPU cannot run the {} table kernel", kernel.name()),
            });
        }
        let mut r = Self::new(program)?;
        if *multiplier == multiplier::Multiplier::Exact {
            return Ok(r);
        }
        let table = multiplier.table();
        r.approx = program
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                approx::prepare(s, &program.buffers, &table, kernel).map_err(|m| step_err(i, s, m))
            })
            .collect::<Result<_>>()?;
        Ok(r)
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs the program. Inputs in program-input order: f32 tensors for f32 buffers, integer
    /// tensors for code buffers (values must lie in the code range). Outputs: f32 tensors for f32
    /// buffers, i32 tensors of codes otherwise.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.run_impl(inputs, None)
    }

    pub(super) fn run_impl(
        &self,
        inputs: Vec<Tensor>,
        stats: Option<&mut AdcStats>,
    ) -> Result<Vec<Tensor>> {
        let mut state = self.start(inputs)?;
        self.run_until_with(&mut state, usize::MAX, stats, None)?;
        self.outputs(state)
    }

    /// Runs the program like [`ProgramRunner::run`] on the chip programmed as `chip` (one trial
    /// of [`crate::noise`]): crossbar steps compute their partial sums from the perturbed
    /// cells, with read noise keyed on `first_image`, the index of this batch's first image in
    /// the whole evaluation; every other step is exact.
    pub fn run_noisy(
        &self,
        inputs: Vec<Tensor>,
        chip: &crate::noise::NoisyChip,
        first_image: u64,
    ) -> Result<Vec<Tensor>> {
        if chip.steps.len() != self.program.steps.len() {
            return Err(InterpError::Input {
                name: "noise".into(),
                msg: "the chip was programmed for another program".into(),
            });
        }
        let mut state = self.start(inputs)?;
        self.run_until_with(&mut state, usize::MAX, None, Some((chip, first_image)))?;
        self.outputs(state)
    }

    /// The prepared crossbar of every step (`None` for the others), for programming a noisy
    /// chip; an error for a program run at derived weight widths.
    pub(crate) fn crossbar_steps(&self) -> Result<Vec<Option<&crossbar::PreparedCrossbar>>> {
        if self.lean.is_some() {
            return Err(InterpError::Input {
                name: "noise".into(),
                msg: "noise is not modelled on a lean runner (its weights are not kept)".into(),
            });
        }
        if self.cascade.iter().any(Option::is_some) {
            return Err(InterpError::Input {
                name: "noise".into(),
                msg: "noise is not modelled at derived weight widths (--cascade-wbits)".into(),
            });
        }
        Ok(self.prepared.iter().map(|p| p.as_ref().and_then(|p| p.crossbar())).collect())
    }
}

fn output_of(s: &Step) -> usize {
    *cimc_backends::program::step_buffers(s).last().expect("invariant: every step has an output")
}

/// The index into a broadcast input for each flat index of the output (numpy rules).
fn broadcast_index(
    a: &[usize],
    out: &[usize],
) -> std::result::Result<impl Fn(usize) -> usize + Sync, String> {
    if a.len() > out.len() {
        return Err(format!("cannot broadcast {a:?} to {out:?}"));
    }
    let pad = out.len() - a.len();
    let mut strides = vec![0usize; out.len()];
    let mut st = 1;
    for d in (0..a.len()).rev() {
        let od = out[d + pad];
        if a[d] == od {
            strides[d + pad] = st;
        } else if a[d] != 1 {
            return Err(format!("cannot broadcast {a:?} to {out:?}"));
        }
        st *= a[d];
    }
    let out = out.to_vec();
    Ok(move |mut k: usize| {
        let mut idx = 0;
        for d in (0..out.len()).rev() {
            idx += (k % out[d]) * strides[d];
            k /= out[d];
        }
        idx
    })
}

/// Softmax over `axis` of the f32 tensor `x` of shape `shape` (the host's float arithmetic;
/// the stream simulator calls this same function, so both round alike).
pub(crate) fn softmax(
    x: &[f32],
    shape: &[usize],
    axis: usize,
) -> std::result::Result<Vec<f32>, String> {
    let n = shape.get(axis).copied().ok_or_else(|| format!("axis {axis} out of range"))?;
    let inner: usize = shape[axis + 1..].iter().product();
    if x.len() != shape.iter().product::<usize>() {
        return Err(format!("{} values for shape {shape:?}", x.len()));
    }
    let mut out = x.to_vec();
    let outer = x.len() / (n * inner).max(1);
    for o in 0..outer {
        for j in 0..inner {
            let idx = |k: usize| o * n * inner + k * inner + j;
            let m = (0..n).map(|k| x[idx(k)]).fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..n).map(|k| (x[idx(k)] - m).exp()).sum();
            for k in 0..n {
                out[idx(k)] = (x[idx(k)] - m).exp() / sum;
            }
        }
    }
    Ok(out)
}

/// Codes to f32: `scale[c]·(q − zero_point[c])` (the stream simulator calls this same function).
pub(crate) fn dequantize(
    x: &[i32],
    shape: &[usize],
    q: &cimc_backends::program::BufQuant,
) -> std::result::Result<Vec<f32>, String> {
    match q.axis {
        None => {
            let (s, z) = (q.scale[0], q.zero_point[0]);
            Ok(x.iter().map(|&v| v.wrapping_sub(z) as f32 * s).collect())
        }
        Some(axis) => {
            let c = *shape.get(axis).ok_or("dequantize axis out of range")?;
            let inner: usize = shape[axis + 1..].iter().product();
            if q.scale.len() != c || q.zero_point.len() != c {
                return Err(format!("{c} channels but {} scales", q.scale.len()));
            }
            Ok(x.iter()
                .enumerate()
                .map(|(k, &v)| {
                    let ch = (k / inner.max(1)) % c;
                    v.wrapping_sub(q.zero_point[ch]) as f32 * q.scale[ch]
                })
                .collect())
        }
    }
}

fn pad(
    x: &[i32],
    si: &[usize],
    so: &[usize],
    pads: &[usize],
    code: i32,
) -> std::result::Result<Vec<i32>, String> {
    let r = si.len();
    if pads.len() != 2 * r || so.len() != r {
        return Err(format!("pads {pads:?} for rank {r}"));
    }
    let mut out = vec![code; so.iter().product()];
    let a = ArrayD::from_shape_vec(IxDyn(si), x.to_vec()).map_err(|e| e.to_string())?;
    let mut o =
        ArrayD::from_shape_vec(IxDyn(so), std::mem::take(&mut out)).map_err(|e| e.to_string())?;
    let mut view = o.view_mut();
    for d in 0..r {
        view.slice_axis_inplace(ndarray::Axis(d), ndarray::Slice::from(pads[d]..pads[d] + si[d]));
    }
    view.assign(&a);
    Ok(o.into_raw_vec_and_offset().0)
}

/// A run-time input for buffer `decl`: its shape, and codes inside the code range.
pub(crate) fn input_data(decl: &BufferDecl, t: Tensor) -> Result<Data> {
    let bad = |msg: String| InterpError::Input { name: decl.name.clone(), msg };
    if t.shape() != decl.shape.as_slice() {
        return Err(bad(format!("expected shape {:?}, got {:?}", decl.shape, t.shape())));
    }
    match (decl.elem, t) {
        (Elem::F32, Tensor::F32(a)) => Ok(Data::F32(a.iter().copied().collect())),
        (Elem::Code(c), t) if t.dtype().is_int() => {
            let (lo, hi) = c.range();
            let v = t.to_data().to_i64_vec();
            if let Some(bad_v) = v.iter().find(|&&q| q < lo as i64 || q > hi as i64) {
                return Err(bad(format!("code {bad_v} outside [{lo}, {hi}]")));
            }
            Ok(Data::Codes(v.into_iter().map(|q| q as i32).collect()))
        }
        (e, t) => Err(bad(format!("expected {e:?} values, got {}", t.dtype()))),
    }
}

fn to_tensor(decl: &BufferDecl, d: Data) -> Result<Tensor> {
    let shape = IxDyn(&decl.shape);
    let err = |e: ndarray::ShapeError| InterpError::Internal(e.to_string());
    Ok(match d {
        Data::F32(v) => Tensor::F32(ArrayD::from_shape_vec(shape, v).map_err(err)?),
        Data::Codes(v) => Tensor::I32(ArrayD::from_shape_vec(shape, v).map_err(err)?),
    })
}
