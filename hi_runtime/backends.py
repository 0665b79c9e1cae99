"""The one model-runner layer: every part of the project runs a model file through these classes.

The agent runs its local model and early-exit chain with them, the edge server its large model, the
training tools their exported files (accuracy, arena size), the measurements their timings, and the
firmware compiler its reference outputs (TFLite Micro, LiteRT's reference kernels).

Why several interpreters: a Raspberry Pi on a current OS gets ``ai-edge-litert`` (the maintained TFLite
runtime), older images with numpy<2 only have ``tflite-runtime``, a desktop may only have TensorFlow
(``tf.lite``), a Jetson or a GPU server runs ONNX Runtime with the TensorRT or CUDA execution provider,
and the firmware's reference is the TFLite Micro interpreter (``tflite-micro``). Every import is lazy:
importing this module needs numpy only, so the agent starts on a device that has just one of them.

A backend exposes its input and output tensors (:class:`TensorSpec`, with quantization read from the
model once, never assumed) and ``run(x) -> {output name: raw array}``. Outputs are addressed by name
because TFLite may reorder multiple outputs (early-exit segments have two).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hi_runtime.input_spec import IDENTITY, InputSpecError
from hi_runtime.tensor_spec import TensorSpec

log = logging.getLogger(__name__)
_TOP_BIT = np.uint8(0x80)  # uint8 pixel ^ 0x80 = int8 (pixel - 128): the shipped input

TFLITE_BACKENDS = ("litert", "tflite-runtime", "tf")
ONNX_BACKENDS = ("onnxruntime",)
TFLM_BACKENDS = ("tflm",)  # the TFLite Micro interpreter: the firmware's reference, slow; never "auto"
BACKEND_CHOICES = ("auto",) + TFLITE_BACKENDS + ONNX_BACKENDS + TFLM_BACKENDS

INSTALL_HINTS = {
    "litert": "pip install ai-edge-litert  (Python >= 3.10, numpy 2)",
    "tflite-runtime": "pip install tflite-runtime  (older Raspberry Pi OS images with numpy < 2)",
    "tf": "pip install tensorflow  (desktop; heavy)",
    "onnxruntime": "pip install onnxruntime  (or onnxruntime-gpu / the Jetson wheel for TensorRT)",
    "tflm": "pip install tflite-micro  (the TFLite Micro interpreter, the firmware's reference)",
}
EDGE_TPU_HINT = ("it was compiled for the Edge TPU (edgetpu-custom-op), which this interpreter cannot run: "
                 "use the CPU-compiled .tflite of the same model (the file before edgetpu_compiler), or run "
                 "it on the Coral board with libedgetpu")


class BackendError(RuntimeError):
    """No backend can run the model (missing package, unreadable file, unsupported tensor type)."""


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
        """The output called ``name`` (exact, or the one whose name contains it); the only one if None. A
        model with several outputs (an early-exit model's exit and final scores) must be told which: taking
        the first would silently classify with whatever the converter put first."""
        if name is None:
            if len(self.outputs) > 1:
                raise BackendError(f"{self.path.name} has {len(self.outputs)} outputs "
                                   f"{[s.name for s in self.outputs]}; name the scores output to use")
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

    # ---- whole arrays (evaluation, calibration checks, the server's batches) --------------------------

    def predict_raw(self, images: np.ndarray, outputs: Sequence[str] | None = None,
                    batch: int = 256) -> dict[str, np.ndarray]:
        """Raw outputs (int8 for INT8 models) for an array of real-valued inputs (e.g. uint8 pixels),
        quantized with the input's own parameters, in batches of ``batch``."""
        names = [self.output(n).name for n in outputs] if outputs else [o.name for o in self.outputs]
        parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for i in range(0, len(images), batch):
            out = self.run(self.input.quantize(images[i:i + batch]))
            for n in names:
                parts[n].append(np.array(out[n], copy=True))
        return {n: np.concatenate(v) for n, v in parts.items()}

    def predict(self, images: np.ndarray, output: str | None = None, batch: int = 256) -> np.ndarray:
        """Dequantized output ``output`` (default: the first), float32, for an array of inputs."""
        spec = self.output(output)
        return spec.dequantize(self.predict_raw(images, [spec.name], batch)[spec.name])

    def op_names(self) -> list[str]:
        """Operators of the model file, where the runtime can list them."""
        raise BackendError(f"{self.kind} cannot list the operators of {self.path.name}")


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
    """A .tflite model (a file, or its bytes) on one of the TFLite interpreters. ``reference=True`` asks for
    the reference kernels (BUILTIN_REF), which round exactly like TFLite Micro on the boards (slower), except
    FULLY_CONNECTED, where TFLite Micro's rounding differs by a step (``TflmBackend`` is exact everywhere).

    A batch of another size gets its own interpreter, kept for the next batch of that size, so a server
    whose batch sizes vary does not re-allocate tensors on every call."""

    def __init__(self, model: str | Path | bytes, kind: str = "litert", *, num_threads: int | None = None,
                 reference: bool = False) -> None:
        interpreter_cls, version, resolver = _import_interpreter(kind)
        self._content = bytes(model) if isinstance(model, (bytes, bytearray)) else None
        self.path = Path("<bytes>") if self._content is not None else Path(model)
        self.kind = kind
        kwargs: dict = {}
        if num_threads is not None:
            kwargs["num_threads"] = num_threads
        if reference:
            if resolver is None:
                raise BackendError(f"{kind} {version} cannot select reference kernels; use --backend litert")
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_REF
        source = {"model_content": self._content} if self._content is not None else {"model_path": str(self.path)}
        self._make = lambda: interpreter_cls(**source, **kwargs)
        try:
            self.interp = self._make()
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            text = str(exc)
            if "edgetpu" in text.lower():
                raise BackendError(f"{self.path.name}: {EDGE_TPU_HINT}") from exc
            raise BackendError(f"{kind} could not load {self.path}: {text.strip().splitlines()[-1] if text else exc}"
                               ) from exc
        self.detail = f"{version}, {'reference kernels' if reference else 'default kernels'}" + (
            f", {num_threads} threads" if num_threads else "")
        self._by_batch: dict[int, object] = {}
        self._fixed_batch = False
        self._use(self.interp)
        self._base_batch = self._batch
        self._by_batch[self._batch] = self.interp

    def _use(self, interp) -> None:
        self.interp = interp
        self.inputs = [_spec_from_tflite(d) for d in interp.get_input_details()]
        self.outputs = [_spec_from_tflite(d) for d in interp.get_output_details()]
        self._batch = self.inputs[0].shape[0] if self.inputs[0].shape else 1
        self._out_idx = [(s.name, s.index) for s in self.outputs]
        self._in_idx = self.inputs[0].index

    def _invoke(self, x: np.ndarray) -> None:
        if x.shape[0] != self._batch:
            interp = self._by_batch.get(x.shape[0])
            if interp is None:
                interp = self._make()
                interp.resize_tensor_input(self._in_idx, [x.shape[0], *self.inputs[0].shape[1:]])
                interp.allocate_tensors()
                self._by_batch[x.shape[0]] = interp
            self._use(interp)
        self.interp.set_tensor(self._in_idx, x)
        self.interp.invoke()

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if x.shape[0] != self._batch and self._fixed_batch:
            return self._one_by_one(x)
        try:
            self._invoke(x)
        except RuntimeError:
            if x.shape[0] == 1 or self._fixed_batch:
                raise
            # the graph fixes its batch (a Flatten traced with a static batch becomes RESHAPE to [1, n],
            # e.g. the logistic regression): run one sample at a time from now on
            self._fixed_batch = True
            self._use(self._by_batch[self._base_batch])
            return self._one_by_one(x)
        return {name: self.interp.get_tensor(idx) for name, idx in self._out_idx}

    def _one_by_one(self, x: np.ndarray) -> dict[str, np.ndarray]:
        rows = []
        for i in range(x.shape[0]):
            self.interp.set_tensor(self._in_idx, x[i:i + 1])
            self.interp.invoke()
            rows.append({name: self.interp.get_tensor(idx).copy() for name, idx in self._out_idx})
        return {name: np.concatenate([r[name] for r in rows]) for name, _ in self._out_idx}

    def run_one(self, x: np.ndarray, output: TensorSpec) -> np.ndarray:
        if x.shape[0] != 1:  # a batch goes through _run, which falls back to one by one on fixed-batch graphs
            return self._run(x)[output.name]
        self._invoke(x)
        return self.interp.get_tensor(output.index)

    def run_many(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """One invoke with every input set in order (e.g. both operands of a kernel test); outputs in the
        model's order. The inputs must have the model's batch size."""
        for spec, x in zip(self.inputs, inputs):
            self.interp.set_tensor(spec.index, np.asarray(x).reshape(spec.shape).astype(spec.dtype, copy=False))
        self.interp.invoke()
        return [self.interp.get_tensor(s.index).copy() for s in self.outputs]

    def op_names(self) -> list[str]:
        """Builtin operators in the model (read with the reference resolver, so no delegate hides them)."""
        interpreter_cls, _, resolver = _import_interpreter(self.kind)
        kw = {"experimental_op_resolver_type": resolver.BUILTIN_REF} if resolver is not None else {}
        source = {"model_content": self._content} if self._content is not None else {"model_path": str(self.path)}
        ref = interpreter_cls(**source, **kw)
        return sorted({d["op_name"] for d in ref._get_ops_details()})


# ---------------------------------------------------------------------------------------------------
# TFLite Micro (the firmware's reference interpreter)
# ---------------------------------------------------------------------------------------------------

class TflmBackend(Backend):
    """A .tflite model on the TFLite Micro interpreter (``tflite-micro``), the reference the firmware
    engine must match byte for byte. One sample per invoke (TFLite Micro has no batch resizing). Its Python
    interpreter reports no tensor names, so they are read from the flatbuffer: a chain's segments find their
    ``features``/``scores`` outputs by name on this backend as on the others."""

    kind = "tflm"

    def __init__(self, model: str | Path | bytes, *, arena_size: int = 2_000_000) -> None:
        try:
            from tflite_micro import runtime
        except ImportError as exc:
            raise ImportError(exc.msg, name="tflite_micro") from exc
        data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        self.path = Path("<bytes>") if isinstance(model, (bytes, bytearray)) else Path(model)
        try:
            self.interp = runtime.Interpreter.from_bytes(data, arena_size=arena_size)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"TFLite Micro could not load {self.path.name}: {exc}") from exc
        self.detail = f"arena {arena_size} B"
        in_names, out_names = _io_names(data)
        self.inputs = [self._spec(self.interp.get_input_details(i), n, i) for i, n in enumerate(in_names)]
        self.outputs = [self._spec(self.interp.get_output_details(i), n, i) for i, n in enumerate(out_names)]

    @staticmethod
    def _spec(detail: dict, name: str, index: int) -> TensorSpec:
        q = detail.get("quantization_parameters") or {}
        scales, zps = q.get("scales", []), q.get("zero_points", [])
        dtype = np.dtype(detail["dtype"])
        quantized = len(scales) == 1 and float(scales[0]) != 0.0 and np.issubdtype(dtype, np.integer)
        return TensorSpec(name=name, index=index, shape=tuple(int(d) for d in detail["shape"]), dtype=dtype,
                          scale=float(scales[0]) if quantized else None,
                          zero_point=int(zps[0]) if quantized else None)

    def run_many(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """One invoke with every input set (segments of a chain have one; kernel tests may have two)."""
        for i, x in enumerate(inputs):
            self.interp.set_input(x, i)
        self.interp.invoke()
        return [np.array(self.interp.get_output(i)) for i in range(len(self.outputs))]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self.run_many(x[i:i + 1]) for i in range(len(x))]
        return {o.name: np.concatenate([r[k] for r in rows]) for k, o in enumerate(self.outputs)}


def _io_names(data: bytes) -> tuple[list[str], list[str]]:
    """Names of subgraph 0's inputs and outputs, in order, read from the flatbuffer (TFLite Micro's Python
    API does not report them)."""
    from hi_runtime.tflite_schema import read_model, tensor_name

    sg = read_model(data).subgraphs[0]
    return ([tensor_name(sg.tensors[int(t)]) for t in sg.inputs],
            [tensor_name(sg.tensors[int(t)]) for t in sg.outputs])


def tflm_arena_bytes(model: str | Path | bytes, images: np.ndarray | None = None, *,
                     floor: int = 4096) -> int:
    """Smallest tensor arena (bytes, to 16 B) with which TFLite Micro loads and invokes the model (with
    ``images[:1]`` as the input when given), found by bisection: the number a firmware author must
    provision (the interpreter's own report is text on stdout). Arenas below ``floor`` are not probed
    (the interpreter crashes instead of failing there)."""
    from tflite_micro import runtime

    data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    x = None
    if images is not None:
        spec = TflmBackend(data).input
        x = spec.quantize(images[:1])

    def works(size: int) -> bool:
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=size)
            if x is not None:
                interp.set_input(x, 0)
            interp.invoke()
            return True
        except Exception:  # noqa: BLE001 - TFLM raises RuntimeError/ValueError variants on a small arena
            return False

    with quiet_stderr():
        if works(floor):
            return floor
        lo, hi = floor, 1 << 16
        while not works(hi):
            lo, hi = hi, hi * 2
            if hi > (1 << 28):
                raise BackendError("TFLite Micro could not run the model even with a 256 MB arena")
        while hi - lo > 16:
            mid = (lo + hi) // 2 // 16 * 16
            if mid <= lo:
                break
            if works(mid):
                hi = mid
            else:
                lo = mid
    return hi


class quiet_stderr:
    """Silence C++ runtimes' messages (printed to file descriptor 2), e.g. while probing arena sizes."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self.saved = os.dup(2)
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self.devnull, 2)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        os.close(self.devnull)


# ---------------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------------

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                "tensor(float16)": np.float16}
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxBackend(Backend):
    """An .onnx file on ONNX Runtime; TensorRT, then CUDA, then CPU execution provider, whichever exists,
    or exactly ``providers`` (an unavailable one is an error, never a silent CPU fallback). Inputs are
    float32 pixels unless the model says otherwise.

    ``spinning=False`` stops idle worker threads from spinning: a server's event loop shares the cores
    with them. ``sample_shape`` is the input shape without the batch axis, -1 where the model is dynamic."""

    kind = "onnxruntime"

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None,
                 num_threads: int | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        available = ort.get_available_providers()
        if providers:
            missing = [p for p in providers if p not in available]
            if missing:
                raise BackendError(f"{self.path.name}: execution provider(s) {missing} are not available in this "
                                   f"onnxruntime build (available: {available}); install onnxruntime-gpu or the "
                                   "TensorRT build, or leave the providers unset")
            chosen = list(providers)
        else:
            chosen = [p for p in PROVIDER_PREFERENCE if p in available] or available
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime could not load {self.path}: {exc}") from exc
        self.providers = self.session.get_providers()
        if providers:  # compiled in is not running: without the CUDA/TensorRT libraries ORT drops to the CPU
            dropped = [p for p in providers if p not in self.providers]
            if dropped:
                raise BackendError(f"{self.path.name}: onnxruntime could not start execution provider(s) {dropped} "
                                   f"(the session runs on {self.providers}); install the CUDA/cuDNN or TensorRT "
                                   "libraries this onnxruntime build needs, or leave the providers unset")
        self.detail = f"{ort.__version__}, {self.providers[0]}"

        def spec(i: int, meta) -> TensorSpec:
            if meta.type not in _ONNX_DTYPES:
                raise BackendError(f"{self.path.name}: unsupported ONNX tensor type {meta.type} of {meta.name}")
            shape = tuple(d if isinstance(d, int) else 1 for d in meta.shape)
            return TensorSpec(meta.name, i, shape, np.dtype(_ONNX_DTYPES[meta.type]))

        self.inputs = [spec(i, m) for i, m in enumerate(self.session.get_inputs())]
        self.outputs = [spec(i, m) for i, m in enumerate(self.session.get_outputs())]
        self._names = [s.name for s in self.outputs]
        dims = [d if isinstance(d, int) else -1 for d in self.session.get_inputs()[0].shape]
        self.fixed_batch = dims[0] if dims and dims[0] > 0 else None
        self.sample_shape = tuple(dims[1:])

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feed = self.inputs[0].name
        if self.fixed_batch is not None and x.shape[0] != self.fixed_batch:
            if self.fixed_batch != 1:
                raise BackendError(f"{self.path.name} has a fixed batch of {self.fixed_batch}; got {x.shape[0]}")
            rows = [self.session.run(self._names, {feed: x[i:i + 1]}) for i in range(x.shape[0])]
            return {n: np.concatenate([r[k] for r in rows]) for k, n in enumerate(self._names)}
        return dict(zip(self._names, self.session.run(self._names, {feed: x})))


# ---------------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------------

def _tflite_candidates(preferred: str) -> list[str]:
    return list(TFLITE_BACKENDS) if preferred == "auto" else [preferred]


def open_backend(model: str | Path | bytes, backend: str = "auto", *, num_threads: int | None = None,
                 reference: bool = False, providers: Sequence[str] | None = None,
                 announce: Callable[[str], None] | None = None, arena_size: int = 2_000_000) -> Backend:
    """Open a model file (or a .tflite model's bytes) on the requested backend, or the first that imports
    ("auto": for .tflite ai-edge-litert, then tflite-runtime, then tf.lite; for .onnx ONNX Runtime).
    ``tflm`` (TFLite Micro) is only used when asked for.

    ``announce`` receives one line saying which backend was chosen (the CLI prints it); a failure names
    every backend tried and how to install one.
    """
    if isinstance(model, (bytes, bytearray)):
        path, suffix = Path("<bytes>"), ".tflite"
    else:
        path = Path(model)
        if not path.exists():
            raise BackendError(f"model file {path} does not exist")
        suffix = path.suffix.lower()
    if backend not in BACKEND_CHOICES:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_CHOICES)}")
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
            raise BackendError(f"{path.name} is a TFLite model; use --backend auto/litert/tflite-runtime/tf/tflm")
        if backend == "tflm":
            try:
                result = TflmBackend(model, arena_size=arena_size)
            except ImportError as exc:
                raise BackendError(f"cannot run {path.name} on TFLite Micro: {INSTALL_HINTS['tflm']}") from exc
        else:
            failures = []
            result = None  # type: ignore[assignment]
            for kind in _tflite_candidates(backend):
                try:
                    result = TFLiteBackend(model, kind, num_threads=num_threads, reference=reference)
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


def _input_format(backend: Backend, input_format):
    """(the input spec, the (H, W, C) images it takes) for ``backend``'s input, checked once."""
    fmt = input_format if input_format is not None else IDENTITY
    shape = backend.input.shape
    if len(shape) != 4:
        raise BackendError(f"{backend.path.name}: expected an image input [N,H,W,C] or [N,C,H,W], got shape {shape}")
    dynamic = [d for d in getattr(backend, "sample_shape", ()) if d < 0]
    if dynamic:  # an ONNX input whose height, width or channels are symbolic: no size to fit images to
        raise BackendError(f"{backend.path.name}: its input size is not fixed ({list(backend.sample_shape)}, -1 = "
                           "dynamic); export it with a fixed height, width and channels")
    try:
        fmt.check(backend.input, backend.path.name)
        return fmt, fmt.image_shape(shape[1:])
    except InputSpecError as exc:
        raise BackendError(str(exc)) from None


class Classifier:
    """A single-output (or named-output) classification model: uint8 NHWC images in, probabilities out.

    ``input_format`` (:class:`hi_runtime.input_spec.InputSpec`) says how the model wants its input
    (pixel scaling, per-channel mean/std, layout); None = raw NHWC pixels, the shipped models' input.

    Why a class: the per-sample hot path must not look anything up again (the agent's overhead budget is
    10% of one ResNet-8 invoke), so the input/output specs are resolved once here.
    """

    def __init__(self, backend: Backend, output_name: str | None = None, input_format=None) -> None:
        self.backend = backend
        self.input_spec = backend.input  # the input tensor (dtype, quantization)
        self.output_spec = backend.output(output_name)
        self.input_format, self.image_shape = _input_format(backend, input_format)
        self._raw_pixels = self.input_format.is_identity  # the fast path: the tensor's quantization only

    def preprocess(self, images_uint8: np.ndarray) -> np.ndarray:
        """uint8 NHWC images to the input tensor: normalized per the input spec (if any), then quantized
        with the model's own parameters."""
        if images_uint8.ndim == 3:
            images_uint8 = images_uint8[None]
        if tuple(images_uint8.shape[1:]) != self.image_shape:
            raise BackendError(f"image shape {images_uint8.shape[1:]} does not match the model input "
                               f"{self.image_shape}; resize the input (see hi-agent run --help)")
        if self._raw_pixels:
            return self.input_spec.quantize(images_uint8)
        return self.input_format.apply(images_uint8, self.input_spec)

    def predict_tensor(self, x: np.ndarray) -> LocalPrediction:
        raw = self.backend.run_one(x, self.output_spec)
        probs = self.output_spec.dequantize(raw)
        classes = raw.argmax(axis=1)
        conf = probs.max(axis=1)
        return LocalPrediction(raw=raw, probs=probs, classes=classes, confidence=conf, output=self.output_spec)

    def direct_io(self) -> tuple[Callable[[np.ndarray], None], Callable[[], list]] | None:
        """``(put, infer)`` for one image at a time without intermediate arrays, or None where this model
        cannot take it (not a batch-1 TFLite interpreter). ``put(image)`` writes one uint8 HWC image,
        quantized, straight into the interpreter's input buffer; ``infer()`` invokes and returns the output
        row as Python numbers (the raw int8 scores of an INT8 model).

        Why: at ~85 us per ResNet-8 invoke on a desktop core, ``set_tensor``/``get_tensor`` and the array
        they allocate are a measurable part of the agent's per-sample budget (10% of the invoke). The
        buffers are reached through ``Interpreter.tensor``: a view is taken and released inside each call,
        never held across ``invoke`` (the interpreter refuses to invoke while one is alive)."""
        b = self.backend
        if not isinstance(b, TFLiteBackend) or b._fixed_batch or b._batch != 1 or b.interp is not b._by_batch.get(1):
            return None
        interp = b.interp
        try:
            tensor_in, tensor_out = interp.tensor(b._in_idx), interp.tensor(self.output_spec.index)
        except (AttributeError, ValueError, RuntimeError):
            return None
        invoke = interp.invoke
        spec, shape, preprocess = self.input_spec, self.image_shape, self.preprocess
        if self._raw_pixels and spec._pixel_minus_128:  # type: ignore[attr-defined]
            xor, top_bit, u8 = np.bitwise_xor, _TOP_BIT, np.dtype(np.uint8)

            def put(image: np.ndarray) -> None:  # q = pixel - 128: the top bit flipped, written in place
                if image.shape != shape or image.dtype != u8:  # preprocess raises the shape error every path gives
                    tensor_in()[0] = preprocess(image)[0]
                    return
                xor(image, top_bit, out=tensor_in()[0].view(u8))
        else:
            def put(image: np.ndarray) -> None:
                tensor_in()[0] = preprocess(image)[0]

        def infer() -> list:
            invoke()
            return tensor_out()[0].tolist()

        return put, infer

    def classify_one(self, x: np.ndarray) -> tuple[np.ndarray, list, int, float]:
        """One preprocessed sample: (raw output row [1, C], the same row as Python numbers, class,
        confidence), with no array work beyond fetching the output (the agent's per-sample path:
        scanning ten Python numbers is cheaper than numpy calls on a tiny array; probabilities are
        dequantized later, in batches)."""
        raw = self.backend.run_one(x, self.output_spec)
        row = raw[0].tolist()
        top = max(row)
        cls = row.index(top)  # first maximum, like argmax
        spec = self.output_spec
        conf = (top - (spec.zero_point or 0)) * spec.scale if spec.quantized else top
        return raw, row, cls, float(conf)

    def predict(self, images_uint8: np.ndarray) -> LocalPrediction:
        return self.predict_tensor(self.preprocess(images_uint8))


# ---------------------------------------------------------------------------------------------------
# An early-exit segment chain on backends
# ---------------------------------------------------------------------------------------------------

class ChainRunner:
    """An early-exit segment chain (``hi_runtime.early_exit.SegmentChain``) with one backend per segment
    file: the agent's ee-hi strategy, the training tools' chain checks and the measurements all run chains
    through it. ``run_segment(k, x)`` (also ``self(k, x)``) is the ``run_segment`` callable of
    :func:`hi_runtime.early_exit.run_chain`; every segment's input and outputs are checked by name once."""

    def __init__(self, chain, backend: str = "auto", *, num_threads: int | None = None,
                 reference: bool = False, announce: Callable[[str], None] | None = None,
                 input_format=None) -> None:
        from hi_runtime.early_exit import EarlyExitError, SegmentChain

        self.chain = chain if isinstance(chain, SegmentChain) else SegmentChain.load(chain)
        self.path = Path(self.chain.path) if self.chain.path else Path("<chain>")
        self.backends: list[Backend] = [
            open_backend(s.file, backend, num_threads=num_threads, reference=reference,
                         announce=announce if k == 0 else None) for k, s in enumerate(self.chain.segments)]
        self._names = [(s.features, s.scores) for s in self.chain.segments]
        self.input_spec = self.backends[0].input
        for k, (b, s) in enumerate(zip(self.backends, self.chain.segments)):
            if b.input.name != s.input:
                raise EarlyExitError(f"segment {k + 1} ({Path(s.file).name}) input is {b.input.name!r}, the "
                                     f"chain says {s.input!r}")
        for k, b in enumerate(self.backends):  # resolve names once; a typo fails here, not mid-run
            for name in self._names[k]:
                if name is not None:
                    b.output(name)
        self._resolved = [(None if f is None else b.output(f).name, b.output(s).name)
                          for b, (f, s) in zip(self.backends, self._names)]
        self.segment_time = 0.0
        self.input_format, self._image_shape = _input_format(self.backends[0], input_format)
        self._raw_pixels = self.input_format.is_identity

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self._image_shape

    # what the agent's ee-hi strategy needs of an early-exit runner (also SingleModelEarlyExit's)
    @property
    def num_exits(self) -> int:
        return self.chain.num_exits

    @property
    def decider(self):
        """The final exit's decider (None: the final exit accepts every sample)."""
        return self.chain.policy.decider

    @property
    def final_scores_quant(self):
        return self.chain.segments[-1].scores_quant

    @property
    def model_name(self) -> str:
        return str(self.chain.meta.get("model") or self.path.name)

    def override_policy(self, *, exit_thresholds: Sequence[float | None] | None = None,
                        decider_threshold: float | None = None) -> None:
        """Replace the chain JSON's exit thresholds (None = never exit) and/or its final decider's
        threshold for this run, e.g. one run per point of an EE-HI sweep."""
        from dataclasses import replace

        from hi_runtime.early_exit import NEVER, EarlyExitError

        policy = self.chain.policy
        thresholds = policy.thresholds
        if exit_thresholds is not None:
            if len(exit_thresholds) != len(thresholds):
                raise EarlyExitError(f"chain {self.path} has {len(thresholds)} early exit(s); got "
                                     f"{len(exit_thresholds)} exit threshold(s)")
            thresholds = [NEVER if t is None else float(t) for t in exit_thresholds]
        decider = policy.decider
        if decider_threshold is not None:
            if decider is None:
                raise EarlyExitError(f"chain {self.path} has no final decider whose threshold could be set")
            decider = decider.with_threshold(decider_threshold)
        self.chain.policy = replace(policy, thresholds=thresholds, decider=decider)  # keeps the offload rules

    def header_fields(self) -> dict:
        """What a run log's header records of the policy (``ee_threshold`` is the first exit's; the
        planner's EE-HI sweep keys on it)."""
        from hi_runtime.early_exit import NEVER

        ts = [None if t == NEVER else t for t in self.chain.policy.thresholds]
        decider = self.chain.policy.decider
        return {"ee_thresholds": ts, "ee_threshold": ts[0] if ts else None,
                "decider_threshold": decider.threshold if decider is not None else None}

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        images = image[None] if image.ndim == 3 else image
        if self._raw_pixels:
            return self.input_spec.quantize(images)
        return self.input_format.apply(images, self.input_spec)

    def run_segment(self, k: int, x: np.ndarray):
        t = time.perf_counter()
        out = self.backends[k].run(x)
        self.segment_time += time.perf_counter() - t
        f, s = self._resolved[k]
        return (None if f is None else out[f]), out[s]

    __call__ = run_segment

    def run(self, x: np.ndarray):
        from hi_runtime.early_exit import run_chain

        return run_chain(self.chain, self.run_segment, x)


# ---------------------------------------------------------------------------------------------------
# A single-file early-exit model (control flow inside the model)
# ---------------------------------------------------------------------------------------------------

class SingleModelEarlyExit:
    """A single-file early-exit model whose IF operators pick the exit (``hi_runtime.early_exit_graph``),
    run whole by a TFLite interpreter: one invoke returns the scores of the exit taken and its index.
    The exit thresholds are the model's own (inside its IF tests); at the final exit the optional
    ``decider`` accepts the answer or offloads it (EE-HI).

    It answers the ee-hi strategy like :class:`ChainRunner` (``preprocess``, ``run`` -> ChainResult,
    ``num_exits``, ``decider``...), so the agent runs either. The firmware cannot run IF: split the model
    into a segment chain with ``hi-train split-ee``."""

    def __init__(self, model: str | Path, backend: str = "auto", *, num_threads: int | None = None,
                 reference: bool = False, announce: Callable[[str], None] | None = None,
                 input_format=None, decider=None) -> None:
        from hi_runtime.early_exit import NEVER, ExitPolicy, Quant
        from hi_runtime.early_exit_graph import analyze
        from hi_runtime.tflite_schema import read_model, tensor_name

        self.path = Path(model)
        if not self.path.is_file():
            raise BackendError(f"model file {self.path} does not exist")
        if backend in ONNX_BACKENDS:
            raise BackendError(f"{self.path.name} is a TFLite model; use --backend auto/litert/tflite-runtime/tf")
        data = self.path.read_bytes()
        self.graph = analyze(data, name=self.path.name)
        self.backend = open_backend(self.path, backend, num_threads=num_threads, reference=reference,
                                    announce=announce)
        self.backends = [self.backend]
        main = read_model(data).subgraphs[0]
        names = [tensor_name(main.tensors[int(t)]) for t in main.outputs]  # the graph's output order
        self.scores_spec = self.backend.output(names[self.graph.scores_output])
        self.index_spec = self.backend.output(names[self.graph.index_output])
        self.input_spec = self.backend.input
        self.input_format, self._image_shape = _input_format(self.backend, input_format)
        self._raw_pixels = self.input_format.is_identity
        self.thresholds = self.graph.thresholds
        self.policy = ExitPolicy([NEVER] * len(self.graph.levels), decider)
        self.final_scores_quant = Quant(*self.scores_spec.quant) if self.scores_spec.quantized else None
        self.segment_time = 0.0

    num_exits = property(lambda self: self.graph.num_exits)
    decider = property(lambda self: self.policy.decider)
    image_shape = property(lambda self: self._image_shape)
    model_name = property(lambda self: self.path.name)

    def header_fields(self) -> dict:
        ts = self.thresholds
        decider = self.policy.decider
        return {"ee_thresholds": ts, "ee_threshold": ts[0] if ts else None, "ee_model": "single file (IF)",
                "decider_threshold": decider.threshold if decider is not None else None}

    def override_policy(self, *, exit_thresholds: Sequence[float | None] | None = None,
                        decider_threshold: float | None = None) -> None:
        from hi_runtime.early_exit import EarlyExitError

        if exit_thresholds is not None:
            raise EarlyExitError(f"the exit thresholds of {self.path.name} are inside its IF tests and cannot be "
                                 "set per run; split it into a segment chain (hi-train split-ee --exit-threshold "
                                 "T) to choose them, or drop --exit-thresholds")
        if decider_threshold is not None:
            if self.policy.decider is None:
                raise EarlyExitError(f"--threshold needs a final-exit decider for {self.path.name}: give --decider")
            from dataclasses import replace

            self.policy = replace(self.policy, decider=self.policy.decider.with_threshold(decider_threshold))

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        images = image[None] if image.ndim == 3 else image
        if self._raw_pixels:
            return self.input_spec.quantize(images)
        return self.input_format.apply(images, self.input_spec)

    def run(self, x: np.ndarray):
        """One sample: the model's exit, class, confidence, and (final exit) the decider's offload."""
        from hi_runtime.early_exit import ChainResult, EarlyExitError, Quant

        t = time.perf_counter()
        out = self.backend.run(x)
        self.segment_time += time.perf_counter() - t
        s = np.asarray(out[self.scores_spec.name]).reshape(1, -1)
        idx = self.index_spec.dequantize(np.asarray(out[self.index_spec.name]).reshape(-1))
        k = round(float(idx[0]))
        last = self.graph.num_exits - 1
        if not 0 <= k <= last:
            raise EarlyExitError(f"{self.path.name} returned exit index {k}; it has exits 0..{last}")
        probs = self.scores_spec.dequantize(s)
        offload = False
        if k == last and self.policy.decider is not None:
            if self.scores_spec.quantized:
                accept = self.policy.final_accept_int8(s, Quant(*self.scores_spec.quant))[0]
            else:
                accept = self.policy.final_accept(probs.astype(np.float64))[0]
            offload = not bool(accept)
        return ChainResult(k, int(s.argmax()), offload, s[0], k + 1, float(probs.max()))
