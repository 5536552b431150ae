#!/usr/bin/env python3
"""The summary table of docs/sweeps.md from a sweep's JSON Lines results.

Groups the rows by every axis but `seed` and prints, per configuration, top-1 over the seeds
(mean ± sample standard deviation, min–max) beside the configuration's energy per inference,
latency, steady-state interval and arrays (the same for every seed: one compilation).

    python3 scripts/sweep_table.py examples/sweeps/mnist_adc.jsonl
"""

import json
import statistics
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sweep_table.py RESULTS.jsonl")
    groups = {}
    with open(sys.argv[1]) as f:
        for line in f:
            row = json.loads(line)
            axes = {k: v for k, v in row["axes"].items() if k != "seed"}
            key = tuple(sorted(axes.items()))
            groups.setdefault(key, []).append(row)
    if not groups:
        sys.exit("no rows")
    names = [k for k, _ in next(iter(groups))]
    head = [n.removeprefix("target.") for n in names]
    print("| " + " | ".join(head) + " | top-1 % (mean ± std over seeds) | min–max "
          "| energy / inference (µJ) | latency (µs) | interval (µs) | arrays |")
    print("|" + "---|" * len(head) + "---:|---:|---:|---:|---:|---:|")
    for key, rows in sorted(groups.items(), key=lambda kv: [v for _, v in kv[0]]):
        top = [r["top1"] for r in rows]
        std = statistics.stdev(top) if len(top) > 1 else 0.0
        r0 = rows[0]
        cells = [str(v) for _, v in key] + [
            f"{statistics.mean(top):.2f} ± {std:.2f}",
            f"{min(top):.1f}–{max(top):.1f}",
            f"{r0['energy_pj'] / 1e6:.3f}",
            f"{r0['latency_ns'] / 1e3:.1f}",
            f"{r0['interval_ns'] / 1e3:.1f}",
            str(r0["arrays"]),
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
