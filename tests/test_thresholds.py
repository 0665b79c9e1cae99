"""Threshold search: the vectorized grid equals a naive brute force; a constructed case's optimum is found."""
from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from hi_runtime.decider import Decider, logit
from hi_runtime.early_exit import NEVER, ExitPolicy, Quant
from training.thresholds import (
    CostModel,
    SearchData,
    apply_point,
    evaluate_grid,
    plot_pareto,
    threshold_grid,
    write_pareto_csv,
)


def naive(data: SearchData, cost: CostModel, exits, dthr, policy):
    n = data.n
    acc = c = off = 0.0
    for i in range(n):
        for k, t in enumerate(exits):
            if data.confidence[k, i] >= t:
                acc += data.correct[k, i]
                c += cost.exit_ms[k]
                break
        else:
            c += cost.exit_ms[-1] + (cost.decider_ms if policy != "ee" else 0)
            if policy == "ee" or data.decider_z[i] >= logit(dthr):
                acc += data.correct[-1, i]
            else:
                acc += data.server_correct[i]
                c += cost.offload_ms
                off += 1
    return acc / n, c / n, off / n


@pytest.mark.parametrize("exits,policy", [(3, "ee-hi"), (3, "ee"), (2, "ee-hi"), (1, "hi")])
def test_grid_equals_naive_brute_force(exits, policy):
    rng = np.random.default_rng(exits)
    n = 120
    data = SearchData(confidence=rng.random((exits, n)), correct=rng.random((exits, n)) < 0.7,
                      decider_z=rng.normal(size=n), server_correct=rng.random(n) < 0.9)
    cost = CostModel([1.0, 2.5, 3.0][:exits], offload_ms=10.0, decider_ms=0.2)
    g = evaluate_grid(data, cost, policy, step=0.25)
    for idx in itertools.product(*[range(s) for s in g.accuracy.shape]):
        ex = [g.exit_grid[j] for j in idx[:-1]]
        d = g.decider_grid[idx[-1]]
        a, c, o = naive(data, cost, ex, d, policy)
        assert g.accuracy[idx] == pytest.approx(a, abs=1e-12)
        assert g.cost_ms[idx] == pytest.approx(c, abs=1e-12)
        assert g.offload[idx] == pytest.approx(o, abs=1e-12)
        assert sum(f[idx] for f in g.exit_fractions) == pytest.approx(1.0)


def test_constructed_case_optimum():
    """Half the samples are easy (confidence 0.95 at exit 1, right), a quarter medium (0.6 at exit 1 and
    wrong there, 0.9 and right at exit 2), a quarter hard (wrong everywhere locally; decider score low,
    server right). With costs 1/2/3 ms and 10 ms per offload, the only way to 100% accuracy at minimum cost
    is: exit 1 for confidence >= t1 in (0.6, 0.95], exit 2 for t2 in (0.3, 0.9] (hard samples have 0.3),
    offload the hard ones (decider threshold between their score and the others')."""
    n_e, n_m, n_h = 50, 25, 25
    conf1 = np.r_[np.full(n_e, 0.95), np.full(n_m, 0.6), np.full(n_h, 0.3)]
    conf2 = np.r_[np.full(n_e, 0.97), np.full(n_m, 0.9), np.full(n_h, 0.3)]
    conf3 = np.r_[np.full(n_e, 0.99), np.full(n_m, 0.95), np.full(n_h, 0.35)]
    c1 = np.r_[np.ones(n_e), np.zeros(n_m + n_h)].astype(bool)
    c2 = np.r_[np.ones(n_e + n_m), np.zeros(n_h)].astype(bool)
    c3 = c2.copy()
    z = np.r_[np.full(n_e + n_m, 3.0), np.full(n_h, -3.0)]  # sigmoid: 0.953 vs 0.047
    data = SearchData(np.stack([conf1, conf2, conf3]), np.stack([c1, c2, c3]), z, np.ones(100, dtype=bool))
    cost = CostModel([1.0, 2.0, 3.0], offload_ms=10.0)
    g = evaluate_grid(data, cost, "ee-hi")
    best = g.best(1.0)
    exits, dthr = g.thresholds_at(best)
    expected_cost = (n_e * 1 + n_m * 2 + n_h * (3 + 10)) / 100
    assert g.cost_ms.flat[best] == pytest.approx(expected_cost)
    assert g.accuracy.flat[best] == pytest.approx(1.0)
    assert 0.6 < exits[0] <= 0.95 and 0.3 < exits[1] <= 0.9 and 0.047 < dthr <= 0.953
    # nothing cheaper reaches 100%
    assert not np.any((g.accuracy >= 1.0 - 1e-12) & (g.cost_ms < expected_cost - 1e-9))
    # EE alone cannot fix the hard quarter
    ee = evaluate_grid(data, cost, "ee")
    assert ee.best(1.0) is None and ee.accuracy.max() == pytest.approx(0.75)
    # the runtime policy with the chosen thresholds reproduces the same numbers on the same data
    q = Quant(1 / 256, -128)
    labels = np.zeros(100, dtype=int)
    raws = []
    for conf, corr in ((conf1, c1), (conf2, c2), (conf3, c3)):
        p = np.repeat(((1 - conf) / 9)[:, None], 10, axis=1)
        p[np.arange(100), np.where(corr, 0, 1)] = conf  # max = conf, on the right class iff corr
        raws.append(np.clip(np.round(p * 256) - 128, -128, 127).astype(np.int8))
    # the decider is tested elsewhere; a max-softmax decider separates the hard quarter (0.35) here
    ev = apply_point(raws, [q] * 3, labels, np.zeros(100, dtype=int), cost, exits, Decider.max_softmax(0.5))
    assert ev.accuracy == pytest.approx(1.0) and ev.cost_ms == pytest.approx(expected_cost)
    assert ev.exit_fractions == pytest.approx([0.5, 0.25, 0.25])


def test_pareto_csv_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    data = SearchData(rng.random((2, 300)), rng.random((2, 300)) < 0.8, rng.normal(size=300), rng.random(300) < 0.9)
    cost = CostModel.from_macs([700, 300], full_ms=1.63, ref_macs=1000)
    assert cost.exit_ms == pytest.approx([1.141, 1.63])
    grids = [evaluate_grid(data, cost, "ee"), evaluate_grid(data, cost, "ee-hi")]
    for g in grids:
        idx = g.pareto()
        c, a = g.cost_ms.ravel()[idx], g.accuracy.ravel()[idx]
        assert np.all(np.diff(c) >= 0) and np.all(np.diff(a) > 0)
        # every grid point is dominated by (or on) the front
        for ci, ai in zip(g.cost_ms.ravel()[::97], g.accuracy.ravel()[::97]):
            assert np.any((c <= ci + 1e-12) & (a >= ai - 1e-12))
    path = write_pareto_csv(grids, tmp_path / "p.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert {r["policy"] for r in rows} == {"ee", "ee-hi"}
    assert "t1" in rows[0] and "cost_ms" in rows[0]
    png = plot_pareto(grids, tmp_path / "p.png", chosen=[("ee", {"cost_ms": 2.0, "accuracy": 0.9})])
    assert png.stat().st_size > 1000


def test_grid_shape_and_never():
    g = threshold_grid(0.01)
    assert len(g) == 102 and g[0] == 0.0 and g[100] == 1.0 and g[-1] == NEVER and g[7] == 0.07
    pol = ExitPolicy([NEVER])
    assert not pol.exits_at(0, np.array([[1.0, 0.0]]))[0]


def test_full_two_exit_grid_is_fast():
    import time

    rng = np.random.default_rng(0)
    n = 5000
    data = SearchData(rng.random((3, n)), rng.random((3, n)) < 0.8, rng.normal(size=n), rng.random(n) < 0.9)
    t = time.time()
    g = evaluate_grid(data, CostModel([1.0, 2.0, 3.0]), "ee-hi")
    assert g.accuracy.shape == (102, 102, 101)
    assert time.time() - t < 20
