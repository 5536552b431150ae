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
}

if __name__ == "__main__":
    for name in sys.argv[1:] or CASES:
        CASES[name]()
        print("wrote", name)
