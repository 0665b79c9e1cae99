"""Brute-force search of early-exit thresholds (and the final decider's threshold) on the validation split:
the procedure behind the paper's Table 6.

For every combination of exit thresholds on a grid (step 0.01 from 0 to 1, plus "never exit") and, for
EE-HI, every decider threshold (step 0.01), the expected system accuracy and expected cost per sample are
computed; the cheapest combination whose accuracy reaches the QoS target wins. Policies:

* ``ee``: exits only; the final exit always answers locally;
* ``ee-hi``: exits, then the decider at the final exit offloads to the server (HI is the special case
  "never exit");
* ``hi``: a plain model (one exit) with its decider: the baseline.

Cost per sample (ms) = device time up to the exit taken (from each segment's MACs scaled to a measured
full-model time, or measured per-segment times) + the offload cost if offloaded. The paper's Raspberry Pi 4
constants are the defaults: full ResNet-8 1.63 ms, 9.68 ms per offload.

Why it is fast: a sample's outcome depends on each threshold only through "is my confidence above it", so
every sample falls in one cell of a histogram over (grid position per exit, decider position), and the
metric of every grid combination is a sum of cumulative sums of that histogram. The 2-exit + decider grid
(102 x 102 x 101 ~ 1 M combinations) takes well under a second for 5,000 samples, instead of 5e9
sample-combination evaluations.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hi_runtime.decider import Decider, logit
from hi_runtime.early_exit import NEVER, ExitPolicy, PolicyOutcome

PI4_FULL_RESNET8_MS = 1.63  # paper, Raspberry Pi 4, ResNet-8 (project issue anchor)
PI4_OFFLOAD_MS = 9.68  # paper, Raspberry Pi 4, one offload over WiFi (project issue anchor)
POLICIES = ("ee", "ee-hi", "hi")


def threshold_grid(step: float = 0.01, never: bool = True) -> np.ndarray:
    """0, step, ..., 1 (rounded to the step's decimals), plus +inf ("never exit") for exits."""
    n = round(1.0 / step)
    decimals = max(0, -math.floor(math.log10(step)))
    g = np.round(np.arange(n + 1) * step, decimals)
    return np.concatenate([g, [NEVER]]) if never else g


@dataclass
class CostModel:
    """Cumulative device time (ms) to reach and evaluate each exit, and the cost of one offload."""

    exit_ms: list[float]
    offload_ms: float = PI4_OFFLOAD_MS
    decider_ms: float = 0.0
    source: str = ""

    @classmethod
    def from_macs(cls, segment_macs: Sequence[int], full_ms: float = PI4_FULL_RESNET8_MS,
                  ref_macs: int | None = None, offload_ms: float = PI4_OFFLOAD_MS, source: str = "") -> CostModel:
        """Segment k costs ``full_ms * macs_k / ref_macs`` (``ref_macs``: the model ``full_ms`` was measured
        on; default the chain's own total)."""
        ref = ref_macs or int(sum(segment_macs))
        cum = np.cumsum([full_ms * m / ref for m in segment_macs])
        return cls([float(v) for v in cum], offload_ms, 0.0,
                   source or f"MAC-scaled: {full_ms} ms per {ref} MACs; {offload_ms} ms per offload")


@dataclass
class SearchData:
    """What the search needs per validation sample (E exits)."""

    confidence: np.ndarray  # [E, N] max softmax at each exit (dequantized int8)
    correct: np.ndarray  # [E, N] bool: the exit's class is right
    decider_z: np.ndarray | None = None  # [N] final decider's decision value
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
        srv = (np.asarray(server_pred) == labels) if server_pred is not None else None
        return cls(conf, corr, z, srv)


@dataclass
class GridResult:
    """Metrics over the grid; arrays have shape (G,) * (E - 1) + (Gd,)."""

    policy: str
    exit_grid: np.ndarray
    decider_grid: np.ndarray
    accuracy: np.ndarray
    cost_ms: np.ndarray
    offload: np.ndarray
    exit_fractions: list[np.ndarray]
    cost: CostModel

    @property
    def num_exits(self) -> int:
        return len(self.exit_fractions)

    def thresholds_at(self, flat_index: int) -> tuple[list[float], float | None]:
        idx = np.unravel_index(flat_index, self.accuracy.shape)
        exits = [float(self.exit_grid[i]) for i in idx[:-1]]
        d = float(self.decider_grid[idx[-1]]) if self.policy != "ee" else None
        return exits, d

    def row(self, flat_index: int) -> dict[str, Any]:
        exits, d = self.thresholds_at(flat_index)
        r: dict[str, Any] = {f"t{k + 1}": ("never" if t == NEVER else t) for k, t in enumerate(exits)}
        if self.policy != "ee":
            r["decider_threshold"] = d
        r.update({"accuracy": float(self.accuracy.flat[flat_index]), "cost_ms": float(self.cost_ms.flat[flat_index]),
                  "offload_ratio": float(self.offload.flat[flat_index])})
        for k, fr in enumerate(self.exit_fractions):
            r[f"exit{k + 1}_fraction" if k < self.num_exits - 1 else "final_fraction"] = float(fr.flat[flat_index])
        return r

    def best(self, min_accuracy: float) -> int | None:
        """Flat index of the cheapest combination with accuracy >= target (ties: higher accuracy, then
        the first in grid order)."""
        ok = self.accuracy >= min_accuracy - 1e-12
        if not ok.any():
            return None
        cost = np.where(ok, self.cost_ms, np.inf).ravel()
        cands = np.flatnonzero(cost <= cost.min() + 1e-12)
        return int(cands[np.argmax(self.accuracy.ravel()[cands])])

    def pareto(self) -> np.ndarray:
        """Flat indices of the cost/accuracy Pareto front, in increasing cost."""
        cost, acc = self.cost_ms.ravel(), self.accuracy.ravel()
        order = np.lexsort((-acc, cost))
        a = acc[order]
        prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(a)[:-1]])
        return order[a > prev_best + 1e-12].astype(np.int64)


def _bins(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Number of grid thresholds <= value: the sample passes "value >= t_j" exactly for j < bins."""
    return np.searchsorted(grid, values, side="right").astype(np.int64)


def _hist(bins: list[np.ndarray], sizes: list[int], weights: np.ndarray) -> np.ndarray:
    shape = [s + 1 for s in sizes]
    if not bins:
        return np.asarray(weights, dtype=np.float64).sum().reshape(())
    flat = np.ravel_multi_index(bins, shape)
    return np.bincount(flat, weights=np.asarray(weights, dtype=np.float64), minlength=int(np.prod(shape))).reshape(shape)


def _le(h: np.ndarray, axis: int, size: int) -> np.ndarray:
    """F[j] = sum_{c <= j} h[c] for j < size."""
    return np.take(np.cumsum(h, axis=axis), np.arange(size), axis=axis)


def _gt(h: np.ndarray, axis: int, size: int) -> np.ndarray:
    """F[j] = sum_{c > j} h[c] for j < size."""
    rev = np.flip(np.cumsum(np.flip(h, axis=axis), axis=axis), axis=axis)  # sum_{c >= j}
    return np.take(rev, np.arange(1, size + 1), axis=axis)


def grid_sum(exit_bins: list[np.ndarray], decider_bins: np.ndarray, g: int, gd: int,
             w_exit: list[np.ndarray], w_accept: np.ndarray, w_offload: np.ndarray) -> np.ndarray:
    """Sum over samples of the weight of the outcome each sample has, for every grid combination.

    ``exit_bins[k][i]``: sample i exits at early exit k for threshold index j iff j < exit_bins[k][i];
    ``decider_bins[i]``: it is accepted at the final exit for decider index j iff j < decider_bins[i].
    ``w_exit[k]``: weight if it exits at early exit k; ``w_accept``/``w_offload`` at the final exit."""
    e1 = len(exit_bins)
    shape = (g,) * e1 + (gd,)
    total = np.zeros(shape)
    for k in range(e1):
        h = _hist(exit_bins[:k + 1], [g] * (k + 1), w_exit[k])
        for m in range(k):
            h = _le(h, m, g)
        h = _gt(h, k, g)
        total += h.reshape(h.shape + (1,) * (e1 - k - 1) + (1,))
    for w, below in ((w_accept, False), (w_offload, True)):
        h = _hist(exit_bins + [decider_bins], [g] * e1 + [gd], w)
        for m in range(e1):
            h = _le(h, m, g)
        h = _le(h, e1, gd) if below else _gt(h, e1, gd)
        total += h
    return total


def evaluate_grid(data: SearchData, cost: CostModel, policy: str = "ee-hi", *, step: float = 0.01) -> GridResult:
    """Expected accuracy, cost, offload ratio and exit fractions for every threshold combination."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose {', '.join(POLICIES)}")
    e = data.num_exits
    if len(cost.exit_ms) != e:
        raise ValueError(f"cost model has {len(cost.exit_ms)} exit times but the data has {e} exits")
    if policy == "hi" and e != 1:
        raise ValueError("policy 'hi' is a single-exit model with a decider; use 'ee-hi' for early exits")
    exit_grid = threshold_grid(step, never=True)
    g = len(exit_grid)
    n = data.n
    exit_bins = [_bins(data.confidence[k], exit_grid) for k in range(e - 1)]
    if policy == "ee":
        decider_grid = np.array([0.0])
        dbins = np.ones(n, dtype=np.int64)  # always accepted
        srv = np.zeros(n, dtype=bool)
    else:
        if data.decider_z is None or data.server_correct is None:
            raise ValueError(f"policy {policy!r} needs the final decider's values and the server's correctness")
        decider_grid = threshold_grid(step, never=False)
        zt = np.array([logit(float(t)) for t in decider_grid])
        dbins = _bins(data.decider_z, zt)  # accepted iff z >= zt_j iff j < bins
        srv = data.server_correct
    gd = len(decider_grid)
    final_ms = cost.exit_ms[-1] + (cost.decider_ms if policy != "ee" else 0.0)
    ones = np.ones(n)
    zeros = np.zeros(n)
    correct = data.correct.astype(np.float64)

    def gs(w_exit, w_acc, w_off):
        return grid_sum(exit_bins, dbins, g, gd, w_exit, w_acc, w_off) / n

    acc = gs([correct[k] for k in range(e - 1)], correct[-1], srv.astype(np.float64))
    cst = gs([ones * cost.exit_ms[k] for k in range(e - 1)], ones * final_ms, ones * (final_ms + cost.offload_ms))
    off = gs([zeros] * (e - 1), zeros, ones)
    fracs = [gs([ones if m == k else zeros for m in range(e - 1)], zeros, zeros) for k in range(e - 1)]
    fracs.append(gs([zeros] * (e - 1), ones, ones))
    return GridResult(policy, exit_grid, decider_grid, acc, cst, off, fracs, cost)


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
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "cost_ms": self.cost_ms, "offload_ratio": self.offload_ratio,
                "exit_fractions": self.exit_fractions, "n": self.n, **self.extra}


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
    return PolicyEvaluation(float(ok.mean()), float(t.mean()), float(outcome.offload.mean()), fr, n)


def apply_point(exit_raw: Sequence[np.ndarray], quants, labels: np.ndarray, server_pred: np.ndarray | None,
                cost: CostModel, exits: Sequence[float], decider: Decider | None) -> PolicyEvaluation:
    """Run the runtime policy (exact int8 form) on raw int8 exit scores and score the outcome."""
    pol = ExitPolicy(list(exits), decider)
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
    styles = {"ee": ":", "ee-hi": "-", "hi": "--"}
    for r in results:
        idx = r.pareto()
        (line,) = ax.step(r.cost_ms.ravel()[idx], 100 * r.accuracy.ravel()[idx], where="post",
                          ls=styles.get(r.policy, "-"), lw=1.4, label=r.policy.upper())
        colors[r.policy] = line.get_color()
    marks = {"ee": "s", "ee-hi": "o", "hi": "^"}
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
