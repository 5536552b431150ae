#!/usr/bin/env python3
"""Builds the committed seed corpora in fuzz/seeds/<target>/ (docs/fuzzing.md).

Seeds come from the repository's own files (conformance cases, vendored models, bad-input
test files, target presets, text IR cases), from programs and streams that `cimc compile`
makes of the vendored digits model, and from small hand-made edge cases written here with a
minimal protobuf / .npy encoder (no onnx or numpy package needed). Run from the repository
root after `cargo build --release -p cimc`; the output is deterministic.
"""
import glob
import hashlib
import os
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
CIMC = os.path.join(ROOT, "target", "release", "cimc")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, paths, prefix="", max_bytes=64 * 1024):
    for p in sorted(paths):
        if os.path.getsize(p) > max_bytes:
            continue
        rel = os.path.relpath(p, ROOT).replace(os.sep, "_")
        with open(p, "rb") as f:
            put(target, prefix + rel, f.read())


# --- a minimal protobuf encoder -------------------------------------------------------------
def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def tensor(name, dims, dtype=1, raw=None, external=None, floats=None):
    # TensorProto: dims=1, data_type=2, float_data=4, name=8, raw_data=9, external_data=13,
    # data_location=14.
    t = b"".join(f_varint(1, d) for d in dims) + f_varint(2, dtype) + f_bytes(8, name)
    if floats is not None:
        t += f_bytes(4, b"".join(struct.pack("<f", x) for x in floats))
    if raw is not None:
        t += f_bytes(9, raw)
    if external is not None:
        for k, v in external:
            t += f_bytes(13, f_bytes(1, k) + f_bytes(2, v))
        t += f_varint(14, 1)
    return t


def value_info(name, dims, dtype=1):
    # ValueInfoProto{name=1, type=2{tensor_type=1{elem_type=1, shape=2{dim=1{dim_value=1}}}}}
    shape = b"".join(f_bytes(1, f_varint(1, d)) for d in dims)
    tt = f_varint(1, dtype) + f_bytes(2, shape)
    return f_bytes(1, name) + f_bytes(2, f_bytes(1, tt))


def node(op, inputs, outputs, name=""):
    # NodeProto: input=1, output=2, name=3, op_type=4
    n = b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
    return n + f_bytes(3, name or op) + f_bytes(4, op)


def model(nodes, inputs, outputs, inits=(), opset=13):
    # GraphProto: node=1, name=2, initializer=5, input=11, output=12
    g = b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, "g")
    g += b"".join(f_bytes(5, t) for t in inits)
    g += b"".join(f_bytes(11, v) for v in inputs) + b"".join(f_bytes(12, v) for v in outputs)
    # ModelProto: ir_version=1, graph=7, opset_import=8{version=2}
    return f_varint(1, 8) + f_bytes(7, g) + f_bytes(8, f_varint(2, opset))


def npy(descr, shape, data, version=1, fortran="False"):
    sh = "(" + "".join(f"{d}," for d in shape) + ")"
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {sh}, }}\n"
    if version == 1:
        pre = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
    else:
        pre = bytes([0x93]) + b"NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header))
    return pre + header.encode() + data


def hand_made():
    x = value_info("x", [1, 4])
    y = value_info("y", [1, 4])
    relu = node("Relu", ["x"], ["y"])
    put("onnx_import", "hand-relu.onnx", model([relu], [x], [y]))
    # A 4 GB declared initializer with 16 bytes of raw data.
    big = tensor("w", [1 << 30], raw=b"\0" * 16)
    put("onnx_import", "hand-4gb-declared.onnx",
        model([node("Add", ["x", "w"], ["y"])], [x], [y], [big]))
    put("tensor_pb", "hand-4gb-declared.pb", big)
    # External data escaping the model's folder, absolute, and with a huge offset.
    for tag, ext in [("dotdot", [("location", "../../etc/passwd")]),
                     ("absolute", [("location", "/etc/passwd")]),
                     ("offset", [("location", "w.bin"), ("offset", "18446744073709551615"),
                                 ("length", "16")])]:
        t = tensor("w", [1, 4], external=ext)
        put("onnx_import", f"hand-external-{tag}.onnx",
            model([node("Add", ["x", "w"], ["y"])], [x], [y], [t]))
        put("tensor_pb", f"hand-external-{tag}.pb", t)
    put("tensor_pb", "hand-floats.pb", tensor("t", [2, 2], floats=[1.0, -2.0, 3.5, 0.0]))
    put("tensor_pb", "hand-raw-i64.pb", tensor("t", [3], dtype=7, raw=struct.pack("<3q", 1, -2, 3)))
    # A chain of nodes, and ops that create constants from a few bytes.
    chain = [node("Relu", [f"v{i}"], [f"v{i+1}"], f"r{i}") for i in range(64)]
    put("onnx_import", "hand-chain64.onnx",
        model(chain, [value_info("v0", [1, 4])], [value_info("v64", [1, 4])]))
    shape = tensor("s", [2], dtype=7, raw=struct.pack("<2q", 1000, 1000))
    put("onnx_import", "hand-constantofshape.onnx",
        model([node("ConstantOfShape", ["s"], ["y"])], [], [value_info("y", [1000, 1000])], [shape]))
    rng = [tensor(n, [], dtype=7, raw=struct.pack("<q", v)) for n, v in
           [("a", 0), ("b", 1 << 20), ("c", 1)]]
    put("onnx_import", "hand-range.onnx",
        model([node("Range", ["a", "b", "c"], ["y"])], [], [value_info("y", [1 << 20], 7)], rng, opset=11))
    # .npy: each version, each dtype, and lying headers.
    put("npy", "hand-v1-f32.npy", npy("<f4", [2, 3], struct.pack("<6f", *range(6))))
    put("npy", "hand-v2-i64.npy", npy("<i8", [2], struct.pack("<2q", -1, 7), version=2))
    put("npy", "hand-v3-u8.npy", npy("|u1", [4], b"\x01\x02\x03\x04", version=3))
    put("npy", "hand-scalar-f8.npy", npy("<f8", [], struct.pack("<d", 2.5)))
    put("npy", "hand-bool.npy", npy("|b1", [3], b"\x01\x00\x01"))
    put("npy", "hand-4gb-declared.npy", npy("<f4", [1 << 30], b"\0" * 16))
    put("npy", "hand-overflow.npy", npy("<f8", [1 << 62, 1 << 62], b""))
    put("npy", "hand-fortran.npy", npy("<f4", [1], b"\0" * 4, fortran="True"))
    put("npy", "hand-bigendian.npy", npy(">f4", [1], b"\0" * 4))
    # Target TOML edge cases.
    put("target_toml", "hand-empty.toml", b"")
    put("target_toml", "hand-huge-ints.toml",
        b"[crossbar]\nrows = 18446744073709551615\ncols = 9223372036854775807\n")


def compiled():
    """Programs and streams of the vendored digits model, made by cimc itself."""
    digits = ["examples/models/digits_cnn.onnx", "--calib", "examples/models/digits_calib_x.npy",
              "--calib-samples", "16"]
    runs = [
        ("program", "seed-digits.cimp", []),
        ("program", "seed-digits-edge.cimp", ["--target", "edge"]),
        ("program", "seed-digits-puma-w4a4.cimp",
         ["--wbits", "4", "--abits", "4", "--act-signed", "--target", "puma"]),
        ("stream", "seed-digits-edge.cims", ["--target", "edge", "--emit", "stream"]),
        ("stream", "seed-digits-edge-serial.cims",
         ["--target", "edge", "--schedule", "layer-serial", "--emit", "stream"]),
        ("stream", "seed-digits-isaac-arrays16.cims",
         ["--target", "isaac", "--arrays", "16", "--emit", "stream"]),
    ]
    tmp = os.path.join(ROOT, "target", "fuzz-seed-tmp")
    os.makedirs(tmp, exist_ok=True)
    for target, name, extra in runs:
        out = os.path.join(tmp, name)
        subprocess.run([CIMC, "compile", *digits, *extra, "-o", out], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        with open(out, "rb") as f:
            put(target, name, f.read())
    # A stream of format 3: the attention block's digital table and its instructions (lut,
    # mul, softmax, gather, gather_rows, matmul).
    attention = ["tests/data/attention/attention.onnx", "--calib",
                 "tests/data/attention/calib_tokens.npy", "--target", "isaac", "--emit", "stream"]
    out = os.path.join(tmp, "seed-attention-isaac.cims")
    subprocess.run([CIMC, "compile", *attention, "-o", out], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        put("stream", "seed-attention-isaac.cims", f.read())
    # Broken ones: cut in half, and the header alone.
    for target, name in [("program", "seed-digits.cimp"), ("stream", "seed-digits-edge.cims")]:
        with open(os.path.join(SEEDS, target, name), "rb") as f:
            data = f.read()
        put(target, "hand-truncated-" + name, data[: len(data) // 2])
        put(target, "hand-header-only-" + name, data[:12])


def npz_bytes(members):
    """A .npz (a zip of .npy members, stored), with fixed timestamps so the bytes are stable."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def hostile():
    """The hostile inputs of issue 25 (tests/data/bad/hostile/, scripts/make_hostile_inputs.py)
    and seeds of the .npz and stream-text decoders."""
    bad = f"{ROOT}/tests/data/bad/hostile"
    copy("onnx_import", glob.glob(f"{bad}/*.onnx"), "seed-")
    copy("npy", glob.glob(f"{bad}/*.npy"), "seed-")
    copy("target_toml", glob.glob(f"{bad}/*.toml"), "seed-")
    copy("stream_text", glob.glob(f"{bad}/*.s"), "seed-")
    for name in ["seed-digits-edge-serial.cims", "seed-digits-edge.cims"]:
        text = subprocess.run([CIMC, "disasm", os.path.join(SEEDS, "stream", name)], cwd=ROOT,
                              check=True, stdout=subprocess.PIPE).stdout
        if len(text) <= 64 * 1024:
            put("stream_text", name.replace(".cims", ".s"), text)
            put("stream_text", "hand-truncated-" + name.replace(".cims", ".s"),
                text[: len(text) // 2])
            break
    x = npy("<f4", (2, 3), struct.pack("<6f", *range(6)))
    y = npy("<i8", (2,), struct.pack("<2q", 3, 7))
    put("npz", "hand-two-arrays.npz", npz_bytes([("x.npy", x), ("y.npy", y)]))
    put("npz", "hand-duplicate-names.npz", npz_bytes([("x.npy", x), ("x.npy", y)]))
    put("npz", "hand-not-npy-member.npz", npz_bytes([("x.npy", b"not an array")]))
    put("npz", "hand-empty.npz", npz_bytes([]))
    whole = npz_bytes([("x.npy", x), ("y.npy", y)])
    put("npz", "hand-truncated.npz", whole[: len(whole) // 2])
    big = npy("<f4", (10**9, 10**9), b"")
    put("npz", "hand-huge-declared.npz", npz_bytes([("x.npy", big)]))


def main():
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    conf = os.path.join(ROOT, "tests", "data", "conformance")
    copy("onnx_import", glob.glob(f"{conf}/*/model.onnx"), "seed-")
    copy("onnx_import", glob.glob(f"{ROOT}/tests/data/bad/*.onnx"), "seed-")
    copy("onnx_import", [f"{ROOT}/examples/models/digits_cnn.onnx"], "seed-")
    # One input and one output per conformance case keeps the corpus small but varied.
    pbs = sorted(glob.glob(f"{conf}/*/test_data_set_0/input_0.pb"))
    pbs += sorted(glob.glob(f"{conf}/*/test_data_set_0/output_0.pb"))
    # Deduplicate by content.
    seen, uniq = set(), []
    for p in pbs:
        h = hashlib.sha1(open(p, "rb").read()).hexdigest()
        if h not in seen and os.path.getsize(p) <= 4096:
            seen.add(h)
            uniq.append(p)
    copy("tensor_pb", uniq, "seed-")
    copy("npy", glob.glob(f"{ROOT}/tests/data/bad/*.npy"), "seed-")
    copy("npy", glob.glob(f"{ROOT}/tests/data/qdq_ref/*.npy"), "seed-", max_bytes=8192)
    cirs = sorted(glob.glob(f"{ROOT}/**/*.cir", recursive=True))
    cirs = [c for c in cirs if "/target/" not in c and "/fuzz/" not in c]
    for c in cirs:
        data = open(c, "rb").read()
        side = c + ".data"
        if os.path.exists(side):
            data += b"\0" + open(side, "rb").read()
        if len(data) <= 64 * 1024:
            put("ir_text", "seed-" + os.path.relpath(c, ROOT).replace(os.sep, "_"), data)
    small = open(f"{ROOT}/tests/data/lower/small_program.cir", "rb").read()
    put("ir_text", "hand-truncated-small_program.cir", small[: len(small) // 2])
    put("ir_text", "hand-huge-zeros.cir",
        b"graph g {\n  const @z : f32[1000000000,1000000000] = zeros\n  output @z\n}\n")
    copy("target_toml", glob.glob(f"{ROOT}/targets/*.toml"), "seed-")
    copy("target_toml", glob.glob(f"{ROOT}/tests/data/bad_targets/*.toml"), "seed-")
    compiled()
    hand_made()
    hostile()
    for t in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, t))
        size = sum(os.path.getsize(os.path.join(SEEDS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    sys.exit(main())
