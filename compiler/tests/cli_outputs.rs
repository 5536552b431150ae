//! `cimc run` on a model with several outputs: one `--output` per output, or one `.npz` with
//! every output under its name in the model, for a float model and for its program.

mod common;

use common::{cimc, data, ok, tmp_dir, user_error};
use std::path::Path;

/// The members of a stored (uncompressed) zip file, as (name, bytes), from its local headers.
fn zip_members(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |o: usize| u16::from_le_bytes([zip[o], zip[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes([zip[o], zip[o + 1], zip[o + 2], zip[o + 3]]);
    let mut members = Vec::new();
    let mut at = 0;
    while u32_at(at) == 0x0403_4b50 {
        assert_eq!(u16_at(at + 8), 0, "member {} is compressed", members.len());
        let (size, name_len, extra_len) =
            (u32_at(at + 18) as usize, u16_at(at + 26), u16_at(at + 28));
        let name = String::from_utf8(zip[at + 30..at + 30 + name_len].to_vec()).unwrap();
        let start = at + 30 + name_len + extra_len;
        members.push((name, zip[start..start + size].to_vec()));
        at = start + size;
    }
    members
}

/// Runs `model` on the case's input, writing each output to a .npy and all to a .npz, and
/// checks that the .npz holds exactly those .npy files under the model's output names.
fn npz_holds_every_output(model: &Path, dir: &Path, tag: &str) {
    let x = data("import_cases/two_outputs/x.npy");
    let (logits, aux, npz) = (
        dir.join(format!("{tag}_logits.npy")),
        dir.join(format!("{tag}_aux.npy")),
        dir.join(format!("{tag}.npz")),
    );
    let model = model.to_str().unwrap();
    ok(&cimc(&[
        "run",
        model,
        "--input",
        &x,
        "--output",
        logits.to_str().unwrap(),
        "--output",
        aux.to_str().unwrap(),
    ]));
    ok(&cimc(&["run", model, "--input", &x, "-o", npz.to_str().unwrap()]));
    let members = zip_members(&std::fs::read(&npz).unwrap());
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["logits.npy", "aux.npy"], "{tag}");
    assert_eq!(members[0].1, std::fs::read(&logits).unwrap(), "{tag}: logits");
    assert_eq!(members[1].1, std::fs::read(&aux).unwrap(), "{tag}: aux");
    let logits = cimc::npy::read(&logits).unwrap();
    assert_eq!(logits.shape(), [4, 10], "{tag}");
}

#[test]
fn run_writes_every_output_of_a_float_model_and_of_its_program() {
    let dir = tmp_dir("outputs");
    let model = Path::new(&data("import_cases/two_outputs/model.onnx")).to_path_buf();
    npz_holds_every_output(&model, &dir, "float");
    let program = dir.join("two_outputs.cimp");
    ok(&cimc(&[
        "compile",
        model.to_str().unwrap(),
        "--calib",
        &data("import_cases/two_outputs/x.npy"),
        "-o",
        program.to_str().unwrap(),
    ]));
    npz_holds_every_output(&program, &dir, "program");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_refuses_a_count_of_outputs_that_fits_neither_form() {
    let dir = tmp_dir("outputs_refused");
    let model = data("import_cases/two_outputs/model.onnx");
    let x = data("import_cases/two_outputs/x.npy");
    let one = dir.join("one.npy");
    let out = cimc(&["run", &model, "--input", &x, "--output", one.to_str().unwrap()]);
    user_error(&out, &["2 output(s) (logits, aux), 1 --output", "one .npz for all"]);
    assert!(!one.exists(), "nothing is written when the paths do not fit");
    std::fs::remove_dir_all(&dir).ok();
}

/// A float16 model (onnxconverter-common's converter) runs on a float16 `.npy` (`<f2`) and
/// writes f32 outputs: those of onnxruntime on the model widened to f32.
#[test]
fn a_float16_model_runs_on_a_float16_npy_and_writes_f32() {
    let dir = tmp_dir("outputs_f16");
    let (logits, aux) = (dir.join("logits.npy"), dir.join("aux.npy"));
    ok(&cimc(&[
        "run",
        &data("import_cases/f16_cnn/model.onnx"),
        "--input",
        &data("import_cases/f16_cnn/x_f16.npy"),
        "--output",
        logits.to_str().unwrap(),
        "--output",
        aux.to_str().unwrap(),
    ]));
    for (k, got) in [logits, aux].iter().enumerate() {
        let got = cimc::npy::read(got).unwrap();
        let want = data(&format!("import_cases/f16_cnn/test_data_set_0/output_{k}.pb"));
        let (_, want) = cimc::onnx::read_tensor_pb(Path::new(&want)).unwrap();
        assert_eq!(got.dtype(), cimc_ir::DType::F32);
        assert_eq!(got.shape(), want.shape());
        for (g, w) in got.to_f32_vec().iter().zip(want.to_f32_vec()) {
            assert!((g - w).abs() <= 1e-5 + 1e-5 * w.abs(), "output {k}: {g} vs {w}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
