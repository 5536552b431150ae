#!/usr/bin/env python3
"""Seeded inputs and reference outputs for the corpus of real exports (tests/data/corpus/).

Usage: corpus_refs.py [--extra-dir DIR] [--only ID,...]

For every model of tests/data/corpus/corpus.toml whose file is present — vendored ones in
tests/data/corpus/models/<id>.onnx, the others in DIR/models/<id>.onnx — writes beside it, in
ref/<id>/:
  input_<k>.npy   the k-th graph input: normal(0, 1) f32 (integers uniform in [0, int_high)),
                  from numpy's default_rng seeded with crc32(id); symbolic dimensions are the
                  manifest's input_shape, or 1 for a leading batch dimension
  output_<k>.npy  the reference's k-th output on those inputs
  index.json      input and output names and files, and which reference made the outputs
The reference is onnxruntime (CPU, every graph optimization off, so each node keeps its ONNX
meaning: QDQ pairs are not fused into integer kernels), or qonnx's executor for models in
QONNX/FINN custom domains (manifest reference = "qonnx"); "none: ..." writes inputs only.
Needs onnx, onnxruntime, numpy (and qonnx for those models); Python >= 3.11 (tomllib).
"""
import json
import os
import sys
import tomllib
import zlib

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENDORED = os.path.join(ROOT, "tests/data/corpus")

NP_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 2: np.uint8,
            3: np.int8, 9: np.bool_}


def graph_inputs(m):
    """(name, elem_type, dims) of the true graph inputs (initializers listed as inputs are not)."""
    init = {i.name for i in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in init:
            continue
        t = i.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
        out.append((i.name, t.elem_type, dims))
    return out


def qonnx_datatypes(m):
    """QONNX/FINN datatype annotations of tensors (`finn_datatype`), e.g. {'global_in': 'UINT8'}."""
    out = {}
    for a in m.graph.quantization_annotation:
        for kv in a.quant_parameter_tensor_names:
            if kv.key == "finn_datatype":
                out[a.tensor_name] = kv.value
    return out


def annotated_values(rng, datatype, dims):
    """Seeded values a QONNX datatype annotation allows (qonnx's executor checks them)."""
    if datatype == "BIPOLAR":
        return (rng.integers(0, 2, dims) * 2 - 1).astype(np.float32)
    for kind, lo in (("UINT", 0), ("INT", None)):
        if datatype.startswith(kind) and datatype[len(kind):].isdigit():
            bits = int(datatype[len(kind):])
            lo, hi = (0, 2 ** bits) if lo == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1))
            return rng.integers(lo, hi, dims).astype(np.float32)
    return None


def make_inputs(entry, m):
    rng = np.random.default_rng(zlib.crc32(entry["id"].encode()))
    annotations = qonnx_datatypes(m)
    shapes = entry.get("input_shape")
    feeds = []
    for k, (name, elem, dims) in enumerate(graph_inputs(m)):
        if shapes:
            dims = shapes[k]
        elif dims and dims[0] is None:
            dims = [1] + dims[1:]
        if any(d is None for d in dims):
            raise SystemExit(f"{entry['id']}: input '{name}' has symbolic dims {dims}: give input_shape")
        dtype = NP_TYPES[elem]
        annotated = annotated_values(rng, annotations[name], dims) if name in annotations else None
        if annotated is not None:
            x = annotated
        elif np.issubdtype(dtype, np.floating):
            x = rng.standard_normal(dims).astype(dtype)
        elif dtype is np.bool_:
            x = rng.integers(0, 2, dims).astype(np.bool_)
        else:
            x = rng.integers(0, entry.get("int_high", 2), dims).astype(dtype)
        feeds.append((name, x))
    return feeds


def run_reference(entry, path, feeds):
    ref = entry.get("reference", "onnxruntime")
    if ref == "qonnx":
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx

        from qonnx.util.cleanup import cleanup_model

        import importlib.metadata

        model = cleanup_model(ModelWrapper(path))
        # cleanup_model renames the graph's inputs and outputs (global_in, global_out...), and
        # execute_onnx ignores a feed of a name the graph does not have, running on what the
        # input held before: the feeds go to the cleaned inputs by position, and the outputs
        # keep the file's names.
        cleaned = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        if len(cleaned) != len(feeds):
            raise SystemExit(f"{path}: {len(feeds)} inputs, the cleaned model has {len(cleaned)}")
        out = execute_onnx(model, {c: x for c, (_, x) in zip(cleaned, feeds)})
        names = [o.name for o in onnx.load(path, load_external_data=False).graph.output]
        outs = [out[o.name] for o in model.graph.output]
        return f"qonnx {importlib.metadata.version('qonnx')}", names, outs
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    try:
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in s.get_outputs()]
        return f"onnxruntime {ort.__version__}", names, s.run(None, dict(feeds))
    except ort.capi.onnxruntime_pybind11_state.NotImplemented:
        # onnxruntime has no kernels for some ops before opset 7 (Gemm-6, PRelu-6...): the onnx
        # package's reference implementation runs them.
        from onnx.reference import ReferenceEvaluator

        ev = ReferenceEvaluator(path)
        return f"onnx.reference {onnx.__version__}", list(ev.output_names), ev.run(None, dict(feeds))


def make_refs(entry, path, out_dir):
    m = onnx.load(path, load_external_data=False)
    feeds = make_inputs(entry, m)
    os.makedirs(out_dir, exist_ok=True)
    index = {"inputs": [], "outputs": [], "reference": entry.get("reference", "onnxruntime")}
    for k, (name, x) in enumerate(feeds):
        np.save(os.path.join(out_dir, f"input_{k}.npy"), x)
        index["inputs"].append({"name": name, "file": f"input_{k}.npy", "shape": list(x.shape)})
    if not index["reference"].startswith("none"):
        engine, names, outs = run_reference(entry, path, feeds)
        index["reference"] = engine
        for k, (name, y) in enumerate(zip(names, outs)):
            y = np.asarray(y)
            np.save(os.path.join(out_dir, f"output_{k}.npy"), y)
            index["outputs"].append({"name": name, "file": f"output_{k}.npy", "shape": list(y.shape)})
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


def main():
    extra = sys.argv[sys.argv.index("--extra-dir") + 1] if "--extra-dir" in sys.argv else None
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
    with open(os.path.join(VENDORED, "corpus.toml"), "rb") as f:
        models = tomllib.load(f)["model"]
    for e in models:
        if only and e["id"] not in only:
            continue
        base = VENDORED if e["vendored"] else extra
        path = os.path.join(base, "models", e["id"] + ".onnx") if base else None
        if not path or not os.path.exists(path):
            print(f"{e['id']}: not present, skipped")
            continue
        try:
            make_refs(e, path, os.path.join(base, "ref", e["id"]))
            print(f"{e['id']}: ok")
        except Exception as err:  # a reference that cannot run is reported, not fatal
            print(f"{e['id']}: FAILED {type(err).__name__}: {str(err)[:300]}")


if __name__ == "__main__":
    main()
