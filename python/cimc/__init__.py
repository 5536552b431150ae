"""cimc from Python: compile ONNX models for compute-in-memory chips, run the bit-accurate
program, simulate the instruction stream, evaluate under analog noise.

The API mirrors the ``cimc`` command line, NumPy in and out::

    import numpy as np, cimc
    model = cimc.load("examples/models/digits_cnn.onnx")        # path, bytes or onnx.ModelProto
    calib = np.load("examples/models/digits_calib_x.npy")
    prog = cimc.compile(model, calib=calib, target="isaac", wbits=8, abits=8)
    logits = prog.run(np.load("examples/models/digits_test_x.npy"))   # = cimc run, bit for bit
    prog.eval(x, y)                        # {'top1': ..., 'correct': ..., ...} = cimc eval
    prog.run(x, noise="targets/noise/variation.toml", seed=1)   # one noisy programming
    prog.save("digits.cimp"); cimc.Program.load("digits.cimp")
    stream = cimc.compile(model, calib=calib, target="isaac", emit="stream")
    stream.simulate(x[:1]); stream.cost()

Every call runs the library code the CLI runs, releases the GIL while it computes (threads run
programs in parallel) and raises :class:`CimcError` (a ``ValueError``) with the CLI's message
on a user error; :class:`CimcInternalError` means a bug in cimc. ``cimc.torch`` (the
``cimc[torch]`` extra) exports PyTorch modules and puts the chip in the training loop.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import CimcError, CimcInternalError

__all__ = [
    "CimcError",
    "CimcInternalError",
    "Model",
    "Program",
    "Stream",
    "load",
    "compile",
    "toml_text",
]
__version__ = _native.__version__

PathLike = Union[str, "os.PathLike[str]"]


# ---- arrays -------------------------------------------------------------------------------


def _input_for_native(a: Any) -> Any:
    """A float32 array as a C-contiguous array (read in place by the native side when it
    already is one), anything else as the bytes of a .npy file (read by the CLI's reader)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == np.float32:
        return np.ascontiguousarray(a)
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _inputs(x: Any) -> list:
    """One array, or a tuple/list of arrays (one per model input)."""
    if isinstance(x, (tuple, list)):
        return [_input_for_native(a) for a in x]
    return [_input_for_native(x)]


def _output(o: Any) -> np.ndarray:
    if isinstance(o, bytes):
        return np.load(io.BytesIO(o), allow_pickle=False)
    return o


def _outputs(outs: Sequence[Any]) -> Union[np.ndarray, Tuple[np.ndarray, ...]]:
    """One array for a model of one output, else a tuple in the model's output order."""
    arrays = tuple(_output(o) for o in outs)
    return arrays[0] if len(arrays) == 1 else arrays


def _labels(y: Any) -> list:
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise CimcError(f"<labels>: labels must be a 1-D integer array, got {y.dtype}{list(y.shape)}")
    return y.astype(np.int64).tolist()


# ---- TOML for dicts (targets, bit widths, noise) -------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise CimcError(f"cannot write {type(v).__name__} {v!r} as a TOML value")


def toml_text(d: Mapping[str, Any], _prefix: str = "") -> str:
    """A dict of scalars, lists and nested dicts (tables) as TOML text: what
    ``cimc.compile(target=dict, bits=dict)`` and ``Program.run(noise=dict)`` pass to the
    CLI's own TOML readers."""
    lines = []
    tables = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{json.dumps(str(k))} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{_prefix}.{json.dumps(str(k))}" if _prefix else json.dumps(str(k))
        out += f"\n[{name}]\n" + toml_text(v, name)
    return out


def _bits_toml(bits: Any) -> Optional[str]:
    """``bits``: a path to the TOML of ``--bits``, or ``{layer: wbits}`` /
    ``{layer: {"wbits": w, "abits": a}}``."""
    if bits is None:
        return None
    if isinstance(bits, (str, os.PathLike)):
        with open(bits, encoding="utf-8") as f:
            return f.read()
    layers = {}
    for name, w in bits.items():
        layers[name] = dict(w) if isinstance(w, Mapping) else {"wbits": int(w)}
    return toml_text({"layers": layers})


def _noise_args(noise: Any) -> Tuple[Optional[str], Optional[str]]:
    """``noise``: a noise or target file (path), or a ``[noise]`` table as a dict (either the
    table's keys, or ``{"noise": {...}}``)."""
    if noise is None:
        return None, None
    if isinstance(noise, (str, os.PathLike)):
        return os.fspath(noise), None
    if isinstance(noise, Mapping):
        table = noise if "noise" in noise else {"noise": dict(noise)}
        return None, toml_text(table)
    raise CimcError(f"noise: expected a path or a dict, got {type(noise).__name__}")


# ---- models ------------------------------------------------------------------------------

class Model:
    """A model opened by :func:`load`: ``run(x)`` runs the float model (``cimc run MODEL``),
    ``dump()`` gives its IR as text (``cimc dump``), ``inputs`` its (name, dtype, shape)s."""

    def __init__(self, native: "_native.Model"):
        self._m = native

    def run(self, x: Any) -> Union[np.ndarray, Tuple[np.ndarray, ...]]:
        """The float model's outputs on ``x`` (``[N, ...]``; a tuple for several inputs)."""
        return _outputs(self._m.run(_inputs(x)))

    def dump(self) -> str:
        """The imported model's IR as text."""
        return self._m.dump()

    @property
    def inputs(self):
        return self._m.inputs()


def load(
    model: Any,
    *,
    batch: Optional[int] = None,
    input_shape: Optional[Mapping[str, Sequence[int]]] = None,
) -> Model:
    """Opens a model, as the CLI opens ``MODEL``.

    ``model``: a path (ONNX, text IR ``.cir``, program ``.cimp``), the bytes of an ONNX file,
    or an ``onnx.ModelProto``. ``batch`` fixes a symbolic first dimension (``--batch``, default
    1); ``input_shape`` gives whole input shapes by name (``--input-shape NAME=D0,D1``).
    The result runs as the float model: ``model.run(x)``, ``model.dump()`` (the IR text).
    """
    if isinstance(model, Model):
        return model
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    shapes = [(k, [int(d) for d in v]) for k, v in (input_shape or {}).items()]
    if isinstance(model, (bytes, bytearray, memoryview)):
        return Model(_native.load(bytes(model), batch, shapes))
    return Model(_native.load(os.fspath(model), batch, shapes))


def compile(
    model: Any,
    calib: Any = None,
    *,
    target: Union[None, str, PathLike, Mapping[str, Any]] = None,
    wbits: int = 8,
    abits: int = 8,
    bits: Union[None, PathLike, Mapping[str, Any]] = None,
    emit: str = "program",
    calib_method: str = "minmax",
    weight_method: str = "minmax",
    calib_samples: Optional[int] = None,
    act_signed: bool = False,
    arrays: Optional[int] = None,
    adc_range: Optional[str] = None,
    adc_bits: Optional[int] = None,
    array_rows: Optional[int] = None,
    bn_calibrate: bool = False,
    auto_bits: Optional[str] = None,
    bits_candidates: Sequence[int] = (2, 3, 4, 5, 6, 8),
    cascade: Optional[int] = None,
    schedule: str = "auto",
    batch: Optional[int] = None,
    input_shape: Optional[Mapping[str, Sequence[int]]] = None,
) -> Union["Program", "Stream"]:
    """Compiles a model as ``cimc compile`` does; returns a :class:`Program` (``emit="program"``)
    or, for one chip, a :class:`Stream` (``emit="stream"``, needs ``target``).

    model          a path, ONNX bytes, an ``onnx.ModelProto`` or a :class:`Model`.
    calib          calibration inputs ``[N, ...]`` (one array, or a tuple for several inputs),
                   for models without quantization parameters (``--calib``).
    target         a preset (``"isaac"``, ``"puma"``, ``"edge"``), a target file
                   (.toml, e.g. ``"targets/pcm.toml"``), or a dict of its tables (``--target``).
    wbits, abits   weight and activation bits, 2..16 (``--wbits``, ``--abits``).
    bits           per-layer widths: ``{node: wbits}``, ``{node: {"wbits": w, "abits": a}}`` or
                   a TOML file (``--bits``).
    emit           ``"program"`` or ``"stream"`` (``--emit``).
    calib_method   ``minmax``, ``percentile``, ``percentile=P``, ``mse`` (``--calib-method``).
    weight_method  ``minmax`` or ``mse`` (``--weight-method``).
    calib_samples  use only the first N calibration samples.
    act_signed     signed symmetric codes for activations that can be negative.
    arrays         array budget (replicates throughput-bound layers); needs a target.
    adc_range      ``worst`` or ``calib``: override the target's ADC ranges.
    adc_bits       override the target's ADC resolution; ``array_rows`` its array rows.
    bn_calibrate   re-estimate per-channel scale and bias on the calibration data
                   (``--bn-calibrate``, docs/bn-calibrate.md).
    auto_bits      a budget (``arrays=N``, ``weight-bits=X``, ``energy=E``): choose per-layer
                   widths from ``bits_candidates`` (``--auto-bits --budget``).
    cascade        scales that stay accurate down to this many weight bits (``--cascade``).
    schedule       the stream's schedule: ``auto``, ``pipelined``, ``layer-serial``.
    batch, input_shape   as in :func:`load` (when ``model`` is a path or bytes).

    Raises :class:`CimcError` with the CLI's message on a bad option or model.
    """
    m = load(model, batch=batch, input_shape=input_shape)
    calib_arrays = None if calib is None else _inputs(calib)
    target_name = target_toml = None
    if isinstance(target, Mapping):
        target_toml = toml_text(target)
    elif target is not None:
        target_name = os.fspath(target)
    out = _native.compile(
        m._m,
        calib_arrays,
        wbits,
        abits,
        calib_method,
        weight_method,
        calib_samples,
        _bits_toml(bits),
        act_signed,
        target_name,
        target_toml,
        arrays,
        adc_range,
        adc_bits,
        array_rows,
        bn_calibrate,
        auto_bits,
        ",".join(str(int(b)) for b in bits_candidates),
        cascade,
        emit,
        schedule,
    )
    if isinstance(out, _native.Program):
        return Program(out)
    return Stream(out)


class Program:
    """A compiled program: the bit-accurate integer model of the chip (``.cimp``).

    ``run(x)`` = ``cimc run``; ``eval(x, y)`` = ``cimc eval``; ``run(x, noise=...)`` /
    ``eval(x, y, noise=...)`` = the noisy chip of ``cimc eval --noise``; ``report()``,
    ``listing()``, ``save(path)``, ``Program.load(path)``.
    """

    def __init__(self, native: "_native.Program"):
        self._p = native

    @classmethod
    def load(cls, path: PathLike) -> "Program":
        """Reads a program file (``.cimp``)."""
        return cls(_native.load_program(os.fspath(path)))

    def run(
        self,
        x: Any,
        *,
        noise: Union[None, PathLike, Mapping[str, Any]] = None,
        seed: int = 0,
        trials: int = 1,
    ) -> Union[np.ndarray, Tuple[np.ndarray, ...]]:
        """Runs the program on ``x`` (``[N, ...]``, any N; a tuple for several inputs) and
        returns the dequantized outputs (one array, or a tuple for several outputs), bit for
        bit those of ``cimc run``.

        With ``noise`` (a noise or target file with a ``[noise]`` table, or the table as a
        dict; docs/noise.md): the chip as programmed in trial ``t`` of ``seed`` (the draws of
        ``cimc eval --noise --seed``), read noise keyed on each sample's index. ``trials=1``
        gives one chip (trial 0: the same chip for the same seed); ``trials=T`` stacks the
        outputs of T chips along a new first axis ``[T, N, ...]``.
        """
        path, toml = _noise_args(noise)
        outs = self._p.run(_inputs(x), path, toml, int(seed), int(trials))
        if noise is None or trials == 1:
            return _outputs(outs[0])
        per_trial = [tuple(_output(o) for o in t) for t in outs]
        stacked = tuple(np.stack([t[k] for t in per_trial]) for k in range(len(per_trial[0])))
        return stacked[0] if len(stacked) == 1 else stacked

    def eval(
        self,
        x: Any,
        y: Any,
        *,
        noise: Union[None, PathLike, Mapping[str, Any]] = None,
        seed: int = 0,
        trials: int = 20,
    ) -> Dict[str, Any]:
        """Top-1 accuracy on inputs ``x`` with integer labels ``y``, as ``cimc eval --json``:
        ``{"top1", "samples", "correct", "seconds"}``. With ``noise``: the Monte Carlo report
        of ``cimc eval --noise --trials --seed --json`` (``exact_top1``, ``scenarios[0]`` with
        each trial's ``top1``, ``mean``, ``std``...)."""
        path, toml = _noise_args(noise)
        x = _input_for_native(x)
        return json.loads(self._p.eval(x, _labels(y), path, toml, int(seed), int(trials)))

    def report(self) -> Dict[str, Any]:
        """The compile report: ``steps``, ``buffers``; for a program compiled in this process,
        also what ``cimc compile --report`` writes (with a target: per-layer ``layers``,
        ``totals``, ``table``), each pass's decisions (``passes``) and the per-layer widths
        (``bits``, the TOML of ``--bits-out``)."""
        return json.loads(self._p.report())

    def listing(self) -> str:
        """The program's text listing (``cimc compile --listing``)."""
        return self._p.listing()

    def save(self, path: PathLike) -> None:
        """Writes the program file (``.cimp``), byte for byte what ``cimc compile -o`` writes."""
        self._p.save(os.fspath(path))

    @property
    def inputs(self):
        """(name, shape) of each input; the first dimension is the program's batch."""
        return self._p.inputs()

    @property
    def outputs(self):
        """The output names."""
        return self._p.outputs()

    def __repr__(self) -> str:
        r = self.report()
        return f"<cimc.Program: {r['steps']} steps, {r['buffers']} buffers>"


class Stream:
    """An instruction stream for one chip (``.cims``): ``simulate(x)`` = ``cimc sim``,
    ``cost()`` = its cost report, ``text()`` = ``cimc disasm``."""

    def __init__(self, native: "_native.Stream"):
        self._s = native

    @classmethod
    def load(cls, path: PathLike) -> "Stream":
        """Reads a stream file (``.cims``)."""
        return cls(_native.load_stream(os.fspath(path)))

    def simulate(self, x: Any) -> Union[np.ndarray, Tuple[np.ndarray, ...]]:
        """Runs the stream on the simulator; ``x`` has exactly the stream's input shape."""
        return _outputs(self._s.simulate(_inputs(x)))

    def cost(self, target: Optional[PathLike] = None) -> Dict[str, Any]:
        """The cost report (time, energy, per layer) of ``cimc sim --report``, for the target
        the stream records (or ``target``, which must map the same way)."""
        t = None if target is None else os.fspath(target)
        return json.loads(self._s.cost(t))

    def cost_table(self, target: Optional[PathLike] = None) -> str:
        """The cost report as the table ``cimc sim --report`` prints."""
        return self._s.cost_table(None if target is None else os.fspath(target))

    def text(self) -> str:
        """The stream's text form (``cimc disasm``)."""
        return self._s.text()

    def save(self, path: PathLike) -> None:
        """Writes the stream file (``.cims``)."""
        self._s.save(os.fspath(path))

    @property
    def instructions(self) -> int:
        return self._s.instructions()

    @property
    def inputs(self):
        return self._s.inputs()

    def __repr__(self) -> str:
        return f"<cimc.Stream: {self.instructions} instructions>"
