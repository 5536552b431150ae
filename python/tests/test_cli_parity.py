"""The package against the CLI, bit for bit: the same program and stream files, the same
outputs, the same evaluations, on the digits CNN that ships in examples/models/."""

import numpy as np
import pytest

import cimc

from conftest import MODELS, ROOT

CALIB = MODELS / "digits_calib_x.npy"
TEST_X = MODELS / "digits_test_x.npy"
TEST_Y = MODELS / "digits_test_y.npy"


@pytest.fixture(scope="module", params=[None, "isaac", "edge"])
def compiled(request, tmp_path_factory, cli, digits):
    """A program compiled by both, with the given target (None: no chip)."""
    target = request.param
    model, calib, _, _ = digits
    d = tmp_path_factory.mktemp(f"compiled_{target}")
    opts = [] if target is None else ["--target", target]
    cli("compile", model, "--calib", CALIB, *opts, "-o", d / "cli.cimp",
        "--listing", d / "cli.txt")
    prog = cimc.compile(str(model), calib=calib, target=target)
    prog.save(d / "py.cimp")
    return target, d, prog


def test_program_file_is_the_clis(compiled):
    _, d, _ = compiled
    assert (d / "py.cimp").read_bytes() == (d / "cli.cimp").read_bytes()


def test_listing_is_the_clis(compiled):
    _, d, prog = compiled
    assert prog.listing() == (d / "cli.txt").read_text()


def test_run_gives_the_clis_logits(compiled, cli, digits):
    _, d, prog = compiled
    x = digits[2]
    cli("run", d / "cli.cimp", "--input", TEST_X, "-o", d / "cli_y.npy")
    want = np.load(d / "cli_y.npy")
    got = prog.run(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    # A program read back runs the same.
    assert cimc.Program.load(d / "cli.cimp").run(x).tobytes() == want.tobytes()


def test_eval_gives_the_clis_top1(compiled, cli, digits):
    _, d, prog = compiled
    want = cli.json("eval", d / "cli.cimp", "--data", TEST_X, "--labels", TEST_Y)
    got = prog.eval(digits[2], digits[3])
    for k in ("top1", "samples", "correct"):
        assert got[k] == want[k], k


def test_noisy_eval_gives_the_clis_trials(cli, tmp_path, digits):
    model, calib, x, y = digits
    noise = ROOT / "targets" / "noise" / "variation.toml"
    cli("compile", model, "--calib", CALIB, "--target", "isaac", "-o", tmp_path / "p.cimp")
    want = cli.json("eval", tmp_path / "p.cimp", "--data", TEST_X, "--labels", TEST_Y,
                    "--noise", noise, "--trials", "3", "--seed", "7")
    prog = cimc.Program.load(tmp_path / "p.cimp")
    got = prog.eval(x, y, noise=noise, trials=3, seed=7)
    assert got["exact_top1"] == want["exact_top1"]
    assert got["scenarios"][0]["top1"] == want["scenarios"][0]["top1"]
    # Trial t of Program.run is the chip of trial t of the evaluation.
    logits = prog.run(x, noise=noise, seed=7, trials=3)
    assert logits.shape == (3, len(x), 10)
    top1 = [100.0 * np.mean(np.argmax(l, 1) == y) for l in logits]
    assert top1 == pytest.approx(want["scenarios"][0]["top1"])
    one = prog.run(x, noise=noise, seed=7)
    assert one.tobytes() == logits[0].tobytes()
    # The exact program is not the noisy one.
    assert prog.run(x).tobytes() != one.tobytes()


def test_stream_is_the_clis(cli, tmp_path, digits):
    model, calib, x, _ = digits
    cli("compile", model, "--calib", CALIB, "--target", "isaac", "--emit", "stream",
        "-o", tmp_path / "cli.cims")
    s = cimc.compile(model, calib=calib, target="isaac", emit="stream")
    assert isinstance(s, cimc.Stream)
    s.save(tmp_path / "py.cims")
    assert (tmp_path / "py.cims").read_bytes() == (tmp_path / "cli.cims").read_bytes()
    np.save(tmp_path / "x.npy", x[:1])
    cli("sim", tmp_path / "cli.cims", "--input", tmp_path / "x.npy", "--output",
        tmp_path / "y.npy", "--report", tmp_path / "cost.json")
    assert s.simulate(x[:1]).tobytes() == np.load(tmp_path / "y.npy").tobytes()
    import json
    want = json.loads((tmp_path / "cost.json").read_text())
    assert s.cost() == want
    assert cimc.Stream.load(tmp_path / "cli.cims").text() == s.text()


def test_model_sources_agree(tmp_path, digits):
    """A path, the file's bytes and an onnx.ModelProto compile to the same program."""
    onnx = pytest.importorskip("onnx")
    model, calib, x, _ = digits
    by_path = cimc.compile(model, calib=calib, wbits=6, abits=7)
    by_bytes = cimc.compile(model.read_bytes(), calib=calib, wbits=6, abits=7)
    by_proto = cimc.compile(onnx.load(str(model)), calib=calib, wbits=6, abits=7)
    for p, name in ((by_path, "a"), (by_bytes, "b"), (by_proto, "c")):
        p.save(tmp_path / f"{name}.cimp")
    a = (tmp_path / "a.cimp").read_bytes()
    assert (tmp_path / "b.cimp").read_bytes() == a
    assert (tmp_path / "c.cimp").read_bytes() == a


def test_options_reach_the_compiler(cli, tmp_path, digits):
    """Per-layer widths as a dict, a target as a dict, BN calibration: the CLI's programs."""
    model, calib, _, _ = digits
    (tmp_path / "bits.toml").write_text('[layers."/c1/Conv"]\nwbits = 4\n')
    (tmp_path / "t.toml").write_text((ROOT / "targets" / "edge.toml").read_text())
    cli("compile", model, "--calib", CALIB, "--bits", tmp_path / "bits.toml", "--target",
        tmp_path / "t.toml", "--adc-bits", "6", "--bn-calibrate", "-o", tmp_path / "cli.cimp")
    target = _read_toml(ROOT / "targets" / "edge.toml")
    p = cimc.compile(model, calib=calib, bits={"/c1/Conv": 4}, target=target, adc_bits=6,
                     bn_calibrate=True)
    p.save(tmp_path / "py.cimp")
    assert (tmp_path / "py.cimp").read_bytes() == (tmp_path / "cli.cimp").read_bytes()
    r = p.report()
    assert r["steps"] > 0 and "passes" in r and "/c1/Conv" in r["bits"]


def test_float_model_runs_as_cimc_run(cli, tmp_path, digits):
    model, _, x, _ = digits
    cli("run", model, "--input", TEST_X, "-o", tmp_path / "y.npy")
    got = cimc.load(model).run(x)
    assert got.tobytes() == np.load(tmp_path / "y.npy").tobytes()


def _read_toml(path):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    with open(path, "rb") as f:
        return tomllib.load(f)
