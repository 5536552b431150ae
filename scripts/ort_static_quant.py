#!/usr/bin/env python3
"""onnxruntime's own static int8 quantization of a float model, for comparison with cimc's W8A8.

Usage: ort_static_quant.py MODEL.onnx CALIB_X.npy N_CALIB TEST_X.npy TEST_Y.npy
Quantizes MODEL with onnxruntime.quantization.quantize_static (QDQ format, per-channel, QInt8
weights and activations, MinMax calibration) on the first N_CALIB samples of CALIB_X — the same
samples cimc calibrates on — and prints one JSON object with its top-1 on the test set and the
float model's. Needs onnxruntime, onnx, numpy. The quantized model goes to a temporary folder.
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

model, calib_path, n_calib, test_x, test_y = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
calib = np.load(calib_path)[:n_calib]
x = np.load(test_x)
y = np.load(test_y)


class Reader(CalibrationDataReader):
    def __init__(self, name):
        self.it = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

    def get_next(self):
        return next(self.it, None)


def top1(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), 500):
        logits = s.run(None, {name: x[i:i + 500]})[0]
        correct += int((logits.argmax(1) == y[i:i + 500]).sum())
    return 100.0 * correct / len(x)


with tempfile.TemporaryDirectory() as d:
    pre = os.path.join(d, "pre.onnx")
    quant_pre_process(model, pre)
    out = os.path.join(d, "q.onnx")
    name = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    quantize_static(pre, out, Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    print(json.dumps({"peer": "onnxruntime quantize_static", "version": ort.__version__,
                      "calib_samples": n_calib, "float_top1": top1(model), "int8_top1": top1(out),
                      "samples": int(len(x))}))
