#!/usr/bin/env python3
"""Writes the malformed inputs of the bad-input tests into tests/data/bad/ (committed).

Needs: onnx, numpy. Deterministic: the random bytes come from a seeded generator.
"""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper

out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bad")
os.makedirs(out, exist_ok=True)
models = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "models")


def save(model, name):
    onnx.save(model, os.path.join(out, name))


# A node reads a value that nothing produces.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
g = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
     helper.make_node("Add", ["r", "ghost"], ["y"], name="add_ghost")],
    "dangling", [x], [y])
save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "dangling_input.onnx")

# Inconsistent shapes: Add of [2,3] and [4,5].
a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3])
b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 5])
o = helper.make_tensor_value_info("o", TensorProto.FLOAT, None)
g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["o"], name="bad_add")], "shapes", [a, b], [o])
save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "inconsistent_shapes.onnx")

# Two unsupported ops (and one supported) in one model: one error lists both.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
g = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
     helper.make_node("Acosh", ["r"], ["e"], name="acosh0"),
     helper.make_node("Frobnicate", ["e"], ["y"], name="frob0", domain="com.example")],
    "unsupported", [x], [y])
save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
     "unsupported_ops.onnx")

# Empty, truncated and random files.
open(os.path.join(out, "empty.onnx"), "wb").close()
with open(os.path.join(models, "digits_cnn.onnx"), "rb") as f:
    whole = f.read()
with open(os.path.join(out, "truncated.onnx"), "wb") as f:
    f.write(whole[: len(whole) // 2])
rng = np.random.default_rng(7)
with open(os.path.join(out, "random.onnx"), "wb") as f:
    f.write(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())

# .npy inputs of the wrong shape and the wrong dtype for digits_cnn ([N,1,8,8] f32).
np.save(os.path.join(out, "digits_wrong_shape.npy"), np.zeros((2, 1, 9, 9), np.float32))
np.save(os.path.join(out, "digits_wrong_dtype.npy"), np.zeros((2, 1, 8, 8), np.float64))
with open(os.path.join(out, "not_npy.npy"), "wb") as f:
    f.write(b"this is not a numpy file")
print("wrote", sorted(os.listdir(out)))
