//! The command line against an unlucky or hostile environment (issue 25): outputs pointed at
//! inputs, special files, a model truncated while it is read, full disks, closed pipes, names
//! that would drive a terminal. Every case ends with exit 0 or 1 (or the conventional death by
//! SIGPIPE) and leaves no partial output in place of a good one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn cimc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimc")).args(args).output().expect("the cimc binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("invariant: test paths are UTF-8")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cimc-hostile-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("invariant: the temp dir is writable");
    dir
}

/// Exit status 1 with one `error:` line containing every needle, and no panic.
fn assert_user_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks '{n}': {err}");
    }
}

/// The files of `dir`, sorted: what a failed command left behind.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("invariant: the scratch dir exists")
        .map(|e| e.expect("invariant: listable").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn an_output_that_is_an_input_is_refused_before_anything_is_written() {
    let dir = scratch("same");
    let model = dir.join("m.onnx");
    std::fs::copy(data().join("models/digits_cnn.onnx"), &model).expect("invariant: copyable");
    let before = std::fs::read(&model).expect("invariant: readable");
    let link = dir.join("link.onnx");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&model, &link).expect("invariant: symlinks work here");
    let calib = data().join("sets/digits_calib_x.npy");
    let cases: Vec<Vec<&str>> = vec![
        vec!["dump", s(&model), "-o", s(&model)],
        vec!["dump", s(&model), "-o", s(&link)],
        vec!["compile", s(&model), "--calib", s(&calib), "-o", s(&model)],
        vec!["compile", s(&model), "--calib", s(&calib), "-o", "x.cimp", "--listing", s(&model)],
        vec!["compile", s(&model), "--calib", s(&calib), "-o", "x.cimp", "--report", s(&model)],
    ];
    for args in cases {
        let out = cimc(&args);
        assert_user_error(&out, &["is the input", "m.onnx"]);
        assert_eq!(std::fs::read(&model).expect("invariant: readable"), before, "{args:?}");
    }
    let x = dir.join("x.cimp");
    let out = cimc(&["compile", s(&model), "-o", s(&x), "--listing", s(&x)]);
    assert_user_error(&out, &["same file"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failed_command_leaves_the_previous_outputs_untouched() {
    let dir = scratch("keep");
    let model = data().join("models/digits_cnn.onnx");
    let out_path = dir.join("digits.cimp");
    std::fs::write(&out_path, b"previous good output").expect("invariant: writable");
    // Fails after import (a stream needs a target): checked before any output is written.
    let out = cimc(&["compile", s(&model), "--emit", "stream", "-o", s(&out_path)]);
    assert_user_error(&out, &["--target"]);
    // Fails late, in calibration: the calibration data do not fit the model.
    let bad_calib = data().join("sets/digits_test_y.npy");
    let out = cimc(&["compile", s(&model), "--calib", s(&bad_calib), "-o", s(&out_path)]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&out_path).expect("readable"), b"previous good output");
    assert_eq!(listing(&dir), vec!["digits.cimp".to_string()], "no temporary file is left");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dump_writes_the_text_and_its_data_file_together() {
    let dir = scratch("pair");
    let cir = dir.join("g.cir");
    let out = cimc(&["dump", s(&data().join("models/digits_cnn.onnx")), "-o", s(&cir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listing(&dir), vec!["g.cir".to_string(), "g.cir.data".to_string()]);
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(target_os = "linux")]
#[test]
fn special_files_are_refused_without_hanging() {
    let dir = scratch("special");
    let model = data().join("models/digits_cnn.onnx");
    let fifo = dir.join("fifo.npy");
    let made = Command::new("mkfifo").arg(&fifo).status().is_ok_and(|st| st.success());
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", s(&model), "--input", "/dev/zero"], "/dev/zero"),
        (vec!["compile", s(&model), "--calib", "/dev/zero", "-o", "/dev/null"], "/dev/zero"),
        (vec!["compile", s(&model), "--target", "/dev/zero", "-o", "/dev/null"], "/dev/zero"),
        (vec!["dump", "/dev/zero"], "/dev/zero"),
    ];
    if made {
        cases.push((vec!["run", s(&model), "--input", s(&fifo)], "fifo.npy"));
    }
    for (args, file) in cases {
        let out = cimc(&args);
        assert_user_error(&out, &[file]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_a_user_error_naming_the_file() {
    let model = data().join("models/digits_cnn.onnx");
    let out = cimc(&["dump", s(&model), "-o", "/dev/full"]);
    // /dev/full is a device: refused as an output's temporary file cannot be made beside it,
    // or the write fails with ENOSPC; either way exit 1 naming it.
    assert_user_error(&out, &["/dev/full"]);
    // Standard output on a full device.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    if let Ok(full) = full {
        let out = Command::new(env!("CARGO_BIN_EXE_cimc"))
            .args(["dump", s(&model)])
            .stdout(Stdio::from(full))
            .output()
            .expect("the cimc binary runs");
        assert_user_error(&out, &["standard output"]);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let model = data().join("models/digits_cnn.onnx");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimc"))
        .args(["dump", s(&model)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cimc binary runs");
    drop(child.stdout.take()); // the reader goes away at once, as `| head -0` would
    let out = child.wait_with_output().expect("cimc ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "nothing on stderr: {err}");
    let by_sigpipe = out.status.signal() == Some(13);
    assert!(by_sigpipe || out.status.success(), "{:?}", out.status);
}

#[test]
fn names_from_a_model_are_escaped_when_printed() {
    // An unsupported op whose node name carries an escape sequence and a BiDi override.
    let dir = scratch("names");
    let path = dir.join("evil.onnx");
    std::fs::write(&path, evil_model()).expect("invariant: writable");
    let out = cimc(&["dump", s(&path)]);
    assert_user_error(&out, &["evil.onnx"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{202e}'), "{err:?}");
    assert!(err.contains("\\u{1b}") && err.contains("\\u{202e}"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A model of one node of an unknown op, named with terminal control characters: the bytes of
/// its ModelProto, written by hand (field numbers of onnx.proto).
fn evil_model() -> Vec<u8> {
    fn field(num: u32, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8];
        let mut n = bytes.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend_from_slice(bytes);
        v
    }
    let name = "x\u{1b}[31mred\u{202e}txt.exe\rY\nZ";
    let mut node = field(1, b"in");
    node.extend(field(2, b"out"));
    node.extend(field(3, name.as_bytes()));
    node.extend(field(4, b"NoSuchOp"));
    let value_info = |n: &[u8]| {
        // ValueInfoProto { name, type { tensor_type { elem_type: 1, shape { dim { 1 } } } } }
        let dim = field(1, &[0x08, 0x01]);
        let shape = field(2, &dim);
        let mut tensor = vec![0x08, 0x01];
        tensor.extend(shape);
        let ty = field(1, &tensor);
        let mut v = field(1, n);
        v.extend(field(2, &ty));
        v
    };
    let mut graph = field(1, &node);
    graph.extend(field(2, b"g"));
    graph.extend(field(11, &value_info(b"in")));
    graph.extend(field(12, &value_info(b"out")));
    let mut model = vec![0x08, 0x08]; // ir_version 8
    model.extend(field(7, &graph));
    let opset = [0x10, 0x11]; // OperatorSetIdProto { version: 17 }
    model.extend(field(8, &opset));
    model
}

/// Writes `data` (f32 or i64, by `descr`) as a version-1 `.npy` file.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple =
        if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).expect("invariant: writable");
}

#[test]
fn values_that_cannot_be_right_are_refused_naming_the_file() {
    let dir = scratch("values");
    let model = data().join("models/digits_cnn.onnx");
    // Calibration data with a NaN.
    let calib = dir.join("nan_calib.npy");
    let mut x: Vec<f32> = vec![0.5; 2 * 64];
    x[70] = f32::NAN;
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&calib, "<f4", &[2, 1, 8, 8], &bytes);
    let out = cimc(&["compile", s(&model), "--calib", s(&calib), "-o", s(&dir.join("x.cimp"))]);
    assert_user_error(&out, &["nan_calib.npy", "finite"]);
    // Labels outside the model's 10 classes, and negative ones.
    let xs = dir.join("x.npy");
    let one: Vec<u8> = [0.5f32; 64].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&xs, "<f4", &[1, 1, 8, 8], &one);
    for label in [10i64, -1, 1_000_000_000_000] {
        let ys = dir.join("y.npy");
        write_npy(&ys, "<i8", &[1], &label.to_le_bytes());
        let out = cimc(&["eval", s(&model), "--data", s(&xs), "--labels", s(&ys)]);
        assert_user_error(&out, &["y.npy", "10 classes"]);
    }
    // Zero samples, by the data or by the options.
    let empty = dir.join("empty.npy");
    write_npy(&empty, "<f4", &[0, 1, 8, 8], &[]);
    assert_user_error(&cimc(&["run", s(&model), "--input", s(&empty)]), &["empty.npy"]);
    assert_user_error(&cimc(&["dump", s(&model), "--batch", "0"]), &["--batch"]);
    let shape = "input=0,1,8,8";
    assert_user_error(&cimc(&["dump", s(&model), "--input-shape", shape]), &["--input-shape"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A float graph of one Gemm (weight `w`, 2×2) and a QDQ pair whose scale is `scale`.
fn gemm_cir(w: &str, scale: &str) -> String {
    format!(
        "graph bad {{\n  input %x : f32[1,2]\n  const @w : f32[2,2] = [{w}]\n  \
         const @s : f32[] = [{scale}]\n  const @z : i8[] = [0]\n  \
         %y : f32[1,2] = gemm(%x, @w) {{alpha=1.0, beta=1.0, trans_a=false, trans_b=false}} \"fc\"\n  \
         %q : i8[1,2] = quantize_linear(%y, @s, @z) {{block_size=0, saturate=true, to=i8}} \"q\"\n  \
         %d : f32[1,2] = dequantize_linear(%q, @s, @z) {{block_size=0}} \"dq\"\n  output %d\n}}\n"
    )
}

#[test]
fn non_finite_weights_and_bad_scales_are_user_errors_naming_the_node() {
    let dir = scratch("weights");
    let calib = dir.join("calib.npy");
    let x: Vec<u8> = [0.5f32, -0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&calib, "<f4", &[1, 2], &x);
    let cases = [
        ("nan, 1.0, 2.0, 3.0", "0.1", "fc", "NaN"),
        ("inf, 1.0, 2.0, 3.0", "0.1", "fc", "inf"),
        ("1.0, 1.0, 2.0, 3.0", "0.0", "q", "positive normal"),
        ("1.0, 1.0, 2.0, 3.0", "-0.5", "q", "positive normal"),
        ("1.0, 1.0, 2.0, 3.0", "1e-40", "q", "positive normal"),
        ("1.0, 1.0, 2.0, 3.0", "nan", "q", "positive normal"),
    ];
    for (i, (w, scale, node, needle)) in cases.into_iter().enumerate() {
        let cir = dir.join(format!("bad{i}.cir"));
        std::fs::write(&cir, gemm_cir(w, scale)).expect("invariant: writable");
        let out_path = dir.join("x.cimp");
        let out = cimc(&["compile", s(&cir), "--calib", s(&calib), "-o", s(&out_path)]);
        assert_user_error(&out, &[&format!("node '{node}'"), needle]);
        assert!(!out_path.exists(), "nothing written");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn huge_counts_are_refused_at_once() {
    let model = data().join("models/digits_cnn.onnx");
    let calib = data().join("sets/digits_calib_x.npy");
    let out = cimc(&[
        "compile",
        s(&model),
        "--calib",
        s(&calib),
        "--target",
        "isaac",
        "--arrays",
        "100000000",
        "-o",
        "/dev/null",
    ]);
    assert_user_error(&out, &["--arrays 100000000", "limit"]);
}
