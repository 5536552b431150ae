#!/usr/bin/env python3
"""Python's overhead on evaluation: `Program.eval` against `cimc eval` for the same program.

Compiles the MNIST CNN (../shared/models/mnist_cnn.onnx) with the CLI, then times, alternating,
over --rounds rounds and keeping each side's best:

  cli     the `cimc eval PROGRAM --data mnist_test_x.npy --labels mnist_test_y.npy --json`
          process, wall clock (start, reading the files, the evaluation, exit);
  python  in this process: `cimc.Program.load(PROGRAM)`, `numpy.load` of the two files and
          `Program.eval(x, y)` (a fresh Program each round: its runner is prepared as the
          CLI's is).

Both evaluate the 10,000 test images and must give the same top-1. Prints the two times and
the overhead, `python / cli - 1`.

    python examples/python/bench_eval.py [--cimc target/release/cimc] [--target isaac]
"""

import argparse
import json
import pathlib
import subprocess
import tempfile
import time

import numpy as np

import cimc

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cimc", default=str(ROOT / "target" / "release" / "cimc"))
    ap.add_argument("--target", help="compile for this chip (default: no chip, W8A8)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    x_path = SHARED / "data" / "mnist_test_x.npy"
    y_path = SHARED / "data" / "mnist_test_y.npy"
    with tempfile.TemporaryDirectory() as d:
        prog = pathlib.Path(d) / "mnist.cimp"
        target = ["--target", args.target] if args.target else []
        subprocess.run([args.cimc, "compile", str(SHARED / "models" / "mnist_cnn.onnx"), "--calib",
                        str(SHARED / "data" / "mnist_calib_x.npy"), *target, "-o", str(prog)],
                       check=True, capture_output=True)
        cli_best = py_best = float("inf")
        cli_top1 = py_top1 = None
        for _ in range(args.rounds):
            t = time.perf_counter()
            r = subprocess.run([args.cimc, "eval", str(prog), "--data", str(x_path), "--labels",
                                str(y_path), "--json"], check=True, capture_output=True, text=True)
            cli_best = min(cli_best, time.perf_counter() - t)
            cli_top1 = json.loads(r.stdout)["top1"]
            t = time.perf_counter()
            p = cimc.Program.load(prog)
            res = p.eval(np.load(x_path), np.load(y_path))
            py_best = min(py_best, time.perf_counter() - t)
            py_top1 = res["top1"]
    assert cli_top1 == py_top1, (cli_top1, py_top1)
    print(f"program: mnist_cnn, {'W8A8' if not args.target else args.target}; 10,000 images; "
          f"top-1 {py_top1:.2f} % (both); best of {args.rounds}")
    print(f"cimc eval (process)     {cli_best:8.3f} s")
    print(f"Program.eval (+ load)   {py_best:8.3f} s")
    print(f"overhead                {100 * (py_best / cli_best - 1):+8.1f} %")


if __name__ == "__main__":
    main()
