//! `cimc compile --calib` and `cimc run --input` on the inputs real exports have (issue 19):
//! a rank-0 input (tf2onnx's scalar add), several inputs given as one `.npz` keyed by input name
//! or `arr_k` (PyTorch's attention), with the program then run on the same files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn corpus(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/corpus")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

fn cimc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimc")).args(args).output().expect("the cimc binary runs")
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cimc-calib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn max_abs_diff(a: &cimc_ir::TensorData, b: &cimc_ir::TensorData) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_f32_vec().iter().zip(b.to_f32_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn a_rank_0_input_calibrates_on_its_one_sample_and_runs() {
    let model = corpus("models/tf2onnx_scalar_add.onnx");
    let x = corpus("ref/tf2onnx_scalar_add/input_0.npy");
    let prog = tmp("scalar.cimp");
    ok(&cimc(&["compile", &model, "--calib", &x, "-o", prog.to_str().unwrap()]));
    let y = tmp("scalar_y.npy");
    for m in [model.as_str(), prog.to_str().unwrap()] {
        ok(&cimc(&["run", m, "--input", &x, "--output", y.to_str().unwrap()]));
        let got = cimc::npy::read(&y).unwrap();
        let want =
            cimc::npy::read(&PathBuf::from(corpus("ref/tf2onnx_scalar_add/output_0.npy"))).unwrap();
        assert!(max_abs_diff(&got, &want) <= 0.02 * want.to_f32_vec()[0].abs().max(1.0), "{m}");
    }
}

#[test]
fn several_inputs_calibrate_and_run_from_one_npz() {
    let model = corpus("models/pt21_attention_sdp.onnx");
    let read = |k: usize| {
        cimc::npy::read(&PathBuf::from(corpus(&format!("ref/pt21_attention_sdp/input_{k}.npy"))))
            .unwrap()
    };
    let xs = [read(0), read(1), read(2)];
    let names = ["onnx::Reshape_0", "onnx::Reshape_1", "onnx::Reshape_2"];
    // Keyed by input name (given out of order), and by position as numpy.savez(f, *arrays).
    let by_name = tmp("by_name.npz");
    let arrays: Vec<_> = [2, 0, 1].iter().map(|&k| (names[k], &xs[k])).collect();
    cimc::npy::write_npz(&by_name, &arrays).unwrap();
    let by_position = tmp("by_position.npz");
    let arrays: Vec<_> = ["arr_0", "arr_1", "arr_2"].into_iter().zip(&xs).collect();
    cimc::npy::write_npz(&by_position, &arrays).unwrap();
    let want =
        cimc::npy::read(&PathBuf::from(corpus("ref/pt21_attention_sdp/output_0.npy"))).unwrap();
    let scale = want.to_f32_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
    for npz in [&by_name, &by_position] {
        let prog = tmp("attention.cimp");
        let npz = npz.to_str().unwrap();
        ok(&cimc(&["compile", &model, "--calib", npz, "-o", prog.to_str().unwrap()]));
        let y = tmp("attention_y.npy");
        ok(&cimc(&["run", prog.to_str().unwrap(), "--input", npz, "-o", y.to_str().unwrap()]));
        let got = cimc::npy::read(&y).unwrap();
        // W8A8 through two matrix products of activations and a softmax on codes.
        assert!(max_abs_diff(&got, &want) <= 0.1 * scale, "{npz}");
    }
    // One .npy for three inputs: a user error that says what to give.
    let one = corpus("ref/pt21_attention_sdp/input_0.npy");
    let out = cimc(&["compile", &model, "--calib", &one, "-o", tmp("x.cimp").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(".npz with one array per input"), "{err}");
}

#[test]
fn integer_inputs_calibrate_and_run_unchanged_through_an_embedding() {
    // Token ids (u8) cast to i64 and looking up rows of a constant embedding table, as PyTorch
    // exports an `nn.Embedding` on byte input.
    let text =
        "graph emb {\n  const @emb : f32[4,2] = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0, -2.0]\n  \
                input %ids : u8[1,3]\n  %w : i64[1,3] = cast(%ids) {to=i64} \"c\"\n  \
                %e : f32[1,3,2] = gather(@emb, %w) {axis=0} \"g\"\n  \
                %y : f32[1,3,2] = relu(%e) \"r\"\n  output %y\n}\n";
    let cir = tmp("emb.cir");
    std::fs::write(&cir, text).unwrap();
    let ids = tmp("ids.npy");
    cimc::npy::write(&ids, &cimc_ir::TensorData::from_u8(vec![2, 3], &[3, 0, 2, 1, 1, 0])).unwrap();
    let prog = tmp("emb.cimp");
    let (cir, ids, prog) = (cir.to_str().unwrap(), ids.to_str().unwrap(), prog.to_str().unwrap());
    ok(&cimc(&["compile", cir, "--calib", ids, "-o", prog]));
    let y = tmp("emb_y.npy");
    ok(&cimc(&["run", prog, "--input", ids, "--output", y.to_str().unwrap()]));
    let got = cimc::npy::read(&y).unwrap().to_f32_vec();
    let want = [3.0f32, 0.0, 0.5, 0.0, 0.0, 1.5, 2.0, 0.25, 2.0, 0.25, 0.5, 0.0];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 0.03, "{got:?} vs {want:?}");
    }
    // An i64 array of ids that fit u8 converts exactly; one that does not is a user error.
    let wide = tmp("ids64.npy");
    cimc::npy::write(&wide, &cimc_ir::TensorData::from_i64(vec![1, 3], &[3, 0, 300])).unwrap();
    let out = cimc(&["run", prog, "--input", wide.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("300 does not convert exactly"), "{err}");
}
