//! `cimc eval --noise` as a user meets it: noise off gives the exact program's top-1, the Monte
//! Carlo report and its plot, reproducible runs, drift rows, and every bad noise file or flag
//! gets exit status 1 and one line naming the file and the key.

mod common;
use common::{cimc, data, ok_json as ok, repo, user_error};
use std::path::PathBuf;
use std::process::Output;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cimc-noise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The digits CNN compiled for the ISAAC-like preset, once per test binary.
fn program() -> String {
    static P: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let out = tmp("digits_isaac.cimp");
        let o = cimc(&[
            "compile",
            &data("models/digits_cnn.onnx"),
            "--calib",
            &data("sets/digits_calib_x.npy"),
            "--target",
            "isaac",
            "--batch",
            "25",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.to_string_lossy().into_owned()
    })
    .clone()
}

fn eval(extra: &[&str]) -> Output {
    let p = program();
    let (x, y) = (data("sets/digits_test_x.npy"), data("sets/digits_test_y.npy"));
    let mut args = vec!["eval", &p, "--data", &x, "--labels", &y, "--limit", "100", "--json"];
    args.extend_from_slice(extra);
    cimc(&args)
}

fn write(name: &str, text: &str) -> String {
    let p = tmp(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn noise_off_gives_the_exact_top1() {
    let exact = ok(&eval(&[]));
    let off = write("off.toml", "[noise]\nsigma_prog = 0.0\n");
    let v = ok(&eval(&["--noise", &off, "--trials", "3"]));
    assert_eq!(v["exact_top1"], exact["top1"]);
    let sc = &v["scenarios"][0];
    assert_eq!(sc["top1"].as_array().unwrap().len(), 3);
    for t in sc["top1"].as_array().unwrap() {
        assert_eq!(t, &exact["top1"]);
    }
    assert_eq!(sc["std"].as_f64(), Some(0.0));
}

#[test]
fn monte_carlo_report_is_reproducible_and_plotted() {
    let report = tmp("mc.json");
    let args = [
        "--noise",
        &repo("targets/noise/all.toml"),
        "--trials",
        "3",
        "--seed",
        "1",
        "--drift-time",
        "1s,1d",
        "--report",
        report.to_str().unwrap(),
    ];
    let a = ok(&eval(&args));
    let sc = a["scenarios"].as_array().unwrap();
    assert_eq!(sc.len(), 2, "one row per drift time");
    assert_eq!(sc[1]["spec"]["drift_time_s"].as_f64(), Some(86400.0));
    for s in sc {
        let t: Vec<f64> =
            s["top1"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(s["min"].as_f64(), Some(min));
        assert!(s["mean"].as_f64().unwrap() >= min);
    }
    let b = ok(&eval(&args));
    assert_eq!(a["scenarios"][0]["top1"], b["scenarios"][0]["top1"], "same seed, same figures");
    assert_eq!(a["scenarios"][1]["top1"], b["scenarios"][1]["top1"]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["trials"], 3);
    let svg = std::fs::read_to_string(report.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("mean top-1"));
    // A sweep: one row per value.
    let s = ok(&eval(&[
        "--noise",
        &repo("targets/pcm.toml"),
        "--trials",
        "2",
        "--sweep",
        "sigma_prog=0.01,0.2",
    ]));
    assert_eq!(s["scenarios"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_noise_files_and_flags_are_user_errors() {
    let cases: [(&str, &str, &[&str]); 5] = [
        ("unknown.toml", "[noise]\nsigma_prg = 0.1\n", &["unknown.toml", "noise.sigma_prg"]),
        (
            "negative.toml",
            "[noise]\nsigma_prog = -0.1\n",
            &["negative.toml", "noise.sigma_prog = -0.1"],
        ),
        (
            "fraction.toml",
            "[noise]\np_stuck_on = 1.5\n",
            &["fraction.toml", "noise.p_stuck_on = 1.5"],
        ),
        (
            "sum.toml",
            "[noise]\np_stuck_on = 0.6\np_stuck_off = 0.6\n",
            &["sum.toml", "noise.p_stuck_off + noise.p_stuck_on"],
        ),
        ("none.toml", "name = \"x\"\n", &["none.toml", "no [noise] table"]),
    ];
    for (name, text, needles) in cases {
        let f = write(name, text);
        user_error(&eval(&["--noise", &f]), needles);
    }
    let good = repo("targets/noise/variation.toml");
    user_error(&eval(&["--noise", &good, "--drift-time", "3 weeks"]), &["--drift-time '3 weeks'"]);
    user_error(&eval(&["--noise", &good, "--sweep", "sigma=1"]), &["'sigma' is not a numeric key"]);
    user_error(&eval(&["--noise", &good, "--trials", "0"]), &["--trials"]);
    user_error(&eval(&["--drift-time", "1s"]), &["--drift-time", "--noise <FILE>"]);
    // A float model has no crossbar to perturb.
    let out = cimc(&[
        "eval",
        &data("models/digits_cnn.onnx"),
        "--data",
        &data("sets/digits_test_x.npy"),
        "--labels",
        &data("sets/digits_test_y.npy"),
        "--noise",
        &good,
    ]);
    user_error(&out, &["crossbar program (.cimp)"]);
}
