//! `cimc sweep` on the digits CNN: sweep-file errors name their key (exit 1), results are the
//! same bytes run after run, points that differ only in evaluation settings share one
//! compilation, a sweep killed mid-way resumes to the bytes of an uninterrupted one, a Slurm
//! array (a shell loop standing in for it) merges to the local results, and `--run-point`
//! gives the local row.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A sweep file in `dir` over the repository's digits CNN: `axes` is the `[axes]` table's body,
/// `extra` more tables.
fn sweep_file(dir: &Path, name: &str, axes: &str, extra: &str) -> PathBuf {
    let m = |f: &str| repo(&format!("examples/models/{f}"));
    let text = format!(
        "[sweep]\nmodel = \"{}\"\ndata = \"{}\"\nlabels = \"{}\"\ncalib = \"{}\"\n\
         target = \"isaac\"\nlimit = 120\n\n[compile]\ncalib_samples = 50\n\n{extra}\n[axes]\n{axes}\n",
        m("digits_cnn.onnx"),
        m("digits_test_x.npy"),
        m("digits_test_y.npy"),
        m("digits_calib_x.npy"),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the temp dir is writable");
    path
}

fn run_sweep(file: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["sweep", file.to_str().unwrap(), "--json", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok_json(&cimc(&args))
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    PathBuf::from(format!("{}{ext}", stem.display()))
}

const NOISE: &str = "[noise]\nsigma_prog = 0.05\n";

#[test]
fn sweep_file_errors_name_the_key() {
    let dir = tmp_dir("sweep_errors");
    let cases: &[(&str, &str, &[&str])] = &[
        ("\"adc.bitz\" = [4]", "", &["adc.bitz", "not an axis"]),
        ("\"compile.wbitz\" = [4]", "", &["wbitz", "not a compile option"]),
        ("\"noise.sigma_prg\" = [0.1]", "", &["sigma_prg", "not a key of [noise]"]),
        ("\"adc.bits\" = [4, 99]", "", &["adc.bits", "99"]),
        ("bits = [4]", "", &["bits", "several target fields"]),
        ("\"compile.wbits\" = [\"four\"]", "", &["compile.wbits", "four"]),
        ("seed = [-1]", "", &["seed"]),
        ("\"adc.bits\" = []", "", &["adc.bits", "empty"]),
        ("\"adc.bits\" = [4]", "[compile]\nwbitz = 4\n", &["wbitz"]),
        ("\"adc.bits\" = [4]", "[plot]\nx = 1\n", &["[plot]"]),
        ("\"adc.bits\" = [4]", "[noise]\nsigma = 1\n", &["sigma", "[noise]"]),
        ("\"adc.bits\" = 4", "", &["adc.bits", "list"]),
        ("\"adc.bits\" = [4", "", &["line"]),
    ];
    for (i, (axes, extra, needles)) in cases.iter().enumerate() {
        // `[compile]` given twice would be a TOML error of its own: the extra one replaces it.
        let f = if extra.starts_with("[compile]") {
            let f = sweep_file(&dir, &format!("e{i}.toml"), axes, "");
            let text =
                std::fs::read_to_string(&f).unwrap().replace("calib_samples = 50", "wbitz = 4");
            std::fs::write(&f, text).unwrap();
            f
        } else {
            sweep_file(&dir, &format!("e{i}.toml"), axes, extra)
        };
        let out = cimc(&["sweep", f.to_str().unwrap(), "--json"]);
        user_error(&out, needles);
        assert!(!with_ext(&f.with_extension(""), ".jsonl").exists(), "case {i} did work");
    }
    let bad = dir.join("s.toml");
    std::fs::write(&bad, "[sweep]\nmodle = \"x\"\n").unwrap();
    user_error(&cimc(&["sweep", bad.to_str().unwrap()]), &["modle", "[sweep]"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sweeps_are_deterministic_and_share_compilations() {
    let dir = tmp_dir("sweep_det");
    let f = sweep_file(&dir, "s.toml", "\"adc.bits\" = [4, 6]\nseed = [0, 1, 2]", NOISE);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let sa = run_sweep(&f, &a, &[]);
    let sb = run_sweep(&f, &b, &["--jobs", "1"]);
    assert_eq!(sa["points"], 6);
    assert_eq!(sa["run"], 6);
    // 2 configurations to compile; the 3 seeds of each share its program.
    assert_eq!(sa["compilations"], 2, "{sa}");
    assert_eq!(sb["compilations"], 2, "{sb}");
    for ext in [".jsonl", ".csv", ".svg"] {
        assert_eq!(read(with_ext(&a, ext)), read(with_ext(&b, ext)), "{ext} differs between runs");
    }
    let text = String::from_utf8(read(with_ext(&a, ".jsonl"))).unwrap();
    let rows: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert!(r["top1"].as_f64().unwrap() > 50.0, "{r}");
        assert!(r["energy_pj"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r.get("seconds").is_none() && r.get("eval_seconds").is_none());
    }
    // The seeds of one configuration: one compilation, one cost, different programmings.
    assert_eq!(rows[0]["compile"], rows[2]["compile"]);
    assert_eq!(rows[0]["energy_pj"], rows[2]["energy_pj"]);
    assert_ne!(rows[0]["compile"], rows[3]["compile"]);
    let hashes: std::collections::BTreeSet<_> =
        rows.iter().map(|r| r["hash"].to_string()).collect();
    assert_eq!(hashes.len(), 6);
    // Run again on the finished results: nothing to do, nothing changes.
    let again = run_sweep(&f, &a, &[]);
    assert_eq!((again["run"].as_u64(), again["compilations"].as_u64()), (Some(0), Some(0)));
    assert_eq!(read(with_ext(&a, ".jsonl")), read(with_ext(&b, ".jsonl")));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_killed_sweep_resumes_to_the_same_bytes() {
    let dir = tmp_dir("sweep_kill");
    let f = sweep_file(
        &dir,
        "s.toml",
        "\"compile.wbits\" = [4, 5, 6, 8]\n\"array.rows\" = [64, 128]\nseed = [0, 1]",
        NOISE,
    );
    let whole = dir.join("whole");
    let s = run_sweep(&f, &whole, &[]);
    assert_eq!(s["points"], 16);
    let cut = dir.join("cut");
    let jsonl = with_ext(&cut, ".jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimc"))
        .args(["sweep", f.to_str().unwrap(), "--json", "--jobs", "1", "-o", cut.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the cimc binary runs");
    let start = std::time::Instant::now();
    let lines = |p: &Path| std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0);
    while lines(&jsonl) < 3 {
        assert!(start.elapsed().as_secs() < 300, "no rows after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = lines(&jsonl);
    assert!(kept < 16, "the sweep finished before the kill");
    // A row torn by the kill (half a line, no newline) is dropped on resume.
    let mut torn = std::fs::read(&jsonl).unwrap();
    torn.extend_from_slice(b"{\"axes\":{\"seed\":1},\"hash\":\"12");
    std::fs::write(&jsonl, torn).unwrap();
    let resumed = run_sweep(&f, &cut, &[]);
    assert_eq!(resumed["finished_before"].as_u64(), Some(kept as u64), "{resumed}");
    assert_eq!(resumed["run"].as_u64(), Some(16 - kept as u64));
    for ext in [".jsonl", ".csv", ".svg"] {
        assert_eq!(read(with_ext(&cut, ext)), read(with_ext(&whole, ext)), "{ext} differs");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_slurm_array_merges_to_the_local_results() {
    let dir = tmp_dir("sweep_slurm");
    let f = sweep_file(
        &dir,
        "s.toml",
        "\"adc.bits\" = [4, 6]\n\"array.rows\" = [64, 128]\nseed = [0, 1]",
        NOISE,
    );
    let local = dir.join("local");
    run_sweep(&f, &local, &[]);
    let jobs = dir.join("jobs");
    let merged = dir.join("merged");
    let e = ok_json(&cimc(&[
        "sweep",
        f.to_str().unwrap(),
        "--emit-jobs",
        jobs.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(e["points"], 8);
    let script = std::fs::read_to_string(jobs.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-7"), "{script}");
    // Merging before the array ran: every point missing, exit 1.
    user_error(&cimc(&["sweep", "--merge", jobs.to_str().unwrap()]), &["8 point(s) have no row"]);
    // The array, as a shell loop: each element its own process, in reverse order.
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for i in 7 6 5 4 3 2 1 0; do SLURM_ARRAY_TASK_ID=$i bash '{}' || exit 1; done",
            jobs.join("sweep.sbatch").display()
        ))
        .env("CIMC", env!("CARGO_BIN_EXE_cimc"))
        .status()
        .unwrap();
    assert!(status.success());
    let m = ok_json(&cimc(&["sweep", "--merge", jobs.to_str().unwrap(), "--json"]));
    assert_eq!((m["run"].as_u64(), m["missing"].as_u64()), (Some(8), Some(0)), "{m}");
    for ext in [".jsonl", ".csv", ".svg"] {
        assert_eq!(read(with_ext(&merged, ext)), read(with_ext(&local, ext)), "{ext} differs");
    }
    // `--run-point` of a `--list-points` line is that point's local row.
    let list = cimc(&["sweep", f.to_str().unwrap(), "--list-points"]);
    ok(&list);
    let third = String::from_utf8(list.stdout).unwrap().lines().nth(2).unwrap().to_string();
    let pf = dir.join("p.json");
    std::fs::write(&pf, &third).unwrap();
    let row = cimc(&["sweep", "--run-point", pf.to_str().unwrap()]);
    ok(&row);
    let local_rows = String::from_utf8(read(with_ext(&local, ".jsonl"))).unwrap();
    assert_eq!(
        String::from_utf8(row.stdout).unwrap(),
        format!("{}\n", local_rows.lines().nth(2).unwrap())
    );
    // A point whose configuration was edited is refused.
    std::fs::write(&pf, third.replace("\"seed\":0", "\"seed\":7")).unwrap();
    user_error(&cimc(&["sweep", "--run-point", pf.to_str().unwrap()]), &["hash"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn random_sampling_draws_distinct_points_the_same_way_each_time() {
    let dir = tmp_dir("sweep_random");
    let axes = "\"adc.bits\" = [4, 5, 6]\ncell_bits = [1, 2]\nwbits = [4, 8]\ndrift_time = [\"1s\", \"1d\"]";
    let list = |seed: u64| {
        let f = sweep_file(&dir, &format!("r{seed}.toml"), axes, NOISE);
        let text = std::fs::read_to_string(&f).unwrap().replace(
            "limit = 120",
            &format!("limit = 120\nsampling = \"random\"\npoints = 5\nsampling_seed = {seed}"),
        );
        std::fs::write(&f, text).unwrap();
        let out = cimc(&["sweep", f.to_str().unwrap(), "--list-points"]);
        ok(&out);
        let points: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        points.iter().map(|p| p["axes"].to_string()).collect::<Vec<_>>()
    };
    let a = list(1);
    assert_eq!(a.len(), 5);
    assert_eq!(a.iter().collect::<std::collections::BTreeSet<_>>().len(), 5, "{a:?}");
    // Bare keys resolve to their canonical axes.
    for key in ["target.adc.bits", "target.array.cell_bits", "compile.wbits", "drift_time"] {
        assert!(a[0].contains(key), "{key} not in {}", a[0]);
    }
    assert_eq!(list(1), a, "the same seed draws the same points");
    assert_ne!(list(2), a, "another seed draws others");
    std::fs::remove_dir_all(&dir).ok();
}
