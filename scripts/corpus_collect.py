#!/usr/bin/env python3
"""Collects the corpus of real exports (issue 19) from fetched repository snapshots.

Usage: corpus_collect.py MIRROR_DIR CORPUS_DIR [--repo-root ROOT]
       corpus_collect.py --expect OUTCOMES.json

The second form sets the manifest's expected outcomes (expect_*) to the outcomes the
model_coverage example wrote with --outcomes (a stage that was not run keeps its expectation;
refusal messages are cut to their first 100 characters, the substring the test looks for).

MIRROR_DIR holds bare git snapshots as `<owner>+<name>/repo` (what the `fetch` tool brings);
CORPUS_DIR (e.g. /work/corpus) receives every model as `models/<id>.onnx`. Models whose licence
allows it and that are at most 2 MB are also copied to ROOT/tests/data/corpus/models/ (at most
25 MB in all). The manifest ROOT/tests/data/corpus/corpus.toml is rewritten with each model's
provenance (repository, path, commit, licence, exporter, opset, size, sha256); the expected
outcomes already in it are kept (`expect_*` keys), new models start with none (the test then
reports what happens and asks for the manifest to be updated).

onnxruntime's quantizer is an exporter too: `ORT_QUANT` models are made here from a collected
float model with onnxruntime.quantization.quantize_static (QDQ or QOperator, per-channel int8,
MinMax), calibrated on seeded normal inputs — the only models of the corpus made locally.
Needs onnx, onnxruntime, numpy; Python >= 3.11 (tomllib).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import zlib

import numpy as np
import onnx

# The repositories' licences, read from their LICENSE files.
LICENSES = {
    "onnx/onnx": "Apache-2.0",
    "onnx/tutorials": "Apache-2.0",
    "fastmachinelearning/qonnx": "Apache-2.0",
    "Xilinx/finn": "BSD-3-Clause",
    "kraiskil/onnx2c": "onnx2c licence (use and distribute freely)",
    "microsoft/onnxconverter-common": "MIT",
    "sonos/tract": "Apache-2.0 OR MIT",
    "fastmachinelearning/example-models": "none stated (not redistributable)",
}
# Licences under which a model may be copied into this repository (Apache-2.0 project).
VENDORABLE = {"Apache-2.0", "BSD-3-Clause", "MIT", "Apache-2.0 OR MIT",
              "onnx2c licence (use and distribute freely)"}

L = "onnx/backend/test/data/light/"
PC = "onnx/backend/test/data/pytorch-converted/"
PO = "onnx/backend/test/data/pytorch-operator/"
Q = "src/qonnx/data/onnx/"
EM = "onnx/"
SN = "test/simple_networks/"
TC = "onnx/test_cases/"

# (id, repository, path, exporter, kind, extra manifest keys)
CANDIDATES = [
    ("caffe2_alexnet", "onnx/onnx", L + "light_bvlc_alexnet.onnx", "onnx-caffe2", "CNN", {}),
    ("caffe2_densenet121", "onnx/onnx", L + "light_densenet121.onnx", "onnx-caffe2", "CNN", {"slow": True}),
    ("caffe2_inception_v1", "onnx/onnx", L + "light_inception_v1.onnx", "onnx-caffe2", "CNN", {"slow": True}),
    ("caffe2_inception_v2", "onnx/onnx", L + "light_inception_v2.onnx", "onnx-caffe2", "CNN", {"slow": True}),
    ("caffe2_resnet50", "onnx/onnx", L + "light_resnet50.onnx", "onnx-caffe2", "CNN", {"slow": True}),
    ("caffe2_shufflenet", "onnx/onnx", L + "light_shufflenet.onnx", "onnx-caffe2", "CNN", {}),
    ("caffe2_squeezenet", "onnx/onnx", L + "light_squeezenet.onnx", "onnx-caffe2", "CNN", {}),
    ("caffe2_vgg19", "onnx/onnx", L + "light_vgg19.onnx", "onnx-caffe2", "CNN", {"slow": True}),
    ("caffe2_zfnet512", "onnx/onnx", L + "light_zfnet512.onnx", "onnx-caffe2", "CNN", {"slow": True}),
    ("pt03_conv2d", "onnx/onnx", PC + "test_Conv2d/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_conv1d", "onnx/onnx", PC + "test_Conv1d/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_conv2d_depthwise", "onnx/onnx", PC + "test_Conv2d_depthwise_with_multiplier/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_linear", "onnx/onnx", PC + "test_Linear/model.onnx", "PyTorch 0.3", "MLP", {}),
    ("pt03_linear_no_bias", "onnx/onnx", PC + "test_Linear_no_bias/model.onnx", "PyTorch 0.3", "MLP", {}),
    ("pt03_batchnorm2d", "onnx/onnx", PC + "test_BatchNorm2d_eval/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_prelu2d", "onnx/onnx", PC + "test_PReLU_2d_multiparam/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_pixelshuffle", "onnx/onnx", PC + "test_PixelShuffle/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_convtranspose2d", "onnx/onnx", PC + "test_ConvTranspose2d/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_maxpool2d", "onnx/onnx", PC + "test_MaxPool2d/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_avgpool2d", "onnx/onnx", PC + "test_AvgPool2d/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_selu", "onnx/onnx", PC + "test_SELU/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_glu", "onnx/onnx", PC + "test_GLU/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_softmax", "onnx/onnx", PC + "test_Softmax/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt03_operator_conv", "onnx/onnx", PO + "test_operator_conv/model.onnx", "PyTorch 0.3", "layer",
     {"vendor": False}),
    ("pt03_instancenorm", "onnx/onnx", PO + "test_operator_symbolic_override/model.onnx", "PyTorch 0.3", "layer", {}),
    ("pt02_super_resolution", "onnx/tutorials", "tutorials/assets/super_resolution.onnx", "PyTorch 0.2", "super-resolution",
     {"reference": "none: onnxruntime refuses IR version 1 (no opset_import)"}),
    ("cntk_mnist", "fastmachinelearning/qonnx", Q + "mnist-conv/model.onnx", "CNTK", "CNN", {}),
    ("pt22_espcn_resize", "fastmachinelearning/qonnx", Q + "bsd300x3-espcn/nn_resize/float_model.onnx", "PyTorch 2.2", "super-resolution", {}),
    ("brevitas_espcn_resize", "fastmachinelearning/qonnx", Q + "bsd300x3-espcn/nn_resize/quant_model.onnx", "Brevitas (QONNX)", "super-resolution, quantized", {"reference": "qonnx"}),
    ("pt112_espcn_subpixel", "fastmachinelearning/qonnx", Q + "bsd300x3-espcn/subpixel/float_model.onnx", "PyTorch 1.12", "super-resolution", {}),
    ("brevitas_espcn_subpixel", "fastmachinelearning/qonnx", Q + "bsd300x3-espcn/subpixel/quant_model.onnx", "Brevitas (QONNX)", "super-resolution, quantized", {"reference": "qonnx"}),
    ("brevitas_eltwise_chanlast", "fastmachinelearning/qonnx", Q + "eltwise_chanlast_testcase.onnx", "Brevitas (QONNX)", "CNN, quantized",
     {"reference": "qonnx", "vendor": False}),
    ("qonnx_residual_block", "fastmachinelearning/qonnx", Q + "residual_block_clean.onnx", "onnx helper (QONNX tests)", "CNN", {}),
    ("pt21_attention_sdp", "fastmachinelearning/qonnx", Q + "matmul_update/sdp.onnx", "PyTorch 2.1", "attention", {}),
    ("brevitas_fp8_gemm", "fastmachinelearning/qonnx", Q + "floatquant_exec/qonnx_act_weight_fp8.onnx", "Brevitas (QONNX)", "MLP, quantized fp8", {"reference": "qonnx"}),
    ("finn_tfc_w1a1", "Xilinx/finn", "src/finn/qnn-data/build_dataflow/model.onnx", "FINN (Brevitas, streamlined)", "MLP, quantized", {"reference": "qonnx"}),
    ("pt17_mnist_cnn", "kraiskil/onnx2c", "examples/atmega_mnist/mnist.simplified.onnx", "PyTorch 1.7", "CNN", {}),
    ("pt17_mnist_mlp", "kraiskil/onnx2c", "test/mnist/pytorch.onnx", "PyTorch 1.7", "MLP", {}),
    ("keras2onnx_conv_3ch", "kraiskil/onnx2c", SN + "conv_3ch.onnx", "keras2onnx", "CNN", {}),
    ("keras2onnx_conv_maxpool", "kraiskil/onnx2c", SN + "conv_k2_maxpool_k2.onnx", "keras2onnx", "CNN", {}),
    ("keras2onnx_lstm", "kraiskil/onnx2c", SN + "lstm_k1_b1_r1.onnx", "keras2onnx", "RNN", {"input_shape": [[2, 3, 5]]}),
    ("keras2onnx_tfl_helloworld", "kraiskil/onnx2c", "test/tfl_helloworld/model.onnx", "keras2onnx", "MLP", {}),
    ("keras2onnx_velardo9", "kraiskil/onnx2c", "test/velardo/lesson9.onnx", "keras2onnx", "MLP", {}),
    ("keras2onnx_velardo14", "kraiskil/onnx2c", "test/velardo/lesson14.onnx", "keras2onnx", "MLP", {}),
    ("tf2onnx_scalar_add", "kraiskil/onnx2c", SN + "scalar_add.onnx", "tf2onnx", "layer", {}),
    ("pt110_image_classifier", "microsoft/onnxconverter-common", "tests/data/image_classifier32.onnx", "PyTorch 1.10", "CNN", {}),
    ("onnxmltools_keras_segnet", "microsoft/onnxconverter-common", "tests/data/test_model_0_no_opt.onnx", "OnnxMLTools (Keras)", "CNN, segmentation", {"input_shape": [[1, 200, 320]],
     "reference": "none: onnxruntime fails on the declared input shape (Concat: 200 vs 201)"}),
    ("keras2onnx_conv_lstm", "microsoft/onnxconverter-common", "tests/data/test_model_1_no_opt.onnx", "keras2onnx", "RNN", {}),
    ("tf2onnx_keras_mlp", "sonos/tract", "examples/keras-tract-tf2/example.onnx", "tf2onnx", "MLP", {}),
    ("pt15_bidi_lstm", "sonos/tract", TC + "byte_sb_bidi_lstm/model.onnx", "PyTorch 1.5", "RNN", {"input_shape": [[1, 16]], "int_high": 256}),
    ("pt19_deconv_group", "sonos/tract", TC + "deconv_group/model.onnx", "PyTorch 1.9", "layer", {}),
    ("snips_qtdnn", "sonos/tract", TC + "qtdnn_10x5_101_i32_biases/model.onnx", "snips (QOperator)", "TDNN, quantized", {"input_shape": [[8, 10]]}),
    ("snips_qlstm", "sonos/tract", TC + "qlstm_3-2-3_T3_S1/model.onnx", "snips (QDQ + Scan)", "RNN, quantized", {"input_shape": [[3, 3]]}),
    ("snips_qsigmoid", "sonos/tract", TC + "qsigmoid_1/model.onnx", "snips (QDQ)", "layer, quantized", {"input_shape": [[4, 10]]}),
    ("onnxmltools_keras_conv2d_mp", "fastmachinelearning/example-models", EM + "conv2d_small_mp_keras.onnx", "OnnxMLTools (Keras)", "CNN", {}),
    ("onnxmltools_keras_conv1d", "fastmachinelearning/example-models", EM + "conv1d_small_keras.onnx", "OnnxMLTools (Keras)", "CNN", {}),
    ("onnxmltools_keras_dense_big", "fastmachinelearning/example-models", EM + "dense_big_keras.onnx", "OnnxMLTools (Keras)", "MLP", {}),
    ("onnxmltools_keras_three_layer_bn", "fastmachinelearning/example-models", EM + "three_layer_bn_keras.onnx", "OnnxMLTools (Keras)", "MLP",
     {"reference": "none: onnxruntime refuses its BatchNormalization (scale: 0th dimension != 1)"}),
    ("brevitas_bnn_fc", "fastmachinelearning/example-models", EM + "bnn_model_fc_1layer.onnx", "Brevitas (QONNX)", "MLP, binarized", {"reference": "qonnx"}),
    ("brevitas_tiny_unet", "fastmachinelearning/example-models", EM + "tiny_unet_ch_last.onnx", "Brevitas (QONNX)", "CNN, segmentation, quantized",
     {"reference": "none: qonnx's executor fails on it (MaxPool's ceil_mode at the model's opset)", "slow": True}),
]

# (id, source id, format): onnxruntime's quantizer applied to a collected float model.
ORT_QUANT = [
    ("ortq_qdq_cntk_mnist", "cntk_mnist", "QDQ"),
    ("ortq_qop_cntk_mnist", "cntk_mnist", "QOperator"),
    ("ortq_qdq_image_classifier", "pt110_image_classifier", "QDQ"),
    ("ortq_qop_image_classifier", "pt110_image_classifier", "QOperator"),
    ("ortq_qdq_keras_mlp", "tf2onnx_keras_mlp", "QDQ"),
    ("ortq_qop_keras_mlp", "tf2onnx_keras_mlp", "QOperator"),
]

MAX_FILE = 2 << 20
MAX_TOTAL = 25 << 20


def git(mirror, repo, *args):
    gd = os.path.join(mirror, repo.replace("/", "+"), "repo")
    return subprocess.run(["git", "--git-dir", gd, *args], check=True, capture_output=True).stdout


def describe(path):
    """(producer, opset of the default domain, other domains) of an ONNX file."""
    m = onnx.load(path, load_external_data=False)
    producer = f"{m.producer_name} {m.producer_version}".strip()
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 1)
    others = sorted(f"{o.domain}:{o.version}" for o in m.opset_import if o.domain not in ("", "ai.onnx"))
    return producer, opset, others


def quantize(src, dst, fmt, seed):
    """onnxruntime's static quantization of `src`, calibrated on 8 seeded normal inputs."""
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    s = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    rng = np.random.default_rng(seed)
    batches = [{inp.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        if describe(src)[1] < 13:
            # Per-channel DequantizeLinear needs opset 13 (its axis attribute): onnxruntime's
            # quantizer would write an invalid model from an older one, so it is converted first.
            from onnx import version_converter
            up = os.path.join(d, "opset13.onnx")
            onnx.save(version_converter.convert_version(onnx.load(src), 13), up)
            src = up
        pre = os.path.join(d, "pre.onnx")
        quant_pre_process(src, pre)
        fmt = QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator
        try:
            quantize_static(pre, dst, Reader(), per_channel=True, quant_format=fmt,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            return "per-channel"
        except ValueError:
            # onnxruntime 1.32's per-channel path fails on some biases (an array compared as
            # a scalar in _adjust_weight_scale_for_int32_bias): per-tensor then.
            quantize_static(pre, dst, Reader(), per_channel=False, quant_format=fmt,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            return "per-tensor"


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


MANIFEST_HEAD = """\
# The corpus of real exports (issue 19): one [[model]] per file, its provenance and what cimc is
# expected to do with it. Written by scripts/corpus_collect.py (provenance; it keeps the expect_*
# keys); the expect_* keys say what cimc does today, and tests/tests/corpus.rs fails when a
# vendored model's outcome differs from them, in either direction. When cimc's behaviour changes,
# edit them by hand, or set them all from a run:
#   cargo run --release -p cimc-examples --bin model_coverage -- --extra-dir /work/corpus \
#       --outcomes /tmp/outcomes.json && python3 scripts/corpus_collect.py --expect /tmp/outcomes.json
#
# Files: vendored models are tests/data/corpus/models/<id>.onnx with their seeded inputs and
# reference outputs in tests/data/corpus/ref/<id>/ (scripts/corpus_refs.py); the others
# (vendored = false: too large, or a licence that does not allow copying) live in the same layout
# under an extra directory (/work/corpus on the machine that collected them) given to
# `cargo run --release -p cimc-examples --bin model_coverage -- --extra-dir DIR`.
#
# Keys: exporter (from producer_name/producer_version and the repository), kind, producer (as
# written in the file), opset (default domain), domains (other opset imports), repo/path/commit
# (where the file was taken from, unchanged; for onnxruntime's quantizer: the float source),
# license (the repository's), bytes, sha256, vendored, slow (the test skips its compile and
# crossbar stages to stay short), reference (onnxruntime by default; qonnx = qonnx's executor for
# custom domains; none: <why>), input_shape (shapes of the inputs where the file leaves them
# symbolic), int_high (integer inputs are drawn from [0, int_high)).
#
# Expected outcomes (a missing key means "not reached": an earlier stage failed):
#   expect_import   = "matches"            imports, and the float run is within 1e-4 of the
#                                          reference (max |cimc - ref| / max |ref| per output)
#                   | "runs"               imports and runs; there is no reference
#                   | "differs"            imports and runs, but off the reference
#                   | "refused: <substring of the error>"
#   expect_compile  = "ok"                 `cimc compile` W8A8 with --calib (the seeded input)
#                                          gives a program that runs on the input
#                   | "refused: <substring>"
#   expect_crossbar = "ok" | "refused: <substring>"    the same with --target isaac
"""

KEY_ORDER = ["id", "exporter", "kind", "producer", "opset", "domains", "repo", "path", "commit",
             "license", "bytes", "sha256", "vendored", "slow", "reference", "input_shape", "int_high",
             "expect_import", "expect_compile", "expect_crossbar"]


def write_manifest(path, entries):
    with open(path, "w") as f:
        f.write(MANIFEST_HEAD)
        for e in entries:
            f.write("\n[[model]]\n")
            for k in KEY_ORDER:
                if k in e:
                    f.write(f"{k} = {toml_value(e[k])}\n")


def set_expected(outcomes_path):
    import json

    manifest = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "tests/data/corpus/corpus.toml")
    with open(manifest, "rb") as f:
        entries = tomllib.load(f)["model"]
    with open(outcomes_path) as f:
        outcomes = json.load(f)
    for e in entries:
        o = outcomes.get(e["id"])
        if o is None:
            continue
        for stage in ("import", "compile", "crossbar"):
            key = "expect_" + stage
            value = o.get(stage)
            if value is None:
                earlier_ok = o.get("import") in ("matches", "runs", "differs") and \
                    (stage == "compile" or o.get("compile") in (None, "ok"))
                if not earlier_ok:
                    e.pop(key, None)  # not reached
                continue  # reached but not run (a slow model under --quick): kept
            e[key] = value if value in ("matches", "runs", "differs", "ok") else value[:100]
    write_manifest(manifest, entries)


def main():
    if sys.argv[1] == "--expect":
        return set_expected(sys.argv[2])
    mirror, corpus = sys.argv[1], sys.argv[2]
    root = sys.argv[sys.argv.index("--repo-root") + 1] if "--repo-root" in sys.argv else \
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    vend = os.path.join(root, "tests/data/corpus")
    manifest = os.path.join(vend, "corpus.toml")
    old = {}
    if os.path.exists(manifest):
        with open(manifest, "rb") as f:
            old = {m["id"]: m for m in tomllib.load(f).get("model", [])}
    os.makedirs(os.path.join(corpus, "models"), exist_ok=True)
    os.makedirs(os.path.join(vend, "models"), exist_ok=True)
    entries = []
    for mid, repo, path, exporter, kind, extra in CANDIDATES:
        commit = git(mirror, repo, "rev-parse", "HEAD").decode().strip()
        data = git(mirror, repo, "show", f"{commit}:{path}")
        dst = os.path.join(corpus, "models", mid + ".onnx")
        with open(dst, "wb") as f:
            f.write(data)
        e = {"id": mid, "exporter": exporter, "kind": kind, "repo": repo, "path": path,
             "commit": commit, "license": LICENSES[repo]}
        e.update(extra)
        entries.append((e, dst))
    for mid, src_id, fmt in ORT_QUANT:
        src_e, src = next((e, p) for e, p in entries if e["id"] == src_id)
        dst = os.path.join(corpus, "models", mid + ".onnx")
        granularity = quantize(src, dst, fmt, zlib.crc32(mid.encode()))
        import onnxruntime
        e = {"id": mid,
             "exporter": f"onnxruntime {onnxruntime.__version__} quantizer ({fmt}, {granularity})",
             "kind": src_e["kind"] + ", quantized int8",
             "repo": "(made by scripts/corpus_collect.py from " + src_id + ")",
             "path": src_e["repo"] + ":" + src_e["path"], "commit": src_e["commit"],
             "license": src_e["license"]}
        for k in ("input_shape", "slow"):
            if k in src_e:
                e[k] = src_e[k]
        entries.append((e, dst))
    total = 0
    out = []
    for e, dst in entries:
        data = open(dst, "rb").read()
        producer, opset, others = describe(dst)
        e["producer"], e["opset"] = producer, opset
        if others:
            e["domains"] = others
        e["bytes"] = len(data)
        e["sha256"] = hashlib.sha256(data).hexdigest()
        # vendor = false: the seeded input and the reference outputs would be over 2 MB.
        e["vendored"] = (e.pop("vendor", True) and e["license"] in VENDORABLE and len(data) <= MAX_FILE
                         and total + len(data) <= MAX_TOTAL)
        if e["vendored"]:
            total += len(data)
            shutil.copyfile(dst, os.path.join(vend, "models", e["id"] + ".onnx"))
        for k in ("expect_import", "expect_compile", "expect_crossbar"):
            if k in old.get(e["id"], {}):
                e[k] = old[e["id"]][k]
        out.append(e)
    write_manifest(manifest, out)
    print(f"{len(out)} models, {sum(e['vendored'] for e in out)} vendored ({total} bytes)")


if __name__ == "__main__":
    main()
