"""QoS requirements and the one parser of their text form (``--qos``, ``--targets``).

The paper's QoS rules (Sec. 3.3): accuracy at least SOTA minus 10 points (90% for MNIST and CIFAR-10,
80% for ImageNet-1K); latency less than half of the device's time to offload one image (Table 3);
energy less than half of the device's energy to offload one image. A planner *fixes one* requirement
and picks the strategy with the largest gains in the other two, so a requirement that is not given is
not a constraint: it is what the planner optimizes.

Why one module, in the core: hi-bench, hi-agent and hi-train share one ``--qos`` grammar; everything
that reads a QoS string calls :func:`parse_qos` (or :func:`parse_accuracy` for a bare accuracy).

Grammar: comma (or semicolon) separated ``key=value``; keys ``accuracy`` (alias ``acc``), ``latency``,
``energy``. Accuracy is a fraction in [0, 1] (``0.9``) or a percentage written with ``%`` (``90%``);
a bare number above 1 is refused rather than guessed (``1.5`` is neither 1.5% nor 150%). Latency and
energy are a positive number (ms, mJ; a ``ms``/``mJ`` suffix is allowed), ``half-offload`` (alias
``half``: the paper's rule) or ``none``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

HALF_OFFLOAD = "half-offload"
QOS_KEYS = ("accuracy", "latency", "energy")
QOS_EXAMPLE = "accuracy=0.9 (or 90%), latency=half-offload|<ms>|none, energy=half-offload|<mJ>|none"

Limit = Union[None, float, str]


class QoSError(ValueError):
    """A QoS text that cannot be read; the message names the item and the accepted forms."""


@dataclass(frozen=True)
class QoS:
    """Requirements. ``min_accuracy`` is a fraction; latency and energy limits are a number (ms, mJ),
    ``"half-offload"`` (the paper's rule) or ``None`` (not a requirement: optimized instead)."""

    min_accuracy: float | None = None
    max_latency: Limit = None
    max_energy: Limit = None

    def __post_init__(self) -> None:
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise QoSError(f"accuracy target must be a fraction in [0, 1] (e.g. 0.9) or a percentage with % "
                           f"(e.g. 90%), got {self.min_accuracy}")
        for name in ("max_latency", "max_energy"):
            value = getattr(self, name)
            if isinstance(value, str) and value != HALF_OFFLOAD:
                raise QoSError(f"{name} must be a number, {HALF_OFFLOAD!r} or none, got {value!r}")
            if isinstance(value, (int, float)) and not (value > 0 and math.isfinite(value)):
                raise QoSError(f"{name} must be a positive number, got {value}")

    @property
    def requirements(self) -> tuple[str, ...]:
        """The requirements that are fixed (constraints), in QOS_KEYS order."""
        return tuple(k for k, v in zip(QOS_KEYS, (self.min_accuracy, self.max_latency, self.max_energy))
                     if v is not None)

    def with_accuracy(self, target: float | None) -> QoS:
        return QoS(target, self.max_latency, self.max_energy)

    def describe(self) -> str:
        """The fixed requirements in words (``no requirement`` when none is fixed)."""
        def limit(value: Limit, unit: str) -> str:
            if value == HALF_OFFLOAD:
                return "<= half of offloading one sample"
            return f"<= {value:g} {unit}"

        parts = []
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {100 * self.min_accuracy:.1f}%")
        if self.max_latency is not None:
            parts.append(f"latency {limit(self.max_latency, 'ms')}")
        if self.max_energy is not None:
            parts.append(f"energy {limit(self.max_energy, 'mJ')}")
        return "; ".join(parts) or "no requirement"


def parse_accuracy(text: str, what: str = "accuracy") -> float:
    """``0.9`` or ``90%`` -> 0.9. Anything else (``1.5``, ``90``, ``abc``, ``150%``) is a QoSError."""
    value = str(text).strip()
    percent = value.endswith("%")
    try:
        number = float(value[:-1] if percent else value)
    except ValueError:
        raise QoSError(f"{what} {text!r} is not a number; write a fraction like 0.9 or a percentage like 90%") \
            from None
    if percent:
        if not 0.0 <= number <= 100.0:
            raise QoSError(f"{what} {text!r} is outside 0%..100%")
        return number / 100.0
    if not 0.0 <= number <= 1.0 or math.isnan(number):
        hint = f"; did you mean {number:g}%?" if 1.0 < number <= 100.0 else ""
        raise QoSError(f"{what} {text!r} is not a fraction in [0, 1]: write 0.9 or 90%{hint}")
    return number


def _parse_limit(text: str, what: str, unit: str) -> Limit:
    value = text.strip().lower()
    if value in ("none", "off", "no"):
        return None
    if value in ("half", HALF_OFFLOAD, "paper"):
        return HALF_OFFLOAD
    try:
        number = float(value.removesuffix(unit))
    except ValueError:
        raise QoSError(f"{what} limit {text!r} is not a number ({unit}), 'half-offload' or 'none'") from None
    if not (number > 0 and math.isfinite(number)):
        raise QoSError(f"{what} limit {text!r} must be a positive number of {unit}")
    return number


def parse_qos(text: str) -> QoS:
    """Parse ``accuracy=0.9,latency=half-offload``; see the module docstring for the grammar."""
    fields: dict = {}
    for part in filter(None, (p.strip() for p in str(text).replace(";", ",").split(","))):
        if "=" not in part:
            raise QoSError(f"QoS item {part!r} needs key=value, e.g. {QOS_EXAMPLE}")
        key, value = (s.strip() for s in part.split("=", 1))
        key = key.lower()
        if key in ("accuracy", "acc", "min_accuracy"):
            fields["min_accuracy"] = parse_accuracy(value)
        elif key in ("latency", "max_latency"):
            fields["max_latency"] = _parse_limit(value, "latency", "ms")
        elif key in ("energy", "max_energy"):
            fields["max_energy"] = _parse_limit(value, "energy", "mj")
        else:
            raise QoSError(f"unknown QoS key {key!r}; use {', '.join(QOS_KEYS)} (e.g. {QOS_EXAMPLE})")
    return QoS(**fields)


def parse_targets(text: str) -> list[float]:
    """A comma list of accuracy targets (``0.8,0.85,90%``), each read by :func:`parse_accuracy`."""
    targets = [parse_accuracy(p, "accuracy target") for p in filter(None, (s.strip() for s in str(text).split(",")))]
    if not targets:
        raise QoSError("--targets needs at least one accuracy, e.g. 0.8,0.85,0.9")
    return targets
