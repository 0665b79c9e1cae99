"""The offload decider: the ONE implementation of its math (numpy only; a Raspberry Pi runs this file).

The paper's decider is a binary logistic regression on the two highest softmax probabilities of the local
model; it predicts whether the local answer is correct. The device accepts its own answer when the
decider says so and offloads the sample otherwise. Behind the same :class:`Decider` interface:

* ``kind="logistic"``: logistic regression on any of the features below (``p1,p2`` is the paper's);
* ``kind="max_softmax"``: the plain max-softmax threshold (score = p1).

Features are functions of the probabilities sorted in descending order, ``p(1) >= p(2) >= ...``:

=========  ==========================================  =====================
name       definition                                  exact int8 form?
=========  ==========================================  =====================
p1         p(1), the highest probability               yes (linear)
p2         p(2), the second highest                    yes (linear)
p3         p(3), the third highest                     yes (linear)
margin     p(1) - p(2)                                 yes (linear)
entropy    -sum_i p_i ln p_i  (0 ln 0 = 0)             no: refused for int8
=========  ==========================================  =====================

Decision (float form, on dequantized probabilities, computed in float64)::

    f  = features(p);  x = (f - mean) / scale                 # "standardize" in the JSON
    z  = coefficients . x + intercept                        # the decision value
    score = sigmoid(z)   (logistic)   or   z   (max_softmax)  # P(local answer correct)
    accept  <=>  z >= z_t,   z_t = logit(threshold) (logistic) or threshold (max_softmax)

``accept`` compares ``z`` with ``z_t`` rather than ``sigmoid(z)`` with the threshold, so that no rounding
of the sigmoid can flip a decision; the two are the same mathematically.

Exact integer form (what a microcontroller runs on its raw int8 softmax scores ``q`` with the model's
output scale ``s`` and zero point ``zp``). Every linear feature is a sum of ranks, so ``z - z_t`` is
``sum_r c_r * (q(r) - zp) + b0`` with real ``c_r``, ``b0``. At export they become integers::

    accept  <=>  sum_{r < K} A[r] * (q(r) - zp) + B >= 0        (int32 A, B; int32 accumulation)

where ``q(0) >= q(1) >= ...`` are the raw int8 scores sorted in descending order (only the values matter,
so ties need no rule). ``A[r] = round(2^shift * c_r)`` and ``B = round(2^shift * b0)`` with round half away
from zero, and ``shift`` is the largest value for which ``sum |A[r]| * D + |B| < 2^31`` (``D`` = the
largest ``|q - zp|``), so no partial sum can overflow an int32. A decider on ``p1`` alone (the max-softmax
threshold) gets ``A = [1]`` and the exact integer threshold instead, found by evaluating the float form on
all 256 int8 values, so both forms agree on every input. For the others :func:`Int8Form` records how many
points of the full int8 grid of sorted top-K values the two forms disagree on (``grid_disagreements``;
0 on every decider shipped here). The C header emitted by :meth:`Decider.to_c_header` carries the same
integers and a reference C function.

Binding to a model: a decider is only meaningful for the model it was fitted on. The JSON's ``model`` block
(:class:`ModelBinding`) records that model's file name and SHA-256 and what its output is
(:class:`OutputSpec`: ``probabilities``, ``logits`` or ``int8_scores`` with the output quantization).
:meth:`Decider.check_model` compares a model about to be used with it and raises
:class:`DeciderModelMismatch` (one line naming the fix) unless forced.

Format: ``hi-decider/1``. Fields added later (``model``) are optional, and a reader that does not know a
feature or kind refuses the file (``check_features``, ``KINDS``) rather than misreading it, so the version
changes only when an old reader would silently compute something else.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hi_runtime.artifacts import read_json

FORMAT = "hi-decider/1"
KINDS = ("logistic", "max_softmax")

#: Linear features as weights over the descending ranks of the probabilities.
LINEAR_FEATURES: dict[str, dict[int, float]] = {
    "p1": {0: 1.0},
    "p2": {1: 1.0},
    "p3": {2: 1.0},
    "margin": {0: 1.0, 1: -1.0},
}
NONLINEAR_FEATURES = ("entropy",)
FEATURE_DEFINITIONS: dict[str, str] = {
    "p1": "highest softmax probability p(1)",
    "p2": "second highest softmax probability p(2)",
    "p3": "third highest softmax probability p(3)",
    "margin": "p(1) - p(2)",
    "entropy": "-sum_i p_i * ln(p_i) over all classes, with 0 * ln 0 = 0",
}
PAPER_FEATURES = ("p1", "p2")
INT32_MAX = 2**31 - 1
#: Largest top-K for which the export checks the int8 form against the float form on the full grid.
GRID_CHECK_MAX_K = 3


class DeciderError(ValueError):
    """A decider file or argument is invalid."""


class Int8UnsupportedError(DeciderError):
    """The decider uses a feature with no exact integer form (e.g. entropy)."""


class DeciderModelMismatch(DeciderError):
    """The decider was fitted for another model (file hash, output kind or output quantization)."""


#: What a local model's output is, as the decider sees it: float softmax probabilities, float (or
#: quantized) logits before the softmax, or a full-integer model's quantized softmax scores.
OUTPUT_KINDS = ("probabilities", "logits", "int8_scores")


@dataclass(frozen=True)
class OutputSpec:
    """A local model's output: its kind, its quantization (``int8_scores``: required; quantized logits:
    optional) and, for information, the output tensor's name."""

    kind: str
    scale: float | None = None
    zero_point: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise DeciderError(f"unknown output kind {self.kind!r}; choose {', '.join(OUTPUT_KINDS)}")
        if (self.scale is None) != (self.zero_point is None):
            raise DeciderError("an output quantization needs both scale and zero_point")
        if self.kind == "int8_scores" and self.scale is None:
            raise DeciderError("output kind int8_scores needs the output quantization (scale, zero_point)")
        if self.scale is not None:
            object.__setattr__(self, "scale", float(self.scale))
            object.__setattr__(self, "zero_point", int(self.zero_point))

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def describe(self) -> str:
        q = f", scale {self.scale:.6g}, zero point {self.zero_point}" if self.quantized else ""
        return f"{self.kind}{q}"

    def same_as(self, other: OutputSpec) -> bool:
        """Same kind and quantization (scales equal to float32 precision); the name is not compared."""
        if self.kind != other.kind or self.quantized != other.quantized:
            return False
        return not self.quantized or (math.isclose(self.scale, other.scale, rel_tol=1e-6, abs_tol=0.0)
                                      and self.zero_point == other.zero_point)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name,
                "quant": {"scale": self.scale, "zero_point": self.zero_point} if self.quantized else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OutputSpec:
        q = d.get("quant") or {}
        return cls(kind=str(d["kind"]), scale=q.get("scale"), zero_point=q.get("zero_point"), name=d.get("name"))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in chunks: model files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelBinding:
    """The model a decider was fitted for (``sha256`` None: published weights bound to no file)."""

    output: OutputSpec
    file: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        what = self.file or "an unnamed model"
        if self.sha256:
            what += f" (sha256 {self.sha256[:12]}...)"
        return f"{what} [{self.output.describe()}]"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "output": self.output.to_dict(),
                "meaning": "the model this decider was fitted for; Decider.check_model refuses others unless forced"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelBinding:
        try:
            return cls(output=OutputSpec.from_dict(d["output"]), file=d.get("file"), sha256=d.get("sha256"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DeciderError):
                raise
            raise DeciderError(f"invalid model block in decider JSON ({exc}); expected file, sha256, "
                               "output{kind, quant}") from exc


def check_features(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    if not names:
        raise DeciderError("a decider needs at least one feature; choose from " + ", ".join(FEATURE_DEFINITIONS))
    unknown = [n for n in names if n not in FEATURE_DEFINITIONS]
    if unknown:
        raise DeciderError(f"unknown decider feature(s) {unknown}; choose from {', '.join(FEATURE_DEFINITIONS)}")
    if len(set(names)) != len(names):
        raise DeciderError(f"decider features repeat: {list(names)}")
    return names


def sorted_desc(values: np.ndarray, k: int | None = None) -> np.ndarray:
    """Each row sorted in descending order (first ``k`` columns)."""
    s = -np.sort(-np.asarray(values), axis=1)
    return s if k is None else s[:, :k]


def compute_features(probs: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The feature matrix [N, F] (float64) for probability rows ``probs`` [N, C]."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise DeciderError(f"probabilities must be [N, classes], got shape {p.shape}")
    names = check_features(names)
    need = max((max(LINEAR_FEATURES[n]) + 1 for n in names if n in LINEAR_FEATURES), default=0)
    if need > p.shape[1]:
        raise DeciderError(f"features {list(names)} need {need} probabilities per row, got {p.shape[1]}")
    top = sorted_desc(p, need) if need else None
    cols = []
    for n in names:
        if n in LINEAR_FEATURES:
            cols.append(sum(w * top[:, r] for r, w in LINEAR_FEATURES[n].items()))
        else:  # entropy
            with np.errstate(divide="ignore", invalid="ignore"):
                cols.append(-np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1))
    return np.stack(cols, axis=1)


def logit(t: float) -> float:
    """logit(t); -inf at 0 (accept everything) and +inf at 1 (offload everything)."""
    if not 0.0 <= t <= 1.0 or math.isnan(t):
        raise DeciderError(f"a logistic decider's threshold must be in [0, 1], got {t}")
    if t == 0.0:
        return -math.inf
    if t == 1.0:
        return math.inf
    return math.log(t) - math.log1p(-t)


def round_half_away(x: float) -> int:
    """Round half away from zero (C's ``lround``), the rounding of every exported integer."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def int8_rank_range(zero_point: int) -> tuple[int, int]:
    """The range of ``q - zp`` for int8 ``q``."""
    return -128 - int(zero_point), 127 - int(zero_point)


@dataclass(frozen=True)
class Int8Form:
    """``accept <=> sum_r A[r] * (q(r) - zp) + B >= 0`` over the descending raw int8 scores ``q(r)``."""

    scale: float
    zero_point: int
    coef: tuple[int, ...]
    bias: int
    shift: int
    exact: bool
    grid_disagreements: int | None = None

    @property
    def top_k(self) -> int:
        return len(self.coef)

    def matches(self, scale: float, zero_point: int) -> bool:
        return float(scale) == float(self.scale) and int(zero_point) == int(self.zero_point)

    def accumulate(self, q: np.ndarray) -> np.ndarray:
        """The integer decision value per row (int64 here; fits int32 by construction)."""
        q = np.asarray(q)
        if q.ndim != 2:
            raise DeciderError(f"int8 scores must be [N, classes], got shape {q.shape}")
        k = min(self.top_k, q.shape[1])  # rows shorter than top_k: the ranks they have, as the firmware does
        top = sorted_desc(q.astype(np.int64), k) - int(self.zero_point)
        return top @ np.asarray(self.coef[:k], dtype=np.int64) + int(self.bias)

    def accept(self, q: np.ndarray) -> np.ndarray:
        return self.accumulate(q) >= 0

    def accept_row(self, row: Sequence[int]) -> bool:
        """The same decision for one sample's raw scores as Python ints (``raw[0].tolist()``): plain
        integer arithmetic, no arrays, for a device's per-sample path (a numpy call on ten values costs
        more than the arithmetic)."""
        top = sorted(row, reverse=True)
        zp = self.zero_point
        acc = self.bias
        for a, q in zip(self.coef, top):
            acc += a * (q - zp)
        return acc >= 0

    def row_decider(self) -> Callable[[Sequence[int]], bool]:
        """:meth:`accept_row` as the cheapest callable for this form: for the top-2 form (the shipped
        decider's), one sort and three products with the zero point folded into the bias (the same
        integers: ``B + A1 (q1 - zp) + A2 (q2 - zp) = A1 q1 + A2 q2 + (B - (A1 + A2) zp)``)."""
        if self.top_k != 2:
            return self.accept_row
        a1, a2 = (int(a) for a in self.coef)
        c = int(self.bias) - (a1 + a2) * int(self.zero_point)

        accept_row = self.accept_row

        def accept_top2(row: Sequence[int], _sorted=sorted) -> bool:
            s = _sorted(row)
            if len(s) < 2:  # a one-class row: the rank it has (the general rule, as the firmware does)
                return accept_row(row)
            return a1 * s[-1] + a2 * s[-2] + c >= 0

        return accept_top2

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point, "top_k": self.top_k,
                "A": list(self.coef), "B": self.bias, "shift": self.shift, "exact": self.exact,
                "grid_disagreements": self.grid_disagreements,
                "rule": "accept iff sum_{r<top_k} A[r]*(q(r) - zero_point) + B >= 0, q(0) >= q(1) >= ... the "
                        "raw int8 scores in descending order, int32 arithmetic",
                "rounding": "A[r] = round(2^shift * c_r), B = round(2^shift * (b0 - z_t)), round half away "
                            "from zero; c_r, b0: the float decision value folded onto the ranks "
                            "(c_r includes the output scale)"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Int8Form:
        try:
            coef = tuple(int(a) for a in d["A"])
            form = cls(scale=float(d["scale"]), zero_point=int(d["zero_point"]), coef=coef, bias=int(d["B"]),
                       shift=int(d.get("shift", 0)), exact=bool(d.get("exact", False)),
                       grid_disagreements=d.get("grid_disagreements"))
        except (KeyError, TypeError, ValueError) as exc:
            raise DeciderError(f"invalid int8 block in decider JSON ({exc}); expected scale, zero_point, A, B") from exc
        if "top_k" in d and int(d["top_k"]) != len(coef):
            raise DeciderError(f"int8 block says top_k={d['top_k']} but has {len(coef)} coefficients")
        return form


@dataclass
class Decider:
    """Accept the local answer or offload; see the module docstring for the exact math."""

    features: tuple[str, ...] = PAPER_FEATURES
    coefficients: np.ndarray = field(default_factory=lambda: np.ones(2))
    intercept: float = 0.0
    threshold: float = 0.5
    kind: str = "logistic"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    int8: Int8Form | None = None
    model: ModelBinding | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.features = check_features(self.features)
        if self.kind not in KINDS:
            raise DeciderError(f"unknown decider kind {self.kind!r}; choose {', '.join(KINDS)}")
        f = len(self.features)
        self.coefficients = np.asarray(self.coefficients, dtype=np.float64).reshape(-1)
        self.mean = np.zeros(f) if self.mean is None else np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.scale = np.ones(f) if self.scale is None else np.asarray(self.scale, dtype=np.float64).reshape(-1)
        for name, arr in (("coefficients", self.coefficients), ("standardize.mean", self.mean),
                          ("standardize.scale", self.scale)):
            if arr.shape != (f,):
                raise DeciderError(f"{name} has {arr.size} values but the decider has {f} features")
            if not np.all(np.isfinite(arr)):
                raise DeciderError(f"{name} contains a non-finite value")
        if np.any(self.scale == 0):
            raise DeciderError("standardize.scale must not contain zeros")
        self.intercept = float(self.intercept)
        self.threshold = float(self.threshold)
        _ = self.z_threshold  # validates the threshold for the kind

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def max_softmax(cls, threshold: float, **meta: Any) -> Decider:
        """The max-softmax threshold: accept iff p1 >= threshold."""
        return cls(features=("p1",), coefficients=np.ones(1), intercept=0.0, threshold=threshold,
                   kind="max_softmax", meta=dict(meta))

    def with_threshold(self, threshold: float) -> Decider:
        """The same decider at another operating point (its int8 form recomputed for it)."""
        d = replace(self, threshold=float(threshold), meta=dict(self.meta), int8=None)
        d._compiled = {}
        if self.int8 is not None:
            d.int8 = d.compile_int8(self.int8.scale, self.int8.zero_point)
        return d

    def with_int8(self, scale: float, zero_point: int) -> Decider:
        """A copy carrying the integer form for a model output quantized with ``scale``/``zero_point``."""
        d = replace(self, meta=dict(self.meta), int8=self.compile_int8(scale, zero_point))
        d._compiled = {}
        return d

    # --- float form -----------------------------------------------------------------------------

    @property
    def z_threshold(self) -> float:
        if self.kind == "logistic":
            return logit(self.threshold)
        if math.isnan(self.threshold):
            raise DeciderError("threshold is NaN")
        return self.threshold

    def decision_value(self, probs: np.ndarray) -> np.ndarray:
        x = (compute_features(probs, self.features) - self.mean) / self.scale
        # elementwise, not ``x @ coefficients``: a matrix-vector product goes to BLAS, whose worker threads
        # then spin on the other cores, CPU taken from the interpreter on a device (2-4 features per row)
        return (x * self.coefficients).sum(axis=1) + self.intercept

    def score(self, probs: np.ndarray) -> np.ndarray:
        """P(local answer correct) for logistic deciders; p1 for the max-softmax threshold."""
        z = self.decision_value(probs)
        if self.kind == "logistic":
            return 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow warnings
        return z

    def accept(self, probs: np.ndarray) -> np.ndarray:
        """True where the local answer is kept; False where the sample is offloaded."""
        return self.decision_value(probs) >= self.z_threshold

    # --- exact int8 form ------------------------------------------------------------------------

    @property
    def supports_int8(self) -> bool:
        return all(n in LINEAR_FEATURES for n in self.features)

    def _rank_coefficients(self) -> tuple[np.ndarray, float]:
        """(w_r, b0) with z - z_t = sum_r w_r * p(r) + b0 for linear features."""
        bad = [n for n in self.features if n not in LINEAR_FEATURES]
        if bad:
            raise Int8UnsupportedError(
                f"feature(s) {bad} have no exact integer form, so this decider cannot be exported for int8 "
                f"scores or C; retrain with linear features only ({', '.join(LINEAR_FEATURES)})")
        eff = self.coefficients / self.scale
        k = max(max(LINEAR_FEATURES[n]) for n in self.features) + 1
        w = np.zeros(k)
        for n, e in zip(self.features, eff):
            for r, m in LINEAR_FEATURES[n].items():
                w[r] += e * m
        b0 = self.intercept - float(np.dot(eff, self.mean)) - self.z_threshold
        return w, b0

    def compile_int8(self, scale: float, zero_point: int, *, check_grid: bool = True) -> Int8Form:
        """The integer form for a model whose int8 output has ``scale`` and ``zero_point`` (with
        ``check_grid``, counting its disagreements with the float form on the whole int8 grid)."""
        scale, zero_point = float(scale), int(zero_point)
        if not (scale > 0 and math.isfinite(scale)):
            raise DeciderError(f"output scale must be a positive number, got {scale}")
        w, b0 = self._rank_coefficients()
        lo, hi = int8_rank_range(zero_point)
        if math.isinf(b0):  # threshold 0 or 1: accept everything / nothing
            return Int8Form(scale, zero_point, (0,) * len(w), 0 if b0 > 0 else -1, 0, exact=True,
                            grid_disagreements=0)
        if len(w) == 1 and w[0] > 0:
            return self._compile_exact_p1(scale, zero_point, lo, hi)
        c = w * scale
        d_max = max(abs(lo), abs(hi))
        total = float(np.abs(c).sum()) * d_max + abs(b0)
        if total == 0:
            raise DeciderError("the decider's coefficients are all zero; it cannot decide anything")
        shift = math.floor(math.log2((INT32_MAX - 1 - d_max * len(c)) / total))
        while shift >= -30:
            a = [round_half_away(v * 2.0**shift) for v in c]
            b = round_half_away(b0 * 2.0**shift)
            if sum(abs(x) for x in a) * d_max + abs(b) <= INT32_MAX:
                break
            shift -= 1
        else:  # pragma: no cover - unreachable for finite coefficients
            raise DeciderError("cannot fit the decider into int32")
        form = Int8Form(scale, zero_point, tuple(a), b, shift, exact=False)
        return replace(form, grid_disagreements=self._grid_disagreements(form)) if check_grid else form

    def _compile_exact_p1(self, scale: float, zero_point: int, lo: int, hi: int) -> Int8Form:
        m = np.arange(lo, hi + 1)
        ok = self.accept((m * scale).reshape(-1, 1).astype(np.float64))
        if not ok.any():
            bound = hi + 1  # never accept
        else:
            bound = int(m[np.argmax(ok)])
            if not ok[m >= bound].all():
                raise DeciderError("float decision on p1 is not monotone; cannot form an integer threshold")
        return Int8Form(scale, zero_point, (1,), -bound, 0, exact=True, grid_disagreements=0)

    def _grid_disagreements(self, form: Int8Form) -> int | None:
        """Count int8 top-K tuples where the integer and float forms disagree (K <= 3: the full grid of
        descending tuples, evaluated in chunks so memory stays small)."""
        k = form.top_k
        if k > GRID_CHECK_MAX_K:
            return None
        vals = np.arange(127, -129, -1, dtype=np.int64)
        i, j = np.triu_indices(len(vals))
        pairs = np.stack([vals[i], vals[j]], axis=1)  # every descending pair
        chunks = ([vals.reshape(-1, 1)] if k == 1 else [pairs] if k == 2 else
                  [np.column_stack([np.full(int((pairs[:, 0] <= a).sum()), a), pairs[pairs[:, 0] <= a]])
                   for a in vals])
        if len(chunks) > 1:  # fewer, larger evaluations: ~0.3 M rows each
            chunks = [np.concatenate(chunks[i:i + 32]) for i in range(0, len(chunks), 32)]
        bad = 0
        for q in chunks:
            probs = (q - form.zero_point).astype(np.float64) * form.scale
            bad += int(np.count_nonzero(self.accept(probs) != form.accept(q)))
        return bad

    def accept_int8(self, q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
        """The exact integer decision on raw int8 scores [N, C] with the model's output quantization."""
        if self.int8 is not None and self.int8.matches(scale, zero_point):
            return self.int8.accept(q)
        key = (float(scale), int(zero_point), self.threshold)
        form = self._compiled.get(key)
        if form is None:
            form = self._compiled[key] = self.compile_int8(scale, zero_point, check_grid=False)
        return form.accept(q)

    # --- binding to a model ----------------------------------------------------------------------

    def model_mismatches(self, path: str | Path | None, output: OutputSpec) -> list[str]:
        """Why this decider does not fit the model at ``path`` with output ``output`` (empty: it fits).
        ``path`` None skips the file-hash comparison."""
        b = self.model
        if b is None:
            return ["it records no model it was fitted for"]
        problems = []
        if b.sha256 and path is not None:
            digest = file_sha256(path)
            if digest != b.sha256:
                problems.append(f"it was fitted for {b.file or 'another file'} (sha256 {b.sha256[:12]}...), "
                                f"not {Path(path).name} (sha256 {digest[:12]}...)")
        if not b.output.same_as(output):
            problems.append(f"it works on {b.output.describe()} but the model outputs {output.describe()}")
        return problems

    def check_model(self, path: str | Path | None, output: OutputSpec, *, force: bool = False,
                    name: str = "the decider", force_hint: str = "hi-agent --force-decider") -> list[str]:
        """Refuse a model this decider was not fitted for: raises :class:`DeciderModelMismatch` with the fix
        in one line, unless ``force`` (then the problems are returned, for a warning). ``name``: how to call
        the decider in the message (e.g. its file); ``force_hint``: the calling tool's way to force it."""
        problems = self.model_mismatches(path, output)
        if problems and not force:
            model = Path(path).name if path is not None else "this model"
            raise DeciderModelMismatch(
                f"{name} does not fit {model}: {'; '.join(problems)}. Fit one for it with `hi-train decider "
                f"--model {path if path is not None else 'MODEL'} --data ...` (or bind published weights with "
                f"`hi-train decider --coefficients ... --model ...`), or force it ({force_hint})")
        return problems

    # --- serialization --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "kind": self.kind,
            "features": list(self.features),
            "feature_definitions": {n: FEATURE_DEFINITIONS[n] for n in self.features},
            "standardize": {"mean": self.mean.tolist(), "scale": self.scale.tolist(),
                            "meaning": "x = (feature - mean) / scale"},
            "coefficients": self.coefficients.tolist(),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "decision": ("z = coefficients . x + intercept; score = sigmoid(z) = P(local answer correct); "
                         "accept iff z >= logit(threshold)") if self.kind == "logistic" else
                        "score = p1; accept iff p1 >= threshold",
            "input": "probabilities p = (q - zero_point) * scale of the local model's softmax, float64",
            "int8": self.int8.to_dict() if self.int8 is not None else None,
            "model": self.model.to_dict() if self.model is not None else None,
        }
        d.update({k: v for k, v in self.meta.items() if k not in d})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decider:
        if not isinstance(d, Mapping):
            raise DeciderError("a decider JSON must be an object")
        fmt = d.get("format", FORMAT)
        if fmt != FORMAT:
            raise DeciderError(f"unsupported decider format {fmt!r}; this runtime reads {FORMAT!r}")
        try:
            std = d.get("standardize") or {}
            known = {"format", "kind", "features", "feature_definitions", "standardize", "coefficients",
                     "intercept", "threshold", "decision", "input", "int8", "model", "source_model"}
            dec = cls(features=tuple(d["features"]), coefficients=np.asarray(d["coefficients"], dtype=np.float64),
                      intercept=float(d.get("intercept", 0.0)), threshold=float(d["threshold"]),
                      kind=str(d.get("kind", "logistic")), mean=std.get("mean"), scale=std.get("scale"),
                      int8=Int8Form.from_dict(d["int8"]) if d.get("int8") else None,
                      model=_binding_from_dict(d),
                      meta={k: v for k, v in d.items() if k not in known})
        except KeyError as exc:
            raise DeciderError(f"decider JSON lacks the field {exc}; expected features, coefficients, "
                               "threshold (written by `hi-train decider`)") from exc
        except (TypeError, ValueError) as exc:
            if isinstance(exc, DeciderError):
                raise
            raise DeciderError(f"invalid decider JSON: {exc}") from exc
        return dec

    @classmethod
    def load(cls, path: str | Path) -> Decider:
        return cls.from_dict(read_json(path, "decider", "`hi-train decider`", DeciderError))

    # --- C header -------------------------------------------------------------------------------

    def to_c_header(self, prefix: str = "HI_DECIDER", source: str = "") -> str:
        """A C header with the exact integer form and a reference ``<prefix>_accept`` function."""
        if self.int8 is None:
            raise DeciderError("this decider has no int8 form; compile one with compile_int8(scale, zero_point) "
                               "for the model's output quantization first")
        f = self.int8
        p, lp = prefix.upper(), prefix.lower()
        guard = f"{p}_H_"
        coef = ", ".join(str(a) for a in f.coef)
        return f"""/* Generated by hi_runtime.decider (hi-train decider); do not edit.{(' Source: ' + source) if source else ''}
 * Offload decider ({self.kind}, features {', '.join(self.features)}, threshold {self.threshold!r}),
 * exact integer form for the local model's raw int8 softmax scores q (scale {f.scale!r}, zero point {f.zero_point}):
 *   accept (keep the local answer) iff  sum_(r < {p}_TOP_K) {p}_A[r] * (q(r) - {p}_ZERO_POINT) + {p}_B >= 0
 * where q(0) >= q(1) >= ... are the scores in descending order. Every partial sum fits in int32.
 * A[r] = round(2^{f.shift} * c_r), B = round(2^{f.shift} * b0), rounding half away from zero (see docs/decider.md).
 */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#define {p}_TOP_K {f.top_k}
#define {p}_ZERO_POINT ({f.zero_point})
#define {p}_SHIFT {f.shift}
#define {p}_B ({f.bias})
static const int32_t {p}_A[{p}_TOP_K] = {{{coef}}};

/* Returns 1 to accept the local answer, 0 to offload. scores: n raw int8 softmax scores. */
static inline int {lp}_accept(const int8_t *scores, int n)
{{
    int32_t top[{p}_TOP_K];
    int filled = 0;
    for (int i = 0; i < n; ++i) {{
        int32_t v = scores[i];
        int j = filled < {p}_TOP_K ? filled++ : {p}_TOP_K;
        if (j == {p}_TOP_K) {{
            if (v <= top[{p}_TOP_K - 1]) continue;
            j = {p}_TOP_K - 1;
        }}
        while (j > 0 && top[j - 1] < v) {{ top[j] = top[j - 1]; --j; }}
        top[j] = v;
    }}
    int32_t acc = {p}_B;
    for (int r = 0; r < filled; ++r) acc += {p}_A[r] * (top[r] - {p}_ZERO_POINT);
    return acc >= 0;
}}

#endif /* {guard} */
"""


def _binding_from_dict(d: Mapping[str, Any]) -> ModelBinding | None:
    """The ``model`` block, or the file/output a decider written before binding recorded (no hash)."""
    if d.get("model"):
        return ModelBinding.from_dict(d["model"])
    old = d.get("source_model")
    if isinstance(old, Mapping) and old.get("output_scale") is not None:
        return ModelBinding(OutputSpec("int8_scores", old["output_scale"], old.get("output_zero_point"),
                                       old.get("output")), file=old.get("file"))
    return None
