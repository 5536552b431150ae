//! The simulator of the accelerator's instruction streams (`cimc_backends::stream`): runs every
//! core's code on a model of the chip's memories and reproduces the interpreter program's
//! arithmetic bit-exactly.
//!
//! Memories are vectors of i64 words (the global memory of `global_words`, one scratchpad of
//! `scratch_words` per core); an f32 is a word holding its bit pattern in the low 32 bits. Each
//! instruction does what its documentation (`docs/isa.md`) says. The arithmetic is the
//! program's own code wherever the two meet: `arith::requantize` and `arith::quantize_value`,
//! `program::pool` for pooling, `program::dequantize` and `program::softmax` on the host, and for
//! `mvm` the program's crossbar kernel (bit-plane popcounts, `program::crossbar`) or, when every
//! conversion is lossless, an exact GEMM (integer dot products for narrow conv groups), as the
//! program chooses.
//!
//! Speed (a stream repeats work the program does once, and a layer-serial stream cuts layers
//! into many small groups): `im2col` is recorded rather than written and `mvm` reads the
//! vectors from the image ([`lazy`]), the crossbar inputs' bit planes are kept for the next
//! group reading the same vectors ([`planes`]), groups are prepared once per configuration and
//! kept across runs, and the whole simulation runs on a thread of rayon's pool, so that the
//! parallel loops inside its instructions start cheaply. On ResNet-18 it takes 1.1–1.5× the
//! program's time (`tests/sim_bench.rs`).
//!
//! Cores run round-robin: each runs until it halts or waits (at a `sync` that not every core
//! has reached, or at a `recv` whose words have not all arrived); `send` delivers at once. A
//! round in which no core can run an instruction is a deadlock, reported with where every
//! waiting core stands. Since cores meet only at barriers and through counted messages, a
//! valid stream's result does not depend on this order.

mod digital;
mod exec;
mod host;
mod lazy;
mod matrix;
mod planes;
mod vector;
mod window;

use crate::program::{input_data, Data};
use cimc_backends::program::{BufferDecl, Elem};
use cimc_backends::stream::{Io, Stream};
use cimc_interp::Tensor;
use cimc_interp::{InterpError, Result};
use exec::{Flow, Machine};
use ndarray::{ArrayD, IxDyn};

/// How often [`StreamRunner::run_with_progress`] reports, about.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// A stream prepared for repeated runs: validated once; each crossbar group is prepared (bit
/// planes) at its first `mvm` and kept for later runs.
pub struct StreamRunner {
    stream: Stream,
    cache: matrix::Cache,
    lazy_im2col: bool,
}

impl StreamRunner {
    /// Validates the stream ([`Stream::validate`]) and keeps a copy of it.
    pub fn new(stream: &Stream) -> Result<StreamRunner> {
        stream
            .validate()
            .map_err(|e| InterpError::Input { name: "stream".into(), msg: e.to_string() })?;
        Ok(StreamRunner { stream: stream.clone(), cache: Default::default(), lazy_im2col: true })
    }

    /// Whether `im2col` is recorded and read lazily ([`lazy`]; on by default). Off, every
    /// `im2col` writes its vectors at once: the same results, slower; for tests and benchmarks.
    pub fn set_lazy_im2col(&mut self, on: bool) {
        self.lazy_im2col = on;
    }

    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Runs the stream. Inputs in stream-input order: f32 tensors for f32 inputs, integer
    /// tensors for code inputs (values must lie in the code range), as `ProgramRunner::run`
    /// takes them. Outputs: f32 tensors for f32 outputs, i32 tensors of codes otherwise, of the
    /// outputs' shapes.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.run_with_progress(inputs, &|_, _| {})
    }

    /// Runs like [`StreamRunner::run`], calling `progress(done, total)` with the number of
    /// instructions executed so far (over all cores) and their total, as it goes (about every
    /// [`PROGRESS_EVERY`]) and once all have run.
    pub fn run_with_progress(
        &self,
        inputs: Vec<Tensor>,
        progress: &dyn Fn(u64, u64),
    ) -> Result<Vec<Tensor>> {
        // The simulation runs on a thread of rayon's pool, so that the parallel loops of its
        // instructions start without waking a sleeping caller (thousands of them per run); this
        // thread only reports progress. Already on the pool, it runs here.
        if rayon::current_thread_index().is_some() {
            return self.simulate(inputs, &mut |d, t| progress(d, t));
        }
        let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
        let mut result = None;
        let slot = &mut result;
        rayon::in_place_scope(|scope| {
            scope.spawn(move |_| {
                let mut last = std::time::Instant::now();
                *slot = Some(self.simulate(inputs, &mut |d, t| {
                    if d == t || last.elapsed() >= PROGRESS_EVERY {
                        let _ = tx.send((d, t));
                        last = std::time::Instant::now();
                    }
                }));
            });
            for (d, t) in rx.iter() {
                progress(d, t);
            }
        });
        result.unwrap_or_else(|| Err(InterpError::Internal("the simulation did not run".into())))
    }

    /// [`StreamRunner::run_with_progress`] on this thread.
    fn simulate(
        &self,
        inputs: Vec<Tensor>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<Tensor>> {
        let s = &self.stream;
        if inputs.len() != s.inputs.len() {
            return Err(InterpError::Input {
                name: "inputs".into(),
                msg: format!(
                    "the stream takes {} input(s), {} given",
                    s.inputs.len(),
                    inputs.len()
                ),
            });
        }
        let mut m = Machine::new(s, &self.cache).map_err(InterpError::Internal)?;
        m.lazy_im2col = self.lazy_im2col;
        for (io, t) in s.inputs.iter().zip(inputs) {
            write_input(&mut m.global, io, t)?;
        }
        let total = s.instructions() as u64;
        let mut done = 0u64;
        let n = s.cores.len();
        loop {
            let mut ran = false;
            for c in 0..n {
                loop {
                    let flow = m.step(c).map_err(|msg| instr_error(s, c, m.pc[c], msg))?;
                    match flow {
                        Flow::Ran(k) => {
                            ran = true;
                            done += k;
                            progress(done, total);
                        }
                        Flow::Blocked | Flow::Halted => break,
                    }
                }
            }
            if m.halted.iter().all(|&h| h) {
                break;
            }
            if !ran {
                return Err(deadlock(&m));
            }
        }
        s.outputs.iter().map(|io| read_output(&m.global, io)).collect()
    }
}

fn instr_error(s: &Stream, core: usize, index: usize, msg: String) -> InterpError {
    let op = s.cores[core].code.get(index).map_or("end", |i| i.mnemonic());
    InterpError::Instr { core, index, op: op.to_string(), msg }
}

/// The deadlock error: every core that has not halted, where it waits and for what.
fn deadlock(m: &Machine) -> InterpError {
    let waiting: Vec<usize> = (0..m.halted.len()).filter(|&c| !m.halted[c]).collect();
    let list: Vec<String> = waiting
        .iter()
        .map(|&c| format!("core {c} at instruction {} ({})", m.pc[c], m.waiting(c)))
        .collect();
    let first = waiting.first().copied().unwrap_or(0);
    let mut e = instr_error(m.s, first, m.pc[first], String::new());
    if let InterpError::Instr { msg, .. } = &mut e {
        *msg = format!("deadlock: no core can go on; {}", list.join("; "));
    }
    e
}

fn decl_of(io: &Io) -> BufferDecl {
    BufferDecl {
        name: io.name.clone(),
        shape: io.shape.clone(),
        elem: io.elem,
        quant: io.quant.clone(),
    }
}

/// Writes an input tensor into its global words (checked as the program checks its inputs).
fn write_input(global: &mut [i64], io: &Io, t: Tensor) -> Result<()> {
    let words: Vec<i64> = match input_data(&decl_of(io), t)? {
        Data::F32(v) => v.into_iter().map(host::f32_word).collect(),
        Data::Codes(v) => v.into_iter().map(i64::from).collect(),
    };
    let dst =
        global.get_mut(io.addr as usize..io.addr as usize + words.len()).ok_or_else(|| {
            InterpError::Input {
                name: io.name.clone(),
                msg: "lies outside the global memory".into(),
            }
        })?;
    dst.copy_from_slice(&words);
    Ok(())
}

/// Reads an output tensor from its global words.
fn read_output(global: &[i64], io: &Io) -> Result<Tensor> {
    let bad = |msg: String| InterpError::Node { node: io.name.clone(), op: "output".into(), msg };
    let n = io.numel();
    let words = global
        .get(io.addr as usize..io.addr as usize + n)
        .ok_or_else(|| bad("lies outside the global memory".into()))?;
    let shape = IxDyn(&io.shape);
    let err = |e: ndarray::ShapeError| InterpError::Internal(e.to_string());
    Ok(match io.elem {
        Elem::F32 => Tensor::F32(
            ArrayD::from_shape_vec(shape, words.iter().map(|&w| host::word_f32(w)).collect())
                .map_err(err)?,
        ),
        Elem::Code(_) => {
            let codes = words
                .iter()
                .map(|&w| i32::try_from(w).map_err(|_| bad(format!("word {w} is not an i32 code"))))
                .collect::<Result<Vec<i32>>>()?;
            Tensor::I32(ArrayD::from_shape_vec(shape, codes).map_err(err)?)
        }
    })
}
