#!/usr/bin/env python3
"""Times tract (sonos/tract, through its Python package) on one model, for cimc's benchmark
(examples/src/bin/bench/).

Usage: bench_tract.py load MODEL.onnx REPS          load + type + optimize + make runnable
       bench_tract.py run MODEL.onnx BATCH REPS     one inference, after a warm-up
Prints one JSON object: {"peer": "tract", "version": ..., "min_ms": ..., "median_ms": ...}.
The input is seeded normal noise of the model's input shape with the batch given.
"""
import json
import statistics
import sys
import time

import numpy as np
import tract


def runnable(model, batch):
    im = tract.onnx().load(model)
    fact = str(im.input_fact(0))
    dims = fact.split(",")
    shape = [batch] + [int(d) if d.isdigit() else 1 for d in dims[1:-1]]
    im.set_input_fact(0, ",".join(str(d) for d in shape) + ",f32")
    return im.into_model().into_runnable(), shape


def timed(reps, f):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000.0)
    return min(times), statistics.median(times)


mode = sys.argv[1]
if mode == "load":
    model, reps = sys.argv[2], int(sys.argv[3])
    lo, med = timed(reps, lambda: runnable(model, 1))
elif mode == "run":
    model, batch, reps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    r, shape = runnable(model, batch)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(3):
        r.run([x])
    lo, med = timed(reps, lambda: r.run([x]))
else:
    sys.exit(f"unknown mode {mode!r} (load | run)")
print(json.dumps({"peer": "tract", "version": tract.version(), "min_ms": lo, "median_ms": med}))
