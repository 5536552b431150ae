"""The Ray driver of cimc sweeps (python/cimc/sweep.py) on a Ray head started here, on
127.0.0.1 with two worker processes: a worker is killed in the middle of the sweep, and every
point must still be recorded exactly once, each row equal to the local run's.

Needs ray (the package's `test` extra) and the cimc binary: $CIMC_BIN, else
target/release/cimc of this repository (cargo build --release -p cimc).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "examples" / "models"


def _load_driver():
    """python/cimc/sweep.py by path: it imports nothing of the cimc package (whose native
    module need not be built for this test)."""
    spec = importlib.util.spec_from_file_location("cimc_sweep_driver", REPO / "python" / "cimc" / "sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cimc() -> str:
    exe = os.environ.get("CIMC_BIN") or str(REPO / "target" / "release" / "cimc")
    if not os.path.exists(exe):
        pytest.skip(f"no cimc binary at {exe} (cargo build --release -p cimc, or set CIMC_BIN)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_file(d: Path) -> Path:
    f = d / "ray.toml"
    f.write_text(
        "[sweep]\n"
        f'model = "{MODELS / "digits_cnn.onnx"}"\n'
        f'data = "{MODELS / "digits_test_x.npy"}"\n'
        f'labels = "{MODELS / "digits_test_y.npy"}"\n'
        f'calib = "{MODELS / "digits_calib_x.npy"}"\n'
        'target = "isaac"\nlimit = 300\n\n'
        "[compile]\ncalib_samples = 50\n\n"
        "[noise]\nsigma_prog = 0.05\n\n"
        "[axes]\n"
        '"adc.bits" = [4, 5, 6]\n'
        '"array.rows" = [64, 128]\n'
        "seed = [0, 1]\n"
    )
    return f


@pytest.fixture
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs (two worker processes run the tasks), in a process
    group of its own that the fixture ends (by its id) when the test is done."""
    port = _free_port()
    # Ray's socket paths must stay under the 107 bytes of a Unix socket name: a short folder.
    temp = tempfile.mkdtemp(prefix="cimc-ray-", dir="/tmp")
    ray_bin = Path(sys.executable).parent / "ray"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen(
        [
            str(ray_bin), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
            "--include-dashboard=false", f"--temp-dir={temp}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.time() > deadline or head.poll() is not None:
                if head.poll() is None:
                    os.killpg(head.pid, signal.SIGKILL)
                pytest.fail("the Ray head did not start")
            time.sleep(0.5)
    yield address
    if ray.is_initialized():
        ray.shutdown()
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    shutil.rmtree(temp, ignore_errors=True)


def _running_point_workers():
    """(worker pid, cimc pid) of every `cimc sweep --run-point` running now: the worker is its
    parent, a Ray worker process of this test's head."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if b"--run-point" in cmd and any(c.endswith(b"cimc") for c in cmd[:1]):
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            out.append((ppid, int(p.name)))
    return out


def test_a_worker_killed_mid_sweep_loses_nothing_and_records_nothing_twice(tmp_path, ray_head):
    cimc = _cimc()
    driver = _load_driver()
    f = _sweep_file(tmp_path)
    local = subprocess.run(
        [cimc, "sweep", str(f), "--json", "-o", str(tmp_path / "local")],
        check=True, capture_output=True, text=True,
    )
    assert json.loads(local.stdout)["points"] == 12
    local_rows = (tmp_path / "local.jsonl").read_text().splitlines()

    stem = tmp_path / "onray"
    killed = []
    rows_seen = []

    def killer():
        # After the first row, kill the Ray worker of a point that is running.
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if rows_seen:
                for worker, _ in _running_point_workers():
                    try:
                        os.kill(worker, signal.SIGKILL)
                        killed.append(worker)
                        break
                    except ProcessLookupError:
                        continue
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    summary = driver.sweep(
        str(f), ray_head, cimc=cimc, out=str(stem), max_retries=3,
        on_row=lambda r: rows_seen.append(r["hash"]),
    )
    t.join(timeout=5)
    assert killed, "no worker was killed: the sweep ended first"
    assert summary["points"] == 12 and summary["run"] == 12, summary

    ray_rows = (tmp_path / "onray.jsonl").read_text().splitlines()
    hashes = [json.loads(r)["hash"] for r in ray_rows]
    assert len(hashes) == len(set(hashes)) == 12, "a point missing or recorded twice"
    # Point for point (and, once rewritten in point order, byte for byte) the local rows.
    assert ray_rows == local_rows
    assert (tmp_path / "onray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()

    # Run again: every point is there, nothing is submitted, nothing changes.
    again = driver.sweep(str(f), ray_head, cimc=cimc, out=str(stem))
    assert again["run"] == 0 and again["finished_before"] == 12
    assert (tmp_path / "onray.jsonl").read_text().splitlines() == local_rows
