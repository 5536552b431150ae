"""A cimc sweep on a Ray cluster (docs/sweeps.md).

The driver needs only the standard library, Ray and the ``cimc`` binary: it expands the sweep
with ``cimc sweep --list-points`` (one JSON line per point), submits each point not yet in the
results file as a Ray task that runs ``cimc sweep --run-point -`` on a worker and returns the
row (one JSON line, the row a local run writes for that point), and appends each row to the
results file as it arrives -- one write and a flush per row, so an interrupted driver loses
nothing and a new one skips what is there. A task whose worker dies is run again (Ray's
``max_retries``); a point is recorded once, whatever comes back twice (the driver keeps the
hashes it has written). At the end it runs ``cimc sweep FILE --out STEM`` once more, which finds
every point done and rewrites the results in point order with their CSV and plot -- the same
bytes as a local run.

From Python::

    from cimc.sweep import sweep          # or load this file by path: it imports no cimc module
    summary = sweep("examples/sweeps/mnist_adc.toml", address="head:6379")

From a shell: ``python3 python/cimc/sweep.py --address head:6379 examples/sweeps/mnist_adc.toml``
or ``cimc sweep --ray head:6379 examples/sweeps/mnist_adc.toml``.

The workers must see the files the sweep names (model, data, calibration) at the same paths
and have the ``cimc`` binary (``cimc=`` here, else ``cimc`` on their PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional

__all__ = ["sweep", "list_points", "run_point"]


def _cimc_binary(cimc: Optional[str]) -> str:
    exe = cimc or shutil.which("cimc")
    if not exe:
        raise FileNotFoundError("the cimc binary: give cimc=PATH or put cimc on PATH")
    return os.path.abspath(exe) if os.path.exists(exe) else exe


def list_points(sweep_file: str, cimc: Optional[str] = None) -> List[Dict[str, Any]]:
    """The points of a sweep file, as ``cimc sweep --list-points`` prints them."""
    out = subprocess.run(
        [_cimc_binary(cimc), "sweep", "--list-points", os.fspath(sweep_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def run_point(cimc: str, point_line: str) -> str:
    """One point's row line (``cimc sweep --run-point``); raises on failure with cimc's
    message. This is what each Ray task runs."""
    p = subprocess.run(
        [cimc, "sweep", "--run-point", "-"],
        input=point_line,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise RuntimeError(f"cimc sweep --run-point failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout.strip()


def _finished_hashes(jsonl: str) -> set:
    """Hashes of the rows already in the results file; a torn last line (no newline: the
    writer was killed mid-row) is cut off so that appends start a fresh line."""
    if not os.path.exists(jsonl):
        return set()
    with open(jsonl, "rb") as f:
        data = f.read()
    whole = data.rfind(b"\n") + 1
    if whole < len(data):
        with open(jsonl, "r+b") as f:
            f.truncate(whole)
    done = set()
    for line in data[:whole].decode("utf-8").splitlines():
        if line.strip():
            done.add(json.loads(line)["hash"])
    return done


def sweep(
    sweep_file: str,
    address: Optional[str] = None,
    *,
    cimc: Optional[str] = None,
    out: Optional[str] = None,
    max_retries: int = 3,
    finish: bool = True,
    on_row: Optional[Callable[[Dict[str, Any]], None]] = None,
    init_kwargs: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Runs the sweep of ``sweep_file`` on the Ray cluster at ``address`` (``ray.init``'s
    address; ``None`` keeps a connection already made, else starts a local Ray).

    ``out`` is the results stem (default: the sweep file's path without ``.toml``), as
    ``cimc sweep -o``. ``max_retries``: runs of a point whose worker died. ``finish``: rewrite
    the results in point order and write the CSV and plot at the end (``cimc sweep`` again).
    ``on_row`` is called with each new row. Returns the summary: ``points``,
    ``finished_before``, ``run``, ``duplicates`` (rows that came back for a point already
    recorded, not written), and with ``finish`` the table ``cimc`` printed.
    """
    import ray

    exe = _cimc_binary(cimc)
    sweep_file = os.fspath(sweep_file)
    stem = out or (sweep_file[: -len(".toml")] if sweep_file.endswith(".toml") else sweep_file)
    jsonl = stem + ".jsonl"
    points = list_points(sweep_file, exe)
    done = _finished_hashes(jsonl)
    finished_before = sum(1 for p in points if p["hash"] in done)
    pending = [p for p in points if p["hash"] not in done]
    if pending and not ray.is_initialized():
        ray.init(address=address, **(init_kwargs or {}))
    task = ray.remote(num_cpus=1, max_retries=max_retries)(run_point)
    refs = {task.remote(exe, json.dumps(p)): p for p in pending}
    run = duplicates = 0
    os.makedirs(os.path.dirname(os.path.abspath(jsonl)), exist_ok=True)
    with open(jsonl, "a", encoding="utf-8") as f:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                p = refs.pop(ref)
                line = ray.get(ref)
                row = json.loads(line)
                if row.get("hash") != p["hash"]:
                    raise RuntimeError(f"point {p['index']}: a row for hash {row.get('hash')}")
                if row["hash"] in done:
                    duplicates += 1
                    continue
                f.write(line + "\n")
                f.flush()
                done.add(row["hash"])
                run += 1
                if on_row:
                    on_row(row)
    summary: Dict[str, Any] = {
        "points": len(points),
        "finished_before": finished_before,
        "run": run,
        "duplicates": duplicates,
        "results": jsonl,
    }
    if finish:
        fin = subprocess.run(
            [exe, "sweep", sweep_file, "--out", stem],
            check=True,
            capture_output=True,
            text=True,
        )
        summary["table"] = fin.stdout
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cimc.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("sweep_file")
    ap.add_argument("--address", help="the Ray cluster (ray.init address), e.g. head:6379 or auto")
    ap.add_argument("--cimc", help="the cimc binary (default: cimc on PATH)")
    ap.add_argument("--out", help="the results stem (default: the sweep file without .toml)")
    ap.add_argument("--max-retries", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args(argv)
    s = sweep(a.sweep_file, a.address, cimc=a.cimc, out=a.out, max_retries=a.max_retries)
    if a.json:
        s.pop("table", None)
        print(json.dumps(s, indent=2))
    else:
        print(s.get("table", ""), end="")
        print(
            f"{s['points']} points on Ray: {s['finished_before']} finished before, {s['run']} run"
            f", {s['duplicates']} duplicate row(s) dropped"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
