#!/usr/bin/env python3
"""Writes the hostile inputs of issue 25 into tests/data/bad/hostile/ (committed), with the
manifest hostile.json that compiler/tests/cli_hostile_data.rs runs: for each case, the `cimc`
command and the words its one `error:` line must hold. Every case must end with exit 1 (never
exit 2, a panic or a signal) in bounded time and memory.

Needs: onnx, numpy. Deterministic. Run from anywhere:
    /work/venv-optable/bin/python scripts/make_hostile_inputs.py
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "bad", "hostile")
os.makedirs(OUT, exist_ok=True)
CASES = []


def model(nodes, inputs, outputs, inits=(), name="hostile"):
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def save(m, name):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return name


def case(name, args, expect, why):
    """`args` use {dir} for this folder, {data} for tests/data and {tmp} for a scratch folder."""
    CASES.append({"name": name, "args": args, "expect": expect, "why": why})


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# --- constants the importer would create: eight 1 GiB ConstantOfShape, 8 GiB from ~400 bytes.
shape = numpy_helper.from_array(np.array([1 << 28], np.int64), "s")
nodes = [
    helper.make_node("ConstantOfShape", ["s"], [f"c{i}"], name=f"fill{i}",
                     value=numpy_helper.from_array(np.array([float(i)], np.float32)))
    for i in range(8)
]
nodes.append(helper.make_node("Sum", [f"c{i}" for i in range(8)], ["y"], name="sum"))
f = save(model(nodes, [], [f32("y", [1 << 28])], [shape]), "created_8gib.onnx")
case("created constants", ["dump", "{dir}/" + f], [f, "--max-created-bytes"],
     "8 GiB of ConstantOfShape from a few hundred bytes")

# --- activations: four Expands of 2 GiB each and their sum, 10 GiB live at once.
shape = numpy_helper.from_array(np.array([1 << 29], np.int64), "s")
nodes = [helper.make_node("Expand", ["x", "s"], [f"e{i}"], name=f"expand{i}") for i in range(4)]
nodes.append(helper.make_node("Sum", [f"e{i}" for i in range(4)], ["y"], name="sum"))
f = save(model(nodes, [f32("x", [1])], [f32("y", [1 << 29])], [shape]), "activations_10gib.onnx")
np.save(os.path.join(OUT, "one.npy"), np.ones([1], np.float32))
# One clean sample for digits_cnn (streams have a batch of one).
np.save(os.path.join(OUT, "digit1.npy"),
        np.load(os.path.join(ROOT, "tests", "data", "sets", "digits_test_x.npy"))[:1])
case("activations of a run", ["run", "{dir}/" + f, "--input", "{dir}/one.npy"],
     [f, "--max-activation-bytes"], "10 GiB of activations planned from a 1-element input")
case("activations of a compile", ["compile", "{dir}/" + f, "-o", "{tmp}/x.cimp"],
     [f, "--max-activation-bytes"], "calibration would run the same 10 GiB")

# --- rank: a Reshape to 2,000 dimensions of 1 (packed int64 ones, a few bytes each).
shape = numpy_helper.from_array(np.ones([2000], np.int64), "s")
nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
         helper.make_node("Relu", ["r"], ["y"], name="relu")]
f = save(model(nodes, [f32("x", [1])], [f32("y", None)], [shape]), "rank_2000.onnx")
case("rank of an inferred value", ["compile", "{dir}/" + f, "-o", "{tmp}/x.cimp"],
     [f, "rank", "--max-rank"], "a high-rank model kept compile busy for minutes")
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1] * 300)
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
f = save(model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y]), "rank_300_input.onnx")
case("rank of an input", ["dump", "{dir}/" + f], [f, "rank", "--max-rank"],
     "an input of 300 dimensions")

# --- a batch of a million samples given on the command line: calibration would hold them all.
case("--batch 1000000", ["compile", "{data}/models/digits_cnn.onnx", "--batch", "1000000",
                         "--calib", "{data}/sets/digits_calib_x.npy", "-o", "{tmp}/x.cimp"],
     ["digits_cnn.onnx", "--max-activation-bytes"], "ran for minutes")

# --- a requantization multiplier below 2^-62: weights of 1e-20 beside a bias of 1.
w = numpy_helper.from_array(np.full([4, 4], 1e-20, np.float32), "w")
b = numpy_helper.from_array(np.ones([4], np.float32), "b")
w2 = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w2")
nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2")]
f = save(model(nodes, [f32("x", [1, 4])], [f32("y", [1, 4])], [w, b, w2]), "tiny_multiplier.onnx")
np.save(os.path.join(OUT, "x4.npy"), np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4))
case("multiplier too small", ["compile", "{dir}/" + f, "--calib", "{dir}/x4.npy", "-o", "{tmp}/x.cimp"],
     [f, "'fc'", "too small"], "a requantization multiplier below 2^-62")
case("multiplier too small with a target",
     ["compile", "{dir}/" + f, "--calib", "{dir}/x4.npy", "--target", "isaac", "-o", "{tmp}/x.cimp"],
     [f, "'fc'", "too small"], "the same model was exit 2 with --target")

# --- a stream declaring 2^32-1 scratchpad words (32 GiB of simulator memory).
STREAM = """; cimc instruction stream, format 2
.stream "huge"
.schedule pipelined
.arrays 0
.global 0

.core 0 scratch={scratch}
halt
"""
with open(os.path.join(OUT, "scratch_huge.s"), "w") as fh:
    fh.write(STREAM.format(scratch=(1 << 32) - 1))
case("scratchpad of 2^32-1 words", ["asm", "{dir}/scratch_huge.s", "-o", "{tmp}/x.cims"],
     ["scratch_huge.s", "words"], "assembled, then sim exited 2")
with open(os.path.join(OUT, "global_huge.s"), "w") as fh:
    fh.write(STREAM.format(scratch=1).replace(".global 0", f".global {(1 << 32) - 1}"))
case("global memory of 2^32-1 words", ["asm", "{dir}/global_huge.s", "-o", "{tmp}/x.cims"],
     ["global_huge.s", "words"], "32 GiB of simulator memory")

# --- a target of 2^32 arrays, and of 2^40.
isaac = open(os.path.join(ROOT, "targets", "isaac.toml")).read()
for n in [1 << 32, 1 << 40]:
    name = f"arrays_{n}.toml"
    with open(os.path.join(OUT, name), "w") as fh:
        fh.write(isaac.replace("count = 16128", f"count = {n}"))
    case(f"array.count = {n}",
         ["compile", "{data}/models/digits_cnn.onnx", "--calib", "{data}/sets/digits_calib_x.npy",
          "--target", "{dir}/" + name, "-o", "{tmp}/x.cimp"],
         [name, "array.count"], "aborted (exit 134) or ran for minutes")

# --- a .npy header giving 'shape' twice: numpy takes the last, (1, 1, 8, 8).
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 7), 'shape': (1, 1, 8, 8), }"
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(os.path.join(OUT, "dup_shape.npy"), "wb") as fh:
    fh.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    fh.write(np.full(64, 0.5, np.float32).tobytes())
assert np.load(os.path.join(OUT, "dup_shape.npy")).shape == (1, 1, 8, 8)

# --- inputs that do not exist: each error names the missing file.
for flag, cmd in [("model", ["compile", "{tmp}/missing.onnx", "-o", "{tmp}/x.cimp"]),
                  ("--calib", ["compile", "{data}/models/digits_cnn.onnx", "--calib", "{tmp}/missing.npy", "-o", "{tmp}/x.cimp"]),
                  ("--target", ["compile", "{data}/models/digits_cnn.onnx", "--target", "{tmp}/missing.toml", "-o", "{tmp}/x.cimp"]),
                  ("--input", ["run", "{data}/models/digits_cnn.onnx", "--input", "{tmp}/missing.npy"]),
                  ("--labels", ["eval", "{data}/models/digits_cnn.onnx", "--data", "{data}/sets/digits_test_x.npy", "--labels", "{tmp}/missing.npy"]),
                  ("sim", ["sim", "{tmp}/missing.cims", "--input", "{tmp}/missing.npy"]),
                  ("disasm", ["disasm", "{tmp}/missing.cims"]),
                  ("asm", ["asm", "{tmp}/missing.s", "-o", "{tmp}/x.cims"])]:
    case(f"missing {flag}", cmd, ["missing"], "an error that names no file")

# --- a node name holding a newline and a directive: disasm -> asm must read it back.
w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc\n.core 7 scratch=9\r\x1b[2J")]
save(model(nodes, [f32("x", [1, 4])], [f32("y", [1, 4])], [w]), "newline_name.onnx")

with open(os.path.join(OUT, "hostile.json"), "w") as fh:
    json.dump(CASES, fh, indent=1)
    fh.write("\n")
print("wrote", len(CASES), "cases:", sorted(os.listdir(OUT)))
