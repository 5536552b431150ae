#!/usr/bin/env python3
"""Make the small models of tests/data/import_cases/, each with the outputs of its reference
executor, in the layout of the ONNX backend node tests (`model.onnx`,
`test_data_set_0/input_<j>.pb`, `output_<j>.pb`), which `tests/tests/conformance.rs` runs.

    /work/venv-optable/bin/python scripts/make_import_cases.py

- `two_outputs`: a CNN with two heads (`cimc run` writes both; `x.npy` beside it feeds the CLI
  test and the calibration of its program). Reference: onnxruntime.
- `qonnx_*`: QONNX/Brevitas/FINN custom ops (`Quant` in the `onnx.brevitas` domain,
  `BipolarQuant`, `Trunc` v1 and v2, `MultiThreshold`, channels-last `Conv`, `MaxPool` and
  `BatchNormalization`). Reference: qonnx's executor (`qonnx.core.onnx_exec.execute_onnx`,
  qonnx 1.0.0).
- `f16_*`, `bf16_*`: float16 and bfloat16 models. Reference: onnxruntime on the same model (its
  float16 outputs widened to f32 exactly), and for bfloat16, which onnxruntime does not run on
  CPU, the f32 model with the bf16-rounded weights.

- `qonnx_floatquant`: Brevitas' FP8 `FloatQuant` (e4m3 and e5m2, per-tensor and per-channel
  scale, ROUND and FLOOR). Reference: qonnx's executor.
- `ort_qlinear_lookup`: onnxruntime's com.microsoft `QLinearSigmoid` and `QLinearLeakyRelu` at
  every u8 and i8 code (onnxruntime computes them by a table). Reference: onnxruntime.
- `ort_resize_u8`: Resize (linear, nearest) on u8 codes, as QOperator models resize a
  QLinearConv's output, and MaxPool, Transpose and Concat on them. Reference: onnxruntime.
- `ort_per_tensor_mixed_shapes`: DequantizeLinear and QuantizeLinear whose one-element scale
  and zero point differ in rank (`f32[1]` and `i32[]`, as onnxruntime's quantizer writes a
  bias). Reference: onnxruntime.
- `dim_minus_one`: a graph input with a dim of −1 (how old exporters wrote a dynamic dim).
  Reference: onnxruntime.
- `topk_v1`: TopK of opset 1 (k an attribute), both outputs. Reference: onnxruntime.

Inputs are seeded (numpy seed 0 per case) and chosen away from rounding ties, so that a
quantizer's output does not depend on the last bit of a float division.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "import_cases")


def save_case(name, model, inputs, outputs):
    """Writes model.onnx and test_data_set_0 (inputs and outputs as TensorProtos)."""
    d = os.path.join(ROOT, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    for j, (k, v) in enumerate(inputs.items()):
        t = v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(v, k)
        t.name = k
        with open(os.path.join(d, "test_data_set_0", f"input_{j}.pb"), "wb") as f:
            f.write(t.SerializeToString())
    for j, (k, v) in enumerate(outputs.items()):
        t = v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(v, k)
        t.name = k
        with open(os.path.join(d, "test_data_set_0", f"output_{j}.pb"), "wb") as f:
            f.write(t.SerializeToString())
    return d


def ort_run(model, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feeds)))


def qonnx_run(model, feeds):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    w = ModelWrapper(onnx.ModelProto.FromString(model.SerializeToString()))
    if not model.graph.value_info:
        w = w.transform(InferShapes())
    out = execute_onnx(w, dict(feeds))
    return {o.name: out[o.name] for o in model.graph.output}


def const(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def two_outputs():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    wa = rng.normal(0, 0.2, (10, 144)).astype(np.float32)
    wb = rng.normal(0, 0.2, (3, 144)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "wa"], ["logits"], transB=1),
        helper.make_node("Gemm", ["f", "wb"], ["aux"], transB=1),
    ]
    g = helper.make_graph(
        nodes, "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
         helper.make_tensor_value_info("aux", TensorProto.FLOAT, ["N", 3])],
        [const("w", w), const("b", b), const("wa", wa), const("wb", wb)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    x = rng.normal(0, 1, (4, 1, 6, 6)).astype(np.float32)
    d = save_case("two_outputs", m, {"x": x}, ort_run(m, {"x": x}))
    np.save(os.path.join(d, "x.npy"), x)


GENERAL = "qonnx.custom_op.general"


def qonnx_model(name, nodes, inputs, outputs, inits, domains, value_info=()):
    """A model of `nodes` with opset 13 and each custom domain of `domains` (name: version)."""
    g = helper.make_graph(nodes, name, inputs, outputs, inits, value_info=list(value_info))
    ops = [helper.make_opsetid("", 13)] + [helper.make_opsetid(d, v) for d, v in domains.items()]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


def f32_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def off_ties(codes, scale, rng):
    """`scale · (codes + u)` with u in ±0.3: a float input whose quantization is not a tie."""
    return (scale * (codes + rng.uniform(-0.3, 0.3, codes.shape))).astype(np.float32)


def qonnx_quant_brevitas():
    """Quant in Brevitas' own domain (its export before QONNX took the op over), per-channel
    signed 4-bit, then a QONNX-domain unsigned narrow 3-bit Quant after a Relu."""
    rng = np.random.default_rng(0)
    s1 = np.array([0.1, 0.25, 0.05], np.float32).reshape(1, 3, 1, 1)
    x = off_ties(rng.integers(-10, 10, (2, 3, 4, 4)), s1, rng)
    nodes = [
        helper.make_node("Quant", ["x", "s1", "z", "b4"], ["q1"], domain="onnx.brevitas",
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Relu", ["q1"], ["r"]),
        helper.make_node("Quant", ["r", "s2", "z", "b3"], ["y"], domain=GENERAL,
                         signed=0, narrow=1, rounding_mode="ROUND"),
    ]
    inits = [const("s1", s1), const("s2", np.float32(0.07)), const("z", np.float32(0)),
             const("b4", np.float32(4)), const("b3", np.float32(3))]
    m = qonnx_model("qonnx_quant_brevitas", nodes, [f32_info("x", [2, 3, 4, 4])],
                    [f32_info("y", [2, 3, 4, 4])], inits, {"onnx.brevitas": 1, GENERAL: 1})
    save_case("qonnx_quant_brevitas", m, {"x": x}, qonnx_run(m, {"x": x}))


def qonnx_bipolar():
    """BipolarQuant (scalar and per-channel scale), and the signed 1-bit Quant that qonnx
    executes as the same bipolar step; the input holds exact zeros (they map to +1)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 3, 2, 2)).astype(np.float32)
    x[0, 0, 0, :] = 0.0
    x[1, 2, 1, 0] = -0.0
    nodes = [
        helper.make_node("BipolarQuant", ["x", "s"], ["y1"], domain=GENERAL),
        helper.make_node("BipolarQuant", ["x", "sc"], ["y2"], domain="onnx.brevitas"),
        helper.make_node("Quant", ["x", "s", "z", "b1"], ["y3"], domain=GENERAL,
                         signed=1, narrow=0, rounding_mode="ROUND"),
    ]
    inits = [const("s", np.float32(0.5)),
             const("sc", np.array([1.0, 0.25, 2.0], np.float32).reshape(1, 3, 1, 1)),
             const("z", np.float32(0)), const("b1", np.float32(1))]
    outs = [f32_info(n, [2, 3, 2, 2]) for n in ("y1", "y2", "y3")]
    m = qonnx_model("qonnx_bipolar", nodes, [f32_info("x", [2, 3, 2, 2])], outs, inits,
                    {GENERAL: 1, "onnx.brevitas": 1})
    save_case("qonnx_bipolar", m, {"x": x}, qonnx_run(m, {"x": x}))


def qonnx_trunc(version):
    """Trunc of an 8-bit accumulator to 4 bits: v1 (5 inputs, FLOOR and ROUND) or v2 (6
    inputs: the output scale, signed/narrow clamping; FLOOR and HALF_UP)."""
    rng = np.random.default_rng(0)
    s = np.float32(0.125)
    x = off_ties(rng.integers(-128, 128, (2, 16)), s, rng)
    modes = ["FLOOR", "ROUND"] if version == 1 else ["FLOOR", "HALF_UP"]
    ins = ["x", "s", "z", "b8"] + (["b4"] if version == 1 else ["os", "b4"])
    extra = {} if version == 1 else {"signed": 1, "narrow": 0}
    nodes = [helper.make_node("Trunc", ins, [f"y{i}"], domain=GENERAL, rounding_mode=mode,
                              **extra) for i, mode in enumerate(modes)]
    inits = [const("s", s), const("z", np.float32(0)), const("b8", np.float32(8)),
             const("b4", np.float32(4)), const("os", np.float32(s * 16))]
    outs = [f32_info(f"y{i}", [2, 16]) for i in range(len(modes))]
    name = f"qonnx_trunc_v{version}"
    m = qonnx_model(name, nodes, [f32_info("x", [2, 16])], outs, inits, {GENERAL: version})
    save_case(name, m, {"x": x}, qonnx_run(m, {"x": x}))


def qonnx_multithreshold():
    """FINN's MultiThreshold: per-channel thresholds in NCHW with out_scale and out_bias, one
    global set of thresholds in NHWC (the FINN domain), and per-channel thresholds in NHWC."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 3, 4, 4)).astype(np.float32)
    t = np.sort(rng.normal(0, 1, (3, 7)), axis=1).astype(np.float32)
    x[0, 0, 0, 0] = t[0, 2]  # equal to a threshold: counted (x >= t)
    tg = np.sort(rng.normal(0, 1, (1, 3)), axis=1).astype(np.float32)
    nodes = [
        helper.make_node("MultiThreshold", ["x", "t"], ["y1"], domain=GENERAL,
                         out_dtype="INT4", out_scale=0.5, out_bias=-2.0),
        helper.make_node("MultiThreshold", ["x", "tg"], ["y2"], domain="finn.custom_op.general",
                         out_dtype="UINT2", data_layout="NHWC"),
        helper.make_node("MultiThreshold", ["x", "tl"], ["y3"], domain=GENERAL,
                         out_dtype="UINT2", data_layout="NHWC", out_scale=2.0),
    ]
    outs = [f32_info(n, [2, 3, 4, 4]) for n in ("y1", "y2", "y3")]
    tl = np.sort(rng.normal(0, 1, (4, 3)), axis=1).astype(np.float32)
    m = qonnx_model("qonnx_multithreshold", nodes, [f32_info("x", [2, 3, 4, 4])], outs,
                    [const("t", t), const("tg", tg), const("tl", tl)],
                    {GENERAL: 1, "finn.custom_op.general": 1})
    save_case("qonnx_multithreshold", m, {"x": x}, qonnx_run(m, {"x": x}))


def qonnx_channels_last():
    """qonnx's channels-last Conv (weights [O, kH, kW, I]), MaxPool and BatchNormalization on
    an NHWC input."""
    rng = np.random.default_rng(0)
    dom = "qonnx.custom_op.channels_last"
    x = rng.normal(0, 1, (2, 6, 6, 3)).astype(np.float32)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    bn = [rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.1, 4), rng.normal(0, 0.1, 4),
          rng.uniform(0.5, 1.5, 4)]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], domain=dom, kernel_shape=[3, 3],
                         strides=[1, 1], dilations=[1, 1], pads=[1, 1, 1, 1], group=1),
        helper.make_node("MaxPool", ["c"], ["p"], domain=dom, kernel_shape=[2, 2],
                         strides=[2, 2], pads=[0, 0, 0, 0]),
        helper.make_node("BatchNormalization", ["p", "g", "be", "mu", "var"], ["y"],
                         domain=dom, epsilon=1e-5),
    ]
    inits = [const("w", w), const("b", b)] + [
        const(n, v.astype(np.float32)) for n, v in zip(["g", "be", "mu", "var"], bn)]
    m = qonnx_model("qonnx_channels_last", nodes, [f32_info("x", [2, 6, 6, 3])],
                    [f32_info("y", [2, 3, 3, 4])], inits, {dom: 13},
                    [f32_info("c", [2, 6, 6, 4]), f32_info("p", [2, 3, 3, 4])])
    save_case("qonnx_channels_last", m, {"x": x}, qonnx_run(m, {"x": x}))


def widened(model):
    """The model with every float16/bfloat16 tensor, type and Cast target made f32 (values
    widened exactly): what cimc runs, and what onnxruntime runs as the reference."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    halves = (TensorProto.FLOAT16, TensorProto.BFLOAT16)

    def widen_tensor(t):
        if t.data_type in halves:
            a = numpy_helper.to_array(t).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(a, t.name))

    def widen_graph(g):
        for t in g.initializer:
            widen_tensor(t)
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.tensor_type.elem_type in halves:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    widen_tensor(a.t)
                if n.op_type == "Cast" and a.name == "to" and a.i in halves:
                    a.i = TensorProto.FLOAT
    widen_graph(m.graph)
    return m


def f16_cnn():
    """The two-head CNN converted by onnxconverter-common's float16 converter: float16
    weights, inputs and outputs. The input is stored in float16 (cimc widens it), `x_f16.npy`
    beside it too (`<f2`); the reference, in f32, is onnxruntime on the widened model, and
    onnxruntime's own float16 run agrees with it to the printed error (2.2e-4 of the largest
    output)."""
    from onnxconverter_common import float16
    m32 = onnx.load(os.path.join(ROOT, "two_outputs", "model.onnx"))
    m = float16.convert_float_to_float16(m32, keep_io_types=False)
    x = np.load(os.path.join(ROOT, "two_outputs", "x.npy")).astype(np.float16)
    ref = ort_run(widened(m), {"x": x.astype(np.float32)})
    own = ort_run(m, {"x": x})
    for k in ref:
        err = np.abs(own[k].astype(np.float32) - ref[k]).max() / np.abs(ref[k]).max()
        print(f"  f16_cnn {k}: onnxruntime's float16 run vs f32, max error {err:.2e} of the max")
    save_case("f16_cnn", m, {"x": x}, ref)
    np.save(os.path.join(ROOT, "f16_cnn", "x_f16.npy"), x)


def f16_cast():
    """The same converter keeping f32 inputs and outputs: Cast to float16 after the input and
    back before each output."""
    from onnxconverter_common import float16
    m32 = onnx.load(os.path.join(ROOT, "two_outputs", "model.onnx"))
    m = float16.convert_float_to_float16(m32, keep_io_types=True)
    x = np.load(os.path.join(ROOT, "two_outputs", "x.npy"))
    x = x.astype(np.float16).astype(np.float32)
    save_case("f16_cast", m, {"x": x}, ort_run(widened(m), {"x": x}))


def bf16_mlp():
    """bfloat16 weights by hand (one as raw_data, one as bits in int32_data, as the ONNX
    spec allows), a Cast of the f32 input to bfloat16 and of the result back to f32.
    onnxruntime has no bfloat16 MatMul on CPU: the reference is the widened model."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 5)).astype(np.float32)
    b = rng.normal(0, 0.1, 5).astype(np.float32)

    def bf16_bits(a):
        # Round to nearest even, as a bfloat16 conversion does.
        u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

    wt = helper.make_tensor("w", TensorProto.BFLOAT16, w.shape, bf16_bits(w).tobytes(), raw=True)
    bt = TensorProto(name="b", data_type=TensorProto.BFLOAT16, dims=[5])
    bt.int32_data.extend(int(v) for v in bf16_bits(b))
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.BFLOAT16),
        helper.make_node("MatMul", ["xh", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT),
    ]
    g = helper.make_graph(nodes, "bf16_mlp", [f32_info("x", [3, 8])], [f32_info("y", [3, 5])],
                          [wt, bt])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    x = rng.normal(0, 1, (3, 8)).astype(np.float32)
    # The input as cimc sees it after the Cast: rounded to bfloat16 by onnxruntime, kept f32
    # by cimc; an input already in bfloat16 makes both the same.
    x = (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)
    save_case("bf16_mlp", m, {"x": x}, ort_run(widened(m), {"x": x}))


def qonnx_floatquant():
    """FloatQuant as Brevitas exports FP8: e4m3 (bias 7, max_val 448) with a scalar scale and
    ROUND, e5m2 (bias 15, max_val 57344 capped at 30000) with a per-channel scale and FLOOR.
    The input spans zero, the subnormals, the normals and beyond the largest value."""
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1, (2, 3, 4, 4)) * np.exp2(rng.integers(-12, 10, (2, 3, 4, 4))))
    x = x.astype(np.float32)
    x[0, 0, 0, :] = [0.0, -0.0, 1e-30, -1e-30]
    sc = np.array([0.5, 0.01, 3.0], np.float32).reshape(1, 3, 1, 1)
    nodes = [
        helper.make_node("FloatQuant", ["x", "s1", "e4", "m3", "b7", "max1"], ["y1"],
                         domain="onnx.brevitas", has_inf=0, has_nan=1, has_subnormal=1,
                         rounding_mode="ROUND", saturation=1),
        helper.make_node("FloatQuant", ["x", "sc", "e5", "m2", "b15", "max2"], ["y2"],
                         domain=GENERAL, has_inf=1, has_nan=0, has_subnormal=1,
                         rounding_mode="FLOOR", saturation=1),
    ]
    inits = [const("s1", np.float32(0.02)), const("e4", np.float32(4)), const("m3", np.float32(3)),
             const("b7", np.float32(7)), const("max1", np.float32(448)), const("sc", sc),
             const("e5", np.float32(5)), const("m2", np.float32(2)), const("b15", np.float32(15)),
             const("max2", np.float32(30000))]
    outs = [f32_info("y1", [2, 3, 4, 4]), f32_info("y2", [2, 3, 4, 4])]
    m = qonnx_model("qonnx_floatquant", nodes, [f32_info("x", [2, 3, 4, 4])], outs, inits,
                    {"onnx.brevitas": 1, GENERAL: 1})
    save_case("qonnx_floatquant", m, {"x": x}, qonnx_run(m, {"x": x}))


MS = "com.microsoft"


def ort_qlinear_lookup():
    """QLinearSigmoid and QLinearLeakyRelu at every u8 and i8 code (onnxruntime's tables)."""
    xu = np.arange(256, dtype=np.uint8).reshape(1, 256)
    xi = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    nodes = [
        helper.make_node("QLinearSigmoid", ["xu", "s_in", "zu", "s_sig", "zu0"], ["sig_u"],
                         domain=MS),
        helper.make_node("QLinearSigmoid", ["xi", "s_in", "zi", "s_sig_i", "zi_out"], ["sig_i"],
                         domain=MS),
        helper.make_node("QLinearLeakyRelu", ["xu", "s_in", "zu", "s_lr", "zu_lr"], ["lr_u"],
                         domain=MS, alpha=0.1),
        helper.make_node("QLinearLeakyRelu", ["xi", "s_in", "zi", "s_lr", "zi"], ["lr_i"],
                         domain=MS),
    ]
    inits = [const("s_in", np.float32(0.0473)), const("zu", np.uint8(131)),
             const("zi", np.int8(3)), const("s_sig", np.float32(1 / 255)),
             const("zu0", np.uint8(0)), const("s_sig_i", np.float32(1 / 256)),
             const("zi_out", np.int8(-128)), const("s_lr", np.float32(0.0391)),
             const("zu_lr", np.uint8(40))]
    u8 = lambda n, sh: helper.make_tensor_value_info(n, TensorProto.UINT8, sh)
    i8 = lambda n, sh: helper.make_tensor_value_info(n, TensorProto.INT8, sh)
    g = helper.make_graph(nodes, "ort_qlinear_lookup",
                          [u8("xu", [1, 256]), i8("xi", [1, 256])],
                          [u8("sig_u", [1, 256]), i8("sig_i", [1, 256]), u8("lr_u", [1, 256]),
                           i8("lr_i", [1, 256])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    feeds = {"xu": xu, "xi": xi}
    save_case("ort_qlinear_lookup", m, feeds, ort_run(m, feeds))


def ort_resize_u8():
    """Resize on u8 codes (linear with pytorch_half_pixel and with align_corners, nearest by
    sizes), and MaxPool, Transpose and Concat on them, as a QOperator model runs them."""
    x = np.random.default_rng(0).integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)
    sizes = const("sizes", np.array([1, 2, 10, 9], np.int64))
    scales = const("scales", np.array([1, 1, 1.5, 1.5], np.float32))
    nodes = [
        helper.make_node("Resize", ["x", "", "", "sizes"], ["lin"], mode="linear",
                         coordinate_transformation_mode="pytorch_half_pixel"),
        helper.make_node("Resize", ["x", "", "scales"], ["ac"], mode="linear",
                         coordinate_transformation_mode="align_corners"),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["near"], mode="nearest"),
        helper.make_node("MaxPool", ["x"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["mp"], ["tr"], perm=[0, 1, 3, 2]),
        helper.make_node("Concat", ["mp", "tr"], ["cat"], axis=1),
    ]
    u8 = lambda n, sh: helper.make_tensor_value_info(n, TensorProto.UINT8, sh)
    g = helper.make_graph(nodes, "ort_resize_u8", [u8("x", [1, 2, 5, 5])],
                          [u8("lin", [1, 2, 10, 9]), u8("ac", [1, 2, 7, 7]),
                           u8("near", [1, 2, 10, 9]), u8("cat", [1, 4, 2, 2])], [sizes, scales])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save_case("ort_resize_u8", m, {"x": x}, ort_run(m, {"x": x}))


def ort_per_tensor_mixed_shapes():
    """A bias dequantized with scale f32[1] and zero point i32[] (onnxruntime's quantizer), and
    a QuantizeLinear with scale f32[] and zero point u8[1]."""
    x = np.random.default_rng(0).integers(-1000, 1000, (2, 4)).astype(np.int32)
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["d"]),
        helper.make_node("QuantizeLinear", ["d", "s2", "z2"], ["y"]),
    ]
    inits = [const("s", np.array([0.0031], np.float32)), const("z", np.int32(0)),
             const("s2", np.float32(0.05)), const("z2", np.array([128], np.uint8))]
    g = helper.make_graph(nodes, "ort_per_tensor_mixed_shapes",
                          [helper.make_tensor_value_info("x", TensorProto.INT32, [2, 4])],
                          [f32_info("d", [2, 4]),
                           helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save_case("ort_per_tensor_mixed_shapes", m, {"x": x}, ort_run(m, {"x": x}))


def dim_minus_one():
    """A graph input `[-1, 6]` (Snips' Tract exports): the -1 is a dynamic dim."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (6, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    g = helper.make_graph(nodes, "dim_minus_one", [f32_info("x", [5, 6])], [f32_info("y", None)],
                          [const("w", w)])
    g.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    x = rng.normal(0, 1, (5, 6)).astype(np.float32)
    save_case("dim_minus_one", m, {"x": x}, ort_run(m, {"x": x}))


def topk_v1():
    """TopK of opset 1: k an attribute, the default axis (-1), both outputs, with ties."""
    x = np.random.default_rng(0).integers(-4, 5, (3, 7)).astype(np.float32)
    nodes = [helper.make_node("TopK", ["x"], ["v", "i"], k=3)]
    g = helper.make_graph(nodes, "topk_v1", [f32_info("x", [3, 7])],
                          [f32_info("v", [3, 3]),
                           helper.make_tensor_value_info("i", TensorProto.INT64, [3, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    m.ir_version = 8
    save_case("topk_v1", m, {"x": x}, ort_run(m, {"x": x}))


CASES = {
    "two_outputs": two_outputs,
    "f16_cnn": f16_cnn,
    "f16_cast": f16_cast,
    "bf16_mlp": bf16_mlp,
    "qonnx_quant_brevitas": qonnx_quant_brevitas,
    "qonnx_bipolar": qonnx_bipolar,
    "qonnx_trunc_v1": lambda: qonnx_trunc(1),
    "qonnx_trunc_v2": lambda: qonnx_trunc(2),
    "qonnx_multithreshold": qonnx_multithreshold,
    "qonnx_channels_last": qonnx_channels_last,
    "qonnx_floatquant": qonnx_floatquant,
    "ort_qlinear_lookup": ort_qlinear_lookup,
    "ort_resize_u8": ort_resize_u8,
    "ort_per_tensor_mixed_shapes": ort_per_tensor_mixed_shapes,
    "dim_minus_one": dim_minus_one,
    "topk_v1": topk_v1,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or CASES:
        CASES[name]()
        print("wrote", name)
