"""Re-express parts of a TFLite graph as TensorFlow operations, so the TFLite converter can quantize them.

Why: a single-file early-exit model's IF branches are not quantized by the TFLite converter (it leaves them
float, with the branch's weights passed in as inputs, hence TRANSPOSE and BATCH_MATMUL operators on
weights), and the firmware runs INT8 only. Splitting such a model into an INT8 segment chain therefore
needs its trunk, exits and branches as ONE graph the converter understands: this module rebuilds the
tensors asked for, operator by operator, from the flatbuffer's constants (dequantized where the file is
already quantized), and binds a branch's inputs to the tensors its IF passes in. The converter then folds
constants, fuses biases and activations and produces the same operator forms as any Keras export.

Only the operators of image classifiers are covered; anything else is an :class:`ImportError_` naming the
operator. Tensors are NHWC, as in TFLite.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hi_runtime.tflite_schema import constant, opcode_name, tensor_name


class TfliteImportError(ValueError):
    """An operator or tensor of the TFLite graph cannot be re-expressed (the message names it)."""


_PADDING = {0: "SAME", 1: "VALID"}


def _activation(tf, x, code: int, where: str):
    code = int(code or 0)
    if code == 0:
        return x
    if code == 1:
        return tf.nn.relu(x)
    if code == 2:
        return tf.clip_by_value(x, -1.0, 1.0)
    if code == 3:
        return tf.nn.relu6(x)
    if code == 4:
        return tf.tanh(x)
    raise TfliteImportError(f"{where}: fused activation {code} is not supported")


def _int_list(v) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1)]


def _ops(tf) -> dict[str, Callable[..., Any]]:
    """name -> f(inputs, options, where) returning the outputs (a tensor or a list)."""

    def conv(x, w, b, o, where):
        if o.dilationHFactor and o.dilationHFactor > 1 and (o.strideH > 1 or o.strideW > 1):
            raise TfliteImportError(f"{where}: strided dilated convolution is not supported")
        y = tf.nn.conv2d(x, tf.transpose(w, (1, 2, 3, 0)), strides=[1, o.strideH, o.strideW, 1],
                         padding=_PADDING[o.padding], dilations=[1, o.dilationHFactor or 1, o.dilationWFactor or 1, 1])
        return _activation(tf, y if b is None else y + b, o.fusedActivationFunction, where)

    def depthwise(x, w, b, o, where):
        _, kh, kw, cm = (int(d) for d in w.shape)
        c = int(x.shape[-1])
        kernel = tf.reshape(w, (kh, kw, c, cm // c))
        y = tf.nn.depthwise_conv2d(x, kernel, strides=[1, o.strideH, o.strideW, 1], padding=_PADDING[o.padding],
                                   dilations=[o.dilationHFactor or 1, o.dilationWFactor or 1])
        return _activation(tf, y if b is None else y + b, o.fusedActivationFunction, where)

    def dense(x, w, b, o, where):
        if getattr(o, "weightsFormat", 0):
            raise TfliteImportError(f"{where}: shuffled FULLY_CONNECTED weights are not supported")
        flat = tf.reshape(x, [-1, int(w.shape[1])])
        y = tf.matmul(flat, w, transpose_b=True)
        if b is not None:
            y = y + b
        if getattr(o, "keepNumDims", False):
            y = tf.reshape(y, [*x.shape[:-1], int(w.shape[0])])
        return _activation(tf, y, o.fusedActivationFunction, where)

    def pool(kind):
        def f(x, o, where):
            fn = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
            y = fn(x, ksize=[o.filterHeight, o.filterWidth], strides=[o.strideH, o.strideW], padding=_PADDING[o.padding])
            return _activation(tf, y, o.fusedActivationFunction, where)
        return f

    def binary(fn):
        def f(a, b, o, where):
            return _activation(tf, fn(a, b), getattr(o, "fusedActivationFunction", 0) if o is not None else 0, where)
        return f

    def reducer(fn):
        def f(x, axes, o, where):
            return fn(x, axis=_int_list(axes), keepdims=bool(o.keepDims) if o is not None else False)
        return f

    return {
        "CONV_2D": conv, "DEPTHWISE_CONV_2D": depthwise, "FULLY_CONNECTED": dense,
        "AVERAGE_POOL_2D": pool("avg"), "MAX_POOL_2D": pool("max"),
        "ADD": binary(tf.add), "SUB": binary(tf.subtract), "MUL": binary(tf.multiply), "DIV": binary(tf.divide),
        "MAXIMUM": binary(tf.maximum), "MINIMUM": binary(tf.minimum),
        "MEAN": reducer(tf.reduce_mean), "SUM": reducer(tf.reduce_sum), "REDUCE_MAX": reducer(tf.reduce_max),
        "REDUCE_MIN": reducer(tf.reduce_min),
    }


_UNARY = ("RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE", "CAST",
          "IDENTITY")
SUPPORTED = tuple(sorted(("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD",
                          "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN",
                          "SOFTMAX", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "BATCH_MATMUL", "PAD",
                          "PADV2", "CONCATENATION", "LEAKY_RELU") + _UNARY))


class GraphImporter:
    """Lazily rebuilds tensors of a TFLite model's subgraphs as TensorFlow tensors (inside a tf.function).

    ``bind(k, tensor, value)`` gives a subgraph input its value (the model's input, or what an IF passes to
    a branch); ``value(k, tensor)`` computes a tensor from its producers, each operator once."""

    def __init__(self, model, name: str = "the model") -> None:
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.name = name
        self._table = _ops(tf)
        self._env: dict[int, dict[int, Any]] = {}
        self._producers = []
        for sg in model.subgraphs:
            prod = {}
            for i, op in enumerate(sg.operators or []):
                for t in op.outputs:
                    prod[int(t)] = i
            self._producers.append(prod)

    def bind(self, k: int, tensor: int, value) -> None:
        self._env.setdefault(k, {})[int(tensor)] = value

    def const(self, k: int, tensor: int) -> np.ndarray | None:
        """A constant's value: dequantized to float32 when it is quantized, else as stored (int axes...)."""
        t = self.model.subgraphs[k].tensors[int(tensor)]
        return constant(self.model, t, dequantize=True)

    def value(self, k: int, tensor: int):
        tensor = int(tensor)
        env = self._env.setdefault(k, {})
        if tensor in env:
            return env[tensor]
        c = self.const(k, tensor)
        if c is not None:
            env[tensor] = self.tf.constant(c.astype(np.float32) if np.issubdtype(c.dtype, np.floating) else c)
            return env[tensor]
        prod = self._producers[k].get(tensor)
        sg = self.model.subgraphs[k]
        if prod is None:
            raise TfliteImportError(f"{self.name}: tensor {tensor_name(sg.tensors[tensor])!r} of subgraph {k} is an "
                                    "input with no value bound (a branch input its IF does not pass?)")
        self._run(k, prod)
        return env[tensor]

    def _run(self, k: int, i: int) -> None:
        tf = self.tf
        sg = self.model.subgraphs[k]
        op = sg.operators[i]
        name = opcode_name(self.model, op)
        where = f"{self.name}, subgraph {k}, operator {i} ({name})"
        ins = [int(x) for x in op.inputs]
        o = op.builtinOptions
        env = self._env[k]

        def val(j: int):
            return None if j >= len(ins) or ins[j] < 0 else self.value(k, ins[j])

        def const(j: int, what: str) -> np.ndarray:
            """A constant operand (axes, shapes, permutations): in the file, or bound to a constant."""
            c = self.const(k, ins[j]) if j < len(ins) and ins[j] >= 0 else None
            if c is None and j < len(ins) and ins[j] >= 0:
                c = tf.get_static_value(self.value(k, ins[j]))
            if c is None:
                raise TfliteImportError(f"{where}: its {what} must be a constant")
            return np.asarray(c)

        def weights(j: int):
            """Weights or a bias as a tensor: constant, or computed from constants (a branch's weights come
            in as IF inputs, often through TRANSPOSE); the converter folds them."""
            return None if j >= len(ins) or ins[j] < 0 else tf.cast(self.value(k, ins[j]), tf.float32)

        if name == "IF":
            raise TfliteImportError(f"{where}: a tensor asked for is computed by the IF itself")
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            y = self._table[name](val(0), weights(1), weights(2), o, where)
        elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            y = self._table[name](val(0), o, where)
        elif name in ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM"):
            y = self._table[name](val(0), val(1), o, where)
        elif name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"):
            y = self._table[name](val(0), const(1, "axes"), o, where)
        elif name == "SOFTMAX":
            beta = float(o.beta) if o is not None and o.beta else 1.0
            y = tf.nn.softmax(val(0) * beta if beta != 1.0 else val(0), axis=-1)
        elif name == "RESHAPE":
            shape = (const(1, "shape") if len(ins) > 1 and ins[1] >= 0 else np.asarray(o.newShape))
            y = tf.reshape(val(0), _int_list(shape))
        elif name == "SQUEEZE":
            dims = _int_list(o.squeezeDims) if o is not None and o.squeezeDims is not None else None
            y = tf.squeeze(val(0), axis=dims or None)
        elif name == "EXPAND_DIMS":
            y = tf.expand_dims(val(0), int(_int_list(const(1, "axis"))[0]))
        elif name == "TRANSPOSE":
            y = tf.transpose(val(0), _int_list(const(1, "permutation")))
        elif name == "BATCH_MATMUL":
            y = tf.linalg.matmul(val(0), val(1), adjoint_a=bool(o.adjX), adjoint_b=bool(o.adjY))
        elif name in ("PAD", "PADV2"):
            pads = np.asarray(const(1, "paddings")).astype(np.int64).reshape(-1, 2).tolist()
            value = float(np.asarray(const(2, "pad value")).reshape(-1)[0]) if name == "PADV2" and len(ins) > 2 else 0.0
            y = tf.pad(val(0), pads, constant_values=value)
        elif name == "CONCATENATION":
            y = _activation(tf, tf.concat([self.value(k, t) for t in ins], axis=int(o.axis)),
                            o.fusedActivationFunction, where)
        elif name == "LEAKY_RELU":
            y = tf.nn.leaky_relu(val(0), alpha=float(o.alpha))
        elif name in _UNARY:
            x = val(0)
            y = {"RELU": tf.nn.relu, "RELU6": tf.nn.relu6, "RELU_N1_TO_1": lambda v: tf.clip_by_value(v, -1.0, 1.0),
                 "LOGISTIC": tf.sigmoid, "TANH": tf.tanh,
                 "HARD_SWISH": lambda v: v * tf.nn.relu6(v + 3.0) / 6.0}.get(name, lambda v: v)(x)
        else:
            raise TfliteImportError(f"{where}: operator {name} is not supported by the importer (supported: "
                                    f"{', '.join(SUPPORTED)})")
        outs = [int(t) for t in op.outputs]
        ys = y if isinstance(y, (list, tuple)) else [y]
        for t, v in zip(outs, ys):
            env[t] = v


def build_function(importer: GraphImporter, input_shape, outputs: Mapping[str, Callable[[GraphImporter], Any]],
                   bind_input: Callable[[GraphImporter, Any], None]):
    """A tf.function of one float32 input of ``input_shape`` returning ``{name: tensor}``: ``bind_input``
    binds the input, each ``outputs[name](importer)`` computes one output."""
    tf = importer.tf

    @tf.function(input_signature=[tf.TensorSpec(list(input_shape), tf.float32, name="image")])
    def fn(x):
        importer._env.clear()
        bind_input(importer, x)
        return {name: get(importer) for name, get in outputs.items()}

    return fn
