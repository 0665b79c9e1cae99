"""The one reader (and writer) of TFLite flatbuffers: the object API of the TFLite schema.

Whoever needs a model's structure (the early-exit exporter cutting segments, the firmware compiler's
checks, the TFLite Micro runner counting outputs) reads it here. The generated schema module ships with
every TFLite runtime we support, so this needs no extra package: ai-edge-litert, tflite-micro and
TensorFlow each carry a ``schema_py_generated`` (all need ``flatbuffers``).
"""
from __future__ import annotations

import importlib
from functools import lru_cache

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
