//! Time of the stream simulator against the interpreter program on files written by
//! `cimc compile` (`--emit stream` and without): ignored, run by hand with
//! `CIMC_SIM_BENCH=/tmp/r18` (reads `/tmp/r18.cimp` and `/tmp/r18.cims`) and, optionally,
//! `CIMC_SIM_ONLY=N` (only N simulator runs, for `perf`); `program_only` runs only the program.
//! Measured on this project's 2-core machine (other work running): ResNet-18 on isaac 1.1–1.2×
//! the program's time, on puma 1.5×, on edge (layer-serial, 1204 groups) 1.4×; MobileNetV2 on
//! isaac 1.6×.

use cimc_backends::program::{Elem, Program};
use cimc_backends::stream::Stream;
use cimc_interp::Tensor;
use cimc_sim::{ProgramRunner, StreamRunner};

#[test]
#[ignore]
fn simulator_against_program() {
    let Ok(base) = std::env::var("CIMC_SIM_BENCH") else {
        eprintln!("CIMC_SIM_BENCH not set: skipped");
        return;
    };
    let p = Program::from_bytes(&std::fs::read(format!("{base}.cimp")).unwrap()).unwrap();
    let s = Stream::from_bytes(&std::fs::read(format!("{base}.cims")).unwrap()).unwrap();
    let decl = &p.buffers[p.inputs[0]];
    assert_eq!(decl.elem, Elem::F32);
    let n: usize = decl.shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let x = Tensor::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&decl.shape), x).unwrap());
    let sim = StreamRunner::new(&s).unwrap();
    if let Ok(reps) = std::env::var("CIMC_SIM_ONLY") {
        for _ in 0..reps.parse().unwrap_or(3) {
            sim.run(vec![x.clone()]).unwrap();
        }
        return;
    }
    let prog = ProgramRunner::new(&p).unwrap();
    let best = |f: &dyn Fn() -> Vec<Tensor>| {
        let first = f();
        let t = (0..3)
            .map(|_| {
                let t0 = std::time::Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        (t, first)
    };
    let (tp, yp) = best(&|| prog.run(vec![x.clone()]).unwrap());
    let (ts, ys) = best(&|| sim.run(vec![x.clone()]).unwrap());
    let same = yp[0].to_data().to_f32_vec() == ys[0].to_data().to_f32_vec();
    eprintln!("program {tp:.3} s, simulator {ts:.3} s, ratio {:.2}, equal {same}", ts / tp);
    assert!(same);
}

/// Only the program, for `perf` (`CIMC_SIM_BENCH` as above).
#[test]
#[ignore]
fn program_only() {
    let Ok(base) = std::env::var("CIMC_SIM_BENCH") else { return };
    let p = Program::from_bytes(&std::fs::read(format!("{base}.cimp")).unwrap()).unwrap();
    let decl = &p.buffers[p.inputs[0]];
    let n: usize = decl.shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let x = Tensor::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&decl.shape), x).unwrap());
    let prog = ProgramRunner::new(&p).unwrap();
    for _ in 0..3 {
        prog.run(vec![x.clone()]).unwrap();
    }
}
