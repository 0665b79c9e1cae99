"""Model backends of the edge server: a served model file on the project's one runner layer.

Running a model is the core's job (hi_runtime.backends: ONNX Runtime with its execution providers,
LiteRT for TFLite files); this module only shapes a backend for the server: the per-sample input the
preprocessor must produce (shape in the model's layout without the batch axis, dtype, quantization), and
whole batches in, float32 [N, classes] out (dequantized when the model's output is quantized). Turning
requests into model input is offload_server.preprocess's job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hi_runtime.backends import INSTALL_HINTS, BackendError, OnnxBackend, TFLiteBackend
from offload_server.config import ConfigError, ModelConfig

log = logging.getLogger("offload_server.backends")


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]  # per sample, in the model's layout (no batch axis); -1 = dynamic
    dtype: np.dtype
    quant: tuple[float, int] | None  # (scale, zero_point) for quantized inputs


class Backend(Protocol):
    description: str
    input: InputSpec

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch [N, ...] of model inputs; returns float32 [N, classes]."""


class ServedModelBackend:
    """One model file for the server. ONNX models take any batch; TFLite batches are padded to the next
    power of two, so the runner keeps a few interpreters (one per size) instead of one per batch size;
    a TFLite model whose batch cannot be resized runs one sample at a time."""

    def __init__(self, config: ModelConfig) -> None:
        where = f"model {config.id!r}"
        self.kind = config.resolved_backend
        try:
            if self.kind == "onnx":
                # idle worker threads must not spin: they share the cores with the event loop that feeds them
                self.model = OnnxBackend(config.path, providers=config.providers,
                                         num_threads=config.num_threads or None, spinning=False)
            else:
                self.model = TFLiteBackend(config.path, "litert", num_threads=config.num_threads or None)
        except ImportError as exc:
            runtime = "onnxruntime" if self.kind == "onnx" else "litert"
            raise ConfigError(f"{where}: cannot run {config.path}: {INSTALL_HINTS[runtime]}") from exc
        except BackendError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if len(self.model.inputs) != 1:
            raise ConfigError(f"{where}: expected one input, {config.path} has {len(self.model.inputs)}")
        inp = self.model.input
        shape = self.model.sample_shape if self.kind == "onnx" else tuple(inp.shape[1:])
        self.input = InputSpec(shape=tuple(shape), dtype=inp.dtype, quant=inp.quant)
        try:
            self.output = self.model.output(config.output_name)
        except BackendError as exc:
            raise ConfigError(f"{where}: {exc}" + ("" if config.output_name else " with output_name")) from None
        self.description = (f"onnxruntime {self.model.detail.split(',')[0]} [{self.model.providers[0]}]"
                            if self.kind == "onnx" else "ai-edge-litert (TFLite)")
        self._resizable = True
        log.info("model %s: %s, input %s %s quant=%s", config.id, self.model.describe(), inp.shape, inp.dtype,
                 inp.quant)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        y = self.model.run(batch)[self.output.name].reshape(batch.shape[0], -1)
        return self.output.dequantize(y).astype(np.float32, copy=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if self.kind == "onnx":
            return self._run(batch)
        if self._resizable:
            size = 1 << (n - 1).bit_length()  # next power of two
            padded = batch if size == n else np.concatenate(
                [batch, np.zeros((size - n, *batch.shape[1:]), dtype=batch.dtype)])
            try:
                return self._run(padded)[:n]
            except (RuntimeError, ValueError) as exc:  # a fixed batch that cannot be resized
                log.warning("cannot resize the batch (%s); running one sample at a time", exc)
                self._resizable = False
        return np.concatenate([self._run(batch[i:i + 1]) for i in range(n)])


def load_backend(config: ModelConfig) -> Backend:
    backend = ServedModelBackend(config)
    if config.input_dtype != "auto" and np.dtype(config.input_dtype) != backend.input.dtype:
        raise ConfigError(
            f"model {config.id!r}: config says input_dtype {config.input_dtype} but {config.path} takes "
            f"{backend.input.dtype}; fix input_dtype or use 'auto'"
        )
    return backend
