"""Export trained Keras models for devices and the server, and evaluate the exported files.

* ``export_int8_tflite``: full-integer INT8 with int8 input and output. The input scaling is folded into
  the first convolution first (see :func:`training.models.fold_input_scaling`), so with representative
  data spanning 0..255 the converter picks input scale 1.0 and zero point -128: a device feeds
  ``pixel - 128``, exactly as MLPerf Tiny does. The output is the softmax, quantized by TFLite's softmax
  convention (scale 1/256, zero point -128).
* ``export_float_tflite``: float32 TFLite for desktop evaluation.
* ``export_onnx``: ONNX (tf2onnx) for the edge server, validated against Keras with ONNX Runtime.

Multi-output models (early-exit segments) keep their output names; readers must resolve outputs by name.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class ExportError(Exception):
    pass


def _serving_function(model, batch: int | None = 1):
    import tensorflow as tf

    specs = [tf.TensorSpec([batch, *inp.shape[1:]], tf.float32, name=inp.name.split(":")[0])
             for inp in model.inputs]

    @tf.function(input_signature=specs)
    def serve(*args):
        out = model(list(args) if len(args) > 1 else args[0], training=False)
        if isinstance(out, dict):
            return out
        if isinstance(out, (list, tuple)):
            return {name: o for name, o in zip(model.output_names, out)}
        return {model.output_names[0]: out}

    return serve


def _concrete_function(model, batch: int | None = 1):
    return _serving_function(model, batch).get_concrete_function()


def _frozen_function(model, batch: int | None = 1):
    """The model's forward pass with its variables folded into constants (the TFLite calibrator and
    tf2onnx both want a graph without resource variables)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(_concrete_function(model, batch))


def _converter(model, batch: int | None = 1):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_concrete_functions([_frozen_function(model, batch)])


def export_int8_tflite(model, representative_images: np.ndarray, path: str | Path, *,
                       num_calibration: int = 500, fold_scaling: bool = True, conv_classifier: bool = True,
                       per_tensor_dense: bool = True) -> Path:
    """Full-integer INT8 TFLite with int8 input and output, calibrated on ``representative_images``
    (uint8 NHWC training images, never test images). With ``conv_classifier`` a dense classifier on a
    1x1 feature map is exported as a 1x1 CONV_2D (``training.models.dense_head_as_conv``), which TFLite
    Micro and LiteRT's reference kernels compute bit for bit alike."""
    import tensorflow as tf

    from training.models import dense_head_as_conv, fold_input_scaling

    if fold_scaling:
        model = fold_input_scaling(model)
    if conv_classifier:
        model = dense_head_as_conv(model)
    rep = np.asarray(representative_images)[:num_calibration].astype(np.float32)
    if len(rep) == 0:
        raise ExportError("representative_images is empty; pass a few hundred training images")

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if per_tensor_dense and hasattr(conv, "_experimental_disable_per_channel_quantization_for_dense_layers"):
        # Per-tensor FULLY_CONNECTED (where one is left), as in MLPerf Tiny's INT8 models: one
        # requantization multiplier, the form every microcontroller kernel library handles. LiteRT's
        # reference kernels and TFLite Micro round FULLY_CONNECTED differently on some samples, per-tensor
        # or per-channel alike; the firmware follows TFLite Micro.
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    data = conv.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def export_float_tflite(model, path: str | Path) -> Path:
    conv = _converter(model)
    data = conv.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def export_onnx(model, path: str | Path, *, opset: int = 17, validate_images: np.ndarray | None = None,
                atol: float = 1e-4) -> Path:
    """ONNX with a dynamic batch dimension; input float32 [N,H,W,C] raw pixels, output softmax.
    With ``validate_images`` the file is run with ONNX Runtime and compared with Keras."""
    import tf2onnx

    fn = _serving_function(model, batch=None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset,
                                  output_path=str(path))
    if validate_images is not None:
        x = np.asarray(validate_images, dtype=np.float32)
        ref = model.predict(x, verbose=0)
        got = OnnxModel(path).predict(x)
        diff = float(np.abs(ref - got).max())
        if diff > atol or not np.array_equal(ref.argmax(1), got.argmax(1)):
            raise ExportError(f"ONNX export of {model.name} disagrees with Keras (max abs diff {diff:.2e})")
    return path


# ----------------------------------------------------------------------------------------------------
# Running exported files
# ----------------------------------------------------------------------------------------------------

class TFLiteModel:
    """A TFLite file run by ai-edge-litert; ``reference=True`` selects the reference kernels
    (BUILTIN_REF), which round exactly as TFLite Micro does; the default (XNNPACK) path is faster and
    may differ by a few int8 steps."""

    def __init__(self, path: str | Path, *, reference: bool = False, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kw = {}
        if reference:
            kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
        self.path = Path(path)
        self.interp = Interpreter(model_path=str(path), num_threads=num_threads, **kw)
        self.interp.allocate_tensors()
        self.input = self.interp.get_input_details()[0]
        self.outputs = self.interp.get_output_details()
        self._batch = 1
        self._fixed_batch = False

    @property
    def input_quant(self) -> tuple[float, int]:
        s, z = self.input["quantization"]
        return float(s), int(z)

    def output_quant(self, index: int = 0) -> tuple[float, int]:
        s, z = self.outputs[index]["quantization"]
        return float(s), int(z)

    def quantize_input(self, images_uint8: np.ndarray) -> np.ndarray:
        if self.input["dtype"] == np.float32:
            return images_uint8.astype(np.float32)
        s, z = self.input_quant
        q = np.round(images_uint8.astype(np.float32) / s) + z
        info = np.iinfo(self.input["dtype"])
        return np.clip(q, info.min, info.max).astype(self.input["dtype"])

    def _resize(self, n: int) -> bool:
        """Resize the batch to ``n``; False when the graph fixes the batch at 1 (a Flatten traced with a
        static batch becomes RESHAPE to [1, features], e.g. the logistic regression), so callers run
        one sample at a time instead."""
        if n != self._batch and not self._fixed_batch:
            size = n
            self.interp.resize_tensor_input(self.input["index"], [size, *self.input["shape"][1:]])
            try:
                self.interp.allocate_tensors()
            except RuntimeError:
                self._fixed_batch, size = True, 1
                self.interp.resize_tensor_input(self.input["index"], [1, *self.input["shape"][1:]])
                self.interp.allocate_tensors()
            self.input = self.interp.get_input_details()[0]
            self.outputs = self.interp.get_output_details()
            self._batch = size
        return self._batch == n

    def invoke_raw(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch of already-quantized inputs; outputs by tensor name, raw (int8 for INT8 models)."""
        if not self._resize(len(x)):
            parts = [self.invoke_raw(x[i:i + 1]) for i in range(len(x))]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        self.interp.set_tensor(self.input["index"], x)
        self.interp.invoke()
        return {o["name"]: self.interp.get_tensor(o["index"]).copy() for o in self.outputs}

    def predict_proba(self, images_uint8: np.ndarray, batch: int = 256, output: int = 0) -> np.ndarray:
        """Dequantized output ``output`` (softmax probabilities) for uint8 NHWC images."""
        outs = []
        name = self.outputs[output]["name"]
        for i in range(0, len(images_uint8), batch):
            raw = self.invoke_raw(self.quantize_input(images_uint8[i:i + batch]))[name]
            det = next(o for o in self.outputs if o["name"] == name)
            s, z = det["quantization"]
            outs.append((raw.astype(np.float32) - z) * s if s else raw.astype(np.float32))
        return np.concatenate(outs)

    def op_names(self) -> list[str]:
        """Builtin operators in the file (read with the reference resolver, so no delegate hides them)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        ref = Interpreter(model_path=str(self.path),
                          experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        return sorted({d["op_name"] for d in ref._get_ops_details()})


class OnnxModel:
    def __init__(self, path: str | Path, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=list(providers or ["CPUExecutionProvider"]))
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray, batch: int = 500) -> np.ndarray:
        outs = [self.session.run(None, {self.input_name: images[i:i + batch].astype(np.float32)})[0]
                for i in range(0, len(images), batch)]
        return np.concatenate(outs)


def tflm_arena_bytes(path: str | Path, images_uint8: np.ndarray | None = None) -> int:
    """Smallest tensor arena (bytes) with which the TFLite Micro interpreter (``tflite-micro`` package)
    runs the model, found by bisection; checks it really invokes."""
    from tflite_micro import runtime

    data = Path(path).read_bytes()

    with _quiet_stderr():
        return _bisect_arena(data, path, images_uint8)


def _bisect_arena(data: bytes, path, images_uint8) -> int:
    from tflite_micro import runtime

    def works(size: int) -> bool:
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=size)
            if images_uint8 is not None:
                det = interp.get_input_details(0)
                s, z = det["quantization_parameters"]["scales"], det["quantization_parameters"]["zero_points"]
                s = float(s[0]) if len(s) else 1.0
                z = int(z[0]) if len(z) else 0
                q = np.clip(np.round(images_uint8[:1].astype(np.float32) / s) + z, -128, 127).astype(det["dtype"])
                interp.set_input(q, 0)
            interp.invoke()
            return True
        except Exception:  # noqa: BLE001 - TFLM raises RuntimeError/ValueError variants on a small arena
            return False

    lo, hi = 1024, 1 << 16
    while not works(hi):
        lo, hi = hi, hi * 2
        if hi > (1 << 28):
            raise ExportError(f"TFLite Micro could not run {path} even with a 256 MB arena")
    while hi - lo > 16:
        mid = (lo + hi) // 2
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


class _quiet_stderr:
    """Silence the C++ allocator's messages (printed to fd 2) while probing arena sizes."""

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


def representative_subset(images: np.ndarray, n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), size=min(n, len(images)), replace=False)
    return images[np.sort(idx)]


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())


def silence_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tmpdir() -> str:
    return tempfile.mkdtemp(prefix="hi-export-")


def iter_batches(x: np.ndarray, n: int) -> Iterable[np.ndarray]:
    for i in range(0, len(x), n):
        yield x[i:i + n]
