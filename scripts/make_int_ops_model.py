"""Writes tests/data/int_ops/: a small MobileNetV3-style classifier with seeded random weights
whose ops had no integer program before — HardSwish, a squeeze-excite block (Mul of two
activations, [N,C,H,W] by [N,C,1,1]), Sigmoid, Sub of two activations, Concat of inputs at
different scales, Softmax in the middle of the graph (followed by a Mul) and at the end — with
seeded inputs and onnxruntime's outputs on them.

Usage: /work/venv-optable/bin/python scripts/make_int_ops_model.py
"""

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "int_ops")
rng = np.random.default_rng(19)
inits = []
nodes = []


def const(name, a):
    inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))
    return name


def conv(x, cin, cout, k, name, stride=1, group=1):
    fan = cin // group * k * k
    w = const(name + "_w", rng.normal(0, 1.6 / np.sqrt(fan), (cout, cin // group, k, k)))
    b = const(name + "_b", rng.normal(0, 0.1, cout))
    nodes.append(
        helper.make_node(
            "Conv", [x, w, b], [name], name=name, kernel_shape=[k, k],
            pads=[k // 2] * 4, strides=[stride, stride], group=group,
        )
    )
    return name


def node(op, ins, name, **attrs):
    nodes.append(helper.make_node(op, ins, [name], name=name, **attrs))
    return name


x = "x"
h = conv(x, 3, 8, 3, "stem", stride=2)
h = node("HardSwish", [h], "stem_hswish")
# Squeeze-excite on a depthwise block.
d = conv(h, 8, 8, 3, "dw", group=8)
d = node("HardSwish", [d], "dw_hswish")
s = node("GlobalAveragePool", [d], "se_pool")
s = conv(s, 8, 4, 1, "se_reduce")
s = node("Relu", [s], "se_relu")
s = conv(s, 4, 8, 1, "se_expand")
s = node("Sigmoid", [s], "se_gate")
d = node("Mul", [d, s], "se_mul")
# Sub of two activations, then Concat of inputs at different scales.
p = conv(d, 8, 8, 1, "proj")
q = node("Sub", [p, h], "sub")
c = node("Concat", [q, d], "concat", axis=1)
c = conv(c, 16, 12, 3, "mix")
c = node("Tanh", [c], "mix_tanh")
# A Softmax over channels in the middle of the graph, gating the features.
a = node("Softmax", [c], "attn", axis=1)
c = node("Mul", [c, a], "attn_mul")
g = node("GlobalAveragePool", [c], "pool")
f = node("Flatten", [g], "flat", axis=1)
wf = const("fc_w", rng.normal(0, 12.0, (12, 10)))
bf = const("fc_b", rng.normal(0, 0.1, 10))
l = node("Gemm", [f, wf, bf], "fc")
node("Softmax", [l], "probs", axis=1)

graph = helper.make_graph(
    nodes, "int_ops",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.producer_name = "cimc scripts/make_int_ops_model.py"
onnx.checker.check_model(model, full_check=True)
os.makedirs(OUT, exist_ok=True)
onnx.save(model, os.path.join(OUT, "int_ops.onnx"))
# Images of varied per-channel brightness and contrast, so that the classes differ.
gain = rng.uniform(0.2, 2.0, (48, 3, 1, 1))
offset = rng.uniform(-1.0, 1.0, (48, 3, 1, 1))
xs = (rng.uniform(0, 1, (48, 3, 16, 16)) * gain + offset).astype(np.float32)
np.save(os.path.join(OUT, "x.npy"), xs)
sess = ort.InferenceSession(os.path.join(OUT, "int_ops.onnx"), providers=["CPUExecutionProvider"])
probs = sess.run(None, {"x": xs})[0]
np.save(os.path.join(OUT, "probs.npy"), probs.astype(np.float32))
print("top-1 classes:", np.bincount(probs.argmax(1), minlength=10), "max prob mean", probs.max(1).mean())
