//! How fast, and with how little memory, cimc refuses files that declare more than they hold:
//! a 4 GiB tensor declared in a file of a few hundred bytes (ONNX model, TensorProto `.pb`,
//! `.npy`) and an external-data reference out of the model's folder. Each file is read from
//! `fuzz/seeds/` (made by `fuzz/make_seeds.py`) and refused 200 times; the table gives the
//! median, 99th percentile and worst time of one refusal and the growth of the process's peak resident memory
//! over all of them (docs/fuzzing.md). Run: `cargo run --release -p cimc-examples --bin
//! decode_limits`.

use std::path::{Path, PathBuf};
use std::time::Instant;

const REPS: usize = 200;

/// Peak resident memory of this process so far, in KiB (`VmHWM` of /proc/self/status; 0 where
/// there is no /proc).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    type Reader = fn(&Path) -> Result<(), String>;
    let onnx: Reader =
        |p| cimc::onnx::import_file(p, &Default::default()).map(|_| ()).map_err(|e| e.to_string());
    let pb: Reader = |p| cimc::onnx::read_tensor_pb(p).map(|_| ()).map_err(|e| e.to_string());
    let npy: Reader = |p| cimc::npy::read(p).map(|_| ()).map_err(|e| e.to_string());
    let cases: [(&str, PathBuf, Reader); 4] = [
        ("ONNX, 4 GiB initializer", seeds.join("onnx_import/hand-4gb-declared.onnx"), onnx),
        ("TensorProto .pb, 4 GiB", seeds.join("tensor_pb/hand-4gb-declared.pb"), pb),
        (".npy, 4 GiB header", seeds.join("npy/hand-4gb-declared.npy"), npy),
        (
            "ONNX, external ../../etc/passwd",
            seeds.join("onnx_import/hand-external-dotdot.onnx"),
            onnx,
        ),
    ];
    println!(
        "| file | size (bytes) | refusals | median (µs) | p99 (µs) | worst (µs) | peak RSS growth (KiB) | message |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (what, path, read) in cases {
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run fuzz/make_seeds.py)", path.display()))
            .len();
        // One refusal first, so that one-time setup (the allocator's arenas, lazily built
        // tables) is not counted as growth.
        read(&path).expect_err("the file must be refused");
        let before = peak_rss_kib();
        let mut times = Vec::with_capacity(REPS);
        let mut msg = String::new();
        for _ in 0..REPS {
            let t = Instant::now();
            let r = read(&path);
            times.push(t.elapsed().as_secs_f64() * 1e6);
            msg = r.expect_err("the file must be refused");
        }
        let grew = peak_rss_kib().saturating_sub(before);
        times.sort_by(f64::total_cmp);
        let msg = msg.rsplit_once(": ").map_or(msg.as_str(), |(_, m)| m).to_string();
        println!(
            "| {what} | {size} | {REPS} | {:.1} | {:.1} | {:.1} | {grew} | {msg} |",
            times[REPS / 2],
            times[REPS * 99 / 100],
            times[REPS - 1]
        );
    }
}
