"""Type stubs of the native module (python/src/). The public API is cimc/__init__.py."""

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str

class CimcError(ValueError): ...
class CimcInternalError(RuntimeError): ...

_In = Union[np.ndarray, bytes]
_Out = Union[np.ndarray, bytes]

class Model:
    def run(self, inputs: Sequence[_In]) -> List[_Out]: ...
    def dump(self) -> str: ...
    def inputs(self) -> List[Tuple[str, str, List[int]]]: ...

class Program:
    def run(
        self,
        inputs: Sequence[_In],
        noise_path: Optional[str] = None,
        noise_toml: Optional[str] = None,
        seed: int = 0,
        trials: int = 1,
    ) -> List[List[_Out]]: ...
    def eval(
        self,
        x: _In,
        labels: Sequence[int],
        noise_path: Optional[str] = None,
        noise_toml: Optional[str] = None,
        seed: int = 0,
        trials: int = 20,
    ) -> str: ...
    def report(self) -> str: ...
    def listing(self) -> str: ...
    def save(self, path: str) -> None: ...
    def inputs(self) -> List[Tuple[str, List[int]]]: ...
    def outputs(self) -> List[str]: ...

class Stream:
    def simulate(self, inputs: Sequence[_In]) -> List[_Out]: ...
    def cost(self, target: Optional[str] = None) -> str: ...
    def cost_table(self, target: Optional[str] = None) -> str: ...
    def text(self) -> str: ...
    def save(self, path: str) -> None: ...
    def instructions(self) -> int: ...
    def inputs(self) -> List[Tuple[str, List[int]]]: ...

def load(source: Union[str, bytes], batch: Optional[int] = None,
         input_shapes: Sequence[Tuple[str, Sequence[int]]] = ...) -> Model: ...
def load_program(path: str) -> Program: ...
def load_stream(path: str) -> Stream: ...
def compile(
    model: Model,
    calib: Optional[Sequence[_In]] = None,
    wbits: int = 8,
    abits: int = 8,
    calib_method: str = "minmax",
    weight_method: str = "minmax",
    calib_samples: Optional[int] = None,
    bits_toml: Optional[str] = None,
    act_signed: bool = False,
    target: Optional[str] = None,
    target_toml: Optional[str] = None,
    arrays: Optional[int] = None,
    adc_range: Optional[str] = None,
    adc_bits: Optional[int] = None,
    array_rows: Optional[int] = None,
    bn_calibrate: bool = False,
    budget: Optional[str] = None,
    bits_candidates: str = "2,3,4,5,6,8",
    cascade: Optional[int] = None,
    emit: str = "program",
    schedule: str = "auto",
) -> Union[Program, Stream]: ...
