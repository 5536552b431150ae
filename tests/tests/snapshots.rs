//! insta snapshots of the IR dumps of the small models: a change to the importer or the text
//! form shows up as a reviewable diff of these files.

use cimc::onnx::{self, ImportOptions};
use cimc_tests::data;

fn dump(model: &str) -> String {
    let g =
        onnx::import_file(&data().join(format!("models/{model}.onnx")), &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{model}: {e}"));
    g.to_string()
}

#[test]
fn dump_digits_cnn() {
    insta::assert_snapshot!(dump("digits_cnn"));
}

#[test]
fn dump_mnist_cnn() {
    insta::assert_snapshot!(dump("mnist_cnn"));
}

#[test]
fn dump_mnist_resnet() {
    insta::assert_snapshot!(dump("mnist_resnet"));
}

#[test]
fn dump_mnist_cnn_int8_qdq() {
    insta::assert_snapshot!(dump("mnist_cnn_int8_qdq"));
}

/// The same input gives byte-identical dumps.
#[test]
fn dumps_are_deterministic() {
    assert_eq!(dump("mnist_resnet"), dump("mnist_resnet"));
}
