"""PyTorch and cimc: export a module and compile it, or train with the chip in the loop.

``cimc.torch.compile(module, example_input, **options)`` exports ``module`` with
``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``, or the ``torch.export``
one, ``dynamo=True``) and compiles the ONNX model with :func:`cimc.compile` (same options).

:class:`ChipModule` wraps a float module so that its forward pass returns what the compiled
program computes on the batch -- the chip's integer arithmetic, its ADCs, and with ``noise``
one programming of its cells (a fixed chip, or a fresh one per step) -- while the backward
pass goes straight through the float module (a straight-through estimator, :class:`ChipFunction`).
An ordinary PyTorch loop then fine-tunes the float weights against the chip's own errors; the
program is recompiled from the updated weights every ``recompile_every`` training steps.

Needs the ``cimc[torch]`` extra (torch, onnx; onnxscript for ``dynamo=True``).
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

import cimc

__all__ = ["export", "compile", "ChipFunction", "ChipModule"]


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def export(
    module: torch.nn.Module,
    example_input: Any,
    *,
    dynamo: bool = False,
    opset_version: int = 17,
) -> bytes:
    """The ONNX bytes of ``module`` (in eval mode, on the CPU) traced on ``example_input``
    (a tensor, or a tuple for several inputs); the batch of ``example_input`` becomes the
    model's (and the compiled program's) batch. ``dynamo=True`` uses the ``torch.export``
    based exporter (needs onnxscript)."""
    m = copy.deepcopy(module).cpu().eval()
    args = tuple(t.detach().cpu() if torch.is_tensor(t) else t for t in _as_tuple(example_input))
    if dynamo:
        prog = torch.onnx.export(m, args, dynamo=True, opset_version=max(opset_version, 18),
                                 optimize=True, verbose=False)
        return prog.model_proto.SerializeToString()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Asked for by name: the deprecation of the TorchScript exporter is not news here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(m, args, buf, dynamo=False, opset_version=opset_version,
                          input_names=[f"input_{i}" for i in range(len(args))])
    return buf.getvalue()


def compile(
    module: torch.nn.Module,
    example_input: Any,
    *,
    dynamo: bool = False,
    calib: Any = None,
    **options: Any,
) -> Union["cimc.Program", "cimc.Stream"]:
    """Exports ``module`` (see :func:`export`) and compiles it with :func:`cimc.compile`;
    ``calib`` defaults to ``example_input``. Every other option is :func:`cimc.compile`'s
    (``target=``, ``wbits=``, ``abits=``, ``bits=``, ``emit=``, ``bn_calibrate=``...)."""
    onnx_bytes = export(module, example_input, dynamo=dynamo)
    if calib is None:
        calib = example_input
    calib = tuple(_to_numpy(c) for c in _as_tuple(calib))
    return cimc.compile(onnx_bytes, calib=calib if len(calib) > 1 else calib[0], **options)


def _to_numpy(t: Any) -> np.ndarray:
    if torch.is_tensor(t):
        return t.detach().cpu().numpy()
    return np.asarray(t)


class ChipFunction(torch.autograd.Function):
    """``ChipFunction.apply(float_out, chip_out)``: the value of ``chip_out`` (what the chip
    computed, a tensor without gradient), the gradient of ``float_out`` (the float module's
    output on the same batch). The straight-through estimator: the loss is the chip's, its
    gradient is taken as if the chip were the float module."""

    @staticmethod
    def forward(ctx, float_out: torch.Tensor, chip_out: torch.Tensor) -> torch.Tensor:
        return chip_out.to(dtype=float_out.dtype, device=float_out.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class ChipModule(torch.nn.Module):
    """A float module whose forward pass runs on the chip.

    module           the float module (its parameters are what an optimizer trains).
    example_input    a batch for export: its shape fixes the program's batch (any batch size
                     runs, in chunks of it).
    calib            calibration inputs for each compilation (default: ``example_input``).
    noise            None (the exact program), or a ``[noise]`` spec (a file, or a dict; see
                     ``Program.run``): each forward pass runs on one programming of the chip.
    fresh_chip       with ``noise``: a new programming every training step (seed
                     ``seed + step``, the chip's variation seen as a distribution), or the same
                     chip throughout (seed ``seed``; fine-tuning for one programmed chip).
    recompile_every  recompile from the current float weights every N training steps (the
                     quantization grid and ADC ranges follow the weights).
    chip_in_eval     run the chip in eval mode too (default); else eval mode is the float module.
    dynamo           the exporter (see :func:`export`).
    options          :func:`cimc.compile`'s options (``target=``, ``wbits=``, ...).

    ``forward(x)`` = the chip's output on ``x``, with the float module's gradient. ``program``
    is the current :class:`cimc.Program`; ``step`` counts training forward passes.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        example_input: Any,
        *,
        calib: Any = None,
        noise: Union[None, str, Mapping[str, Any]] = None,
        seed: int = 0,
        fresh_chip: bool = True,
        recompile_every: int = 1,
        chip_in_eval: bool = True,
        dynamo: bool = False,
        **options: Any,
    ):
        super().__init__()
        self.module = module
        self.example_input = tuple(t.detach().cpu() for t in _as_tuple(example_input))
        self.calib = calib if calib is not None else example_input
        self.noise = noise
        self.seed = int(seed)
        self.fresh_chip = fresh_chip
        self.recompile_every = max(1, int(recompile_every))
        self.chip_in_eval = chip_in_eval
        self.dynamo = dynamo
        self.options = options
        self.step = 0
        self.program: Optional[cimc.Program] = None
        self.compiles = 0

    def recompile(self) -> "cimc.Program":
        """Compiles the float module's current weights."""
        ex = self.example_input if len(self.example_input) > 1 else self.example_input[0]
        p = compile(self.module, ex, dynamo=self.dynamo, calib=self.calib, **self.options)
        if not isinstance(p, cimc.Program):
            raise cimc.CimcError("ChipModule runs a program: leave emit at 'program'")
        self.program = p
        self.compiles += 1
        return p

    def chip_forward(self, *xs: torch.Tensor) -> Any:
        """What the chip computes on ``xs`` (no gradient), as tensors."""
        if self.program is None:
            self.recompile()
        x = tuple(_to_numpy(t).astype(np.float32, copy=False) for t in xs)
        x = x if len(x) > 1 else x[0]
        if self.noise is None:
            out = self.program.run(x)
        else:
            seed = self.seed + (self.step if self.fresh_chip else 0)
            out = self.program.run(x, noise=self.noise, seed=seed)
        return tuple(torch.from_numpy(np.ascontiguousarray(o)) for o in _as_tuple(out))

    def forward(self, *xs: torch.Tensor) -> Any:
        float_out = self.module(*xs)
        if not self.training and not self.chip_in_eval:
            return float_out
        if self.training:
            if self.program is None or self.step % self.recompile_every == 0:
                self.recompile()
            self.step += 1
        chip = self.chip_forward(*xs)
        outs = tuple(ChipFunction.apply(f, c) for f, c in zip(_as_tuple(float_out), chip))
        return outs if isinstance(float_out, (tuple, list)) else outs[0]
