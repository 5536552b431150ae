#!/usr/bin/env python3
"""Models and onnxruntime references for the QOperator import and the compile regressions.

Writes tests/data/qop/ (committed output; deterministic for a given onnxruntime):
- mnist_cnn_int8_qop.onnx: ../shared/models/mnist_cnn.onnx through onnxruntime's
  quant_pre_process and quantize_static in the QOperator format (QLinearConv, QGemm of
  com.microsoft), per-channel QInt8 weights and activations, calibrated on the 1000 images of
  ../shared/data/mnist_calib_x.npy: the QDQ model of tests/data/models, in the other format.
- mlp_int8_qop.onnx / mlp_int8_qdq.onnx: a seeded MLP of MatMul + Add (the dense layer of
  keras2onnx, tf2onnx, CNTK) and Relu, in both formats (QLinearMatMul, QLinearAdd), without
  onnxruntime's pre-processing (which would make Gemms of them); mlp.onnx its float model.
- branches_int8_qop.onnx: two MatMuls multiplied and concatenated (QLinearMul, QLinearConcat).
- pool_int8_qop.onnx: a Conv, QLinearAveragePool, QLinearGlobalAveragePool (com.microsoft).
- integer_ops.onnx: ConvInteger and MatMulInteger with zero points (float interpreter only).
- dense_3d.onnx (MatMul of a [2,3,16] input + Add), dense_left.onnx (MatMul with the weight on
  the left), transposed_int8_qdq.onnx (a graph input transposed and reshaped before its
  QuantizeLinear), softmax_int8_qdq.onnx (onnxruntime's Q/DQ around a Softmax output),
  weight_transposed.onnx (a per-channel QCDQ weight through a Transpose into MatMul, as
  Brevitas exports a Linear layer), softmax_mid.onnx (a Softmax between two MatMuls).
For each model M: M.x.npy, a seeded input, and M.ort.npy, onnxruntime's output on it; for the
QOperator models M.codes/, the codes of every 8-bit tensor of onnxruntime's integer kernels
(see reference()), and M.float.npy, onnxruntime's float run of the QOperator model expanded
into DequantizeLinear -> op -> QuantizeLinear by this script (see expand(), float_reference()).
Needs onnx, onnxruntime, numpy.
"""
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out = os.path.join(root, "tests/data/qop")
shared = os.path.join(root, "..", "shared")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(19)


def save(nodes, inits, ins, outs, name, opset=17):
    g = h.make_graph(nodes, name, ins, outs, [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = os.path.join(out, name + ".onnx")
    onnx.save(m, path)
    return path


def vi(name, shape):
    return h.make_tensor_value_info(name, T.FLOAT, shape)


class Reader(CalibrationDataReader):
    def __init__(self, name, xs, batch):
        self.it = iter([{name: xs[i:i + batch]} for i in range(0, len(xs), batch)])

    def get_next(self):
        return next(self.it, None)


def quantize(src, dst, name, calib, fmt, batch=1, pre_process=True):
    """onnxruntime's quantize_static; its pre-processing (which folds BatchNorm and turns
    MatMul + Add into Gemm) only with pre_process."""
    with tempfile.TemporaryDirectory() as d:
        pre = os.path.join(d, "pre.onnx")
        if pre_process:
            quant_pre_process(src, pre)
        else:
            pre = src
        quantize_static(pre, os.path.join(out, dst + ".onnx"), Reader(name, calib, batch), quant_format=fmt,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return os.path.join(out, dst + ".onnx")


def session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def reference(path, x, codes=False):
    """onnxruntime's output on x; with codes, also every 8-bit tensor onnxruntime computes, as
    M.codes/<key>.npy ('/' written '~'): a QLinear node's output under the node's name (the
    name cimc gives the value), a QuantizeLinear's under its input's name, the input of a
    DequantizeLinear that makes a graph output under that output's name, others under their
    own name."""
    stem = os.path.splitext(path)[0]
    np.save(stem + ".x.npy", x)
    model = onnx.load(path)
    first = model.graph.output[0].name
    graph_outputs = {o.name for o in model.graph.output}
    keys = {}
    if codes:
        for i, n in enumerate(model.graph.node):
            name = n.name or f"{n.op_type}_{i}"
            if n.op_type.startswith("QLinear") or n.op_type == "QGemm":
                keys[n.output[0]] = name
            elif n.op_type == "QuantizeLinear":
                keys[n.output[0]] = n.input[0]
            elif n.op_type == "DequantizeLinear" and n.output[0] in graph_outputs:
                keys[n.input[0]] = n.output[0]
            else:
                keys.setdefault(n.output[0], n.output[0])
        for o in keys:
            if o not in graph_outputs:
                model.graph.output.append(h.make_empty_tensor_value_info(o))
    s = session(model)
    names = [o.name for o in s.get_outputs()]
    res = dict(zip(names, s.run(None, {s.get_inputs()[0].name: x})))
    np.save(stem + ".ort.npy", res[first])
    if codes:
        d = stem + ".codes"
        os.makedirs(d, exist_ok=True)
        for o, k in keys.items():
            if o in res and res[o].dtype in (np.int8, np.uint8):
                np.save(os.path.join(d, k.replace("/", "~") + ".npy"), res[o])


def expand(model):
    """The QOperator model in DequantizeLinear -> float op -> QuantizeLinear form: the ONNX
    meaning of each QLinear op, written independently of cimc's importer."""
    g = model.graph
    inits = {t.name: nh.to_array(t) for t in g.initializer}
    nodes, extra, count = [], [], [0]

    def fresh(base):
        count[0] += 1
        return f"{base}__x{count[0]}"

    def const(base, arr):
        name = fresh(base)
        extra.append(nh.from_array(arr, name))
        return name

    def dq(x, s, z, axis=None):
        o = fresh("dq")
        attrs = {} if axis is None else {"axis": axis}
        nodes.append(h.make_node("DequantizeLinear", [x, s] + ([z] if z else []), [o], **attrs))
        return o

    def per_channel(s):
        return inits[s].size > 1

    def bias(b, s_x, s_w, k=np.float32(1.0)):
        scale = (k * inits[s_x] * inits[s_w]).astype(np.float32)
        return dq(b, const("bs", scale), const("bz", np.zeros(scale.shape, np.int32)),
                  0 if scale.size > 1 else None)

    def op(op_type, inputs, out=None, **attrs):
        o = out or fresh(op_type.lower())
        nodes.append(h.make_node(op_type, inputs, [o], **attrs))
        return o

    for n in g.node:
        i = list(n.input) + [""] * 9
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs.pop("channels_last", None)
        attrs.pop("opset", None)
        t, out = n.op_type, n.output[0]
        if t == "QLinearConv":
            ins = [dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], 0 if per_channel(i[4]) else None)]
            if i[8]:
                ins.append(bias(i[8], i[1], i[4]))
            op("QuantizeLinear", [op("Conv", ins, **attrs), i[6], i[7]], out)
        elif t == "QLinearMatMul":
            axis = inits[i[3]].ndim - 1 if per_channel(i[4]) else None
            y = op("MatMul", [dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], axis)])
            op("QuantizeLinear", [y, i[6], i[7]], out)
        elif t == "QGemm":
            alpha, tb = np.float32(attrs.get("alpha", 1.0)), attrs.get("transB", 0)
            ins = [dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5], (0 if tb else 1) if per_channel(i[4]) else None)]
            if i[6]:
                ins.append(bias(i[6], i[1], i[4], alpha))
            gemm = dict(alpha=float(alpha), beta=1.0, transA=attrs.get("transA", 0), transB=tb)
            if i[7]:
                op("QuantizeLinear", [op("Gemm", ins, **gemm), i[7], i[8]], out)
            else:
                op("Gemm", ins, out, **gemm)
        elif t in ("QLinearAdd", "QLinearMul"):
            y = op(t[7:], [dq(i[0], i[1], i[2]), dq(i[3], i[4], i[5])])
            op("QuantizeLinear", [y, i[6], i[7]], out)
        elif t in ("QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSoftmax"):
            y = op(t[7:], [dq(i[0], i[1], i[2])], **attrs)
            op("QuantizeLinear", [y, i[3], i[4]], out)
        elif t == "QLinearConcat":
            k = len(n.input)
            xs = [dq(i[j], i[j + 1], i[j + 2]) for j in range(2, k, 3)]
            op("QuantizeLinear", [op("Concat", xs, **attrs), i[0], i[1]], out)
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(extra)
    return model


def float_reference(qoperator, x):
    """onnxruntime on the expansion with every graph optimization off (float ops between
    DequantizeLinear and QuantizeLinear, no integer kernels): what cimc's float interpreter
    computes of the QOperator model."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    model = expand(onnx.load(qoperator))
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    np.save(os.path.splitext(qoperator)[0] + ".float.npy", s.run(None, {s.get_inputs()[0].name: x})[0])


# The MNIST CNN in the QOperator format.
calib = np.load(os.path.join(shared, "data/mnist_calib_x.npy"))
p = quantize(os.path.join(shared, "models/mnist_cnn.onnx"), "mnist_cnn_int8_qop", "input", calib,
             QuantFormat.QOperator)
mnist_x = np.load(os.path.join(root, "tests/data/sets/mnist_test500_x.npy"))[:8]
reference(p, mnist_x, codes=True)
float_reference(p, mnist_x)

# An MLP: dense layers as MatMul + Add, in both formats (QLinearMatMul, QLinearAdd).
w1 = rng.normal(size=(16, 32)).astype(np.float32) * 0.3
b1 = rng.normal(size=(32,)).astype(np.float32) * 0.1
w2 = rng.normal(size=(32, 10)).astype(np.float32) * 0.3
b2 = rng.normal(size=(10,)).astype(np.float32) * 0.1
mlp = save([h.make_node("MatMul", ["x", "w1"], ["h1"]), h.make_node("Add", ["h1", "b1"], ["a1"]),
            h.make_node("Relu", ["a1"], ["r1"]), h.make_node("MatMul", ["r1", "w2"], ["h2"]),
            h.make_node("Add", ["b2", "h2"], ["y"])],
           dict(w1=w1, b1=b1, w2=w2, b2=b2), [vi("x", [4, 16])], [vi("y", [4, 10])], "mlp")
mlp_calib = rng.normal(size=(64, 16)).astype(np.float32)
mlp_x = rng.normal(size=(4, 16)).astype(np.float32)
reference(mlp, mlp_x)
for fmt, suffix in [(QuantFormat.QOperator, "qop"), (QuantFormat.QDQ, "qdq")]:
    reference(quantize(mlp, "mlp_int8_" + suffix, "x", mlp_calib, fmt, batch=4, pre_process=False), mlp_x,
              codes=suffix == "qop")
float_reference(os.path.join(out, "mlp_int8_qop.onnx"), mlp_x)

# Two branches multiplied and concatenated (QLinearMul, QLinearConcat).
w3 = rng.normal(size=(16, 12)).astype(np.float32) * 0.3
w4 = rng.normal(size=(16, 12)).astype(np.float32) * 0.3
br = save([h.make_node("MatMul", ["x", "w3"], ["h3"]), h.make_node("MatMul", ["x", "w4"], ["h4"]),
           h.make_node("Mul", ["h3", "h4"], ["m"]), h.make_node("Concat", ["h3", "m"], ["y"], axis=1)],
          dict(w3=w3, w4=w4), [vi("x", [4, 16])], [vi("y", [4, 24])], "branches")
reference(quantize(br, "branches_int8_qop", "x", mlp_calib, QuantFormat.QOperator, batch=4, pre_process=False),
          mlp_x, codes=True)
float_reference(os.path.join(out, "branches_int8_qop.onnx"), mlp_x)
os.remove(br)

# Pools in the QOperator format.
wc = rng.normal(size=(4, 2, 3, 3)).astype(np.float32) * 0.3
pool = save([h.make_node("Conv", ["x", "wc"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["r"]),
             h.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("GlobalAveragePool", ["p"], ["y"])],
            dict(wc=wc), [vi("x", [1, 2, 8, 8])], [vi("y", [1, 4, 1, 1])], "pool")
pool_x = rng.normal(size=(1, 2, 8, 8)).astype(np.float32)
pool_calib = rng.normal(size=(32, 2, 8, 8)).astype(np.float32)
reference(quantize(pool, "pool_int8_qop", "x", pool_calib, QuantFormat.QOperator), pool_x, codes=True)
float_reference(os.path.join(out, "pool_int8_qop.onnx"), pool_x)
os.remove(pool)

# ConvInteger and MatMulInteger (dynamic quantization's integer products).
xi = h.make_tensor_value_info("x", T.UINT8, [1, 2, 5, 5])
wi = rng.integers(-128, 128, size=(3, 2, 3, 3)).astype(np.int8)
mi = rng.integers(-128, 128, size=(50, 4)).astype(np.int8)
integer = save([h.make_node("ConvInteger", ["x", "wi", "xz", "wz"], ["c"]),
                h.make_node("Reshape", ["c", "shc"], ["cf"]),
                h.make_node("Reshape", ["x", "shx"], ["xf"]),
                h.make_node("MatMulInteger", ["xf", "mi", "xz", "mz"], ["m"]),
                h.make_node("Concat", ["cf", "m"], ["y"], axis=1)],
               dict(wi=wi, xz=np.array(131, np.uint8), wz=np.array(3, np.int8),
                    shc=np.array([1, 27], np.int64), shx=np.array([1, 50], np.int64), mi=mi,
                    mz=np.array([2, 0, -1, 5], np.int8)),
               [xi], [h.make_tensor_value_info("y", T.INT32, [1, 31])], "integer_ops")
reference(integer, rng.integers(0, 256, size=(1, 2, 5, 5)).astype(np.uint8))

# Compile regressions of issue 19.
w5 = rng.normal(size=(16, 8)).astype(np.float32) * 0.3
b5 = rng.normal(size=(1, 1, 8)).astype(np.float32) * 0.1
d3 = save([h.make_node("MatMul", ["x", "w5"], ["hm"]), h.make_node("Add", ["b5", "hm"], ["y"])],
          dict(w5=w5, b5=b5), [vi("x", [2, 3, 16])], [vi("y", [2, 3, 8])], "dense_3d")
reference(d3, rng.normal(size=(2, 3, 16)).astype(np.float32))
wl = rng.normal(size=(8, 16)).astype(np.float32) * 0.3
left = save([h.make_node("MatMul", ["wl", "x"], ["hm"]), h.make_node("Relu", ["hm"], ["y"])],
            dict(wl=wl), [vi("x", [2, 16, 4])], [vi("y", [2, 8, 4])], "dense_left")
reference(left, rng.normal(size=(2, 16, 4)).astype(np.float32))
tr = save([h.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]), h.make_node("Reshape", ["xt", "shp"], ["xf"]),
           h.make_node("MatMul", ["xf", "w1"], ["hm"]), h.make_node("Add", ["hm", "b1"], ["y"])],
          dict(w1=w1, b1=b1, shp=np.array([1, 16], np.int64)), [vi("x", [1, 4, 4])], [vi("y", [1, 32])],
          "transposed")
reference(quantize(tr, "transposed_int8_qdq", "x", rng.normal(size=(32, 1, 4, 4)).astype(np.float32).reshape(32, 4, 4),
                   QuantFormat.QDQ, pre_process=False), rng.normal(size=(1, 4, 4)).astype(np.float32))
os.remove(tr)
sm = save([h.make_node("MatMul", ["x", "w1"], ["hm"]), h.make_node("Add", ["hm", "b1"], ["a"]),
           h.make_node("Softmax", ["a"], ["y"], axis=-1)],
          dict(w1=w1, b1=b1), [vi("x", [1, 16])], [vi("y", [1, 32])], "softmax")
reference(quantize(sm, "softmax_int8_qdq", "x", rng.normal(size=(32, 16)).astype(np.float32), QuantFormat.QDQ, pre_process=False),
          rng.normal(size=(1, 16)).astype(np.float32))
os.remove(sm)
w2 = rng.normal(size=(32, 10)).astype(np.float32) * 0.3
mid = save([h.make_node("MatMul", ["x", "w1"], ["hm"]), h.make_node("Softmax", ["hm"], ["sm"], axis=-1),
            h.make_node("MatMul", ["sm", "w2"], ["y"])],
           dict(w1=w1, w2=w2), [vi("x", [1, 16])], [vi("y", [1, 10])], "softmax_mid")
reference(mid, rng.normal(size=(1, 16)).astype(np.float32))
# A Linear layer as Brevitas exports it: W [out, in] per-channel along out, then Transpose.
wq = rng.integers(-127, 128, size=(12, 16)).astype(np.int8)
ws = (rng.random(12).astype(np.float32) + 0.5) * 0.01
wt = save([h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
           h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
           h.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
           h.make_node("Transpose", ["wd"], ["wt"], perm=[1, 0]),
           h.make_node("MatMul", ["xd", "wt"], ["y"])],
          dict(xs=np.array(0.02, np.float32), xz=np.array(0, np.int8), wq=wq, ws=ws, wz=np.zeros(12, np.int8)),
          [vi("x", [1, 16])], [vi("y", [1, 12])], "weight_transposed")
reference(wt, rng.normal(size=(1, 16)).astype(np.float32))
print("wrote", sorted(os.listdir(out)))
