"""Small stand-in ONNX classifiers with fixed random weights, built with onnx.helper (no TensorFlow).

The tests and measurements/bench_server.py serve these while the shipped server model does not exist, or
to exercise layouts and dtypes the shipped model does not use. They classify nothing meaningful; they only
have the shipped model's interface: float32 [N,32,32,3] pixels 0..255 in, [N,10] softmax out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# the extras that install onnx (pyproject.toml): hi-bench's (measure), the Ray fleet's (cluster), training's
ONNX_EXTRAS = ("measure", "cluster", "train")


class StandinError(RuntimeError):
    """The stand-in cannot be built here: the onnx package is missing (one line naming the extra)."""


def build_standin_onnx(
    path: str | Path,
    *,
    kind: str = "linear",
    layout: str = "NHWC",
    input_dtype: str = "float32",
    size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
    width: int = 32,
    seed: int = 0,
) -> Path:
    """Write a stand-in model and return its path.

    kind "linear": flatten + dense + softmax (microseconds per image: for concurrency tests).
    kind "cnn": two 3x3 convolutions (``width`` and 2x``width`` channels, the second with stride 2), global
    average pooling, dense, softmax: per-image cost dominated by convolutions, like a small ResNet.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise StandinError(f"the stand-in model is built with the onnx package, which is not installed "
                           f"({exc.name or exc}): pip install 'hi-runtime[{ONNX_EXTRAS[0]}]' (or "
                           f"[{ONNX_EXTRAS[1]}] for the Ray fleet), or pass --model FILE.onnx instead of --standin"
                           ) from None

    rng = np.random.default_rng(seed)
    elem = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[input_dtype]
    in_shape = ["N", size, size, channels] if layout == "NHWC" else ["N", channels, size, size]
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x = "image"
    if input_dtype != "float32":
        nodes.append(helper.make_node("Cast", [x], ["image_f"], to=TensorProto.FLOAT))
        x = "image_f"
    nodes.append(helper.make_node("Mul", [x, const("inv255", np.array(1 / 255, np.float32))], ["scaled"]))
    x = "scaled"
    if kind == "linear":
        nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
        w = rng.normal(0, 0.1, (size * size * channels, num_classes)).astype(np.float32)
        nodes.append(helper.make_node("Gemm", ["flat", const("w", w), const("b", np.zeros(num_classes, np.float32))],
                                      ["logits"]))
    elif kind == "cnn":
        if layout == "NHWC":
            nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
            x = "nchw"
        c1, c2 = width, 2 * width
        w1 = rng.normal(0, np.sqrt(2 / (9 * channels)), (c1, channels, 3, 3)).astype(np.float32)
        w2 = rng.normal(0, np.sqrt(2 / (9 * c1)), (c2, c1, 3, 3)).astype(np.float32)
        nodes += [
            helper.make_node("Conv", [x, const("w1", w1), const("b1", np.zeros(c1, np.float32))], ["c1"],
                             pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", const("w2", w2), const("b2", np.zeros(c2, np.float32))], ["c2"],
                             pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c2"], ["r2"]),
            helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        ]
        w = rng.normal(0, 8.0, (c2, num_classes)).astype(np.float32)
        nodes.append(helper.make_node("Gemm", ["flat", const("w", w), const("b", np.zeros(num_classes, np.float32))],
                                      ["logits"]))
    else:
        raise ValueError(f"unknown stand-in kind {kind!r}: use 'linear' or 'cnn'")
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, f"standin_{kind}",
        [helper.make_tensor_value_info("image", elem, in_shape)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", num_classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hi-standin")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
