#!/usr/bin/env python3
"""Reference codes of onnxruntime for the QDQ model, layer by layer (committed output).

For tests/data/models/mnist_cnn_int8_qdq.onnx (onnxruntime's quantize_static output), runs
onnxruntime on the first N MNIST test images with every QuantizeLinear output added as a graph
output, and saves each one's codes as tests/data/qdq_ref/<tensor>.npy, where <tensor> is the
name of the float tensor that the QuantizeLinear node quantizes (the name cimc's IR gives the
annotated activation; '/' is written as '~'). index.json maps names to files, shapes and the
(scale, zero point) of each. Needs onnx, onnxruntime, numpy. Deterministic.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
model_path = os.path.join(root, "tests/data/models/mnist_cnn_int8_qdq.onnx")
x_path = os.path.join(root, "tests/data/sets/mnist_test500_x.npy")
out_dir = os.path.join(root, "tests/data/qdq_ref")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 32

model = onnx.load(model_path)
inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
targets = []
for node in model.graph.node:
    if node.op_type == "QuantizeLinear":
        targets.append((node.output[0], node.input[0], float(inits[node.input[1]]), int(inits[node.input[2]])))
existing = {o.name for o in model.graph.output}
for q_out, _, _, _ in targets:
    if q_out not in existing:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(q_out))
so = ort.SessionOptions()
so.intra_op_num_threads = 2
sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
x = np.load(x_path)[:n]
names = [o.name for o in sess.get_outputs()]
outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
os.makedirs(out_dir, exist_ok=True)
index = {"model": "mnist_cnn_int8_qdq.onnx", "samples": n, "onnxruntime": ort.__version__, "tensors": {}}
graph_outputs = {o.name for o in onnx.load(model_path).graph.output}
for q_out, src, scale, zp in targets:
    codes = outs[q_out]
    # When Q -> DQ ends in a graph output, cimc names the tensor after that output.
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] == q_out and node.output[0] in graph_outputs:
            index.setdefault("aliases", {})[node.output[0]] = src
    fname = src.replace("/", "~") + ".npy"
    np.save(os.path.join(out_dir, fname), np.ascontiguousarray(codes))
    index["tensors"][src] = {"file": fname, "dtype": str(codes.dtype), "shape": list(codes.shape),
                             "scale": scale, "zero_point": zp}
np.save(os.path.join(out_dir, "logits.npy"), outs[model.graph.output[0].name])
# The ONNX meaning of the Q/DQ graph, without onnxruntime's fused integer kernels: what cimc's
# float interpreter computes.
so_plain = ort.SessionOptions()
so_plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
plain = ort.InferenceSession(model_path, so_plain, providers=["CPUExecutionProvider"])
np.save(os.path.join(out_dir, "logits_unfused.npy"), plain.run(None, {plain.get_inputs()[0].name: x})[0])
# onnxruntime's predictions on the whole MNIST test set (from ../shared when present).
full = os.path.join(root, "..", "shared", "data", "mnist_test_x.npy")
if os.path.exists(full):
    xs = np.load(full)
    default = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    pred = np.concatenate([default.run(None, {default.get_inputs()[0].name: xs[i:i + 500]})[0].argmax(1)
                           for i in range(0, len(xs), 500)]).astype(np.uint8)
    np.save(os.path.join(out_dir, "onnxruntime_predictions_10000.npy"), pred)
    ys = np.load(os.path.join(root, "..", "shared", "data", "mnist_test_y.npy"))
    index["onnxruntime_top1"] = float((pred == ys).mean() * 100)
with open(os.path.join(out_dir, "index.json"), "w") as f:
    json.dump(index, f, indent=1, sort_keys=True)
print(f"wrote {len(targets)} tensors for {n} images to {out_dir}")
