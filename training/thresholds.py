"""Brute-force search of early-exit thresholds (and the final decider's threshold) on the validation split:
the procedure behind the paper's Table 6, extended to the three-way policy.

For every combination of thresholds on a grid and, for EE-HI, every decider threshold (step 0.01), the
expected system accuracy and expected cost per sample are computed; the cheapest combination whose accuracy
reaches the QoS target wins. Policies:

* ``ee``: exits only; the final exit always answers locally;
* ``ee-hi``: exits, then the decider at the final exit offloads to the server (HI is the special case
  "never exit");
* ``ee-hi-3way``: at every early exit, exit (confidence >= t_k), offload right away (confidence < o_k) or
  continue; then the final decider. ``ee-hi`` is its special case "o_k = never". Offload thresholds come
  from a coarser grid (``offload_step``, default 0.05, on the same points as the exit grid) plus "never";
* ``hi``: a plain model (one exit) with its decider: the baseline.

Cost per sample (ms) = device time up to the exit taken (from each segment's MACs scaled to a measured
full-model time, or measured per-segment times) + the offload cost if offloaded. The defaults are read from a
device profile (``hi_runtime/profiles/``, every value cited; :func:`reference_costs`): the paper's Raspberry
Pi 4, whose ResNet-8 takes 1.63 ms and whose offload over WiFi 9.68 ms (Tables 3 and 4).

Why it is fast: a sample's outcome depends on each threshold only through "is my confidence above it", so
every sample falls in one cell of a histogram over (grid position of its confidence at each exit, decider
position), and the metric of every combination is a sum of cumulative sums of that histogram. At an early
exit a sample exits for exit index j iff its bin b > j, is offloaded for offload index i iff b <= min(i, j),
and continues iff i < b <= j: an interval of bins, i.e. a difference of two cumulative sums. The 2-exit +
decider grid (102 x 102 x 101 ~ 1 M combinations) takes about 2 s for 5,000 samples instead of 5e9
sample-combination evaluations. Grids too large to hold (the three-way policy with two early exits: 21 x
102 x 21 x 102 x 101 ~ 460 M combinations) are evaluated in chunks of the first exit's threshold and
reduced on the fly to the cheapest combination per accuracy level (accuracy is a count of right samples),
which is all the QoS choice and the Pareto front need.
"""
from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hi_runtime.decider import Decider, logit
from hi_runtime.early_exit import NEVER, ExitPolicy, PolicyOutcome

#: The device profile and reference model the cost model defaults to (the paper's Pi 4 and ResNet-8).
DEFAULT_DEVICE = "rpi4"
DEFAULT_REF_MODEL = "resnet8"
THREE_WAY = "ee-hi-3way"
POLICIES = ("ee", "ee-hi", THREE_WAY, "hi")
#: Grids with at most this many combinations keep their full metric arrays (else: chunks + per-accuracy best).
DENSE_MAX_CELLS = 3_000_000
#: Floats per chunk of a large grid (memory per temporary array: 8 bytes each).
CHUNK_CELLS = 6_000_000


THRESHOLDS_FORMAT = "hi-thresholds/1"  # what hi-train thresholds writes as <out>.json


def load_search(path: str | Path) -> dict[str, Any]:
    """A ``hi-train thresholds`` result, or a ValueError naming what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{path} {what}: give a <out>.json written by hi-train thresholds")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not JSON ({e}); give a <out>.json written by hi-train thresholds") from None
    if not isinstance(data, dict) or data.get("format") != THRESHOLDS_FORMAT:
        raise ValueError(f"{path} is not a hi-train thresholds result (format {THRESHOLDS_FORMAT}); give the <out>.json "
                         "that hi-train thresholds --out <out> wrote")
    if not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} has no 'rows': re-run hi-train thresholds to write it again")
    return data


def threshold_grid(step: float = 0.01, never: bool = True) -> np.ndarray:
    """0, step, ..., 1 (float noise rounded off: 0.07, not 0.07000000000000001; a step of 0.25 gives 0.25,
    not 0.2), plus +inf ("never exit") for exits."""
    n = round(1.0 / step)
    g = np.round(np.arange(n + 1) * step, 10)
    return np.concatenate([g, [NEVER]]) if never else g


def offload_grid_indices(step: float, offload_step: float) -> np.ndarray:
    """Offload thresholds as indices into the exit grid of ``step``: -1 ("never offload here"), then
    offload_step, 2 offload_step, ..., 1 (offload iff confidence < that value)."""
    r = round(offload_step / step)
    if r < 1 or abs(r * step - offload_step) > 1e-9 * max(1.0, offload_step):
        raise ValueError(f"the offload step ({offload_step}) must be a multiple of the exit step ({step})")
    return np.concatenate([[-1], np.arange(r, round(1.0 / step) + 1, r)]).astype(np.int64)


@dataclass(frozen=True)
class ReferenceCosts:
    """A device's time for one reference model and for one offload, with where both numbers came from."""

    device: str
    model: str
    full_ms: float
    offload_ms: float
    cite: str


@functools.cache
def reference_costs(device: str = DEFAULT_DEVICE, model: str = DEFAULT_REF_MODEL,
                    link: str | None = None) -> ReferenceCosts:
    """The full-model and offload times of ``model`` on ``device`` from its profile (a name in
    ``hi_runtime/profiles/`` or a YAML path): the one place device constants live. Raises
    :class:`hi_runtime.device_profiles.ProfileError` when the profile lacks either number."""
    from hi_runtime.device_profiles import ProfileError, load_profile

    profile = load_profile(device)
    costs, offload = profile.model(model).latency_ms, profile.link(link).latency_ms
    if costs.value is None or offload.value is None:
        raise ProfileError(f"profile {profile.id!r} lacks the latency of {model!r} or of one offload over "
                           f"{link or profile.default_link}; give --full-ms and --offload-ms")
    return ReferenceCosts(profile.id, model, costs.value, offload.value, f"{costs.cite}; {offload.cite}")


@dataclass
class CostModel:
    """Cumulative device time (ms) to reach and evaluate each exit, and the cost of one offload
    (default: the reference device's, :func:`reference_costs`)."""

    exit_ms: list[float]
    offload_ms: float = field(default_factory=lambda: reference_costs().offload_ms)
    decider_ms: float = 0.0
    source: str = ""

    @classmethod
    def from_macs(cls, segment_macs: Sequence[int], full_ms: float | None = None,
                  ref_macs: int | None = None, offload_ms: float | None = None, source: str = "") -> CostModel:
        """Segment k costs ``full_ms * macs_k / ref_macs`` (``ref_macs``: the model ``full_ms`` was measured
        on; default the chain's own total). Unset times are the reference device's."""
        full_ms = reference_costs().full_ms if full_ms is None else full_ms
        offload_ms = reference_costs().offload_ms if offload_ms is None else offload_ms
        ref = ref_macs or int(sum(segment_macs))
        cum = np.cumsum([full_ms * m / ref for m in segment_macs])
        return cls([float(v) for v in cum], offload_ms, 0.0,
                   source or f"MAC-scaled: {full_ms} ms per {ref} MACs; {offload_ms} ms per offload")


@dataclass
class SearchData:
    """What the search needs per validation sample (E exits)."""

    confidence: np.ndarray  # [E, N] max softmax at each exit (dequantized int8)
    correct: np.ndarray  # [E, N] bool: the exit's class is right
    decider_z: np.ndarray | None = None  # [N] final decider's value on the logit scale: accept iff z >= logit(t)
    server_correct: np.ndarray | None = None  # [N] bool

    @property
    def num_exits(self) -> int:
        return int(self.confidence.shape[0])

    @property
    def n(self) -> int:
        return int(self.confidence.shape[1])

    @classmethod
    def from_probs(cls, exit_probs: Sequence[np.ndarray], labels: np.ndarray, decider: Decider | None = None,
                   server_pred: np.ndarray | None = None) -> SearchData:
        conf = np.stack([np.asarray(p, dtype=np.float64).max(axis=1) for p in exit_probs])
        corr = np.stack([np.asarray(p).argmax(axis=1) == labels for p in exit_probs])
        z = decider.decision_value(exit_probs[-1]) if decider is not None else None
        if decider is not None and decider.kind != "logistic":
            # a max-softmax decider keeps p1 >= t itself (no logit): the same rule on the logit scale the
            # grid compares on, since logit is increasing (one function, so p1 == t stays equal)
            z = np.array([logit(float(v)) for v in np.clip(z, 0.0, 1.0)])
        srv = (np.asarray(server_pred) == labels) if server_pred is not None else None
        return cls(conf, corr, z, srv)

    def evaluate_point(self, cost: CostModel, policy: str, exits: Sequence[float],
                       offloads: Sequence[float | None] | None, decider_threshold: float | None) -> dict[str, Any]:
        """Metrics of one threshold combination, sample by sample (the reference the grid must equal)."""
        e, n = self.num_exits, self.n
        exit_index = np.full(n, e - 1, dtype=np.int64)
        off = np.zeros(n, dtype=bool)
        undecided = np.ones(n, dtype=bool)
        for k in range(e - 1):
            here = self.confidence[k] >= exits[k]
            o = offloads[k] if offloads else None
            now = ~here & (self.confidence[k] < o) if o is not None else np.zeros(n, dtype=bool)
            stop = undecided & (here | now)
            exit_index[stop] = k
            off |= undecided & now
            undecided &= ~stop
        if policy != "ee":
            off |= undecided & ~(self.decider_z >= logit(float(decider_threshold)))
        local_ok = self.correct[exit_index, np.arange(n)]
        srv = self.server_correct if self.server_correct is not None else np.zeros(n, dtype=bool)
        ok = np.where(off, srv, local_ok)
        last = e - 1
        t = np.asarray(cost.exit_ms)[exit_index] + np.where(off, cost.offload_ms, 0.0)
        if policy != "ee":
            t = t + np.where(exit_index == last, cost.decider_ms, 0.0)
        return {"accuracy": float(ok.mean()), "cost_ms": float(t.mean()), "offload_ratio": float(off.mean()),
                "exit_fractions": [float(np.mean(exit_index == k)) for k in range(e)],
                "offload_fractions": [float(np.mean((exit_index == k) & off)) for k in range(e)]}


@dataclass
class GridPoint:
    """One threshold combination: exit thresholds, offload thresholds (None: never) and decider threshold."""

    exits: list[float]
    offloads: list[float | None]
    decider_threshold: float | None


class _BestPerCount:
    """The cheapest combination (first in grid order among equal costs) for each count of right samples."""

    def __init__(self, n: int) -> None:
        self.cost = np.full(n + 1, np.inf)
        self.index = np.full(n + 1, -1, dtype=np.int64)

    def update(self, counts: np.ndarray, cost: np.ndarray, to_flat: Callable[[np.ndarray], np.ndarray]) -> None:
        """Merge a block of combinations: ``counts``/``cost`` of one shape, ``to_flat`` maps positions in
        that block (row-major) to flat indices of the whole grid."""
        counts, cost = counts.ravel(), cost.ravel()
        lowest = np.full(len(self.cost), np.inf)
        np.minimum.at(lowest, counts, cost)
        pos = np.flatnonzero(cost == lowest[counts])
        c, f = counts[pos], to_flat(pos)
        order = np.lexsort((f, c))
        c, f = c[order], f[order]
        first = np.concatenate([[True], c[1:] != c[:-1]])
        c, f = c[first], f[first]
        cc = lowest[c]
        better = (cc < self.cost[c]) | ((cc == self.cost[c]) & (f < self.index[c]))
        self.cost[c[better]] = cc[better]
        self.index[c[better]] = f[better]


@dataclass
class GridResult:
    """A policy's search over its grid. ``shape``: (G,) * (E - 1) + (Gd,), or for the three-way policy
    (So, G) * (E - 1) + (Gd,) (offload index, exit index per early exit). Small grids keep the metric arrays
    (``accuracy`` etc., of that shape); large ones only the cheapest combination per accuracy level."""

    policy: str
    exit_grid: np.ndarray
    decider_grid: np.ndarray
    shape: tuple[int, ...]
    cost: CostModel
    data: SearchData
    offload_index: np.ndarray | None  # indices into exit_grid (-1: never); None: two-way policy
    best_per_count: _BestPerCount
    accuracy: np.ndarray | None = None
    cost_ms: np.ndarray | None = None
    offload: np.ndarray | None = None
    exit_fractions: list[np.ndarray] | None = None

    @property
    def num_exits(self) -> int:
        return self.data.num_exits

    @property
    def three_way(self) -> bool:
        return self.offload_index is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def point(self, flat_index: int) -> GridPoint:
        idx = np.unravel_index(int(flat_index), self.shape)
        e1 = self.num_exits - 1
        if self.three_way:
            offs = [None if self.offload_index[idx[2 * k]] < 0 else float(self.exit_grid[self.offload_index[idx[2 * k]]])
                    for k in range(e1)]
            exits = [float(self.exit_grid[idx[2 * k + 1]]) for k in range(e1)]
        else:
            offs = [None] * e1
            exits = [float(self.exit_grid[i]) for i in idx[:-1]]
        d = float(self.decider_grid[idx[-1]]) if self.policy != "ee" else None
        return GridPoint(exits, offs, d)

    def thresholds_at(self, flat_index: int) -> tuple[list[float], float | None]:
        p = self.point(flat_index)
        return p.exits, p.decider_threshold

    def metrics_at(self, flat_index: int) -> dict[str, Any]:
        p = self.point(flat_index)
        return self.data.evaluate_point(self.cost, self.policy, p.exits, p.offloads, p.decider_threshold)

    def row(self, flat_index: int) -> dict[str, Any]:
        p = self.point(flat_index)
        r: dict[str, Any] = {f"t{k + 1}": ("never" if t == NEVER else t) for k, t in enumerate(p.exits)}
        if self.three_way:
            r.update({f"o{k + 1}": ("never" if o is None else o) for k, o in enumerate(p.offloads)})
        if self.policy != "ee":
            r["decider_threshold"] = p.decider_threshold
        m = self.metrics_at(flat_index)
        r.update({"accuracy": m["accuracy"], "cost_ms": m["cost_ms"], "offload_ratio": m["offload_ratio"]})
        for k, fr in enumerate(m["exit_fractions"]):
            r[f"exit{k + 1}_fraction" if k < self.num_exits - 1 else "final_fraction"] = fr
        if self.three_way:
            for k, fr in enumerate(m["offload_fractions"][:-1]):
                r[f"exit{k + 1}_offload_fraction"] = fr
        return r

    def _front_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = self.best_per_count
        counts = np.flatnonzero(b.index >= 0)
        return counts, b.cost[counts], b.index[counts]

    def best(self, min_accuracy: float) -> int | None:
        """Flat index of the cheapest combination with accuracy >= target (ties: higher accuracy, then
        the first in grid order)."""
        counts, cost, index = self._front_arrays()
        ok = counts / self.data.n >= min_accuracy - 1e-12
        if not ok.any():
            return None
        cost = np.where(ok, cost, np.inf)
        cands = np.flatnonzero(cost <= cost.min() + 1e-12)
        return int(index[cands[-1]])  # counts ascend: the last candidate is the most accurate

    def _pareto_positions(self) -> np.ndarray:
        counts, cost, _ = self._front_arrays()
        keep = []
        best = np.inf
        for i in range(len(counts) - 1, -1, -1):  # from the most accurate down: keep what is strictly cheaper
            if cost[i] < best - 1e-12:
                keep.append(i)
                best = cost[i]
        return np.array(keep[::-1], dtype=np.int64)

    def pareto(self) -> np.ndarray:
        """Flat indices of the cost/accuracy Pareto front, in increasing cost."""
        return self._front_arrays()[2][self._pareto_positions()]

    def front(self) -> tuple[np.ndarray, np.ndarray]:
        """(cost ms, accuracy) of the Pareto front, in increasing cost."""
        counts, cost, _ = self._front_arrays()
        pos = self._pareto_positions()
        return cost[pos] / self.data.n, counts[pos] / self.data.n


# ----------------------------------------------------------------------------------------------------
# The histogram engine
# ----------------------------------------------------------------------------------------------------

def _bins(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Number of grid thresholds <= value: the sample passes "value >= t_j" exactly for j < bins."""
    return np.searchsorted(grid, values, side="right").astype(np.int64)


def _hist(bins: list[np.ndarray], sizes: list[int], weights: np.ndarray) -> np.ndarray:
    """[M, size_0 + 1, size_1 + 1, ...]: per metric m the sum of weights[m] of the samples in each cell."""
    shape = [s + 1 for s in sizes]
    weights = np.asarray(weights, dtype=np.float64)
    if not bins:
        return weights.sum(axis=1)
    flat = np.ravel_multi_index(bins, shape)
    cells = int(np.prod(shape))
    return np.stack([np.bincount(flat, weights=w, minlength=cells) for w in weights]).reshape([len(weights)] + shape)


def _cum0(h: np.ndarray, p: int) -> np.ndarray:
    """Cumulative sums along axis p with a leading 0: index x + 1 holds sum_{b <= x}, index 0 holds 0."""
    pad = [(0, 0)] * h.ndim
    pad[p] = (1, 0)
    return np.pad(np.cumsum(h, axis=p), pad)


def _prefix(h: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Cumulative sums (``_cum0``) along each of ``axes``: taken once, since a cumulative sum along one axis
    commutes with picking indices along another, every chunk then only picks and subtracts."""
    for p in axes:
        h = _cum0(h, p)
    return h


def _above(cz: np.ndarray, p: int, j: np.ndarray) -> np.ndarray:
    """sum_{b > j} along axis p of a prefix table, for each j: the samples that pass threshold index j."""
    return np.take(cz, [cz.shape[p] - 1], axis=p) - np.take(cz, j + 1, axis=p)


def _at_most(cz: np.ndarray, p: int, j: np.ndarray) -> np.ndarray:
    """sum_{b <= j} along axis p of a prefix table."""
    return np.take(cz, j + 1, axis=p)


def _continue(cz: np.ndarray, p: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Axis p of a prefix table becomes axes (offload index i, exit index j): the sum over i < b <= j
    (0 when i >= j), i.e. the samples that neither exit nor are offloaded there."""
    cj = np.expand_dims(np.take(cz, j + 1, axis=p), p)
    ci = np.expand_dims(np.take(cz, i + 1, axis=p), p + 1)
    out = cj - ci
    out *= (i[:, None] < j[None, :]).reshape((1,) * p + (len(i), len(j)) + (1,) * (cz.ndim - p - 1))
    return out


def _offload_now(cz: np.ndarray, p: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Axis p of a prefix table becomes (i, j): the sum over b <= min(i, j) (did not exit, and below the
    offload threshold)."""
    m = np.minimum(i[:, None], j[None, :]) + 1
    out = np.take(cz, m.ravel(), axis=p)
    return out.reshape(cz.shape[:p] + (len(i), len(j)) + cz.shape[p + 1:])


@dataclass
class _Weights:
    """Per metric (axis 0) the weight of each outcome: exit at k, offload at k, final accept/offload."""

    exit: list[np.ndarray]
    offload_now: list[np.ndarray]
    accept: np.ndarray
    offload: np.ndarray


@dataclass
class _Tables:
    """Prefix tables of the outcome histograms (axis 0: metric; then one axis per exit's bins)."""

    final: np.ndarray  # decided at the final exit: [M, B_0 + 1, ..., B_{E-2} + 1, Gd]
    exit: list[np.ndarray]  # [M, B_0 + 1, ..., B_k + 1] for exit k
    offload_now: list[np.ndarray | None]


def _tables(exit_bins: list[np.ndarray], dbins: np.ndarray, g: int, gd: int, w: _Weights,
            three_way: bool) -> _Tables:
    e1 = len(exit_bins)
    d = np.arange(gd)
    hacc = _cum0(_hist(exit_bins + [dbins], [g] * e1 + [gd], w.accept), 1 + e1)
    hoff = _cum0(_hist(exit_bins + [dbins], [g] * e1 + [gd], w.offload), 1 + e1)
    final = _prefix(_above(hacc, 1 + e1, d) + _at_most(hoff, 1 + e1, d), range(1, 1 + e1))
    ex = [_prefix(_hist(exit_bins[:k + 1], [g] * (k + 1), w.exit[k]), range(1, k + 2)) for k in range(e1)]
    now = [_prefix(_hist(exit_bins[:k + 1], [g] * (k + 1), w.offload_now[k]), range(1, k + 2)) if three_way
           else None for k in range(e1)]
    return _Tables(final, ex, now)


def _grid_sums(t: _Tables, g: int, offload_index: list[np.ndarray], j0: np.ndarray) -> np.ndarray:
    """Metric sums [M, So_0, J_0, So_1, G, ..., Gd] for the first exit's exit indices ``j0``."""
    e1 = len(t.exit)
    js = [j0] + [np.arange(g)] * (e1 - 1)

    def arrive(cz: np.ndarray, upto: int) -> np.ndarray:
        for k in range(upto):  # the axis of exit k's bins sits at 1 + 2k once the earlier ones are expanded
            cz = _continue(cz, 1 + 2 * k, offload_index[k], js[k])
        return cz

    total = arrive(t.final, e1)
    for k in range(e1):
        tail = (1,) * (2 * (e1 - 1 - k) + 1)
        ex = np.expand_dims(_above(arrive(t.exit[k], k), 1 + 2 * k, js[k]), 1 + 2 * k)
        total += ex.reshape(ex.shape + tail)
        if t.offload_now[k] is not None:
            on = _offload_now(arrive(t.offload_now[k], k), 1 + 2 * k, offload_index[k], js[k])
            total += on.reshape(on.shape + tail)
    return total


def evaluate_grid(data: SearchData, cost: CostModel, policy: str = "ee-hi", *, step: float = 0.01,
                  offload_step: float = 0.05, dense: bool | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  decider_extra: Sequence[float] = ()) -> GridResult:
    """Expected accuracy, cost, offload ratio and exit fractions over every threshold combination.

    ``decider_extra``: decider thresholds searched besides the grid's, e.g. the decider's own (the shipped
    operating point), so that a target it meets exactly is not met only by the next grid step.

    ``dense``: keep the full metric arrays (default: when the grid has at most ``DENSE_MAX_CELLS``
    combinations); otherwise the grid is evaluated in chunks of the first exit's threshold and only the
    cheapest combination per accuracy level is kept. ``progress(done, total)`` is called per chunk."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose {', '.join(POLICIES)}")
    e = data.num_exits
    if len(cost.exit_ms) != e:
        raise ValueError(f"cost model has {len(cost.exit_ms)} exit times but the data has {e} exits")
    if policy == "hi" and e != 1:
        raise ValueError("policy 'hi' is a single-exit model with a decider; use 'ee-hi' for early exits")
    if policy == THREE_WAY and e < 2:
        raise ValueError(f"policy {THREE_WAY!r} needs an early exit (a chain of at least two segments)")
    exit_grid = threshold_grid(step, never=True)
    g = len(exit_grid)
    n = data.n
    e1 = e - 1
    exit_bins = [_bins(data.confidence[k], exit_grid) for k in range(e1)]
    if policy == "ee":
        decider_grid = np.array([0.0])
        dbins = np.ones(n, dtype=np.int64)  # always accepted
        srv = np.zeros(n)
    else:
        if data.decider_z is None or data.server_correct is None:
            raise ValueError(f"policy {policy!r} needs the final decider's values and the server's correctness")
        decider_grid = np.unique(np.concatenate([threshold_grid(step, never=False),
                                                 np.asarray(list(decider_extra), dtype=np.float64)]))
        zt = np.array([logit(float(t)) for t in decider_grid])
        dbins = _bins(data.decider_z, zt)  # accepted iff z >= zt_j iff j < bins
        srv = data.server_correct.astype(np.float64)
    gd = len(decider_grid)
    three = policy == THREE_WAY
    offs = [offload_grid_indices(step, offload_step) if three else np.array([-1]) for _ in range(e1)]
    full_shape = tuple(x for k in range(e1) for x in (len(offs[k]), g)) + (gd,)
    shape = full_shape if three else tuple([g] * e1 + [gd])
    size = int(np.prod(full_shape))
    dense = size <= DENSE_MAX_CELLS if dense is None else dense

    final_ms = cost.exit_ms[-1] + (cost.decider_ms if policy != "ee" else 0.0)
    ones, zeros = np.ones(n), np.zeros(n)
    corr = data.correct.astype(np.float64)
    rows_exit = [[corr[k], ones * cost.exit_ms[k], zeros] for k in range(e1)]
    rows_now = [[srv, ones * (cost.exit_ms[k] + cost.offload_ms), ones] for k in range(e1)]
    rows_acc, rows_off = [corr[-1], ones * final_ms, zeros], [srv, ones * (final_ms + cost.offload_ms), ones]
    if dense:  # + one fraction per exit (offloading at exit k counts as exit k)
        for k in range(e1):
            for m in range(e):
                rows_exit[k].append(ones if m == k else zeros)
                rows_now[k].append(ones if m == k else zeros)
        rows_acc += [ones if m == e1 else zeros for m in range(e)]
        rows_off += [ones if m == e1 else zeros for m in range(e)]
    else:
        rows_exit = [r[:2] for r in rows_exit]
        rows_now = [r[:2] for r in rows_now]
        rows_acc, rows_off = rows_acc[:2], rows_off[:2]
    w = _Weights([np.stack(r) for r in rows_exit], [np.stack(r) for r in rows_now], np.stack(rows_acc),
                 np.stack(rows_off))
    best = _BestPerCount(n)
    tables = _tables(exit_bins, dbins, g, gd, w, three)
    if e1 == 0 or dense:
        sums = _grid_sums(tables, g, offs, np.arange(g))
        best.update(np.rint(sums[0]).astype(np.int64), sums[1], lambda pos: pos)
        res = GridResult(policy, exit_grid, decider_grid, shape, cost, data, offs[0] if three else None, best,
                         accuracy=(sums[0] / n).reshape(shape), cost_ms=(sums[1] / n).reshape(shape),
                         offload=(sums[2] / n).reshape(shape),
                         exit_fractions=[(sums[3 + m] / n).reshape(shape) for m in range(e)])
        if progress:
            progress(1, 1)
        return res
    per_j0 = 2 * size // g  # floats per first-exit threshold
    cs = max(1, CHUNK_CELLS // per_j0)
    strides = np.cumprod((full_shape[1:] + (1,))[::-1])[::-1]  # row-major strides of the full shape
    chunks = list(range(0, g, cs))
    for c, start in enumerate(chunks):
        j0 = np.arange(start, min(g, start + cs))
        sums = _grid_sums(tables, g, offs, j0)
        cshape = sums.shape[1:]

        def to_flat(pos: np.ndarray, cshape=cshape, j0=j0) -> np.ndarray:
            a, j, rest = np.unravel_index(pos, (cshape[0], cshape[1], int(np.prod(cshape[2:]))))
            return a * strides[0] + j0[j] * strides[1] + rest

        best.update(np.rint(sums[0]).astype(np.int32), sums[1], to_flat)
        if progress:
            progress(c + 1, len(chunks))
    return GridResult(policy, exit_grid, decider_grid, shape, cost, data, offs[0] if three else None, best)


# ----------------------------------------------------------------------------------------------------
# Applying a chosen point with the runtime policy (test-split evaluation)
# ----------------------------------------------------------------------------------------------------

@dataclass
class PolicyEvaluation:
    accuracy: float
    cost_ms: float
    offload_ratio: float
    exit_fractions: list[float]
    n: int
    offload_fractions: list[float] = field(default_factory=list)  # offloaded at exit k (last: by the decider)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "cost_ms": self.cost_ms, "offload_ratio": self.offload_ratio,
                "exit_fractions": self.exit_fractions, "offload_fractions": self.offload_fractions, "n": self.n,
                **self.extra}


def evaluate_outcome(outcome: PolicyOutcome, labels: np.ndarray, server_pred: np.ndarray | None,
                     cost: CostModel, *, has_decider: bool) -> PolicyEvaluation:
    """System accuracy and expected cost of a runtime :class:`PolicyOutcome`."""
    n = len(labels)
    local_ok = outcome.predicted == labels
    if outcome.offload.any() and server_pred is None:
        raise ValueError("samples were offloaded but no server predictions were given")
    srv_ok = (server_pred == labels) if server_pred is not None else np.zeros(n, dtype=bool)
    ok = np.where(outcome.offload, srv_ok, local_ok)
    t = np.asarray(cost.exit_ms)[outcome.exit_index]
    last = len(cost.exit_ms) - 1
    t = t + np.where((outcome.exit_index == last) & has_decider, cost.decider_ms, 0.0)
    t = t + np.where(outcome.offload, cost.offload_ms, 0.0)
    fr = [float(np.mean(outcome.exit_index == k)) for k in range(len(cost.exit_ms))]
    of = [float(np.mean((outcome.exit_index == k) & outcome.offload)) for k in range(len(cost.exit_ms))]
    return PolicyEvaluation(float(ok.mean()), float(t.mean()), float(outcome.offload.mean()), fr, n, of)


def apply_point(exit_raw: Sequence[np.ndarray], quants, labels: np.ndarray, server_pred: np.ndarray | None,
                cost: CostModel, exits: Sequence[float], decider: Decider | None,
                offloads: Sequence[float | None] | None = None) -> PolicyEvaluation:
    """Run the runtime policy (exact int8 form) on raw int8 exit scores and score the outcome."""
    pol = ExitPolicy(list(exits), decider, None if offloads is None else list(offloads))
    out = pol.decide(list(exit_raw), quants)
    return evaluate_outcome(out, labels, server_pred, cost, has_decider=decider is not None)


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------

def write_pareto_csv(results: Sequence[GridResult], path: str | Path) -> Path:
    """One CSV with the Pareto front of each policy (column ``policy``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in results:
        for i in r.pareto():
            rows.append({"policy": r.policy, **r.row(int(i))})
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def plot_pareto(results: Sequence[GridResult], path: str | Path, *,
                chosen: Sequence[tuple[str, dict]] | None = None, title: str = "") -> Path:
    """Accuracy vs expected cost: each policy's Pareto front (matplotlib Agg) and, as markers in the
    front's color, the points chosen for the QoS targets (``(policy, {"cost_ms", "accuracy"})``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    colors = {}
    styles = {"ee": ":", "ee-hi": "-", THREE_WAY: "-.", "hi": "--"}
    for r in results:
        cost, acc = r.front()
        (line,) = ax.step(cost, 100 * acc, where="post", ls=styles.get(r.policy, "-"), lw=1.4,
                          label=r.policy.upper())
        colors[r.policy] = line.get_color()
    marks = {"ee": "s", "ee-hi": "o", THREE_WAY: "D", "hi": "^"}
    for pol, pt in chosen or []:
        ax.plot(pt["cost_ms"], 100 * pt["accuracy"], marks.get(pol, "o"), ms=5, color=colors.get(pol, "k"),
                mfc="none")
    ax.set_xlabel("expected latency per sample (ms)")
    ax.set_ylabel("system accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", title="front (markers: chosen per QoS)", title_fontsize=7, fontsize=8)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------
# Test vectors of a chain's policy for the C firmware
# ----------------------------------------------------------------------------------------------------

def write_ee_vectors(chain, exit_raw: Sequence[np.ndarray], path: str | Path, *, n_boundary: int = 40,
                     seed: int = 0, note: str = "") -> Path:
    """Test vectors for the C firmware's early-exit policy: per case the raw int8 scores of every exit
    and the expected exit, class and offload decision (exact int8 form). Besides the given rows, cases
    whose exit-k maximum sits exactly on, and one step below, the integer exit bound, and (three-way
    policy) on and one step below the offload bound, are added."""
    from training.decider import json_one_case_per_line

    quants = chain.scores_quants()
    pol = chain.policy
    rng = np.random.default_rng(seed)
    rows = [np.asarray(r).astype(np.int64) for r in exit_raw]  # [E] of [N, C]
    bounds = pol.exit_bounds_int8(quants[:-1])
    off_bounds = pol.offload_bounds_int8(quants[:-1])
    extra: list[list[np.ndarray]] = [[] for _ in rows]
    for k, q in enumerate(quants[:-1]):
        edges = [bounds[k]] + ([off_bounds[k]] if off_bounds[k] is not None else [])
        for b in edges:
            for i in rng.choice(len(rows[0]), size=min(n_boundary, len(rows[0])), replace=False):
                for delta in (-1, 0):
                    top = b + delta + q.zero_point
                    if not -128 <= top <= 127:
                        continue
                    case = [r[i].copy() for r in rows]
                    s = np.minimum(case[k], top)
                    s[int(np.argmax(case[k]))] = top
                    case[k] = s
                    for m in range(len(rows)):
                        extra[m].append(case[m])
    allrows = [np.concatenate([r, np.array(e, dtype=np.int64).reshape(-1, r.shape[1])]) for r, e in zip(rows, extra)]
    out = pol.decide([a.astype(np.int8) for a in allrows], quants)
    data: dict[str, Any] = {
        "format": "hi-ee-vectors/1",
        "note": note or "raw int8 scores of every exit -> exit taken, class, offload (exact int8 policy)",
        "exit_thresholds": [None if t == NEVER else t for t in pol.thresholds],
        "exit_bounds_int8": bounds,
    }
    if pol.three_way:  # absent for the two-way policy, so its vectors stay as they were
        data["offload_thresholds"] = list(pol.offload_thresholds)
        data["offload_bounds_int8"] = off_bounds
    data.update({
        "scores_quant": [q.to_dict() for q in quants],
        "final_decider": pol.decider.to_dict() if pol.decider is not None else None,
        "rule": ("at non-final exit k: exit iff max(q_k) - zero_point_k >= exit_bounds_int8[k], else (when "
                 "offload_bounds_int8[k] is not null) offload iff max(q_k) - zero_point_k < offload_bounds_int8[k], "
                 "else continue; class = first index of the maximum; at the final exit offload iff the decider's "
                 "integer form rejects") if pol.three_way else
                "exit at the first non-final exit k with max(q_k) - zero_point_k >= exit_bounds_int8[k]; class = "
                "first index of the maximum; at the final exit offload iff the decider's integer form rejects",
        "cases": [{"scores": [a[i].tolist() for a in allrows], "exit": int(out.exit_index[i]),
                   "class": int(out.predicted[i]), "offload": bool(out.offload[i])} for i in range(len(allrows[0]))],
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_one_case_per_line(data))
    return path
