//! The sweep workload (issue 22): a 24-point `cimc sweep` against the same 24 points compiled
//! and evaluated one by one with the same library calls and nothing shared (what a script of
//! `cimc compile` + `cimc eval` per point does, less the process starts), alternately in the
//! same process, one thread each, so the ratio is the sweep's own overhead (hashing, the
//! results file, CSV, plot) and not its parallelism. Two sweeps: 24 configurations to compile
//! (nothing to share: the overhead alone), and 6 configurations × 4 noise seeds (compilations
//! shared).

use crate::workloads::Measured;
use cimc::sweep::point::{compile, evaluate, Dataset};
use cimc::sweep::spec::SweepSpec;
use cimc::sweep::{run_local, Options};
use cimc_sim::program::ProgramRunner;
use std::path::Path;
use std::time::Instant;

fn spec(dir: &Path, name: &str, axes: &str) -> SweepSpec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let m = |f: &str| root.join(f).display().to_string();
    let text = format!(
        "[sweep]\nmodel = \"{}\"\ndata = \"{}\"\nlabels = \"{}\"\ncalib = \"{}\"\n\
         target = \"isaac\"\nlimit = 200\n\n[compile]\ncalib_samples = 50\n\n\
         [noise]\nsigma_prog = 0.05\n\n[axes]\n{axes}\n",
        m("digits_cnn.onnx"),
        m("digits_test_x.npy"),
        m("digits_test_y.npy"),
        m("digits_calib_x.npy"),
    );
    let f = dir.join(name);
    std::fs::write(&f, text).expect("the temp dir is writable");
    SweepSpec::load(&f).unwrap_or_else(|e| panic!("{e}"))
}

/// The 24 points one by one: each loads the data, compiles and evaluates.
fn separately(s: &SweepSpec) -> f64 {
    let start = Instant::now();
    for p in s.points().expect("points") {
        let data = Dataset::load(&p.config, &s.dir).expect("data");
        let c = compile(&p.config, &s.dir).expect("compile");
        let runner = ProgramRunner::new(&c.program).expect("runner");
        std::hint::black_box(evaluate(&runner, &c.program, &p.config, &data).expect("eval"));
    }
    start.elapsed().as_secs_f64() * 1e3
}

/// The sweep from scratch (its results removed first).
fn swept(s: &SweepSpec, out: &Path) -> (f64, usize) {
    for ext in ["jsonl", "csv", "svg"] {
        std::fs::remove_file(out.with_extension(ext)).ok();
    }
    let start = Instant::now();
    let opts = Options { out: out.to_path_buf(), timings: false };
    let summary = run_local(s, &opts, &|_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    (start.elapsed().as_secs_f64() * 1e3, summary.compilations)
}

pub fn run(reps: usize) -> Measured {
    let dir = std::env::temp_dir().join(format!("cimc_bench_sweep_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temp dir is writable");
    let distinct = spec(
        &dir,
        "distinct.toml",
        "\"compile.wbits\" = [4, 5, 6, 8]\n\"adc.bits\" = [4, 5, 6]\n\"array.rows\" = [64, 128]",
    );
    let shared = spec(
        &dir,
        "shared.toml",
        "\"adc.bits\" = [4, 5, 6]\n\"array.rows\" = [64, 128]\nseed = [0, 1, 2, 3]",
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    let rounds = reps.div_ceil(4).max(2);
    let (mut sweep_d, mut alone_d, mut sweep_s, mut alone_s) = (vec![], vec![], vec![], vec![]);
    let mut compilations = (0, 0);
    pool.install(|| {
        for _ in 0..rounds {
            let (t, c) = swept(&distinct, &dir.join("distinct"));
            sweep_d.push(t);
            compilations.0 = c;
            alone_d.push(separately(&distinct));
            let (t, c) = swept(&shared, &dir.join("shared"));
            sweep_s.push(t);
            compilations.1 = c;
            alone_s.push(separately(&shared));
        }
    });
    std::fs::remove_dir_all(&dir).ok();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = min(&sweep_d) / min(&alone_d);
    let shared_ratio = min(&sweep_s) / min(&alone_s);
    Measured {
        min_ms: min(&sweep_d),
        median_ms: median(&mut sweep_d),
        note: Some(format!(
            "ratio {ratio:.3} against the 24 alone ({:.0} ms; {} compilations each); \
             6 configurations x 4 seeds: ratio {shared_ratio:.3} ({} compilations against 24; \
             {:.0} ms against {:.0} ms); {rounds} alternating rounds, 1 thread, best of each",
            min(&alone_d),
            compilations.0,
            compilations.1,
            min(&sweep_s),
            min(&alone_s),
        )),
    }
}
