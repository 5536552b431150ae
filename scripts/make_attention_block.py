"""Writes tests/data/attention/: a small pre-norm transformer encoder block with seeded random
weights for the stream tests of the transformer steps — token embedding (Gather of a constant by
int64 token ids), LayerNormalization (opset 17) before the attention and before the MLP, a QKV
projection, Split into Q, K, V, heads by Reshape and Transpose, Q·Kᵀ (MatMul of
two activations) scaled by a constant, Softmax, attention·V, the output projection, a residual
Add, an MLP with the Erf form of GELU (x·0.5·(1 + erf(x/√2)): a product of two activations) and
a second residual — with seeded token inputs (calibration and test) and onnxruntime's outputs.

Usage: /work/venv-optable/bin/python scripts/make_attention_block.py [OUT T D H F]
(without arguments the vendored block: T = 8 tokens, D = 16, 2 heads, F = 32; with them a block of
those sizes in OUT, for the cost breakdown of docs/transformers-integer.md).
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "attention")
rng = np.random.default_rng(20)
VOCAB, T, D, H, F = 32, 8, 16, 2, 32
if len(sys.argv) == 6:
    OUT = sys.argv[1]
    T, D, H, F = (int(a) for a in sys.argv[2:])
DH = D // H
inits = []
nodes = []


def const(name, a, dtype=np.float32):
    inits.append(numpy_helper.from_array(np.asarray(a, dtype=dtype), name))
    return name


def node(op, ins, name, **attrs):
    nodes.append(helper.make_node(op, ins, [name], name=name, **attrs))
    return name


def dense(x, fan_in, fan_out, name):
    w = const(name + "_w", rng.normal(0, 1.0 / np.sqrt(fan_in), (fan_in, fan_out)))
    b = const(name + "_b", rng.normal(0, 0.05, fan_out))
    return node("Add", [node("MatMul", [x, w], name + "_mm"), b], name)


emb = const("embedding", rng.normal(0, 1.0, (VOCAB, D)))
x = node("Gather", [emb, "tokens"], "embed", axis=0)  # [1, T, D]


def layer_norm(x, name):
    g = const(name + "_scale", 1.0 + rng.normal(0, 0.2, D))
    b = const(name + "_bias", rng.normal(0, 0.1, D))
    return node("LayerNormalization", [x, g, b], name, axis=-1, epsilon=1e-5)


qkv = dense(layer_norm(x, "ln1"), D, 3 * D, "qkv")  # [1, T, 3D]
nodes.append(helper.make_node("Split", [qkv], ["q0", "k0", "v0"], name="split", axis=2,
                              num_outputs=3))
heads = const("heads_shape", [1, T, H, DH], np.int64)
q = node("Transpose", [node("Reshape", ["q0", heads], "q_heads")], "q", perm=[0, 2, 1, 3])
kt = node("Transpose", [node("Reshape", ["k0", heads], "k_heads")], "kt", perm=[0, 2, 3, 1])
v = node("Transpose", [node("Reshape", ["v0", heads], "v_heads")], "v", perm=[0, 2, 1, 3])
scores = node("Mul", [node("MatMul", [q, kt], "qk"), const("inv_sqrt_dh", 1.0 / np.sqrt(DH))],
              "scores")
probs = node("Softmax", [scores], "probs", axis=-1)
att = node("Transpose", [node("MatMul", [probs, v], "pv")], "att_t", perm=[0, 2, 1, 3])
att = node("Reshape", [att, const("merge_shape", [1, T, D], np.int64)], "att")
r1 = node("Add", [x, dense(att, D, D, "proj")], "residual1")
h = dense(layer_norm(r1, "ln2"), D, F, "fc1")
erf = node("Erf", [node("Div", [h, const("sqrt2", np.sqrt(2.0))], "gelu_div")], "gelu_erf")
g = node("Mul", [node("Mul", [h, node("Add", [erf, const("one", 1.0)], "gelu_add")], "gelu_mul"),
                 const("half", 0.5)], "gelu")
y = node("Add", [r1, dense(g, F, D, "fc2")], "y")

graph = helper.make_graph(
    nodes, "attention_block",
    [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, T])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, D])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
os.makedirs(OUT, exist_ok=True)
onnx.save(model, os.path.join(OUT, "attention.onnx"))

sess = ort.InferenceSession(os.path.join(OUT, "attention.onnx"))
calib = rng.integers(0, VOCAB, (16, T)).astype(np.int64)
test = rng.integers(0, VOCAB, (1, T)).astype(np.int64)
np.save(os.path.join(OUT, "calib_tokens.npy"), calib)
np.save(os.path.join(OUT, "test_tokens.npy"), test)
outs = np.concatenate([sess.run(None, {"tokens": t[None]})[0] for t in test])
np.save(os.path.join(OUT, "test_outputs.npy"), outs.astype(np.float32))
print("wrote", OUT, outs.shape)
