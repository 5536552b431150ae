"""Shared fixtures: the repository, the release `cimc` binary the Python results are compared
with, the digits CNN that ships in examples/models/, and a scratch directory."""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "models"


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if _torch_importable():
        return
    skip = pytest.mark.skip(reason="torch is not importable (pip install 'cimc[torch]')")
    for item in items:
        if "torch" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cimc_bin() -> pathlib.Path:
    """The release binary (CIMC_BIN, else target/release/cimc, built when missing)."""
    env = os.environ.get("CIMC_BIN")
    if env:
        return pathlib.Path(env)
    path = ROOT / "target" / "release" / "cimc"
    if not path.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "cimc", "--bin", "cimc"],
                       cwd=ROOT, check=True)
    return path


class Cli:
    """Runs the `cimc` binary from the repository root."""

    def __init__(self, binary):
        self.binary = binary

    def __call__(self, *args, check=True):
        r = subprocess.run([str(self.binary), *map(str, args)], cwd=ROOT,
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"cimc {' '.join(map(str, args))}: {r.stderr}")
        return r

    def json(self, *args):
        return json.loads(self(*args, "--json").stdout)

    def error(self, *args) -> str:
        """The one-line message of a failing command, without `error: `."""
        r = self(*args, check=False)
        assert r.returncode == 1, (r.returncode, r.stderr)
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("error: "), line
        return line[len("error: "):]


@pytest.fixture(scope="session")
def cli(cimc_bin) -> Cli:
    return Cli(cimc_bin)


@pytest.fixture(scope="session")
def digits():
    """(model path, calibration, test inputs, test labels) of the digits CNN."""
    return (
        MODELS / "digits_cnn.onnx",
        np.load(MODELS / "digits_calib_x.npy"),
        np.load(MODELS / "digits_test_x.npy"),
        np.load(MODELS / "digits_test_y.npy"),
    )
