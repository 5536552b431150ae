"""Writes tests/data/int_ops/qlinear.json: onnxruntime's QLinearAdd and QLinearMul
(com.microsoft) on seeded random uint8 and int8 codes, scales and zero points, with and without
broadcasting ([2,3,4,5] with [2,3,4,5] or with [2,3,1,1]), for comparing cimc's Add and Mul
steps with them (tests/tests/int_ops.rs).

Usage: /work/venv-optable/bin/python scripts/make_qlinear_reference.py
"""

import json
import os

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "int_ops", "qlinear.json")
rng = np.random.default_rng(2019)
cases = []
for k in range(24):
    op = ["QLinearAdd", "QLinearMul"][k % 2]
    signed = (k // 2) % 2 == 1
    dt, npt = (TensorProto.INT8, np.int8) if signed else (TensorProto.UINT8, np.uint8)
    lo, hi = (-128, 127) if signed else (0, 255)
    sa = [2, 3, 4, 5]
    sb = sa if (k // 4) % 2 == 0 else [2, 3, 1, 1]
    scales = [float(np.float32(2.0 ** rng.uniform(-7, -1))) for _ in range(3)]
    if op == "QLinearMul":
        scales[2] = float(np.float32(scales[0] * scales[1] * 2.0 ** rng.uniform(3, 7)))
    zps = [0, 0, 0] if signed else [int(z) for z in rng.integers(0, 256, 3)]
    a = rng.integers(lo, hi + 1, sa).astype(npt)
    b = rng.integers(lo, hi + 1, sb).astype(npt)
    names = ["a", "a_s", "a_z", "b", "b_s", "b_z", "y_s", "y_z"]
    node = helper.make_node(op, names, ["y"], domain="com.microsoft")
    inits = [
        helper.make_tensor("a_s", TensorProto.FLOAT, [], [scales[0]]),
        helper.make_tensor("a_z", dt, [], [zps[0]]),
        helper.make_tensor("b_s", TensorProto.FLOAT, [], [scales[1]]),
        helper.make_tensor("b_z", dt, [], [zps[1]]),
        helper.make_tensor("y_s", TensorProto.FLOAT, [], [scales[2]]),
        helper.make_tensor("y_z", dt, [], [zps[2]]),
    ]
    g = helper.make_graph(
        [node], "q",
        [helper.make_tensor_value_info("a", dt, sa), helper.make_tensor_value_info("b", dt, sb)],
        [helper.make_tensor_value_info("y", dt, sa)],
        inits,
    )
    m = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"a": a, "b": b})[0]
    cases.append({
        "op": op, "signed": signed, "a_shape": sa, "b_shape": sb,
        "scales": scales, "zero_points": zps,
        "a": a.flatten().tolist(), "b": b.flatten().tolist(), "y": y.flatten().tolist(),
    })
with open(OUT, "w") as f:
    json.dump({"onnxruntime": ort.__version__, "cases": cases}, f, separators=(",", ":"))
print(len(cases), "cases")
