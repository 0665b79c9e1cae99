"""Helpers to build small INT8 TFLite models for the compiler's tests and benchmarks.

WHY in the package: the compiler tests, the kernel tests and measurements/bench_firmware_memory.py all need
the same "make a tiny Keras model, convert it to full-integer INT8 the standard way" steps; keeping them here
avoids three copies. The reference interpreters (TFLite Micro, LiteRT's reference kernels) are the core's
runner layer (``hi_runtime.backends``: ``TflmBackend``, ``TFLiteBackend(..., reference=True)``,
``tflm_arena_bytes``). TensorFlow is imported lazily (it costs seconds).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def convert_int8(model: Any, representative: np.ndarray, io_type: str = "int8") -> bytes:
    """Full-integer quantization with a representative dataset; io_type int8, uint8 or float32."""
    import tensorflow as tf

    def rep() -> Any:
        for i in range(len(representative)):
            yield [representative[i: i + 1].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type == "int8":
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif io_type == "uint8":
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
    return bytes(conv.convert())


def mlperf_tiny_resnet8(seed: int = 0) -> Any:
    """MLPerf Tiny's image-classification ResNet-8 (the EEMBC "resnet_v1_eembc" Keras model), random weights.

    Same layer sequence as the benchmark's reference model: 3x3 conv stem (16) + BN + ReLU, three residual
    stacks of 16/32/64 filters (the 2nd and 3rd downsample with a strided 3x3 conv and a 1x1 strided shortcut
    conv), average pooling over the whole 8x8 map, Flatten, Dense(10, softmax). Written here from the
    published architecture so tests can check that a third-party-style model compiles unchanged."""
    import tensorflow as tf

    L = tf.keras.layers
    reg = tf.keras.regularizers.l2(1e-4)
    tf.keras.utils.set_random_seed(seed)

    def conv(filters: int, k: int, s: int) -> Any:
        return L.Conv2D(filters, k, strides=s, padding="same", kernel_initializer="he_normal",
                        kernel_regularizer=reg)

    inputs = tf.keras.Input(shape=(32, 32, 3))
    x = conv(16, 3, 1)(inputs)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = conv(filters, 3, stride)(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = conv(filters, 3, 1)(y)
        y = L.BatchNormalization()(y)
        if stride != 1:
            x = conv(filters, 1, stride)(x)
        x = L.add([x, y])
        x = L.Activation("relu")(x)
    x = L.AveragePooling2D(pool_size=int(min(x.shape[1:3])))(x)
    y = L.Flatten()(x)
    outputs = L.Dense(10, activation="softmax", kernel_initializer="he_normal")(y)
    return tf.keras.Model(inputs=inputs, outputs=outputs)


def mlperf_tiny_resnet8_int8(seed: int = 0, n_representative: int = 32) -> bytes:
    """The model above converted the MLPerf Tiny way: int8 in/out, representative images in 0..255."""
    rng = np.random.default_rng(seed)
    rep = rng.integers(0, 256, (n_representative, 32, 32, 3)).astype(np.float32)
    model = mlperf_tiny_resnet8(seed)
    # Random BN statistics so folding produces varied per-channel scales, as a trained model has.
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(np.float32),
                               rng.normal(0, 0.2, b.shape).astype(np.float32),
                               rng.normal(0, 0.5, m.shape).astype(np.float32) * 0,
                               rng.uniform(0.5, 2.0, v.shape).astype(np.float32) * 100])
    dense = model.layers[-1]
    k, b = dense.get_weights()
    dense.set_weights([k * 0.05, b])  # moderate logits, so the softmax output is not saturated
    return convert_int8(model, rep, io_type="int8")


def litert_agreeing_prefix(model_bytes: bytes) -> bytes | None:
    """The model cut just before its first FULLY_CONNECTED or SOFTMAX (outputs = that op's input), or None
    when the model has neither (then the whole model is compared)."""
    from .graph import read_tflite_bytes

    graph = read_tflite_bytes(model_bytes)
    for op in graph.operators:
        if op.opcode in ("FULLY_CONNECTED", "SOFTMAX"):
            from hi_runtime.tflite_schema import with_outputs

            return with_outputs(model_bytes, [op.inputs[0]])
    return None
