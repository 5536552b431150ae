"""User errors raise cimc.CimcError (a ValueError) with the CLI's message; nothing panics
across the boundary."""

import numpy as np
import pytest

import cimc

from conftest import MODELS

CALIB = MODELS / "digits_calib_x.npy"


def test_cimc_error_is_a_value_error():
    assert issubclass(cimc.CimcError, ValueError)
    assert issubclass(cimc.CimcInternalError, RuntimeError)


def test_missing_model_gives_the_clis_message(cli, tmp_path):
    missing = tmp_path / "missing.onnx"
    want = cli.error("compile", missing, "-o", tmp_path / "p.cimp")
    with pytest.raises(cimc.CimcError) as e:
        cimc.load(missing)
    assert str(e.value) == want


def test_bad_width_gives_the_clis_message(cli, tmp_path, digits):
    model, calib, _, _ = digits
    want = cli.error("compile", model, "--calib", CALIB, "--wbits", "1", "-o", tmp_path / "p")
    with pytest.raises(cimc.CimcError) as e:
        cimc.compile(model, calib=calib, wbits=1)
    assert str(e.value) == want


def test_unknown_target_gives_the_clis_message(cli, tmp_path, digits):
    model, calib, _, _ = digits
    want = cli.error("compile", model, "--calib", CALIB, "--target", "nope", "-o", tmp_path / "p")
    with pytest.raises(cimc.CimcError) as e:
        cimc.compile(model, calib=calib, target="nope")
    assert str(e.value) == want


def test_bad_calib_method_gives_the_clis_message(cli, tmp_path, digits):
    model, calib, _, _ = digits
    want = cli.error("compile", model, "--calib", CALIB, "--calib-method", "median",
                     "-o", tmp_path / "p")
    with pytest.raises(cimc.CimcError) as e:
        cimc.compile(model, calib=calib, calib_method="median")
    assert str(e.value) == want


def test_stream_without_target(cli, tmp_path, digits):
    model, calib, _, _ = digits
    want = cli.error("compile", model, "--calib", CALIB, "--emit", "stream", "-o", tmp_path / "s")
    with pytest.raises(cimc.CimcError) as e:
        cimc.compile(model, calib=calib, emit="stream")
    assert str(e.value) == want


def test_wrong_input_shape_names_the_input(digits):
    model, calib, _, _ = digits
    p = cimc.compile(model, calib=calib)
    with pytest.raises(cimc.CimcError, match="input 'input' expects f32"):
        p.run(np.zeros((2, 1, 9, 9), np.float32))
    with pytest.raises(cimc.CimcError, match="expects f32"):
        p.run(np.zeros((2, 1, 8, 8), np.float64))
    with pytest.raises(cimc.CimcError, match="labels must be a 1-D integer array"):
        p.eval(np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.float32))
    with pytest.raises(cimc.CimcError, match="2 labels for the 3 samples"):
        p.eval(np.zeros((3, 1, 8, 8), np.float32), np.zeros(2, np.int64))


def test_garbage_bytes_are_a_user_error():
    with pytest.raises(cimc.CimcError):
        cimc.compile(b"\x08\x07 not a model", calib=np.zeros((1, 1, 8, 8), np.float32))


def test_noise_without_crossbar_and_bad_noise(digits, tmp_path):
    model, calib, x, _ = digits
    p = cimc.compile(model, calib=calib, target="isaac")
    with pytest.raises(cimc.CimcError):
        p.run(x[:2], noise={"sigma_prog": -1.0})
    with pytest.raises(cimc.CimcError):
        p.run(x[:2], noise=tmp_path / "missing.toml")
