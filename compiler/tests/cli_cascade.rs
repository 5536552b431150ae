//! The cascade on the command line (`docs/cascade.md`): `compile --cascade`, then `run`/`eval`
//! of the program at other weight widths (`--cascade-wbits`, `--cascade-bits`), and the errors.

mod common;
use common::{cimc, data, ok_json as ok, user_error};

#[test]
fn one_program_runs_at_every_width() {
    let dir = std::env::temp_dir().join(format!("cimc_cascade_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("d.cimp").to_string_lossy().into_owned();
    let report = dir.join("d.json");
    let out = cimc(&[
        "compile",
        &data("models/digits_cnn.onnx"),
        "--calib",
        &data("sets/digits_calib_x.npy"),
        "--cascade",
        "--report",
        &report.to_string_lossy(),
        "-o",
        &prog,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let layers = r["passes"]["cascade"]["layers"].as_array().expect("the cascade report");
    assert_eq!(r["passes"]["cascade"]["min_bits"], 2);
    assert_eq!(layers.len(), 3, "digits_cnn has two convs and a Gemm");
    let first = layers[0]["layer"].as_str().unwrap().to_string();

    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", &prog, "--data", &data_x(), "--labels", &data_y(), "--json"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        cimc(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let full = ok(&eval(&[]));
    assert!(full.get("switch_seconds").is_none());
    let at8 = ok(&eval(&["--cascade-wbits", "8"]));
    assert_eq!(at8["correct"], full["correct"], "the program's own width changes nothing");
    assert!(at8["switch_seconds"].as_f64().unwrap() >= 0.0);
    let at4 = ok(&eval(&["--cascade-wbits", "4"]));
    assert!(at4["top1"].as_f64().unwrap() > 80.0, "{at4}");

    // Per layer, from a file; the file's layer overrides --cascade-wbits.
    let toml = dir.join("w.toml");
    std::fs::write(&toml, format!("[layers.{first:?}]\nwbits = 3\n")).unwrap();
    let t = toml.to_string_lossy().into_owned();
    ok(&eval(&["--cascade-bits", &t]));
    ok(&eval(&["--cascade-wbits", "5", "--cascade-bits", &t]));

    // `run` takes the same flags.
    let y = dir.join("y.npy").to_string_lossy().into_owned();
    let out = cimc(&[
        "run",
        &prog,
        "--input",
        &data("sets/digits_test_x.npy"),
        "--output",
        &y,
        "--cascade-wbits",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Errors name what is wrong.
    user_error(&eval(&["--cascade-wbits", "1"]), &["--cascade-wbits", "2..=16"]);
    std::fs::write(&toml, "[layers.\"nope\"]\nwbits = 3\n").unwrap();
    user_error(&eval(&["--cascade-bits", &t]), &["'nope'", "no Conv or Gemm layer"]);
    std::fs::write(&toml, format!("[layers.{first:?}]\nabits = 3\n")).unwrap();
    user_error(&eval(&["--cascade-bits", &t]), &["abits", "only weight widths"]);
    let float = cimc(&[
        "eval",
        &data("models/digits_cnn.onnx"),
        "--data",
        &data_x(),
        "--labels",
        &data_y(),
        "--cascade-wbits",
        "4",
    ]);
    user_error(&float, &["digits_cnn.onnx", "compiled program"]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn data_x() -> String {
    data("sets/digits_test_x.npy")
}

fn data_y() -> String {
    data("sets/digits_test_y.npy")
}
