//! QONNX's general ops are read alike in each domain that writes them: Brevitas' older export
//! (`onnx.brevitas`) compiles to the same program as the QONNX export (`qonnx.custom_op.general`)
//! of the same model, without calibration data, since every activation is quantized by a Quant.

mod common;

use cimc::onnx::proto::ModelProto;
use common::{cimc, data, ok, tmp_dir, user_error};
use prost::Message;

/// The model with every node and opset of `from` moved to domain `to`.
fn with_domain(model: &[u8], from: &str, to: &str) -> Vec<u8> {
    let mut m = ModelProto::decode(model).expect("the vendored model decodes");
    let graph = m.graph.as_mut().expect("the model has a graph");
    let mut moved = 0;
    for n in graph.node.iter_mut().filter(|n| n.domain.as_deref() == Some(from)) {
        n.domain = Some(to.to_string());
        moved += 1;
    }
    assert!(moved > 0, "no node in domain {from}");
    for o in m.opset_import.iter_mut().filter(|o| o.domain.as_deref() == Some(from)) {
        o.domain = Some(to.to_string());
    }
    m.encode_to_vec()
}

#[test]
fn brevitas_and_finn_domains_compile_to_the_qonnx_program() {
    let dir = tmp_dir("qonnx_domains");
    let original = data("models/mnist_cnn_w4a4_qonnx.onnx");
    let bytes = std::fs::read(&original).expect("the vendored QONNX model");
    let program = |model: &str, tag: &str| {
        let out = dir.join(format!("{tag}.cimp"));
        ok(&cimc(&["compile", model, "-o", out.to_str().unwrap()]));
        std::fs::read(out).unwrap()
    };
    let want = program(&original, "qonnx");
    for domain in ["onnx.brevitas", "finn.custom_op.general"] {
        let path = dir.join(format!("{domain}.onnx"));
        std::fs::write(&path, with_domain(&bytes, "qonnx.custom_op.general", domain)).unwrap();
        assert!(program(path.to_str().unwrap(), domain) == want, "{domain}: another program");
    }
    // An op of no known domain is still refused, naming its domain.
    let path = dir.join("unknown.onnx");
    std::fs::write(&path, with_domain(&bytes, "qonnx.custom_op.general", "my.domain")).unwrap();
    let out =
        cimc(&["compile", path.to_str().unwrap(), "-o", dir.join("x.cimp").to_str().unwrap()]);
    user_error(&out, &["Quant", "my.domain"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The float-only QONNX ops (MultiThreshold here) are refused at compile with exit 1, naming
/// the node, never exit 2.
#[test]
fn float_only_qonnx_ops_are_refused_at_compile_by_name() {
    let dir = tmp_dir("qonnx_refused");
    let case = data("import_cases/qonnx_multithreshold/model.onnx");
    let x = dir.join("x.npy");
    cimc::npy::write(&x, &cimc_ir::TensorData::from_f32(vec![2, 3, 4, 4], &[0.5; 96])).unwrap();
    let out = cimc(&[
        "compile",
        &case,
        "--calib",
        x.to_str().unwrap(),
        "-o",
        dir.join("x.cimp").to_str().unwrap(),
    ]);
    user_error(&out, &["multi_threshold"]);
    std::fs::remove_dir_all(&dir).ok();
}
