"""One model input or output tensor and its quantization, read from the model file once.

Apart from the backends because both the model runners (:mod:`hi_runtime.backends`) and the input spec
(:mod:`hi_runtime.input_spec`) need it, and the per-sample quantize/dequantize live here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TOP_BIT = np.uint8(0x80)
_INT8 = np.dtype(np.int8)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``scale``/``zero_point`` are set for quantized (int8/uint8) tensors:
    real = (q - zero_point) * scale."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None

    def __post_init__(self) -> None:
        # decided once: quantize/dequantize run per sample and np.issubdtype costs microseconds
        quantized = self.scale is not None and self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)
        object.__setattr__(self, "_quantized", bool(quantized))
        object.__setattr__(self, "_integer", bool(np.issubdtype(self.dtype, np.integer)))
        object.__setattr__(self, "_pixel_minus_128", bool(
            quantized and self.scale == 1.0 and self.zero_point == -128 and self.dtype == np.int8))

    @property
    def quantized(self) -> bool:
        return self._quantized  # type: ignore[attr-defined]

    @property
    def quant(self) -> tuple[float, int] | None:
        return (float(self.scale), int(self.zero_point or 0)) if self.quantized else None

    def quantize(self, real: np.ndarray) -> np.ndarray:
        """Real values (e.g. uint8 pixels) to this tensor's dtype: q = round(real / scale) + zero_point."""
        if not self._quantized:  # type: ignore[attr-defined]
            real = np.asarray(real)
            if real.dtype != self.dtype and self._integer:  # type: ignore[attr-defined]
                # e.g. normalized floats into a uint8 tensor without quantization: round and saturate
                info = np.iinfo(self.dtype)
                return np.clip(np.rint(real), info.min, info.max).astype(self.dtype)
            return real.astype(self.dtype, copy=False)
        if self._pixel_minus_128 and real.dtype == np.uint8:  # type: ignore[attr-defined]
            # the shipped model's input: q = pixel - 128, which in two's complement is the pixel with its top
            # bit flipped, reinterpreted as int8 (exact, and the cheapest form on the per-sample path)
            return (real ^ _TOP_BIT).view(_INT8)
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(real, dtype=np.float32) / np.float32(self.scale)) + int(self.zero_point or 0)
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        if not self._quantized:  # type: ignore[attr-defined]
            return np.asarray(raw, dtype=np.float32)
        return (raw.astype(np.float32) - np.float32(self.zero_point or 0)) * np.float32(self.scale)
