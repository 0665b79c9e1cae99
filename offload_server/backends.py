"""Model backends of the edge server: ONNX Runtime and LiteRT (TFLite), both taking whole batches.

A backend only runs the model; turning requests into its input is offload_server.preprocess's job. Each
backend reports the per-sample input shape, dtype and quantization it wants, and returns float
outputs [N, classes] (dequantized when the model's output is quantized).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from offload_server.config import ConfigError, ModelConfig

log = logging.getLogger("offload_server.backends")

#: ONNX Runtime execution providers, best first; the first one available is used.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


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


class OnnxBackend:
    def __init__(self, config: ModelConfig) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if config.num_threads:
            options.intra_op_num_threads = config.num_threads
        options.inter_op_num_threads = 1
        # Idle worker threads must not spin: they share the cores with the event loop that feeds them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        if config.providers:
            missing = [p for p in config.providers if p not in available]
            if missing:
                raise ConfigError(
                    f"model {config.id!r}: execution provider(s) {missing} are not available in this "
                    f"onnxruntime build (available: {available})"
                )
            providers = list(config.providers)
        else:
            providers = [p for p in PREFERRED_PROVIDERS if p in available] or available
        try:
            self.session = ort.InferenceSession(config.path, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConfigError(f"model {config.id!r}: ONNX Runtime cannot load {config.path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ConfigError(f"model {config.id!r}: expected one input, {config.path} has {len(inputs)}")
        inp = inputs[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        dims = [d if isinstance(d, int) else -1 for d in inp.shape]
        dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(inp.type)
        if dtype is None:
            raise ConfigError(f"model {config.id!r}: unsupported ONNX input type {inp.type}")
        self.fixed_batch = dims[0] if dims and dims[0] > 0 else None
        self.input = InputSpec(shape=tuple(dims[1:]), dtype=np.dtype(dtype), quant=None)
        used = self.session.get_providers()
        self.description = f"onnxruntime {ort.__version__} [{used[0]}]"
        log.info("model %s: ONNX Runtime execution providers %s (available %s)", config.id, used, available)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            if self.fixed_batch != 1:
                raise ValueError(f"model has a fixed batch of {self.fixed_batch}; got {batch.shape[0]}")
            outs = [self.session.run([self.output_name], {self.input_name: batch[i : i + 1]})[0]
                    for i in range(batch.shape[0])]
            return np.concatenate(outs).astype(np.float32, copy=False)
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(out, dtype=np.float32).reshape(batch.shape[0], -1)


class LiteRTBackend:
    """TFLite models through ai-edge-litert. Interpreters are resized to power-of-two batch sizes and
    cached, so a changing batch size does not re-allocate tensors on every call."""

    def __init__(self, config: ModelConfig) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._config = config
        self._make = lambda: Interpreter(model_path=config.path, num_threads=config.num_threads or None)
        try:
            base = self._make()
            base.allocate_tensors()
        except Exception as exc:
            raise ConfigError(f"model {config.id!r}: LiteRT cannot load {config.path}: {exc}") from exc
        detail = base.get_input_details()
        if len(detail) != 1:
            raise ConfigError(f"model {config.id!r}: expected one input, {config.path} has {len(detail)}")
        inp = detail[0]
        out = base.get_output_details()[0]
        scale, zp = inp["quantization"]
        quant = (float(scale), int(zp)) if scale else None
        self.input = InputSpec(shape=tuple(int(d) for d in inp["shape"][1:]), dtype=np.dtype(inp["dtype"]),
                               quant=quant)
        oscale, ozp = out["quantization"]
        self._out_quant = (float(oscale), int(ozp)) if oscale else None
        self._base_batch = int(inp["shape"][0])
        self._interpreters: dict[int, object] = {self._base_batch: base}
        self._resizable = True
        self.description = "ai-edge-litert (TFLite)"
        log.info("model %s: LiteRT interpreter, input %s %s quant=%s", config.id, inp["shape"], inp["dtype"], quant)

    def _interpreter(self, n: int):
        interp = self._interpreters.get(n)
        if interp is None:
            interp = self._make()
            index = interp.get_input_details()[0]["index"]
            interp.resize_tensor_input(index, [n, *self.input.shape], strict=False)
            interp.allocate_tensors()
            self._interpreters[n] = interp
        return interp

    def _run(self, interp, batch: np.ndarray) -> np.ndarray:
        interp.set_tensor(interp.get_input_details()[0]["index"], batch)
        interp.invoke()
        out = interp.get_output_details()[0]
        y = interp.get_tensor(out["index"]).reshape(batch.shape[0], -1)
        if self._out_quant is not None:
            scale, zp = self._out_quant
            return ((y.astype(np.float32) - zp) * scale).astype(np.float32)
        return y.astype(np.float32, copy=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if self._resizable:
            size = 1 << (n - 1).bit_length()  # next power of two
            try:
                interp = self._interpreter(size)
            except Exception as exc:  # model with a fixed batch that cannot be resized
                log.warning("model %s: cannot resize the batch (%s); running one sample at a time",
                            self._config.id, exc)
                self._resizable = False
            else:
                if size != n:
                    pad = np.zeros((size - n, *batch.shape[1:]), dtype=batch.dtype)
                    batch = np.concatenate([batch, pad])
                return self._run(interp, batch)[:n]
        interp = self._interpreters[self._base_batch]
        outs: list[np.ndarray] = [self._run(interp, batch[i : i + 1]) for i in range(n)]
        return np.concatenate(outs)


def load_backend(config: ModelConfig) -> Backend:
    kind = config.resolved_backend
    backend: Backend = OnnxBackend(config) if kind == "onnx" else LiteRTBackend(config)
    if config.input_dtype != "auto" and np.dtype(config.input_dtype) != backend.input.dtype:
        raise ConfigError(
            f"model {config.id!r}: config says input_dtype {config.input_dtype} but {config.path} takes "
            f"{backend.input.dtype}; fix input_dtype or use 'auto'"
        )
    return backend
