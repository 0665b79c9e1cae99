"""Local model backends: one small interface over the interpreters a device may have.

Why several: a Raspberry Pi on a current OS gets ``ai-edge-litert`` (the maintained TFLite runtime), older
images with numpy<2 only have ``tflite-runtime``, a desktop may only have TensorFlow (``tf.lite``), and a
Jetson runs ONNX Runtime with the TensorRT or CUDA execution provider. Every import is lazy: importing
this module needs numpy only, so the agent starts on a device that has just one of them.

A backend exposes its input and output tensors (:class:`TensorSpec`, with quantization read from the
model, never assumed) and ``run(x) -> {output name: raw array}``. Outputs are addressed by name because
TFLite may reorder multiple outputs (early-exit segments have two).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)
_TOP_BIT = np.uint8(0x80)
_INT8 = np.dtype(np.int8)

TFLITE_BACKENDS = ("litert", "tflite-runtime", "tf")
ONNX_BACKENDS = ("onnxruntime",)
BACKEND_CHOICES = ("auto",) + TFLITE_BACKENDS + ONNX_BACKENDS

INSTALL_HINTS = {
    "litert": "pip install ai-edge-litert  (Python >= 3.10, numpy 2)",
    "tflite-runtime": "pip install tflite-runtime  (older Raspberry Pi OS images with numpy < 2)",
    "tf": "pip install tensorflow  (desktop; heavy)",
    "onnxruntime": "pip install onnxruntime  (or onnxruntime-gpu / the Jetson wheel for TensorRT)",
}


class BackendError(RuntimeError):
    """No backend can run the model (missing package, unreadable file, unsupported tensor type)."""


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
            return np.asarray(real).astype(self.dtype, copy=False)
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


class Backend:
    """Common interface. Subclasses fill ``inputs``/``outputs`` and implement ``_run``."""

    kind: str = "?"
    detail: str = ""
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def output(self, name: str | None = None) -> TensorSpec:
        """The output called ``name`` (exact, or the one whose name contains it); the only/first one if None."""
        if name is None:
            return self.outputs[0]
        for spec in self.outputs:
            if spec.name == name:
                return spec
        hits = [s for s in self.outputs if name in s.name]
        if len(hits) == 1:
            return hits[0]
        raise BackendError(f"{self.path.name} has no output named {name!r}; outputs are "
                           f"{[s.name for s in self.outputs]}")

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch already in the input's dtype; raw outputs by tensor name."""
        return self._run(x)

    def run_one(self, x: np.ndarray, output: TensorSpec) -> np.ndarray:
        """Run and fetch a single output (the per-sample fast path; subclasses may avoid the dict)."""
        return self._run(x)[output.name]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind}{' (' + self.detail + ')' if self.detail else ''}"


# ---------------------------------------------------------------------------------------------------
# TFLite family: ai-edge-litert, tflite-runtime, tf.lite share the Interpreter API
# ---------------------------------------------------------------------------------------------------

def _import_interpreter(kind: str):
    """(Interpreter class, version string, op-resolver enum or None) for one TFLite flavour."""
    if kind == "litert":
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        return Interpreter, getattr(ai_edge_litert, "__version__", "?"), OpResolverType
    if kind == "tflite-runtime":
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        resolver = getattr(__import__("tflite_runtime.interpreter", fromlist=["OpResolverType"]),
                           "OpResolverType", None)
        return Interpreter, getattr(tflite_runtime, "__version__", "?"), resolver
    if kind == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        return tf.lite.Interpreter, tf.__version__, getattr(tf.lite.experimental, "OpResolverType", None)
    raise BackendError(f"unknown TFLite backend {kind!r}; choose one of {TFLITE_BACKENDS}")


def _spec_from_tflite(detail: dict) -> TensorSpec:
    scale, zp = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"])
    quantized = bool(scale) and np.issubdtype(dtype, np.integer)
    return TensorSpec(name=str(detail["name"]), index=int(detail["index"]),
                      shape=tuple(int(d) for d in detail["shape"]), dtype=dtype,
                      scale=float(scale) if quantized else None, zero_point=int(zp) if quantized else None)


class TFLiteBackend(Backend):
    """A .tflite file on one of the TFLite interpreters. ``reference=True`` asks for the reference kernels
    (BUILTIN_REF), which round exactly like TFLite Micro on the boards (slower)."""

    def __init__(self, path: str | Path, kind: str = "litert", *, num_threads: int | None = None,
                 reference: bool = False) -> None:
        interpreter_cls, version, resolver = _import_interpreter(kind)
        self.path = Path(path)
        self.kind = kind
        kwargs: dict = {}
        if num_threads is not None:
            kwargs["num_threads"] = num_threads
        if reference:
            if resolver is None:
                raise BackendError(f"{kind} {version} cannot select reference kernels; use --backend litert")
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_REF
        try:
            self.interp = interpreter_cls(model_path=str(self.path), **kwargs)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{kind} could not load {self.path}: {exc}") from exc
        self.detail = f"{version}, {'reference kernels' if reference else 'default kernels'}" + (
            f", {num_threads} threads" if num_threads else "")
        self._refresh()

    def _refresh(self) -> None:
        self.inputs = [_spec_from_tflite(d) for d in self.interp.get_input_details()]
        self.outputs = [_spec_from_tflite(d) for d in self.interp.get_output_details()]
        self._batch = self.inputs[0].shape[0] if self.inputs[0].shape else 1
        self._out_idx = [(s.name, s.index) for s in self.outputs]
        self._in_idx = self.inputs[0].index

    def _invoke(self, x: np.ndarray) -> None:
        if x.shape[0] != self._batch:
            self.interp.resize_tensor_input(self.inputs[0].index, [x.shape[0], *self.inputs[0].shape[1:]])
            self.interp.allocate_tensors()
            self._refresh()
        self.interp.set_tensor(self._in_idx, x)
        self.interp.invoke()

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self._invoke(x)
        return {name: self.interp.get_tensor(idx) for name, idx in self._out_idx}

    def run_one(self, x: np.ndarray, output: TensorSpec) -> np.ndarray:
        self._invoke(x)
        return self.interp.get_tensor(output.index)


# ---------------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------------

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                "tensor(float16)": np.float16}
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxBackend(Backend):
    """An .onnx file on ONNX Runtime; TensorRT, then CUDA, then CPU execution provider, whichever exists
    (override with ``providers``). Inputs are float32 pixels unless the model says otherwise."""

    kind = "onnxruntime"

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None,
                 num_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        available = ort.get_available_providers()
        chosen = list(providers) if providers else [p for p in PROVIDER_PREFERENCE if p in available]
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=chosen)
        except Exception as exc:
            raise BackendError(f"onnxruntime could not load {self.path}: {exc}") from exc
        self.detail = f"{ort.__version__}, {self.session.get_providers()[0]}"

        def spec(i: int, meta) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else 1 for d in meta.shape)
            return TensorSpec(meta.name, i, shape, np.dtype(_ONNX_DTYPES.get(meta.type, np.float32)))

        self.inputs = [spec(i, m) for i, m in enumerate(self.session.get_inputs())]
        self.outputs = [spec(i, m) for i, m in enumerate(self.session.get_outputs())]
        self._names = [s.name for s in self.outputs]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(self._names, {self.inputs[0].name: x})
        return dict(zip(self._names, outs))


# ---------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------

def _tflite_candidates(preferred: str) -> list[str]:
    return list(TFLITE_BACKENDS) if preferred == "auto" else [preferred]


def open_backend(path: str | Path, backend: str = "auto", *, num_threads: int | None = None,
                 reference: bool = False, providers: Sequence[str] | None = None,
                 announce: Callable[[str], None] | None = None) -> Backend:
    """Open ``path`` on the requested backend, or the first that imports ("auto": for .tflite
    ai-edge-litert, then tflite-runtime, then tf.lite; for .onnx ONNX Runtime).

    ``announce`` receives one line saying which backend was chosen (the CLI prints it); a failure names
    every backend tried and how to install one.
    """
    path = Path(path)
    if not path.exists():
        raise BackendError(f"model file {path} does not exist")
    if backend not in BACKEND_CHOICES:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_CHOICES)}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if backend not in ("auto", "onnxruntime"):
            raise BackendError(f"{path.name} is an ONNX model; --backend {backend} runs .tflite files only")
        try:
            result: Backend = OnnxBackend(path, providers=providers, num_threads=num_threads)
        except ImportError as exc:
            raise BackendError(f"cannot run {path.name}: onnxruntime is not installed "
                               f"({INSTALL_HINTS['onnxruntime']})") from exc
    elif suffix == ".tflite":
        if backend == "onnxruntime":
            raise BackendError(f"{path.name} is a TFLite model; use --backend auto/litert/tflite-runtime/tf")
        failures = []
        result = None  # type: ignore[assignment]
        for kind in _tflite_candidates(backend):
            try:
                result = TFLiteBackend(path, kind, num_threads=num_threads, reference=reference)
                break
            except ImportError as exc:
                failures.append(f"{kind}: not installed ({exc.name or exc}); {INSTALL_HINTS[kind]}")
        if result is None:
            raise BackendError(f"no TFLite interpreter available to run {path.name}:\n  " + "\n  ".join(failures))
    else:
        raise BackendError(f"{path.name}: unknown model format {suffix!r}; expected .tflite or .onnx")
    msg = f"local model {path.name} on {result.describe()}"
    log.info(msg)
    if announce is not None:
        announce(msg)
    return result


# ---------------------------------------------------------------------------------------------------
# A classifier on top of a backend
# ---------------------------------------------------------------------------------------------------

@dataclass
class LocalPrediction:
    """The local model's answer for a batch: raw output scores (int8 for INT8 models), dequantized
    probabilities and the argmax class."""

    raw: np.ndarray
    probs: np.ndarray
    classes: np.ndarray
    confidence: np.ndarray
    output: TensorSpec


class Classifier:
    """A single-output (or named-output) classification model: uint8 NHWC images in, probabilities out.

    Why a class: the per-sample hot path must not look anything up again (the agent's overhead budget is
    10% of one ResNet-8 invoke), so the input/output specs are resolved once here.
    """

    def __init__(self, backend: Backend, output_name: str | None = None) -> None:
        self.backend = backend
        self.input_spec = backend.input
        self.output_spec = backend.output(output_name)
        shape = self.input_spec.shape
        if len(shape) != 4:
            raise BackendError(f"{backend.path.name}: expected an NHWC image input, got shape {shape}")
        self.image_shape = tuple(shape[1:])

    def preprocess(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 NHWC images to the input tensor (quantized with the model's own parameters)."""
        if images_uint8.ndim == 3:
            images_uint8 = images_uint8[None]
        if tuple(images_uint8.shape[1:]) != self.image_shape:
            raise BackendError(f"image shape {images_uint8.shape[1:]} does not match the model input "
                               f"{self.image_shape}; resize the input (see hi-agent run --help)")
        return self.input_spec.quantize(images_uint8)

    def predict_tensor(self, x: np.ndarray) -> LocalPrediction:
        raw = self.backend.run_one(x, self.output_spec)
        probs = self.output_spec.dequantize(raw)
        classes = raw.argmax(axis=1)
        conf = probs.max(axis=1)
        return LocalPrediction(raw=raw, probs=probs, classes=classes, confidence=conf, output=self.output_spec)

    def classify_one(self, x: np.ndarray) -> tuple[np.ndarray, int, float]:
        """One preprocessed sample: (raw output row [1, C], class, confidence), with no array work beyond
        the argmax (the agent's per-sample path; probabilities are dequantized later, in batches)."""
        raw = self.backend.run_one(x, self.output_spec)
        row = raw[0].tolist()  # ten Python numbers: cheaper to scan than numpy calls on a tiny array
        top = max(row)
        cls = row.index(top)  # first maximum, like argmax
        spec = self.output_spec
        conf = (top - (spec.zero_point or 0)) * spec.scale if spec.quantized else top
        return raw, cls, float(conf)

    def predict(self, images_uint8: np.ndarray) -> LocalPrediction:
        return self.predict_tensor(self.preprocess(images_uint8))
