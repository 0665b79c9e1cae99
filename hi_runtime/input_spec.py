"""How a model wants its input: the project's ONE input spec, for the agent's local models and the edge
server's served models alike.

A camera or a dataset yields uint8 pixels (0..255, NHWC). Models trained elsewhere often expect other
input: pixels scaled to 0..1, per-channel mean/std normalization (e.g. CIFAR-10 ResNet-56 variants), or
channels first (PyTorch exports). Fed raw pixels, such a model runs without any error, at chance level.
The spec says what the model was trained on::

    x = (pixel * pixel_scale - mean) / std        per channel, in float32, NHWC

then ``x`` is cast or quantized to the model's input tensor with the tensor's OWN quantization (a
:class:`hi_runtime.tensor_spec.TensorSpec`, read from the model file, never from the spec) and laid out in
``layout``. The shipped models were trained on raw pixels: the identity spec, which with their int8 input
(scale 1, zero point -128) is ``q = pixel ^ 0x80`` (TensorSpec's fast path, untouched here).

Where a spec comes from: the edge server's model settings (``pixel_scale``, ``mean``, ``std``,
``input_layout``, ``input_dtype``); for the agent, the model's card (an artifact's ``"input"`` entry in a
``models/...json`` card next to the model), a sidecar ``<model stem>.input.json`` (this module's dict
form), and ``hi-agent run`` flags, later ones winning (:func:`find_for_model`). ``dtype`` is a check, not a
conversion: ``auto`` accepts what the model takes, anything else must equal the model's input dtype.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from hi_runtime.tensor_spec import TensorSpec

LAYOUTS = ("NHWC", "NCHW")
DTYPES = ("auto", "float32", "uint8", "int8")
SIDECAR_SUFFIX = ".input.json"
_MAX_CARD_BYTES = 4 << 20  # cards are small; a big JSON next to a model is data, not a card


class InputSpecError(ValueError):
    """An input spec is malformed or does not fit the model (the message names the setting and the fix)."""


def _floats(value: Any, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = [value]
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputSpecError(f"input {name} must be a number or a list of numbers (one per channel), got "
                             f"{value!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise InputSpecError(f"input {name} must be finite numbers, one per channel (or one for all), got {value!r}")
    return out


@dataclass(frozen=True)
class InputSpec:
    """``x = (pixel * pixel_scale - mean) / std`` per channel, laid out in ``layout``; ``dtype`` checks the
    model's input type (``auto``: whatever it is)."""

    pixel_scale: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NHWC"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        try:
            scale = float(self.pixel_scale)
        except (TypeError, ValueError):
            raise InputSpecError(f"input pixel_scale must be a number, got {self.pixel_scale!r}") from None
        if not math.isfinite(scale) or scale == 0.0:
            raise InputSpecError(f"input pixel_scale must be a finite non-zero number, got {self.pixel_scale!r} "
                                 "(e.g. 0.00392156862745098 = 1/255 for a model trained on 0..1 pixels)")
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        if std is not None and any(s == 0.0 for s in std):
            raise InputSpecError(f"input std must not contain 0, got {list(std)}")
        layout = str(self.layout).upper()
        if layout not in LAYOUTS:
            raise InputSpecError(f"input layout {self.layout!r} must be NHWC (channels last) or NCHW (channels first)")
        if self.dtype not in DTYPES:
            raise InputSpecError(f"input dtype {self.dtype!r} must be one of {', '.join(DTYPES)}")
        for name, value in (("pixel_scale", scale), ("mean", mean), ("std", std), ("layout", layout)):
            object.__setattr__(self, name, value)
        # decided once: apply() runs per sample
        object.__setattr__(self, "_mean", None if mean is None else np.asarray(mean, dtype=np.float32))
        object.__setattr__(self, "_std", None if std is None else np.asarray(std, dtype=np.float32))
        object.__setattr__(self, "_scale", np.float32(scale))

    # ---- what it does -------------------------------------------------------------------------------

    @property
    def normalizes(self) -> bool:
        """Whether pixels change before quantization (False: the model takes raw 0..255 pixels)."""
        return self.pixel_scale != 1.0 or self.mean is not None or self.std is not None

    @property
    def is_identity(self) -> bool:
        """Raw NHWC pixels: the shipped models' input (the model's quantization is all there is to do)."""
        return not self.normalizes and self.layout == "NHWC"

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Real-valued NHWC model input from pixels (uint8, or float 0..255): ``(p * scale - mean) / std``."""
        x = np.asarray(pixels, dtype=np.float32)
        if self.pixel_scale != 1.0:
            x = x * self._scale  # type: ignore[attr-defined]
        if self._mean is not None:  # type: ignore[attr-defined]
            x = x - self._mean  # type: ignore[attr-defined]
        if self._std is not None:  # type: ignore[attr-defined]
            x = x / self._std  # type: ignore[attr-defined]
        return x

    def apply(self, pixels: np.ndarray, tensor: TensorSpec) -> np.ndarray:
        """NHWC pixels [N, H, W, C] -> the model's input tensor: normalized, then cast or quantized with the
        tensor's own parameters (``tensor.quantize``), then laid out in ``layout``."""
        x = tensor.quantize(self.normalize(pixels) if self.normalizes else pixels)
        if self.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x

    def image_shape(self, sample_shape: Sequence[int]) -> tuple[int, int, int]:
        """(H, W, C) of the images to feed, from the model input's per-sample shape in ``layout``."""
        if len(sample_shape) != 3:
            raise InputSpecError(f"expected an image input [N,H,W,C] or [N,C,H,W], got per-sample shape "
                                 f"{tuple(sample_shape)}")
        if self.layout == "NCHW":
            c, h, w = sample_shape
        else:
            h, w, c = sample_shape
        return int(h), int(w), int(c)

    def check(self, tensor: TensorSpec, where: str = "the model") -> None:
        """Raise :class:`InputSpecError` when the spec cannot be the input of ``tensor``: another dtype,
        or more mean/std values than channels."""
        if self.dtype != "auto" and np.dtype(self.dtype) != tensor.dtype:
            raise InputSpecError(f"the input spec says dtype {self.dtype} but {where} takes {tensor.dtype}; "
                                 "fix the spec's dtype or use 'auto'")
        shape = tuple(tensor.shape[1:])
        if len(shape) == 3:
            channels = self.image_shape(shape)[2]
            for name in ("mean", "std"):
                value = getattr(self, name)
                if value is not None and len(value) not in (1, channels):
                    raise InputSpecError(f"input {name} has {len(value)} values but {where} takes {channels} "
                                         f"channels ({self.layout}); give one per channel or one for all")

    def describe(self) -> str:
        """One line for the agent's start-up message."""
        parts = []
        if self.pixel_scale != 1.0:
            parts.append(f"pixel * {self.pixel_scale:.6g}")
        else:
            parts.append("pixel")
        if self.mean is not None:
            parts.append(f"- mean {_fmt(self.mean)}")
        if self.std is not None:
            parts.append(f"/ std {_fmt(self.std)}")
        return " ".join(parts) + f", {self.layout}" + (f", {self.dtype}" if self.dtype != "auto" else "")

    # ---- dict / JSON form ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"pixel_scale": self.pixel_scale, "mean": list(self.mean) if self.mean is not None else None,
                "std": list(self.std) if self.std is not None else None, "layout": self.layout,
                "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True, where: str = "input spec") -> InputSpec:
        """The dict form (``to_dict``). ``strict``: unknown keys are errors (a sidecar's typo must not be
        ignored); otherwise only the spec's keys are read (a card's ``"input"`` entry also describes the
        tensor: shape, and ``scale``/``zero_point``, which are the model's quantization, not pixel scaling)."""
        if not isinstance(data, Mapping):
            raise InputSpecError(f"{where} must be a JSON object with {', '.join(f.name for f in fields(cls))}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"format", "note"})
        if strict and unknown:
            raise InputSpecError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**{k: data[k] for k in known if k in data and data[k] is not None})
        except InputSpecError as exc:
            raise InputSpecError(f"{where}: {exc}") from None

    def merged(self, **overrides: Any) -> InputSpec:
        """This spec with the given settings replaced (None = keep), e.g. command-line flags over a card."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self


IDENTITY = InputSpec()


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


# ---------------------------------------------------------------------------------------------------
# Finding a model's spec: sidecar, then card
# ---------------------------------------------------------------------------------------------------

def sidecar_path(model: str | Path) -> Path:
    """``<dir>/<model stem>.input.json`` (``resnet56.tflite`` -> ``resnet56.input.json``)."""
    model = Path(model)
    return model.with_name(model.stem + SIDECAR_SUFFIX)


def load(path: str | Path) -> InputSpec:
    """A sidecar file (or any JSON file holding the dict form)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputSpecError(f"input spec file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputSpecError(f"input spec file {path} is not a JSON object ({exc}); write e.g. "
                             '{"pixel_scale": 0.00392156862745098, "mean": [0.4914, 0.4822, 0.4465], '
                             '"std": [0.247, 0.2435, 0.2616]}') from None
    return InputSpec.from_dict(data, where=str(path))


def card_entry(model: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The ``"input"`` entry of ``model``'s artifact in a model card (a JSON with ``card_version`` in the
    model's directory whose ``artifacts`` list the model's file name), and the card's path."""
    model = Path(model)
    for path in sorted(model.parent.glob("*.json")):
        if path.name.endswith(SIDECAR_SUFFIX):
            continue
        try:
            if path.stat().st_size > _MAX_CARD_BYTES:
                continue
            card = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(card, dict) or not card.get("card_version"):
            continue
        for art in card.get("artifacts") or []:
            if isinstance(art, dict) and art.get("file") == model.name and isinstance(art.get("input"), dict):
                return art["input"], path
    return None


def find_for_model(model: str | Path) -> tuple[InputSpec, str] | None:
    """The spec a model file carries with it, and where it was found: its sidecar if there is one, else
    its card's ``"input"`` entry; None if neither exists."""
    side = sidecar_path(model)
    if side.is_file():
        return load(side), str(side)
    entry = card_entry(model)
    if entry is not None:
        data, card = entry
        return InputSpec.from_dict(data, strict=False, where=f"card {card}, input of {Path(model).name}"), str(card)
    return None


# ---------------------------------------------------------------------------------------------------
# Command-line flags (hi-agent run, hi-train split-ee)
# ---------------------------------------------------------------------------------------------------

def parse_number(text: str) -> float:
    """``0.5``, or a fraction such as ``1/255``."""
    num, slash, den = text.partition("/")
    try:
        return float(num) / float(den) if slash else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.00392 or 1/255)") from None


def parse_numbers(text: str) -> list[float]:
    """``0.4914,0.4822,0.4465`` (one per channel, or one for all)."""
    return [parse_number(part.strip()) for part in text.split(",") if part.strip()]


def add_cli_args(p: argparse.ArgumentParser, what: str = "local model") -> None:
    """--input-scale/--input-mean/--input-std/--input-layout/--input-spec: single settings over the
    model's own spec (sidecar or card)."""
    g = p.add_argument_group(
        f"{what} input", "x = (pixel * scale - mean) / std per channel, then the model's own quantization. "
        f"Default: the model's <model>{SIDECAR_SUFFIX} sidecar, else the \"input\" entry of its card, else raw "
        "0..255 pixels (the shipped models); these flags override single settings")
    g.add_argument("--input-scale", type=parse_number, default=None, metavar="S",
                   help="pixel scale, e.g. 1/255 for a model trained on 0..1 pixels")
    g.add_argument("--input-mean", type=parse_numbers, default=None, metavar="R,G,B",
                   help="per-channel mean subtracted after the scale, e.g. 0.4914,0.4822,0.4465")
    g.add_argument("--input-std", type=parse_numbers, default=None, metavar="R,G,B",
                   help="per-channel std divided by after the mean, e.g. 0.2470,0.2435,0.2616")
    g.add_argument("--input-layout", type=str.upper, choices=LAYOUTS, default=None,
                   help="the model's input layout (NCHW: channels first, e.g. a PyTorch export)")
    g.add_argument("--input-spec", metavar="FILE", default=None,
                   help="read the settings from this JSON (the sidecar form: pixel_scale, mean, std, layout, dtype)")


def from_cli(args: argparse.Namespace, model_file: str | Path | None,
             embedded: Mapping[str, Any] | None = None) -> tuple[InputSpec, str | None]:
    """The spec for ``model_file`` given :func:`add_cli_args`' flags: ``--input-spec FILE``, else
    ``embedded`` (e.g. a chain JSON's ``input``), else the model's sidecar or card, else raw pixels; single
    flags on top. Returns the spec and where its base came from (None: defaults)."""
    base, source = IDENTITY, None
    if getattr(args, "input_spec", None):
        base, source = load(args.input_spec), str(args.input_spec)
    elif embedded is not None:
        base, source = InputSpec.from_dict(embedded, where=f"{model_file}: input"), str(model_file)
    elif model_file is not None:
        found = find_for_model(model_file)
        if found is not None:
            base, source = found
    spec = base.merged(pixel_scale=getattr(args, "input_scale", None), mean=getattr(args, "input_mean", None),
                       std=getattr(args, "input_std", None), layout=getattr(args, "input_layout", None))
    if spec is not base:
        source = f"{source} + flags" if source else "flags"
    return spec, source
