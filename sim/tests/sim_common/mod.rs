//! Helpers of the stream simulator's tests: random numbers, streams and tensors.
#![allow(dead_code)]

use cimc_backends::isa::Instr;
use cimc_backends::program::{BufferDecl, CodeType, Elem};
use cimc_backends::stream::{Core, Io, Schedule, Stream};
use cimc_interp::Tensor;
use cimc_sim::StreamRunner;

/// The tests' deterministic random numbers (splitmix64).
pub use cimc_sim::noise::SplitMix64 as Rng;

/// A pipelined stream of these cores and nothing else (tables empty, no memory, no I/O).
pub fn stream(cores: Vec<Core>) -> Stream {
    Stream {
        name: "test".into(),
        target: None,
        schedule: Schedule::Pipelined,
        arrays: 0,
        global_words: 0,
        inputs: vec![],
        outputs: vec![],
        layers: vec!["layer".into()],
        cores,
        groups: vec![],
        windows: vec![],
        requants: vec![],
        adds: vec![],
        perms: vec![],
        hosts: vec![],
        digital: vec![],
    }
}

/// The stream tensor of a program buffer at global address `addr`.
pub fn io_of(d: &BufferDecl, addr: u32) -> Io {
    Io { name: d.name.clone(), shape: d.shape.clone(), elem: d.elem, quant: d.quant.clone(), addr }
}

/// A tensor of 31-bit signed codes (wide enough for accumulators in tests).
pub fn codes_io(name: &str, shape: Vec<usize>, addr: u32) -> Io {
    Io {
        name: name.into(),
        shape,
        elem: Elem::Code(CodeType { bits: 31, signed: true }),
        quant: None,
        addr,
    }
}

pub fn i32_tensor(shape: &[usize], v: Vec<i32>) -> Tensor {
    Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap())
}

pub fn f32_tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap())
}

pub fn codes(t: &Tensor) -> Vec<i32> {
    t.to_data().to_i64_vec().into_iter().map(|v| v as i32).collect()
}

/// Runs `code` on one core whose scratchpad (`scratch` words) starts as `init` followed by
/// zeros, with `tables` filling the stream's tables; returns the final scratchpad.
pub fn run_scratch(
    scratch: u32,
    init: &[i64],
    code: Vec<Instr>,
    tables: impl FnOnce(&mut Stream),
) -> Result<Vec<i64>, String> {
    let n = init.len() as u32;
    let mut all = vec![Instr::Load { dst: 0, src: 0, len: n, elem_bytes: 8 }];
    all.extend(code);
    all.push(Instr::Store { dst: n, src: 0, len: scratch, elem_bytes: 8 });
    all.push(Instr::Halt {});
    let mut s = stream(vec![Core { scratch_words: scratch, code: all, marks: vec![] }]);
    s.global_words = n + scratch;
    s.inputs = vec![codes_io("init", vec![n as usize], 0)];
    s.outputs = vec![codes_io("scratch", vec![scratch as usize], n)];
    tables(&mut s);
    let r = StreamRunner::new(&s).map_err(|e| e.to_string())?;
    let x = i32_tensor(&[n as usize], init.iter().map(|&v| v as i32).collect());
    let y = r.run(vec![x]).map_err(|e| e.to_string())?;
    Ok(codes(&y[0]).into_iter().map(i64::from).collect())
}
