#!/usr/bin/env python3
"""Times onnxruntime on one model, for cimc's benchmark (examples/src/bin/bench.rs).

Usage: bench_onnxruntime.py MODEL.onnx BATCH REPS [THREADS]
Prints one JSON object: {"peer": "onnxruntime", "version": ..., "min_ms": ..., "median_ms": ...}.
The input is seeded normal noise of the model's input shape with the batch given.
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

model, batch, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(3):
    sess.run(None, {inp.name: x})
times = []
for _ in range(reps):
    t = time.perf_counter()
    sess.run(None, {inp.name: x})
    times.append((time.perf_counter() - t) * 1000.0)
print(json.dumps({"peer": "onnxruntime", "version": ort.__version__, "min_ms": min(times),
                  "median_ms": statistics.median(times)}))
