//! Runs paused between steps: a pass that corrects a layer from what the program computes
//! (`bn-calibrate`) runs the program up to the layer, reads the layer's accumulators, decides,
//! writes the layer's output codes and goes on — one run of the program in all.

use super::{input_data, output_of, step_err, to_tensor, AdcStats, Data, ProgramRunner};
use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::{Requant, Step};
use cimc_interp::Tensor;
use cimc_interp::{InterpError, Result};

/// A run paused before step `next`: the buffers written so far that later steps still read.
pub struct RunState {
    pub(super) bufs: Vec<Option<Data>>,
    pub(super) next: usize,
}

impl RunState {
    /// The step the run stopped before.
    pub fn next_step(&self) -> usize {
        self.next
    }
}

impl ProgramRunner {
    /// A run of the program on `inputs`, paused before its first step.
    pub fn start(&self, inputs: Vec<Tensor>) -> Result<RunState> {
        let p = &self.program;
        if inputs.len() != p.inputs.len() {
            return Err(InterpError::Input {
                name: "inputs".into(),
                msg: format!(
                    "the program takes {} input(s), {} given",
                    p.inputs.len(),
                    inputs.len()
                ),
            });
        }
        let mut bufs: Vec<Option<Data>> = vec![None; p.buffers.len()];
        for (&b, t) in p.inputs.iter().zip(inputs) {
            bufs[b] = Some(input_data(&p.buffers[b], t)?);
        }
        Ok(RunState { bufs, next: 0 })
    }

    /// Runs the steps from where `state` paused up to (not including) step `until`.
    pub fn run_until(&self, state: &mut RunState, until: usize) -> Result<()> {
        self.run_until_with(state, until, None, None)
    }

    pub(super) fn run_until_with(
        &self,
        state: &mut RunState,
        until: usize,
        mut stats: Option<&mut AdcStats>,
        noise: Option<super::Noise<'_>>,
    ) -> Result<()> {
        let until = until.min(self.program.steps.len());
        while state.next < until {
            let i = state.next;
            let s = &self.program.steps[i];
            let step_stats = stats.as_deref_mut().and_then(|st| st.steps[i].as_mut());
            let out = self.step(i, s, &state.bufs, step_stats, noise)?;
            self.store(state, i, out)?;
        }
        Ok(())
    }

    /// Writes step `i`'s output into `state` (checking its size), frees the buffers no later
    /// step reads, and moves the run past step `i`.
    fn store(&self, state: &mut RunState, i: usize, out: Data) -> Result<()> {
        let p = &self.program;
        let s = &p.steps[i];
        if state.next != i {
            return Err(InterpError::Internal(format!(
                "the run is before step {}, not step {i}",
                state.next
            )));
        }
        let ob = output_of(s);
        let want = p.buffers[ob].numel();
        let got = match &out {
            Data::Codes(v) => v.len(),
            Data::F32(v) => v.len(),
        };
        if got != want {
            return Err(step_err(i, s, format!("produced {got} values for a buffer of {want}")));
        }
        state.bufs[ob] = Some(out);
        for b in cimc_backends::program::step_buffers(s) {
            if self.last_use[b] == i && b != ob {
                state.bufs[b] = None;
            }
        }
        state.next = i + 1;
        Ok(())
    }

    /// The accumulators of matrix step `i` (Conv or Gemm) on the run paused before it: every
    /// output's `acc` (bias included) before requantization, in the output buffer's layout.
    /// Computed as the step computes them (the crossbar's arithmetic when it has one). An
    /// accumulator outside the i32 range is an error.
    pub fn accumulators(&self, state: &RunState, i: usize) -> Result<Vec<i64>> {
        let s = self.program.steps.get(i).ok_or_else(|| InterpError::Input {
            name: "step".into(),
            msg: format!("no step {i}"),
        })?;
        if state.next != i {
            return Err(InterpError::Internal(format!(
                "accumulators of step {i} on a run paused before step {}",
                state.next
            )));
        }
        let identity = Requant {
            mult: vec![
                FixedMultiplier::from_real(1.0).expect("invariant: 1.0 is a valid multiplier")
            ],
            zero_point: 0,
            lo: i32::MIN,
            hi: i32::MAX,
        };
        if s.as_matrix().is_none() {
            return Err(step_err(i, s, "accumulators of a step that is no Conv or Gemm"));
        }
        let mut probe = s.clone();
        if let Step::Conv { requant, .. } | Step::Gemm { requant, .. } = &mut probe {
            *requant = identity;
        }
        let out = self.step(i, &probe, &state.bufs, None, None)?;
        let Data::Codes(acc) = out else {
            return Err(InterpError::Internal("a matrix step produced f32 values".into()));
        };
        if acc.iter().any(|&a| a == i32::MIN || a == i32::MAX) {
            return Err(step_err(i, s, "an accumulator beyond the i32 range"));
        }
        Ok(acc.into_iter().map(i64::from).collect())
    }

    /// Sets the output of step `i` of a run paused before it (codes of the output buffer's type
    /// and size) and moves the run past it, as if the step had produced them.
    pub fn set_output(&self, state: &mut RunState, i: usize, codes: Vec<i32>) -> Result<()> {
        if i >= self.program.steps.len() {
            return Err(InterpError::Input { name: "step".into(), msg: format!("no step {i}") });
        }
        self.store(state, i, Data::Codes(codes))
    }

    /// Runs the rest of the program and returns its outputs (as [`ProgramRunner::run`]).
    pub fn finish(&self, mut state: RunState) -> Result<Vec<Tensor>> {
        self.run_until(&mut state, usize::MAX)?;
        self.outputs(state)
    }

    pub(super) fn outputs(&self, mut state: RunState) -> Result<Vec<Tensor>> {
        let p = &self.program;
        p.outputs
            .iter()
            .map(|&b| {
                let decl = &p.buffers[b];
                let d = state.bufs[b].take().ok_or_else(|| {
                    InterpError::Internal(format!("output buffer b{b} never written"))
                })?;
                to_tensor(decl, d)
            })
            .collect()
    }
}
