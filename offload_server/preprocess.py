"""From a request's tensor to the model's input, in two steps.

``to_pixels`` runs per request on the event loop (cheap: dequantize, transpose, maybe resize one image) and
validates everything a client can get wrong, so bad requests fail alone with BAD_TENSOR instead of failing
a whole batch. ``to_model_input`` runs once per batch in the executor thread (normalize, cast or quantize,
lay out), keeping the event loop free. The normalization is the project's one input spec
(:mod:`hi_runtime.input_spec`, the same type the agent applies to its local models), built from the model's
settings by ``ModelConfig.input_spec()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hi_runtime import input_spec
from hi_runtime.tensor_spec import TensorSpec
from hi_runtime.protocol import DType, Infer, Layout
from offload_server.backends import InputSpec
from offload_server.config import ConfigError, ModelConfig


class BadTensor(ValueError):
    """The request's tensor cannot be fed to the model (the message goes back to the client)."""


@dataclass(frozen=True)
class Preprocessor:
    model_id: str
    height: int
    width: int
    channels: int
    resize: str
    spec: InputSpec
    normalization: input_spec.InputSpec  # pixel_scale, mean, std, layout: the core's input spec
    tensor: TensorSpec  # the model's input tensor (dtype, quantization) for the core's quantize()

    @classmethod
    def build(cls, config: ModelConfig, spec: InputSpec) -> Preprocessor:
        normalization = config.input_spec()
        try:
            h, w, c = normalization.image_shape(spec.shape)
        except input_spec.InputSpecError as exc:
            raise ConfigError(f"model {config.id!r}: {exc}") from None
        if config.input_size is not None:
            if (h > 0 and config.input_size[0] != h) or (w > 0 and config.input_size[1] != w):
                raise ConfigError(f"model {config.id!r}: input_size {list(config.input_size)} but the model takes "
                                  f"{h}x{w} images; drop input_size (it is for models with a dynamic size)")
            h, w = config.input_size
        if min(h, w, c) < 1:
            raise ConfigError(f"model {config.id!r} has a dynamic input size {spec.shape}: set input_size: [H, W] "
                              "and check input_layout")
        scale, zero_point = spec.quant if spec.quant is not None else (None, None)
        tensor = TensorSpec("input", 0, (1, *spec.shape), np.dtype(spec.dtype), scale, zero_point)
        try:  # mean/std per channel, the dtype: the same check the agent makes of its local model
            normalization.check(tensor, f"model {config.id!r}")
        except input_spec.InputSpecError as exc:
            raise ConfigError(str(exc)) from None
        return cls(config.id, h, w, c, config.resize, spec, normalization, tensor)

    # ---- per request --------------------------------------------------------------------------------

    def to_pixels(self, msg: Infer) -> np.ndarray:
        """Float32 pixels [H, W, C] in 0..255 (for well-formed inputs) at the model's input size."""
        if msg.shape[0] != 1:
            raise BadTensor(f"batch of {msg.shape[0]} in one INFER: send one image per request (N = 1)")
        arr = msg.to_array()[0]
        if msg.layout == Layout.NCHW:
            arr = arr.transpose(1, 2, 0)
        h, w, c = arr.shape
        if c != self.channels:
            raise BadTensor(f"model {self.model_id!r} takes {self.channels} channels, got {c} "
                            f"(shape {msg.shape} read as {msg.layout.name})")
        if msg.dtype == DType.FLOAT32:
            pixels = arr.astype(np.float32)
            if not np.isfinite(pixels).all():
                raise BadTensor("float32 tensor holds NaN or infinity")
        elif msg.quant is not None:
            scale, zero_point = msg.quant
            pixels = (arr.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        elif msg.dtype == DType.UINT8:
            pixels = arr.astype(np.float32)
        else:
            raise BadTensor("int8 tensor without quantization parameters: send (scale, zero_point), e.g. "
                            "(1.0, -128) for the shipped INT8 model's input")
        if (h, w) != (self.height, self.width):
            pixels = self._resize(pixels)
        return pixels

    def _resize(self, pixels: np.ndarray) -> np.ndarray:
        if self.resize == "none":
            raise BadTensor(f"model {self.model_id!r} takes {self.height}x{self.width} images, got "
                            f"{pixels.shape[0]}x{pixels.shape[1]} (this server does not resize)")
        from PIL import Image

        method = Image.Resampling.BILINEAR if self.resize == "bilinear" else Image.Resampling.NEAREST
        planes = [np.asarray(Image.fromarray(np.ascontiguousarray(pixels[:, :, ch], dtype=np.float32))
                             .resize((self.width, self.height), method)) for ch in range(pixels.shape[2])]
        return np.stack(planes, axis=-1).astype(np.float32)

    # ---- per batch ----------------------------------------------------------------------------------

    def to_model_input(self, pixels: np.ndarray) -> np.ndarray:
        """[N, H, W, C] float pixels -> the model's input tensor (dtype, quantization, layout): the core's
        input spec (hi_runtime.input_spec) with the model's own quantization."""
        return np.ascontiguousarray(self.normalization.apply(pixels, self.tensor))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[tuple[int, float], ...]:
    k = min(k, probs.shape[0])
    if k <= 0:
        return ()
    order = np.argsort(-probs, kind="stable")[:k]
    return tuple((int(i), float(probs[i])) for i in order)
