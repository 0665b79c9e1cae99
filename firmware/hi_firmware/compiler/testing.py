"""Helpers to build small INT8 TFLite models and run reference interpreters, for tests and benchmarks.

WHY in the package: the compiler tests, the kernel tests and measurements/bench_firmware_memory.py all need
the same "make a tiny Keras model, convert it to full-integer INT8 the standard way, run it in tflite-micro"
steps; keeping them here avoids three copies. TensorFlow is imported lazily (it costs seconds).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
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


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ allocator's failure messages while probing arena sizes."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def count_outputs(model_bytes: bytes) -> int:
    """Number of outputs of the first subgraph (the tflite-micro Python API cannot tell)."""
    import tflite

    return int(tflite.Model.GetRootAsModel(model_bytes, 0).Subgraphs(0).OutputsLength())


class TflmRunner:
    """Keeps one tflite-micro interpreter for many samples (creating one per sample is slow)."""

    def __init__(self, model_bytes: bytes, arena_size: int = 2_000_000):
        from tflite_micro import runtime

        self.interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size)
        self.n_outputs = count_outputs(model_bytes)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self.interp.set_input(x, i)
        self.interp.invoke()
        return [np.array(self.interp.get_output(i)) for i in range(self.n_outputs)]


class LitertRefRunner:
    """ai-edge-litert with BUILTIN_REF kernels (TFLite's reference kernels) as a second oracle."""

    def __init__(self, model_bytes: bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interp = Interpreter(model_content=model_bytes,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        self.interp.allocate_tensors()
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        for d, x in zip(self.inputs, inputs):
            self.interp.set_tensor(d["index"], x.reshape(d["shape"]).astype(d["dtype"]))
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]).copy() for d in self.outputs]


def tflm_arena_used(model_bytes: bytes) -> int | None:
    """Smallest arena (bytes, to 16 B) tflite-micro accepts for this model, found by bisection.

    WHY bisection: the Python interpreter's print_allocations() reports usage only as text on stdout; the
    minimal arena that allocates is the number a firmware author must provision, so we measure exactly that."""
    from tflite_micro import runtime

    def ok(size: int) -> bool:
        with _quiet_stderr():
            try:
                it = runtime.Interpreter.from_bytes(model_bytes, arena_size=size)
                del it
                return True
            except RuntimeError:
                return False

    # The interpreter segfaults (instead of raising) for arenas below a few hundred bytes, so probing never
    # goes under FLOOR; models that fit in less are reported as FLOOR.
    floor = 4096
    hi = 1 << 16
    while not ok(hi):
        hi *= 2
        if hi > (1 << 26):
            return None
    lo = floor
    if ok(floor):
        return floor
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if mid <= lo:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


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


def with_outputs(model_bytes: bytes, tensor_indices: Sequence[int]) -> bytes:
    """The same model with different graph outputs (e.g. an intermediate tensor), for oracle comparisons.

    WHY: TFLite's BUILTIN_REF kernels (ai-edge-litert) and TFLite Micro's reference kernels are not
    identical everywhere: measured here, per-channel int8 FULLY_CONNECTED and int8 SOFTMAX differ by
    one LSB on some bytes. Our kernels follow TFLite Micro (the firmware's reference); the LiteRT check
    therefore compares byte for byte on the part of the network where the two references agree."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
    model.subgraphs[0].outputs = [int(t) for t in tensor_indices]
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def litert_agreeing_prefix(model_bytes: bytes) -> bytes | None:
    """The model cut just before its first FULLY_CONNECTED or SOFTMAX (outputs = that op's input), or None
    when the model has neither (then the whole model is compared)."""
    from .graph import read_tflite_bytes

    graph = read_tflite_bytes(model_bytes)
    for op in graph.operators:
        if op.opcode in ("FULLY_CONNECTED", "SOFTMAX"):
            return with_outputs(model_bytes, [op.inputs[0]])
    return None
