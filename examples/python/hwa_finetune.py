#!/usr/bin/env python3
"""Hardware-aware fine-tuning of the MNIST CNN for a chip where it loses accuracy.

The chip: PCM crossbars (targets/pcm.toml) with 4-bit ADCs instead of 8, W4A4 codes, and
programming noise (every cell's conductance off by a relative sigma_prog). Four ways to get the
float model onto it, each evaluated on the same chips (Monte Carlo over --trials programmings,
seed --seed; the exact program beside):

  post-training   compile the trained model as it is;
  bn-calibrate    the same, with cimc's BN calibration (docs/bn-calibrate.md);
  noise-inject    plain PyTorch: fine-tune with Gaussian weight noise of the chip's
                  sigma_prog (no cimc in the loop), then compile;
  chip-in-loop    fine-tune through the chip: cimc.torch.ChipModule runs each batch on the
                  compiled program on a fresh noisy chip, the gradient goes straight through
                  the float model; recompiled every --recompile-every steps.

Data: the 10,000 MNIST test images of ../shared/data, split in two: the first 5,000 fine-tune,
every figure is top-1 on the other 5,000 (the calibration images are the 1,000 training images
of mnist_calib_x.npy). Writes a JSON of the results and an SVG plot.

    python examples/python/hwa_finetune.py --json docs/python-hwa.json --svg docs/python-hwa.svg
"""

import argparse
import copy
import json
import os
import pathlib
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import cimc
import cimc.torch as ct

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


class MnistCnn(nn.Module):
    """The model of ../shared/models/mnist_cnn.onnx (../shared/scripts/make_models.py)."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.f1, self.f2 = nn.Linear(32 * 7 * 7, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        return self.f2(F.relu(self.f1(torch.flatten(x, 1))))


def trained_model() -> MnistCnn:
    """The trained weights, read from the ONNX file's initializers (named as the state dict)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(SHARED / "models" / "mnist_cnn.onnx"))
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    model = MnistCnn()
    model.load_state_dict(state, strict=False)
    return model.eval()


class NoisyWeights:
    """Plain-PyTorch noise injection: during a forward pass every Conv/Linear weight is
    multiplied by (1 + sigma * N(0, 1)), the relative programming error of the chip."""

    def __init__(self, model, sigma, gen):
        self.model, self.sigma, self.gen, self.saved = model, sigma, gen, []

    def __enter__(self):
        for m in self.model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                self.saved.append((w, w.data.clone()))
                w.data.mul_(1 + self.sigma * torch.randn(w.shape, generator=self.gen))

    def __exit__(self, *exc):
        for w, d in self.saved:
            w.data.copy_(d)
        self.saved = []


def batches(n, bs, gen):
    perm = torch.randperm(n, generator=gen)
    return [perm[i:i + bs] for i in range(0, n, bs)]


def finetune_noise_injection(model, x, y, args):
    gen = torch.Generator().manual_seed(args.train_seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for _ in range(args.epochs):
        for idx in batches(len(x), args.batch, gen):
            model.train()
            model.b1.eval(), model.b2.eval()  # BN statistics stay those of training
            with NoisyWeights(model, args.sigma_prog, gen):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
            opt.step()
    return model.eval()


def finetune_chip_in_loop(model, x, y, calib, chip, args):
    gen = torch.Generator().manual_seed(args.train_seed)
    cm = ct.ChipModule(model, x[:args.batch], calib=calib, noise=chip["noise"],
                       seed=args.train_seed * 1000, fresh_chip=True,
                       recompile_every=args.recompile_every, **chip["options"])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for _ in range(args.epochs):
        for idx in batches(len(x), args.batch, gen):
            cm.train()
            model.b1.eval(), model.b2.eval()
            loss = F.cross_entropy(cm(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), cm.compiles


def evaluate(program, x, y, chip, args):
    r = program.eval(x, y, noise=chip["noise"], trials=args.trials, seed=args.seed)
    s = r["scenarios"][0]
    return {"exact": r["exact_top1"], "noisy": s["top1"], "mean": s["mean"], "std": s["std"]}


def svg_plot(rows, float_top1, title):
    """Bars: mean top-1 on the noisy chips (whiskers: min..max over the trials), a dot for the
    exact program, a line for the float model."""
    w, h, left, top, bottom = 640, 360, 70, 40, 60
    lo = min(min(r["noisy"]) for r in rows.values())
    lo = max(0.0, np.floor(min(lo, min(r["exact"] for r in rows.values())) - 2))
    hi = 100.0
    ys = lambda v: top + (h - top - bottom) * (hi - v) / (hi - lo)
    bw = (w - left - 20) / len(rows)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for t in np.linspace(lo, hi, 6):
        out.append(f'<line x1="{left}" x2="{w - 20}" y1="{ys(t):.1f}" y2="{ys(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{ys(t) + 4:.1f}" text-anchor="end">{t:.0f}</text>')
    out.append(f'<text x="16" y="{h / 2}" transform="rotate(-90 16 {h / 2})" '
               f'text-anchor="middle">top-1 % (5,000 MNIST test images)</text>')
    fy = ys(float_top1)
    out.append(f'<line x1="{left}" x2="{w - 20}" y1="{fy:.1f}" y2="{fy:.1f}" stroke="#2a7" '
               f'stroke-dasharray="5,3"/><text x="{w - 22}" y="{fy - 4:.1f}" text-anchor="end" '
               f'fill="#2a7">float {float_top1:.2f} %</text>')
    for i, (name, r) in enumerate(rows.items()):
        x0 = left + i * bw + bw * 0.2
        bwid = bw * 0.6
        m = r["mean"]
        out.append(f'<rect x="{x0:.1f}" y="{ys(m):.1f}" width="{bwid:.1f}" '
                   f'height="{ys(lo) - ys(m):.1f}" fill="#4a7bd0"/>')
        cx = x0 + bwid / 2
        out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{ys(min(r["noisy"])):.1f}" '
                   f'y2="{ys(max(r["noisy"])):.1f}" stroke="#000"/>')
        out.append(f'<circle cx="{cx:.1f}" cy="{ys(r["exact"]):.1f}" r="4" fill="#e63"/>')
        out.append(f'<text x="{cx:.1f}" y="{ys(m) - 6:.1f}" text-anchor="middle">{m:.2f}</text>')
        out.append(f'<text x="{cx:.1f}" y="{h - bottom + 18}" text-anchor="middle">{name}</text>')
    out.append(f'<circle cx="{left + 10}" cy="{h - 18}" r="4" fill="#e63"/>'
               f'<text x="{left + 18}" y="{h - 14}">exact program</text>'
               f'<rect x="{left + 130}" y="{h - 24}" width="12" height="12" fill="#4a7bd0"/>'
               f'<text x="{left + 148}" y="{h - 14}">noisy chips: mean, min..max</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default=str(ROOT / "targets" / "pcm.toml"))
    ap.add_argument("--adc-bits", type=int, default=4)
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=4)
    ap.add_argument("--sigma-prog", type=float, default=0.1, help="relative programming noise")
    ap.add_argument("--trials", type=int, default=5, help="noisy chips per evaluation (seeds)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the evaluation's chips")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--recompile-every", type=int, default=10)
    ap.add_argument("--json")
    ap.add_argument("--svg")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    x_all = np.load(SHARED / "data" / "mnist_test_x.npy")
    y_all = np.load(SHARED / "data" / "mnist_test_y.npy")
    calib = np.load(SHARED / "data" / "mnist_calib_x.npy")
    x_tr, y_tr = torch.from_numpy(x_all[:5000]), torch.from_numpy(y_all[:5000])
    x_te, y_te = x_all[5000:], y_all[5000:]
    chip = {
        "options": dict(target=args.target, adc_bits=args.adc_bits, wbits=args.wbits,
                        abits=args.abits),
        "noise": {"sigma_prog": args.sigma_prog},
    }
    base = trained_model()
    with torch.no_grad():
        float_top1 = 100.0 * float((base(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    example = torch.from_numpy(x_all[:100])
    rows, seconds = {}, {}

    t = time.time()
    rows["post-training"] = evaluate(ct.compile(base, example, calib=calib, **chip["options"]),
                                     x_te, y_te, chip, args)
    seconds["post-training"] = time.time() - t
    t = time.time()
    rows["bn-calibrate"] = evaluate(ct.compile(base, example, calib=calib, bn_calibrate=True,
                                               **chip["options"]), x_te, y_te, chip, args)
    seconds["bn-calibrate"] = time.time() - t
    t = time.time()
    ni = finetune_noise_injection(copy.deepcopy(base), x_tr, y_tr, args)
    rows["noise-inject"] = evaluate(ct.compile(ni, example, calib=calib, **chip["options"]),
                                    x_te, y_te, chip, args)
    seconds["noise-inject"] = time.time() - t
    t = time.time()
    cl, compiles = finetune_chip_in_loop(copy.deepcopy(base), x_tr, y_tr, calib, chip, args)
    rows["chip-in-loop"] = evaluate(ct.compile(cl, example, calib=calib, **chip["options"]),
                                    x_te, y_te, chip, args)
    seconds["chip-in-loop"] = time.time() - t

    lost = float_top1 - rows["post-training"]["mean"]
    print(f"float model: {float_top1:.2f} %; chip: {chip}; {args.trials} chips, seed {args.seed}")
    print(f"{'method':<15} {'exact %':>8} {'noisy mean %':>13} {'std':>6} {'min':>7} {'max':>7} "
          f"{'recovered':>10} {'seconds':>8}")
    for name, r in rows.items():
        rec = (r["mean"] - rows["post-training"]["mean"]) / lost if lost > 0 else float("nan")
        r["recovered"] = rec
        print(f"{name:<15} {r['exact']:>8.2f} {r['mean']:>13.2f} {r['std']:>6.2f} "
              f"{min(r['noisy']):>7.2f} {max(r['noisy']):>7.2f} {100 * rec:>9.0f}% "
              f"{seconds[name]:>8.1f}")
    # Paths inside the repository as the repository names them.
    shown = lambda v: os.path.relpath(v, ROOT) if isinstance(v, str) and v.startswith(str(ROOT)) else v
    chip["options"]["target"] = shown(chip["options"]["target"])
    result = {"float_top1": float_top1, "chip": chip, "args": {k: shown(v) for k, v in vars(args).items()}, "rows": rows,
              "seconds": seconds, "chip_in_loop_compiles": compiles}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.svg:
        title = (f"MNIST CNN on {pathlib.Path(args.target).stem}, W{args.wbits}A{args.abits}, {args.adc_bits}-bit ADCs, "
                 f"sigma_prog {args.sigma_prog}")
        pathlib.Path(args.svg).write_text(svg_plot(rows, float_top1, title))


if __name__ == "__main__":
    main()
