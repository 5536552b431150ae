#!/usr/bin/env python3
"""Per-tensor against per-token activation scales on the trained transformers (issue 20).

Usage: activation_granularity.py [--limit N] [--bits 8,6,5,4] [--models mnist_vit_ts17,...]

Fake quantization in onnxruntime: every activation a program holds (the outputs of Conv, MatMul,
Gemm, Add, Sub, Mul, Div, LayerNormalization, Softmax, Erf and Concat with a float result; a
causal mask's Where passes its quantized scores and an exact -inf, as cimc's programs do) is rounded to codes and back, the weights of every MatMul/Gemm/Conv to 8-bit per-output-channel
symmetric codes, under three activation schemes at each bit width:

- per-tensor: one scale and zero point per activation from its calibrated min/max (cimc's
  default, `passes/src/util.rs` `activation_params`);
- per-token, static: one per token position (the second-to-last axis of a rank >= 3 tensor:
  a ViT's 17 tokens, the rows of an attention matrix), calibrated the same way;
- per-token, dynamic: one per token of each input, from that token's own min/max at run time.

Prints a markdown table of accuracy (top-1 for the ViT, token accuracy for the decoder).
Needs onnx, onnxruntime and numpy (/work/venv-optable/bin/python).
"""
import argparse
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, TensorProto

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SETS = os.path.join(ROOT, "tests/data/sets")
SHARED = os.path.join(ROOT, "../shared/data")
QUANTIZED_OPS = {"Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "LayerNormalization",
                 "Softmax", "Erf", "Concat"}


def data(model):
    """(test inputs, targets, calibration inputs, input name)."""
    if model.startswith("sort_decoder"):
        return (np.load(f"{SETS}/sort_test_x.npy"), np.load(f"{SETS}/sort_test_y.npy"),
                np.load(f"{SETS}/sort_calib_x.npy"), "tokens")
    if os.path.exists(f"{SHARED}/mnist_test_x.npy"):
        x, y = np.load(f"{SHARED}/mnist_test_x.npy"), np.load(f"{SHARED}/mnist_test_y.npy")
    else:
        x, y = np.load(f"{SETS}/mnist_test500_x.npy"), np.load(f"{SETS}/mnist_test500_y.npy")
    return x, y, np.load(f"{SETS}/mnist_calib200_x.npy"), "image"


def accuracy(logits, y):
    pred = logits.argmax(-1)
    scored = y >= 0
    return 100.0 * float((pred[scored] == y[scored]).mean())


def run(m, x, name, outputs=None, batch=500):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = []
    for i in range(0, len(x), batch):
        outs.append(sess.run(outputs, {name: x[i:i + batch]}))
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def activations(m):
    """The float activations to quantize, with their ranks."""
    inferred = onnx.shape_inference.infer_shapes(m)
    info = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    inits = {i.name for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type not in QUANTIZED_OPS:
            continue
        for o in n.output[:1]:
            v = info.get(o)
            if v is None or v.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            rank = len(v.type.tensor_type.shape.dim)
            if rank >= 2 and o not in inits:
                out.append((o, rank))
    return out


def quantize_weights(m):
    """8-bit per-output-channel symmetric weights of every MatMul/Gemm/Conv, in place."""
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type not in ("MatMul", "Gemm", "Conv") or len(n.input) < 2:
            continue
        w = inits.get(n.input[1])
        if w is None:
            continue
        a = numpy_helper.to_array(w).astype(np.float32)
        if a.ndim < 2:
            continue
        trans = n.op_type == "Gemm" and any(t.name == "transB" and t.i for t in n.attribute)
        axis = 0 if n.op_type == "Conv" or trans else a.ndim - 1
        red = tuple(d for d in range(a.ndim) if d != axis)
        s = np.abs(a).max(axis=red, keepdims=True) / 127.0
        s[s == 0] = 1.0
        q = np.clip(np.round(a / s), -127, 127) * s
        w.CopyFrom(numpy_helper.from_array(q.astype(np.float32), w.name))


def fake_quant_nodes(x, y, bits, scheme, stats, rank, opset):
    """Nodes and initializers writing `y` = `x` rounded to `bits`-bit codes and back."""
    levels = float(2 ** bits - 1)
    nodes, inits = [], []

    def reduce(op, i, o):
        # The last axis: an attribute before opset 18, an input from it.
        if opset < 18:
            return helper.make_node(op, [i], [o], keepdims=1, axes=[-1])
        inits.append(helper.make_tensor("ax_" + o, TensorProto.INT64, [1], [-1]))
        return helper.make_node(op, [i, "ax_" + o], [o], keepdims=1)

    c = lambda name, v: inits.append(numpy_helper.from_array(np.asarray(v, np.float32), name))
    if scheme == "dynamic" and rank >= 3:
        c("zero_" + y, 0.0)
        c("levels_" + y, levels)
        c("eps_" + y, 1e-12)
        nodes += [
            reduce("ReduceMin", x, "rmin_" + y),
            reduce("ReduceMax", x, "rmax_" + y),
            helper.make_node("Min", ["rmin_" + y, "zero_" + y], ["lo_" + y]),
            helper.make_node("Max", ["rmax_" + y, "zero_" + y], ["hi_" + y]),
            helper.make_node("Sub", ["hi_" + y, "lo_" + y], ["span_" + y]),
            helper.make_node("Div", ["span_" + y, "levels_" + y], ["s0_" + y]),
            helper.make_node("Max", ["s0_" + y, "eps_" + y], ["s_" + y]),
            helper.make_node("Div", ["lo_" + y, "s_" + y], ["lz_" + y]),
            helper.make_node("Neg", ["lz_" + y], ["nz_" + y]),
            helper.make_node("Round", ["nz_" + y], ["z_" + y]),
        ]
        s, z = "s_" + y, "z_" + y
    else:
        lo, hi = stats[scheme if rank >= 3 else "tensor"][x]
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        s = (hi - lo) / levels
        s = np.where(s > 0, s, 1.0)
        z = np.clip(np.round(-lo / s), 0, levels)
        c("s_" + y, s)
        c("z_" + y, z)
        s, z = "s_" + y, "z_" + y
    c("qlo_" + y, 0.0)
    c("qhi_" + y, levels)
    nodes += [
        helper.make_node("Div", [x, s], ["xs_" + y]),
        helper.make_node("Round", ["xs_" + y], ["r_" + y]),
        helper.make_node("Add", ["r_" + y, z], ["q_" + y]),
        helper.make_node("Max", ["q_" + y, "qlo_" + y], ["q1_" + y]),
        helper.make_node("Min", ["q1_" + y, "qhi_" + y], ["q2_" + y]),
        helper.make_node("Sub", ["q2_" + y, z], ["c_" + y]),
        helper.make_node("Mul", ["c_" + y, s], [y]),
    ]
    return nodes, inits


def calibrate(m, acts, calib, name):
    """Per-tensor and per-token-position min/max of every activation over the calibration set."""
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    present = {o.name for o in probe.graph.output}
    for a, _ in acts:
        if a not in present:
            probe.graph.output.append(helper.make_empty_tensor_value_info(a))
    outs = run(probe, calib, name, [a for a, _ in acts], batch=100)
    stats = {"tensor": {}, "static": {}}
    for (a, rank), v in zip(acts, outs):
        v = np.where(np.isfinite(v), v, np.nan)
        stats["tensor"][a] = (np.nanmin(v), np.nanmax(v))
        if rank >= 3:
            axes = tuple(d for d in range(rank) if d != rank - 2)
            stats["static"][a] = (np.nanmin(v, axis=axes, keepdims=True)[0:1],
                                  np.nanmax(v, axis=axes, keepdims=True)[0:1])
    return stats


def with_fake_quant(m, acts, bits, scheme, stats):
    q = onnx.ModelProto()
    q.CopyFrom(m)
    quantize_weights(q)
    g = q.graph
    nodes = list(g.node)
    del g.node[:]
    rename = {}
    for n in nodes:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
        g.node.append(n)
        for a, rank in acts:
            if n.output and n.output[0] == a:
                y = a + "_fq"
                opset = max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx"))
                fq, inits = fake_quant_nodes(a, y, bits, scheme, stats, rank, opset)
                g.node.extend(fq)
                g.initializer.extend(inits)
                rename[a] = y
    for o in g.output:
        if o.name in rename:
            g.node.append(helper.make_node("Identity", [rename[o.name]], [o.name + "_out"]))
            o.name = o.name + "_out"
    return q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--bits", default="8,6,5,4")
    ap.add_argument("--models", default="mnist_vit_ts17,sort_decoder_ts17")
    a = ap.parse_args()
    print("| model | activation bits | per-tensor | per-token, static | per-token, dynamic |")
    print("|---|---|---|---|---|")
    for model in a.models.split(","):
        m = onnx.load(os.path.join(ROOT, f"tests/data/models/{model}.onnx"))
        x, y, calib, name = data(model)
        if a.limit:
            x, y = x[:a.limit], y[:a.limit]
        acts = activations(m)
        stats = calibrate(m, acts, calib, name)
        float_acc = accuracy(run(m, x, name)[0], y)
        print(f"| `{model}` | float | {float_acc:.2f} | | |", flush=True)
        for bits in [int(b) for b in a.bits.split(",")]:
            row = []
            for scheme in ("tensor", "static", "dynamic"):
                q = with_fake_quant(m, acts, bits, scheme, stats)
                row.append(accuracy(run(q, x, name)[0], y))
            print(f"| `{model}` | {bits} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
