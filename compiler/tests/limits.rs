//! Import limits: declared sizes are checked against the bytes present before anything is
//! allocated, external data cannot leave the model's folder, and the caps on nodes, graph depth
//! and tensor size refuse a file with a message naming the file, the node or tensor, and the
//! flag that raises the cap.

use bytes::Bytes;
use cimc::onnx::proto::{
    self, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use cimc::onnx::{self as importer, ImportLimits, ImportOptions};
use prost::Message;
use std::path::{Path, PathBuf};

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| proto::tensor_shape_proto::Dimension {
            value: Some(Dim::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(proto::type_proto::Value::TensorType(proto::type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, inputs: Vec<ValueInfoProto>, inits: Vec<TensorProto>) -> Vec<u8> {
    let out = nodes.last().map(|n| n.output[0].clone()).unwrap_or_default();
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            input: inputs,
            output: vec![ValueInfoProto { name: Some(out), ..Default::default() }],
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `x[1,4] + w` with `w` as given.
fn add_model(w: TensorProto) -> Vec<u8> {
    model(vec![node("Add", "add", &["x", "w"], &["y"])], vec![vi("x", &[1, 4])], vec![w])
}

/// A fresh folder under the system's temporary folder.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cimc-limits-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn import_err(path: &Path, bytes: Vec<u8>, opts: &ImportOptions) -> String {
    std::fs::write(path, bytes).expect("write model");
    importer::import_file(path, opts).expect_err("the model must be refused").to_string()
}

/// An f32 tensor of 2^30 elements (4 GiB) declared, 16 bytes present.
fn four_gb_tensor() -> TensorProto {
    TensorProto {
        name: Some("w".into()),
        data_type: Some(DataType::Float as i32),
        dims: vec![1 << 30],
        raw_data: Some(Bytes::from(vec![0u8; 16])),
        ..Default::default()
    }
}

#[test]
fn a_4gb_declared_tensor_in_a_1kb_file_is_refused() {
    let dir = temp_dir("4gb");
    let bytes = add_model(four_gb_tensor());
    assert!(bytes.len() < 1024, "the model is {} bytes", bytes.len());
    let path = dir.join("big.onnx");
    let e = import_err(&path, bytes, &ImportOptions::default());
    assert!(e.starts_with(&path.display().to_string()), "names the file: {e}");
    assert!(
        e.contains("tensor 'w'") && e.contains("needs 4294967296 bytes of raw_data, found 16"),
        "{e}"
    );
    // The same tensor alone in a .pb file.
    let pb = dir.join("big.pb");
    std::fs::write(&pb, four_gb_tensor().encode_to_vec()).unwrap();
    let e = importer::read_tensor_pb(&pb).unwrap_err().to_string();
    assert!(e.contains("big.pb") && e.contains("needs 4294967296 bytes"), "{e}");
    // Typed fields: the count of entries is checked, not the declared size allocated.
    let typed = TensorProto { raw_data: None, float_data: vec![0.0; 4], ..four_gb_tensor() };
    let e = import_err(&path, add_model(typed), &ImportOptions::default());
    assert!(e.contains("1073741824 elements has 4 entries in float_data"), "{e}");
}

#[test]
fn a_4gb_npy_header_is_refused() {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824,), }\n";
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&[0u8; 16]);
    let path = temp_dir("npy").join("big.npy");
    std::fs::write(&path, &b).unwrap();
    let e = cimc::npy::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("big.npy") && e.contains("4294967296 bytes of data, the file holds 16"),
        "{e}"
    );
}

fn external(location: &str, offset: &str) -> TensorProto {
    TensorProto {
        name: Some("w".into()),
        data_type: Some(DataType::Float as i32),
        dims: vec![1, 4],
        data_location: Some(1),
        external_data: vec![
            StringStringEntryProto { key: Some("location".into()), value: Some(location.into()) },
            StringStringEntryProto { key: Some("offset".into()), value: Some(offset.into()) },
        ],
        ..Default::default()
    }
}

#[test]
fn external_data_escaping_the_model_folder_is_refused() {
    let dir = temp_dir("ext");
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::write(dir.join("outside.bin"), [0u8; 16]).unwrap();
    std::fs::write(model_dir.join("w.bin"), [0u8; 16]).unwrap();
    let path = model_dir.join("m.onnx");
    let opts = ImportOptions::default();

    let e = import_err(&path, add_model(external("../../etc/passwd", "0")), &opts);
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(
        e.contains("tensor 'w': external data location '../../etc/passwd' must be a relative path without '..'"),
        "{e}"
    );
    let e = import_err(&path, add_model(external("/etc/passwd", "0")), &opts);
    assert!(e.contains("'/etc/passwd' must be a relative path"), "{e}");
    let e = import_err(&path, add_model(external("w.bin", "18446744073709551615")), &opts);
    assert!(e.contains("lie beyond its 16 bytes"), "{e}");
    let e = import_err(&path, add_model(external("w.bin", "99999999999999999999999")), &opts);
    assert!(e.contains("bad external data offset"), "{e}");
    // Within the folder it is read.
    std::fs::write(&path, add_model(external("w.bin", "0"))).unwrap();
    importer::import_file(&path, &opts).expect("external data inside the folder");
    // A symbolic link inside the folder that leads out of it.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.join("outside.bin"), model_dir.join("link.bin")).unwrap();
        let e = import_err(&path, add_model(external("link.bin", "0")), &opts);
        assert!(e.contains("'link.bin' leads out of the model's folder"), "{e}");
    }
}

/// A chain of `n` Relu nodes.
fn chain(n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..=n).map(|i| format!("v{i}")).collect();
    let nodes =
        (0..n).map(|i| node("Relu", &format!("relu{i}"), &[&names[i]], &[&names[i + 1]])).collect();
    model(nodes, vec![vi("v0", &[1, 4])], vec![])
}

#[test]
fn node_and_depth_caps_name_the_node_and_the_flag() {
    let dir = temp_dir("caps");
    let path = dir.join("chain.onnx");
    std::fs::write(&path, chain(50)).unwrap();
    let g = importer::import_file(&path, &ImportOptions::default()).expect("default caps");
    assert_eq!(g.node_count(), 50);

    let limits = ImportLimits { max_nodes: 49, ..ImportLimits::default() };
    let e = import_err(&path, chain(50), &ImportOptions { limits, ..Default::default() });
    assert!(e.contains("50 nodes, above the limit of 49 (raise it with --max-nodes)"), "{e}");

    let limits = ImportLimits { max_depth: 10, ..ImportLimits::default() };
    let e = import_err(&path, chain(50), &ImportOptions { limits, ..Default::default() });
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(
        e.contains("node 'relu10' lies 11 nodes deep, above the limit of 10 (raise it with --max-graph-depth)"),
        "{e}"
    );
}

#[test]
fn tensor_cap_covers_weights_inputs_and_inferred_values() {
    let dir = temp_dir("tensor");
    let path = dir.join("m.onnx");
    let w = TensorProto {
        name: Some("w".into()),
        data_type: Some(DataType::Float as i32),
        dims: vec![1, 4],
        raw_data: Some(Bytes::from(vec![0u8; 16])),
        ..Default::default()
    };
    let limits = ImportLimits { max_tensor_bytes: 15, ..ImportLimits::default() };
    let opts = ImportOptions { limits, ..Default::default() };
    let e = import_err(&path, add_model(w.clone()), &opts);
    assert!(
        e.contains("tensor 'w'")
            && e.contains(
                "is 16 bytes, above the limit of 15 bytes (raise it with --max-tensor-bytes)"
            ),
        "{e}"
    );
    // A runtime input over the cap.
    let relu = model(vec![node("Relu", "r", &["x"], &["y"])], vec![vi("x", &[1, 4])], vec![]);
    let e = import_err(&path, relu, &opts);
    assert!(e.contains("graph input 'x'") && e.contains("--max-tensor-bytes"), "{e}");
    // An inferred value over the cap: [1,4] x [4,1] inputs broadcast to [4,4] = 64 bytes.
    let limits = ImportLimits { max_tensor_bytes: 32, ..ImportLimits::default() };
    let bcast = model(
        vec![node("Add", "wide", &["a", "b"], &["y"])],
        vec![vi("a", &[1, 4]), vi("b", &[4, 1])],
        vec![],
    );
    let e = import_err(&path, bcast, &ImportOptions { limits, ..Default::default() });
    assert!(
        e.contains("node 'wide' (Add)") && e.contains("64 bytes, above the limit of 32"),
        "{e}"
    );
}

#[test]
fn cli_flags_raise_and_lower_the_caps() {
    let dir = temp_dir("cli");
    let path = dir.join("chain.onnx");
    std::fs::write(&path, chain(30)).unwrap();
    let cimc = env!("CARGO_BIN_EXE_cimc");
    let run =
        |args: &[&str]| std::process::Command::new(cimc).args(args).output().expect("cimc runs");
    let p = path.to_str().unwrap();
    let out = run(&["dump", p, "--max-graph-depth", "20"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-graph-depth") && err.contains("chain.onnx"), "{err}");
    let out = run(&["--max-nodes", "29", "dump", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-nodes"));
    let out = run(&["dump", p, "--max-graph-depth", "30", "--max-nodes", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
