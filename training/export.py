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
from typing import Iterable

import numpy as np

from hi_runtime.backends import open_backend


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
    from training.models import dense_head_as_conv, fold_input_scaling

    if fold_scaling:
        model = fold_input_scaling(model)
    if conv_classifier:
        model = dense_head_as_conv(model)
    data = convert_full_int8(_converter(model), np.asarray(representative_images)[:num_calibration],
                             per_tensor_dense=per_tensor_dense)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def convert_full_int8(conv, representative: np.ndarray, *, per_tensor_dense: bool = True) -> bytes:
    """Run a TFLiteConverter (from a Keras model or a concrete function) as a full-integer INT8 export with
    int8 input and output, calibrated one sample at a time on ``representative`` (real-valued inputs)."""
    import tensorflow as tf

    rep = np.asarray(representative).astype(np.float32)
    if len(rep) == 0:
        raise ExportError("representative_images is empty; pass a few hundred training images")

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

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
    return bytes(conv.convert())


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
        got = open_backend(path, providers=["CPUExecutionProvider"]).predict(x, batch=500)
        diff = float(np.abs(ref - got).max())
        if diff > atol or not np.array_equal(ref.argmax(1), got.argmax(1)):
            raise ExportError(f"ONNX export of {model.name} disagrees with Keras (max abs diff {diff:.2e})")
    return path


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
