"""The one reader (and writer) of TFLite flatbuffers: the object API of the TFLite schema.

Whoever needs a model's structure (the early-exit exporter cutting segments, the firmware compiler's
checks, the TFLite Micro runner counting outputs) reads it here. The generated schema module ships with
every TFLite runtime we support, so this needs no extra package: ai-edge-litert, tflite-micro and
TensorFlow each carry a ``schema_py_generated`` (all need ``flatbuffers``).
"""
from __future__ import annotations

import importlib
from functools import lru_cache

import numpy as np

_SCHEMA_MODULES = (
    "ai_edge_litert.schema_py_generated",
    "tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
    "tensorflow.lite.python.schema_py_generated",
)


@lru_cache(maxsize=1)
def schema():
    """The generated TFLite schema module (object API: ``ModelT``, ``BuiltinOperator``...)."""
    failures = []
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    raise ImportError("no TFLite schema module is installed (pip install ai-edge-litert, or tflite-micro): "
                      + "; ".join(failures))


def read_model(data: bytes):
    """A ``ModelT`` (mutable object tree) of a .tflite file's bytes."""
    fb = schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytearray(data), 0))


def write_model(model, *, align_buffers: int = 16) -> bytes:
    """Serialize a ``ModelT``. Byte vectors of 4 bytes or more (weights, biases) are aligned to
    ``align_buffers`` bytes, as the TFLite converter does, so int32 biases stay aligned on a
    microcontroller that reads them in place."""
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def StartVector(self, elemSize, numElems, alignment):  # noqa: N802 - flatbuffers' API name
            if elemSize == 1 and numElems >= 4:
                alignment = max(alignment, align_buffers)
            return super().StartVector(elemSize, numElems, alignment)

    b = AlignedBuilder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def opcode_name(model, op) -> str:
    """Builtin operator name of ``op`` (e.g. ``CONV_2D``), or its custom code for a custom operator."""
    fb = schema()
    code_obj = model.operatorCodes[op.opcodeIndex]
    code = max(int(code_obj.builtinCode or 0), int(getattr(code_obj, "deprecatedBuiltinCode", 0) or 0))
    if code == fb.BuiltinOperator.CUSTOM and code_obj.customCode:
        custom = code_obj.customCode
        return custom.decode() if isinstance(custom, (bytes, bytearray)) else str(custom)
    return _builtin_names().get(code, str(code))


@lru_cache(maxsize=1)
def _builtin_names() -> dict[int, str]:
    fb = schema()
    return {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}


def with_outputs(data: bytes, tensor_indices) -> bytes:
    """The same model with other graph outputs (e.g. an intermediate tensor), for oracle comparisons."""
    model = read_model(data)
    model.subgraphs[0].outputs = [int(t) for t in tensor_indices]
    return write_model(model)


# TensorType ids -> numpy dtypes, for the types whose constants a reader may need to decode
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
                9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}


def numpy_dtype(tensor):
    """The numpy dtype of a tensor (``TensorT``), or None for types numpy cannot hold (strings, int4...)."""
    return _NUMPY_TYPES.get(int(tensor.type))


def tensor_name(tensor) -> str:
    n = tensor.name
    return n.decode() if isinstance(n, (bytes, bytearray)) else str(n)


def constant(model, tensor, *, dequantize: bool = False):
    """The value of a constant tensor (one with data in its buffer) as a numpy array of its shape, or None
    when the tensor is computed (or an input). ``dequantize`` applies its quantization (per tensor or per
    channel along ``quantizedDimension``): real = (q - zero_point) * scale, as float32."""
    buffers = model.buffers
    if tensor.buffer <= 0 or tensor.buffer >= len(buffers):
        return None
    data = buffers[tensor.buffer].data
    dtype = numpy_dtype(tensor)
    if data is None or len(data) == 0 or dtype is None:
        return None
    shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
    value = np.frombuffer(bytes(np.asarray(data, dtype=np.uint8)), dtype=dtype).reshape(shape)
    q = tensor.quantization
    if not dequantize or q is None or q.scale is None or len(q.scale) == 0:
        return value
    scale = np.asarray(q.scale, dtype=np.float32)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scale), dtype=np.float32)
    if len(scale) > 1:
        axis = int(q.quantizedDimension or 0)
        bshape = [1] * value.ndim
        bshape[axis] = len(scale)
        scale, zero = scale.reshape(bshape), zero.reshape(bshape)
    return ((value.astype(np.float32) - zero) * scale).astype(np.float32)
