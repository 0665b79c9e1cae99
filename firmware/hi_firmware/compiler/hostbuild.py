"""Build generated models with the host C compiler into a shared library and run them through ctypes.

WHY: the bit-exactness tests compare our C against the tflite-micro Python interpreter on the host, so the
exact C sources that go to the board are compiled here (through hi_firmware.toolchain, -ffp-contract=off so
float steps round like TFLM's) and driven from pytest.
"""
from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import kernel_dir

_NP = {"int8": np.int8, "uint8": np.uint8, "float32": np.float32}


def kernel_sources() -> list[Path]:
    """The hi_nn kernels (sources.mk HI_NN_SRCS)."""
    from ..sources import paths

    return paths("HI_NN_SRCS")


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]


class HostModel:
    """A generated model compiled for the host; call run(*inputs) -> list of outputs."""

    def __init__(self, lib_path: Path, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]):
        self.lib = ctypes.CDLL(str(lib_path))
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self._fn = getattr(self.lib, f"hi_model_{name}_invoke_generic")
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise ValueError(f"model {self.name} takes {len(self.inputs)} inputs, got {len(arrays)}")
        ins = []
        for a, spec in zip(arrays, self.inputs):
            a = np.ascontiguousarray(a, dtype=_NP[spec.dtype]).reshape(spec.shape)
            ins.append(a)
        outs = [np.zeros(spec.shape, dtype=_NP[spec.dtype]) for spec in self.outputs]
        in_ptrs = (ctypes.c_void_p * len(ins))(*[a.ctypes.data for a in ins])
        out_ptrs = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
        rc = self._fn(in_ptrs, out_ptrs)
        if rc != 0:
            raise RuntimeError(f"hi_model_{self.name}_invoke returned {rc}")
        return outs


def build_host_model(model_bytes: bytes, name: str, work_dir: Path, source_label: str = "<bytes>",
                     options: object | None = None) -> tuple[HostModel, object]:
    """Compile a .tflite (bytes) to C, build it with the kernels into a .so, and load it."""
    from . import compile_bytes

    gen, graph, plan = compile_bytes(model_bytes, name, source_label, options)  # type: ignore[arg-type]
    digest = hashlib.sha256(gen.source.encode() + b"".join(p.read_bytes() for p in kernel_sources())).hexdigest()[:12]
    gen_dir = work_dir / f"{name}_{digest}"
    gen.write(gen_dir)
    from ..toolchain import build_shared as build

    lib = build([gen_dir / f"hi_model_{name}.c", *kernel_sources()], [gen_dir, kernel_dir()], gen_dir,
                f"libhi_model_{name}")
    specs_in = [TensorSpec(graph.tensors[t].name, graph.tensors[t].dtype, graph.tensors[t].shape) for t in graph.inputs]
    specs_out = [TensorSpec(graph.tensors[t].name, graph.tensors[t].dtype, graph.tensors[t].shape) for t in graph.outputs]
    return HostModel(lib, name, specs_in, specs_out), (gen, graph, plan)
