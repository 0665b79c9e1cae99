"""The early-exit (EE) policy and the segment-chain description: the ONE implementation (numpy only).

An early-exit model is exported as a chain of INT8 TFLite segments. Segment ``k`` runs the trunk from
the previous exit to exit ``k`` and returns the trunk features (input of segment ``k+1``) and the class
scores of exit ``k``; the last segment returns only the final scores. After every non-final exit the
policy decides, with no control-flow operator inside any model, whether to stop:

* exit ``k < last``: stop iff the exit's confidence (its max softmax probability) >= ``thresholds[k]``;
  otherwise, with an offload rule at that exit (the three-way policy), offload the sample right away iff
  the confidence < ``offload_thresholds[k]``; otherwise continue to the next segment;
* final exit: keep the local answer, or, with a final decider (EE-HI), offload when the decider says so.

Without offload rules (every ``offload_thresholds`` entry ``None``) this is the two-way policy, where
offloading happens only at the final exit. Offloading at exit ``k`` saves the device the remaining
segments: worth it when the rest of the network costs more than the accuracy it would add (ResNet-56 on
a Raspberry Pi 4: 14.36 ms for the full network against 9.68 ms per offload).

The predicted class at an exit is the first index of the maximum score (the same on int8 scores and on
probabilities, since dequantization is monotone).

Exact integer form of an exit threshold, for raw int8 scores with output ``scale`` and ``zero_point``::

    exit  <=>  max(q) - zero_point >= M_k,   M_k = the smallest integer m with m * scale >= t_k (float64)

``M_k`` is found by evaluating the float comparison, so the int8 and float forms agree on every int8
value; ``M_k = 128 - zero_point`` (one past the largest value) means "never exit". An offload threshold
``o_k`` gets the same kind of bound ``O_k`` and the rule ``offload <=> max(q) - zero_point < O_k`` (the
negation of "confidence >= o_k"), exact on every int8 value; ``None`` means "never offload here".

Chain JSON: ``hi-ee-chain/1`` when no exit has an offload rule (readable by runtimes that predate the
three-way policy), ``hi-ee-chain/2`` when one has, so that an older runtime refuses the file instead of
silently ignoring the rule. This runtime reads both.

:class:`SegmentChain` is the JSON description the agent loads (``models/cifar10/ee_resnet8.json``):
segment files relative to the JSON, the input/feature/score tensor names of each segment (TFLite may
reorder outputs, so they are resolved by name, never by position), their quantization, the thresholds
and the final decider's file. :func:`run_chain` runs the policy given any backend through a callable
``run_segment(k, input) -> (features, scores)``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hi_runtime.artifacts import read_json
from hi_runtime.decider import Decider, DeciderError, int8_rank_range

FORMAT = "hi-ee-chain/1"
FORMAT_THREE_WAY = "hi-ee-chain/2"
FORMATS = (FORMAT, FORMAT_THREE_WAY)
NEVER = math.inf  # a threshold that never lets a sample exit


class EarlyExitError(ValueError):
    """An early-exit chain file, policy or segment output is invalid."""


@dataclass(frozen=True)
class Quant:
    """Affine int8 quantization: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q).astype(np.float64) - self.zero_point) * self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Quant | None:
        if d is None:
            return None
        try:
            return cls(float(d["scale"]), int(d["zero_point"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EarlyExitError(f"invalid quantization {d!r}: needs scale and zero_point") from exc


def exit_threshold_int8(threshold: float, scale: float, zero_point: int) -> int:
    """``M``: exit iff ``max(q) - zero_point >= M``; agrees with ``max(p) >= threshold`` on every int8 value."""
    lo, hi = int8_rank_range(zero_point)
    if threshold == NEVER:
        return hi + 1
    m = np.arange(lo, hi + 1)
    ok = (m.astype(np.float64) * float(scale)) >= float(threshold)
    return int(m[np.argmax(ok)]) if ok.any() else hi + 1


def requantize(q: np.ndarray, src: Quant, dst: Quant) -> np.ndarray:
    """Move int8 features from one quantization to another (round half away from zero, saturate);
    a no-op copy when they are equal, which the exporter guarantees for shipped chains."""
    if src == dst:
        return np.asarray(q)
    real = src.dequantize(q) / dst.scale
    r = np.sign(real) * np.floor(np.abs(real) + 0.5) + dst.zero_point
    return np.clip(r, -128, 127).astype(np.int8)


def offload_bound_int8(threshold: float | None, scale: float, zero_point: int) -> int | None:
    """``O``: offload iff ``max(q) - zero_point < O``; agrees with ``max(p) < threshold`` on every int8 value
    (``None``: never offload)."""
    if threshold is None:
        return None
    return exit_threshold_int8(float(threshold), scale, zero_point)


@dataclass
class ExitPolicy:
    """Per non-final exit an accept threshold (max softmax >= t exits) and an optional offload rule
    (max softmax < o offloads right away; ``None`` = continue), and an optional final decider."""

    thresholds: list[float]
    decider: Decider | None = None
    offload_thresholds: list[float | None] | None = None

    def __post_init__(self) -> None:
        self.thresholds = [float(t) for t in self.thresholds]
        for t in self.thresholds:
            if math.isnan(t):
                raise EarlyExitError("an exit threshold is NaN")
        offs = self.offload_thresholds
        if offs is None:
            offs = [None] * len(self.thresholds)
        if len(offs) != len(self.thresholds):
            raise EarlyExitError(f"{len(self.thresholds)} exit threshold(s) but {len(offs)} offload threshold(s); "
                                 "give one per early exit (null = never offload there)")
        self.offload_thresholds = [None if o is None else float(o) for o in offs]
        for o in self.offload_thresholds:
            if o is not None and (math.isnan(o) or math.isinf(o)):
                raise EarlyExitError(f"an offload threshold must be a number or null (never), got {o}")

    @property
    def num_exits(self) -> int:
        return len(self.thresholds) + 1

    @property
    def three_way(self) -> bool:
        """Whether any early exit may offload (else offloading happens only at the final exit)."""
        return any(o is not None for o in self.offload_thresholds)

    # float form
    def exits_at(self, k: int, probs: np.ndarray) -> np.ndarray:
        """Whether rows of ``probs`` (exit ``k``'s probabilities) stop at non-final exit ``k``."""
        return np.asarray(probs, dtype=np.float64).max(axis=1) >= self.thresholds[k]

    def offloads_at(self, k: int, probs: np.ndarray) -> np.ndarray:
        """Whether rows that do not exit at non-final exit ``k`` are offloaded there."""
        o = self.offload_thresholds[k]
        if o is None:
            return np.zeros(len(probs), dtype=bool)
        return np.asarray(probs, dtype=np.float64).max(axis=1) < o

    # exact integer form
    def exit_bounds_int8(self, quants: Sequence[Quant]) -> list[int]:
        return [exit_threshold_int8(t, q.scale, q.zero_point) for t, q in zip(self.thresholds, quants)]

    def offload_bounds_int8(self, quants: Sequence[Quant]) -> list[int | None]:
        return [offload_bound_int8(o, q.scale, q.zero_point) for o, q in zip(self.offload_thresholds, quants)]

    def exits_at_int8(self, k: int, q: np.ndarray, quant: Quant) -> np.ndarray:
        bound = exit_threshold_int8(self.thresholds[k], quant.scale, quant.zero_point)
        return np.asarray(q).astype(np.int64).max(axis=1) - quant.zero_point >= bound

    def offloads_at_int8(self, k: int, q: np.ndarray, quant: Quant) -> np.ndarray:
        bound = offload_bound_int8(self.offload_thresholds[k], quant.scale, quant.zero_point)
        if bound is None:
            return np.zeros(len(q), dtype=bool)
        return np.asarray(q).astype(np.int64).max(axis=1) - quant.zero_point < bound

    def final_accept(self, probs: np.ndarray) -> np.ndarray:
        if self.decider is None:
            return np.ones(len(probs), dtype=bool)
        return self.decider.accept(probs)

    def final_accept_int8(self, q: np.ndarray, quant: Quant) -> np.ndarray:
        if self.decider is None:
            return np.ones(len(q), dtype=bool)
        return self.decider.accept_int8(q, quant.scale, quant.zero_point)

    def decide(self, exit_scores: Sequence[np.ndarray], quants: Sequence[Quant] | None = None) -> PolicyOutcome:
        """Vectorized policy over N samples given the scores of EVERY exit (desktop evaluation of the
        single-model form). With ``quants`` the scores are raw int8 and the exact integer form is used;
        otherwise they are probabilities."""
        if len(exit_scores) != self.num_exits:
            raise EarlyExitError(f"policy has {self.num_exits} exits but got scores of {len(exit_scores)}")
        n = len(exit_scores[0])
        exit_index = np.full(n, self.num_exits - 1, dtype=np.int64)
        offload = np.zeros(n, dtype=bool)
        undecided = np.ones(n, dtype=bool)
        for k in range(self.num_exits - 1):
            if quants is not None:
                here = self.exits_at_int8(k, exit_scores[k], quants[k])
                off = ~here & self.offloads_at_int8(k, exit_scores[k], quants[k])
            else:
                here = self.exits_at(k, exit_scores[k])
                off = ~here & self.offloads_at(k, exit_scores[k])
            stop = undecided & (here | off)
            exit_index[stop] = k
            offload |= undecided & off
            undecided &= ~stop
        stacked = np.stack([np.asarray(s) for s in exit_scores])
        chosen = stacked[exit_index, np.arange(n)]
        last = self.num_exits - 1
        accept = (self.final_accept_int8(exit_scores[last], quants[last]) if quants is not None
                  else self.final_accept(exit_scores[last]))
        offload |= undecided & ~accept
        return PolicyOutcome(exit_index=exit_index, predicted=chosen.argmax(axis=1), offload=offload)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"exit_thresholds": [None if t == NEVER else t for t in self.thresholds]}
        if self.three_way:
            d["offload_thresholds"] = list(self.offload_thresholds)
        return d


@dataclass
class PolicyOutcome:
    """Per sample: the exit taken, the local class at that exit, and whether it is offloaded."""

    exit_index: np.ndarray
    predicted: np.ndarray
    offload: np.ndarray


@dataclass
class SegmentSpec:
    """One segment file and the names of its tensors."""

    file: Path
    input: str
    scores: str
    features: str | None
    input_quant: Quant | None
    scores_quant: Quant | None
    features_quant: Quant | None = None
    macs: int | None = None

    def to_dict(self, root: Path | None) -> dict[str, Any]:
        f = self.file
        if root is not None:
            try:
                f = self.file.resolve().relative_to(root.resolve())
            except ValueError:
                pass
        return {"file": str(f), "input": self.input,
                "outputs": {"features": self.features, "scores": self.scores},
                "input_quant": self.input_quant.to_dict() if self.input_quant else None,
                "scores_quant": self.scores_quant.to_dict() if self.scores_quant else None,
                "features_quant": self.features_quant.to_dict() if self.features_quant else None,
                "macs": self.macs}


@dataclass
class SegmentChain:
    """The chain of segment files with its exit policy, as stored in the chain JSON."""

    segments: list[SegmentSpec]
    policy: ExitPolicy
    path: Path | None = None
    decider_file: str | None = None
    class_names: list[str] = field(default_factory=list)
    single_model: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.segments:
            raise EarlyExitError("a segment chain needs at least one segment")
        if len(self.policy.thresholds) != len(self.segments) - 1:
            raise EarlyExitError(f"{len(self.segments)} segments need {len(self.segments) - 1} exit thresholds, "
                                 f"got {len(self.policy.thresholds)}")
        for k, s in enumerate(self.segments[:-1]):
            if s.features is None:
                raise EarlyExitError(f"segment {k} is not the last but names no features output")

    @property
    def num_exits(self) -> int:
        return len(self.segments)

    def scores_quants(self) -> list[Quant]:
        qs = [s.scores_quant for s in self.segments]
        if any(q is None for q in qs):
            raise EarlyExitError("the chain lacks scores_quant for some segment; int8 decisions need it")
        return qs  # type: ignore[return-value]

    def check_feature_quantization(self) -> list[str]:
        """Mismatches between a segment's feature output and the next segment's input quantization."""
        problems = []
        for k in range(len(self.segments) - 1):
            a, b = self.segments[k].features_quant, self.segments[k + 1].input_quant
            if a != b:
                problems.append(f"segment {k} features {a} != segment {k + 1} input {b}")
        return problems

    # --- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        root = self.path.parent if self.path is not None else None
        pol = self.policy
        quants = self.scores_quants() if all(s.scores_quant for s in self.segments) else None
        policy = {**pol.to_dict(), "final_decider": self.decider_file,
                  "exit_bounds_int8": pol.exit_bounds_int8(quants) if quants else None}
        if pol.three_way:
            policy["offload_bounds_int8"] = pol.offload_bounds_int8(quants) if quants else None
            policy["rule"] = ("at non-final exit k: exit iff max(q_k) - zero_point_k >= exit_bounds_int8[k] (float: "
                              "max softmax >= exit_thresholds[k]; null = never); else offload now iff max(q_k) - "
                              "zero_point_k < offload_bounds_int8[k] (float: max softmax < offload_thresholds[k]; "
                              "null = never); else continue. At the final exit offload iff the final decider "
                              "rejects (no decider: always accept)")
        else:
            policy["rule"] = ("at non-final exit k: exit iff max(q_k) - zero_point_k >= exit_bounds_int8[k] "
                              "(float: max softmax >= exit_thresholds[k]; null = never); at the final exit "
                              "offload iff the final decider rejects (no decider: always accept)")
        d = {"format": FORMAT_THREE_WAY if pol.three_way else FORMAT,
             "class_names": list(self.class_names),
             "segments": [s.to_dict(root) for s in self.segments],
             "policy": policy,
             "single_model": self.single_model}
        d.update({k: v for k, v in self.meta.items() if k not in d})
        return d

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else self.path
        if path is None:
            raise EarlyExitError("no path to save the chain to")
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Path | None = None) -> SegmentChain:
        where = f" {path}" if path else ""
        if not isinstance(d, Mapping):
            raise EarlyExitError(f"chain{where} holds a JSON {type(d).__name__}, not a chain object; give the chain "
                                 "JSON that `hi-train early-exit` writes")
        if not isinstance(d.get("policy") or {}, Mapping):
            raise EarlyExitError(f"chain{where}: policy must be an object (exit_thresholds, final_decider)")
        if d.get("format", FORMAT) not in FORMATS:
            raise EarlyExitError(f"unsupported chain format {d.get('format')!r}; this runtime reads "
                                 f"{' and '.join(FORMATS)}")
        root = path.parent if path is not None else Path(".")
        try:
            segs = [SegmentSpec(file=root / s["file"], input=s["input"], scores=s["outputs"]["scores"],
                                features=s["outputs"].get("features"),
                                input_quant=Quant.from_dict(s.get("input_quant")),
                                scores_quant=Quant.from_dict(s.get("scores_quant")),
                                features_quant=Quant.from_dict(s.get("features_quant")), macs=s.get("macs"))
                    for s in d["segments"]]
            pol = d.get("policy") or {}
            thresholds = [NEVER if t is None else float(t) for t in pol.get("exit_thresholds", [])]
            offloads = pol.get("offload_thresholds")
            if offloads is not None and d.get("format") != FORMAT_THREE_WAY:
                raise EarlyExitError(f"chain{' ' + str(path) if path else ''} has offload_thresholds but format "
                                     f"{d.get('format')!r}; offload rules need {FORMAT_THREE_WAY!r}")
        except (KeyError, TypeError) as exc:
            raise EarlyExitError(f"invalid chain JSON{' ' + str(path) if path else ''}: missing {exc}; expected "
                                 "segments[{file, input, outputs{features, scores}}] and policy") from exc
        decider_file = pol.get("final_decider")
        decider = None
        if decider_file:
            try:
                decider = Decider.load(root / decider_file)
            except DeciderError as exc:
                raise EarlyExitError(f"chain {path}: final decider: {exc}") from exc
        known = {"format", "class_names", "segments", "policy", "single_model"}
        return cls(segments=segs, policy=ExitPolicy(thresholds, decider, offloads), path=path, decider_file=decider_file,
                   class_names=list(d.get("class_names", [])), single_model=d.get("single_model"),
                   meta={k: v for k, v in d.items() if k not in known})

    @classmethod
    def load(cls, path: str | Path) -> SegmentChain:
        path = Path(path)
        return cls.from_dict(read_json(path, "chain", "`hi-train early-exit` or `hi-train split-ee`", EarlyExitError), path)


@dataclass
class ChainResult:
    """The outcome for one sample run through the chain."""

    exit_index: int
    predicted_class: int
    offload: bool
    scores: np.ndarray
    segments_run: int
    confidence: float


RunSegment = Callable[[int, np.ndarray], "tuple[np.ndarray | None, np.ndarray]"]


def run_chain(chain: SegmentChain, run_segment: RunSegment, x: np.ndarray) -> ChainResult:
    """Run one sample through the chain, stopping at the first exit the policy takes: an early exit
    (``offload`` False), an offload at an early exit (three-way policy: ``offload`` True, ``exit_index``
    < last, ``predicted_class`` that exit's class as the fallback answer) or the final exit.

    ``run_segment(k, input)`` runs segment ``k`` on ``input`` with any backend and returns
    ``(features, scores)`` (features ``None`` for the last segment). Int8 scores use the exact integer
    form with the segment's ``scores_quant``; float scores are taken as probabilities. Features whose
    quantization differs from the next segment's input are requantized.
    """
    pol = chain.policy
    inp = x
    last = chain.num_exits - 1
    for k, seg in enumerate(chain.segments):
        features, scores = run_segment(k, inp)
        s = np.asarray(scores).reshape(1, -1)
        is_int = np.issubdtype(s.dtype, np.integer)
        if is_int and seg.scores_quant is None:
            raise EarlyExitError(f"segment {k} returned int8 scores but the chain has no scores_quant for it")
        probs = seg.scores_quant.dequantize(s) if is_int else s.astype(np.float64)
        conf = float(probs.max())
        cls = int(s.argmax())
        if k < last:
            here = pol.exits_at_int8(k, s, seg.scores_quant)[0] if is_int else pol.exits_at(k, s)[0]
            if here:
                return ChainResult(k, cls, False, s[0], k + 1, conf)
            off = pol.offloads_at_int8(k, s, seg.scores_quant)[0] if is_int else pol.offloads_at(k, s)[0]
            if off:  # three-way policy: offload now, skipping the remaining segments
                return ChainResult(k, cls, True, s[0], k + 1, conf)
            if features is None:
                raise EarlyExitError(f"segment {k} returned no features, but the chain continues to segment {k + 1}")
            nxt = chain.segments[k + 1]
            if (np.issubdtype(np.asarray(features).dtype, np.integer) and seg.features_quant is not None
                    and nxt.input_quant is not None):
                features = requantize(features, seg.features_quant, nxt.input_quant)
            inp = features
            continue
        accept = (pol.final_accept_int8(s, seg.scores_quant)[0] if is_int else pol.final_accept(s)[0])
        return ChainResult(k, cls, not bool(accept), s[0], k + 1, conf)
    raise AssertionError("unreachable")  # pragma: no cover
