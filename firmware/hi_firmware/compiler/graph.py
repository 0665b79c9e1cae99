"""Read a TFLite flatbuffer into a small, explicit graph IR.

WHY an IR of our own: the emitter and the memory planner need tensors with shapes, quantization and constant
data as numpy arrays, and operators with their options as plain Python values. The project's one flatbuffer
reader (``hi_runtime.tflite_schema``: the TFLite schema's object API) gives the model; this module is the
only place in the compiler that touches it, so the rest never deals with flatbuffer tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "MEAN",
    "PAD",
    "PADV2",
    "RESHAPE",
    "SOFTMAX",
    "QUANTIZE",
    "DEQUANTIZE",
)

# TFLite TensorType enum values -> (name, numpy dtype).
_TENSOR_TYPES = {
    0: ("float32", np.float32),
    1: ("float16", np.float16),
    2: ("int32", np.int32),
    3: ("uint8", np.uint8),
    4: ("int64", np.int64),
    6: ("bool", np.bool_),
    7: ("int16", np.int16),
    9: ("int8", np.int8),
}

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}


class CompileError(Exception):
    """A model the compiler cannot translate; the message names the model and what to change."""


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray  # float32, empty when not quantized
    zero_points: np.ndarray  # int64, empty when not quantized
    quantized_dimension: int
    data: np.ndarray | None = None  # constant contents (weights, bias, shapes), None for activations

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def scale(self) -> float:
        """The per-tensor scale (first entry); raises for unquantized tensors."""
        if self.scales.size == 0:
            raise CompileError(f"tensor '{self.name}' has no quantization parameters")
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def itemsize(self) -> int:
        return int(np.dtype(_dtype_of(self.dtype)).itemsize)

    @property
    def nbytes(self) -> int:
        return self.num_elements * self.itemsize


@dataclass
class Operator:
    index: int
    opcode: str
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    model_name: str  # for error messages: the file the graph came from
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def producer(self, tensor_index: int) -> Operator | None:
        for op in self.operators:
            if tensor_index in op.outputs:
                return op
        return None

    def consumers(self, tensor_index: int) -> list[Operator]:
        return [op for op in self.operators if tensor_index in op.inputs]


def _dtype_of(name: str) -> Any:
    for type_name, dtype in _TENSOR_TYPES.values():
        if type_name == name:
            return dtype
    raise CompileError(f"unknown tensor type {name}")


def _opcode_name(model: Any, opcode_index: int) -> str:
    from hi_runtime.tflite_schema import opcode_name

    code = model.operatorCodes[opcode_index]
    name = opcode_name(model, _OpIndex(opcode_index))
    builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    return f"CUSTOM:{name}" if builtin == 32 else name  # 32: CUSTOM (its name is the custom code)


@dataclass(frozen=True)
class _OpIndex:
    opcodeIndex: int  # noqa: N815 - the schema's field name


def _options(op: Any, opcode: str) -> dict[str, Any]:
    """Decode the builtin options the supported kernels need, as plain values."""
    o = op.builtinOptions
    if o is None:
        return {}
    if opcode == "CONV_2D":
        return {
            "padding": _PADDING[o.padding],
            "stride_h": o.strideH,
            "stride_w": o.strideW,
            "dilation_h": o.dilationHFactor,
            "dilation_w": o.dilationWFactor,
            "activation": _ACTIVATIONS[o.fusedActivationFunction],
        }
    if opcode == "DEPTHWISE_CONV_2D":
        return {
            "padding": _PADDING[o.padding],
            "stride_h": o.strideH,
            "stride_w": o.strideW,
            "dilation_h": o.dilationHFactor,
            "dilation_w": o.dilationWFactor,
            "depth_multiplier": o.depthMultiplier,
            "activation": _ACTIVATIONS[o.fusedActivationFunction],
        }
    if opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return {
            "padding": _PADDING[o.padding],
            "stride_h": o.strideH,
            "stride_w": o.strideW,
            "filter_h": o.filterHeight,
            "filter_w": o.filterWidth,
            "activation": _ACTIVATIONS[o.fusedActivationFunction],
        }
    if opcode == "FULLY_CONNECTED":
        return {
            "activation": _ACTIVATIONS[o.fusedActivationFunction],
            "keep_num_dims": bool(o.keepNumDims),
            "weights_format": int(o.weightsFormat),
        }
    if opcode == "ADD":
        return {"activation": _ACTIVATIONS[o.fusedActivationFunction]}
    if opcode == "SOFTMAX":
        return {"beta": float(o.beta)}
    if opcode == "MEAN":
        return {"keep_dims": bool(o.keepDims)}
    return {}


def read_tflite(path: str | Path) -> Graph:
    """Parse the first subgraph of a .tflite file; multi-subgraph models are rejected with a reason."""

    path = Path(path)
    if not path.exists():
        raise CompileError(f"model file {path} does not exist")
    buf = path.read_bytes()
    return read_tflite_bytes(buf, model_name=path.name)


def read_tflite_bytes(buf: bytes, model_name: str = "<bytes>") -> Graph:
    """Parse flatbuffer bytes; any malformed input becomes a CompileError naming the model."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise CompileError(f"{model_name} is not a valid TFLite flatbuffer (no 'TFL3' file identifier)")
    try:
        return _read(buf, model_name)
    except CompileError:
        raise
    except Exception as exc:  # corrupted offsets surface as assorted struct/index/unicode errors
        raise CompileError(f"{model_name} is not a valid TFLite flatbuffer: {type(exc).__name__}: {exc}") from exc


def _read(buf: bytes, model_name: str) -> Graph:
    from hi_runtime.tflite_schema import read_model

    try:
        model = read_model(buf)
        subgraphs = model.subgraphs or []
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise CompileError(f"{model_name} is not a valid TFLite flatbuffer: {exc}") from exc
    if not subgraphs:
        raise CompileError(f"{model_name} is not a valid TFLite flatbuffer (no subgraphs)")
    if len(subgraphs) != 1:
        names = {_opcode_name(model, op.opcodeIndex) for sub in subgraphs for op in (sub.operators or [])}
        bad = sorted(n for n in names if n not in SUPPORTED_OPS)
        split = (f". If it is an early-exit model whose IF operators pick the exit, split it into INT8 segments "
                 f"with `hi-train split-ee {model_name} --out PREFIX --data DATASET` and compile each "
                 "PREFIX_seg<k>_int8.tflite") if "IF" in names else ""
        raise CompileError(
            f"model {model_name} has {len(subgraphs)} subgraphs (control flow) and uses unsupported operator(s) "
            f"{', '.join(bad) or 'none'}; only single-subgraph models built from {', '.join(SUPPORTED_OPS)} "
            f"can be compiled{split}"
        )
    sg = subgraphs[0]

    tensors: list[Tensor] = []
    for i, t in enumerate(sg.tensors or []):
        if t.type not in _TENSOR_TYPES:
            raise CompileError(f"{model_name}: tensor {i} has unsupported TFLite type id {t.type}")
        type_name, np_dtype = _TENSOR_TYPES[t.type]
        shape = tuple(int(d) for d in t.shape) if t.shape is not None and len(t.shape) else ()
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale):
            scales = np.asarray(q.scale, dtype=np.float32)
            zps = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], dtype=np.int64)
            qdim = int(q.quantizedDimension)
        else:
            scales = np.zeros(0, np.float32)
            zps = np.zeros(0, np.int64)
            qdim = 0
        data = None
        buffer = model.buffers[t.buffer] if model.buffers and t.buffer < len(model.buffers) else None
        if buffer is not None:
            raw: bytes | None = None
            if buffer.data is not None and len(buffer.data):
                raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
            elif (buffer.offset or 0) > 1:  # large models store data after the flatbuffer
                raw = buf[buffer.offset: buffer.offset + buffer.size]
            if raw is not None:
                data = np.frombuffer(raw, dtype=np_dtype).reshape(shape if shape else ()).copy()
        name = t.name.decode() if isinstance(t.name, (bytes, bytearray)) else (t.name or f"tensor_{i}")
        tensors.append(Tensor(i, name, shape, type_name, scales, zps, qdim, data))

    operators: list[Operator] = []
    for i, op in enumerate(sg.operators or []):
        opcode = _opcode_name(model, op.opcodeIndex)
        inputs = [int(x) for x in op.inputs] if op.inputs is not None else []
        outputs = [int(x) for x in op.outputs] if op.outputs is not None else []
        options = _options(op, opcode) if opcode in SUPPORTED_OPS else {}
        operators.append(Operator(i, opcode, inputs, outputs, options))

    graph = Graph(
        model_name=model_name,
        tensors=tensors,
        operators=operators,
        inputs=[int(x) for x in sg.inputs],
        outputs=[int(x) for x in sg.outputs],
    )
    prune_shape_computations(graph)
    check_supported(graph)
    return graph


def prune_shape_computations(graph: Graph) -> None:
    """Drop operators that only compute the target shape of RESHAPEs.

    WHY: Keras models exported with a dynamic batch dimension compute Flatten's target shape at run time
    (SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE). Every tensor shape is static on the device, so the reshape's
    output shape recorded in the flatbuffer is all we need and that side chain is dead code."""
    shape_only: set[int] = set()  # operator indices that can go
    changed = True
    while changed:
        changed = False
        for op in reversed(graph.operators):
            if op.index in shape_only or op.opcode == "RESHAPE" or not op.outputs:
                continue
            ok = True
            for t in op.outputs:
                if t in graph.outputs:
                    ok = False
                    break
                for c in graph.consumers(t):
                    if c.index in shape_only:
                        continue
                    if c.opcode == "RESHAPE" and t in c.inputs[1:] and t != c.inputs[0]:
                        continue
                    ok = False
                    break
                if not ok:
                    break
            if ok and any(graph.consumers(t) for t in op.outputs):
                shape_only.add(op.index)
                changed = True
    if not shape_only:
        return
    for op in graph.operators:
        if op.opcode == "RESHAPE" and len(op.inputs) > 1 and graph.tensors[op.inputs[1]].data is None:
            op.inputs = op.inputs[:1]
    kept = [op for op in graph.operators if op.index not in shape_only]
    for i, op in enumerate(kept):
        op.index = i
    graph.operators = kept


def check_supported(graph: Graph) -> None:
    """Reject unsupported operators up front with one message naming every offending op and the model."""
    bad = sorted({op.opcode for op in graph.operators if op.opcode not in SUPPORTED_OPS})
    if bad:
        raise CompileError(
            f"model {graph.model_name} uses unsupported operator(s) {', '.join(bad)}; "
            f"hi-firmware compile supports {', '.join(SUPPORTED_OPS)}. "
            "Replace the layer(s) or add a kernel in firmware/lib/hi_nn/."
        )
