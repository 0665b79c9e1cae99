"""Helpers to build small INT8 TFLite models and run reference interpreters, for tests and benchmarks.

WHY in the package: the compiler tests, the kernel tests and measurements/bench_firmware_memory.py all need
the same "make a tiny Keras model, convert it to full-integer INT8 the standard way, run it in tflite-micro"
steps; keeping them here avoids three copies. TensorFlow is imported lazily (it costs seconds).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

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


def tflm_arena_used(model_bytes: bytes) -> Optional[int]:
    """Smallest arena (bytes, to 16 B) tflite-micro accepts for this model, found by bisection.

    WHY bisection: the Python interpreter's print_allocations() reports usage only as text on stdout; the
    minimal arena that allocates is the number a firmware author must provision, so we measure exactly that."""
    from tflite_micro import runtime

    def ok(size: int) -> bool:
        try:
            it = runtime.Interpreter.from_bytes(model_bytes, arena_size=size)
            del it
            return True
        except Exception:
            return False

    hi = 1 << 16
    while not ok(hi):
        hi *= 2
        if hi > (1 << 26):
            return None
    lo = 0
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if mid <= lo:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
