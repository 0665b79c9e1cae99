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


def test_the_deciders_own_threshold_joins_the_grid():
    """The shipped operating point (a threshold between grid steps) is searched too, and evaluated exactly."""
    rng = np.random.default_rng(5)
    n = 200
    data = SearchData(confidence=rng.random((1, n)), correct=rng.random((1, n)) < 0.7,
                      decider_z=rng.normal(size=n), server_correct=rng.random(n) < 0.9)
    cost = CostModel([1.0], offload_ms=10.0, decider_ms=0.2)
    g = evaluate_grid(data, cost, "hi", step=0.25, decider_extra=[0.6])
    assert list(g.decider_grid) == [0.0, 0.25, 0.5, 0.6, 0.75, 1.0]
    j = list(g.decider_grid).index(0.6)
    a, c, o = naive(data, cost, [], 0.6, "hi")
    assert (g.accuracy[j], g.cost_ms[j], g.offload[j]) == pytest.approx((a, c, o), abs=1e-12)


def test_a_max_softmax_decider_is_searched_by_its_own_rule():
    """p1 >= t, as the runtime keeps it, not logit(p1-as-z) >= logit(t) as for a logistic decider."""
    rng = np.random.default_rng(6)
    probs = rng.dirichlet(np.full(10, 0.3), size=300)
    labels = rng.integers(0, 10, 300)
    data = SearchData.from_probs([probs], labels, Decider.max_softmax(0.5), server_pred=labels)
    cost = CostModel([1.0], offload_ms=10.0)
    for t in (0.0, 0.3, 0.5, 0.6, 0.9, 1.0):
        runtime_offload = 1.0 - Decider.max_softmax(t).accept(probs).mean()
        assert data.evaluate_point(cost, "hi", [], None, t)["offload_ratio"] == pytest.approx(runtime_offload)


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


# ----------------------------------------------------------------------------------------------------
# The three-way policy (exit / offload now / continue at every early exit)
# ----------------------------------------------------------------------------------------------------

def naive3(data: SearchData, cost: CostModel, exits, offs, dthr):
    """Sample by sample, written independently of the grid and of SearchData.evaluate_point."""
    n = data.n
    acc = c = off = 0.0
    for i in range(n):
        for k, (t, o) in enumerate(zip(exits, offs)):
            if data.confidence[k, i] >= t:
                acc += data.correct[k, i]
                c += cost.exit_ms[k]
                break
            if o is not None and data.confidence[k, i] < o:
                acc += data.server_correct[i]
                c += cost.exit_ms[k] + cost.offload_ms
                off += 1
                break
        else:
            c += cost.exit_ms[-1] + cost.decider_ms
            if data.decider_z[i] >= logit(dthr):
                acc += data.correct[-1, i]
            else:
                acc += data.server_correct[i]
                c += cost.offload_ms
                off += 1
    return acc / n, c / n, off / n


def _random_data(exits: int, n: int, seed: int) -> SearchData:
    rng = np.random.default_rng(seed)
    conf = np.round(rng.random((exits, n)), 2)  # on grid points too: the >= / < edges are exercised
    return SearchData(confidence=conf, correct=rng.random((exits, n)) < 0.7, decider_z=rng.normal(size=n),
                      server_correct=rng.random(n) < 0.9)


@pytest.mark.parametrize("exits,step,offload_step", [(2, 0.25, 0.25), (3, 0.25, 0.5), (2, 0.1, 0.2)])
def test_three_way_grid_equals_naive_brute_force(exits, step, offload_step):
    data = _random_data(exits, 90, exits)
    cost = CostModel([1.0, 2.5, 14.0][-exits:], offload_ms=9.0, decider_ms=0.2)
    g = evaluate_grid(data, cost, "ee-hi-3way", step=step, offload_step=offload_step)
    assert g.three_way and g.accuracy.shape == g.shape
    checked = 0
    for flat in range(g.size):
        p = g.point(flat)
        a, c, o = naive3(data, cost, p.exits, p.offloads, p.decider_threshold)
        assert g.accuracy.flat[flat] == pytest.approx(a, abs=1e-12)
        assert g.cost_ms.flat[flat] == pytest.approx(c, abs=1e-12)
        assert g.offload.flat[flat] == pytest.approx(o, abs=1e-12)
        assert sum(f.flat[flat] for f in g.exit_fractions) == pytest.approx(1.0)
        if flat % 7 == 0:  # the per-sample reference the rows use agrees as well
            m = g.metrics_at(flat)
            assert (m["accuracy"], m["cost_ms"], m["offload_ratio"]) == pytest.approx((a, c, o), abs=1e-12)
            assert m["exit_fractions"] == pytest.approx([f.flat[flat] for f in g.exit_fractions], abs=1e-12)
        checked += 1
    assert checked == g.size and any(o is not None for o in g.point(g.size - 1).offloads)


def test_two_way_is_the_three_way_policy_with_never_offload():
    data = _random_data(3, 200, 7)
    cost = CostModel([1.0, 2.0, 3.0], offload_ms=10.0)
    two = evaluate_grid(data, cost, "ee-hi", step=0.1)
    three = evaluate_grid(data, cost, "ee-hi-3way", step=0.1, offload_step=0.2)
    assert three.offload_index[0] == -1  # offload index 0 is "never"
    np.testing.assert_allclose(three.accuracy[0, :, 0, :, :], two.accuracy, atol=1e-12)
    np.testing.assert_allclose(three.cost_ms[0, :, 0, :, :], two.cost_ms, atol=1e-12)
    for target in (0.6, 0.7, 0.8, 0.85):  # a larger space is never worse
        b2, b3 = two.best(target), three.best(target)
        if b2 is not None:
            assert b3 is not None and three.cost_ms.flat[b3] <= two.cost_ms.flat[b2] + 1e-12


def test_chunked_search_finds_what_the_dense_one_finds(monkeypatch):
    """Large grids are evaluated in chunks and reduced to the cheapest point per accuracy level; on a grid
    small enough to hold, that gives the same choices and the same Pareto front as the full arrays."""
    import training.thresholds as th

    data = _random_data(3, 300, 11)
    cost = CostModel([1.1, 10.2, 14.36], offload_ms=9.68, decider_ms=0.1)
    dense = evaluate_grid(data, cost, "ee-hi-3way", step=0.05, offload_step=0.1, dense=True)
    monkeypatch.setattr(th, "CHUNK_CELLS", 5_000)  # many chunks
    calls = []
    chunked = evaluate_grid(data, cost, "ee-hi-3way", step=0.05, offload_step=0.1, dense=False,
                            progress=lambda done, total: calls.append((done, total)))
    assert chunked.accuracy is None and len(calls) > 5 and calls[-1][0] == calls[-1][1]
    for target in np.linspace(0.5, 0.95, 19):
        bd, bc = dense.best(target), chunked.best(target)
        assert (bd is None) == (bc is None)
        if bd is not None:
            assert bc == bd
            assert chunked.metrics_at(bc)["cost_ms"] == pytest.approx(dense.cost_ms.flat[bd], abs=1e-12)
    np.testing.assert_array_equal(chunked.pareto(), dense.pareto())
    c, a = chunked.front()
    np.testing.assert_allclose(c, dense.cost_ms.ravel()[dense.pareto()], atol=1e-12)
    np.testing.assert_allclose(a, dense.accuracy.ravel()[dense.pareto()], atol=1e-12)
    # the brute force over the dense arrays agrees with the front: nothing off it is better
    acc, cst = dense.accuracy.ravel(), dense.cost_ms.ravel()
    for ci, ai in zip(cst[::53], acc[::53]):
        assert np.any((c <= ci + 1e-12) & (a >= ai - 1e-12))


def test_three_way_offloads_early_when_the_rest_of_the_network_costs_more():
    """ResNet-56-like costs (exit 1 after 1 ms, the full network 14 ms, an offload 10 ms). Easy samples
    (exit-1 confidence 0.95, right), medium (0.6 at exit 1 and wrong there, right at the final exit with a
    high decider score, the server wrong), hard (0.2 at exit 1, wrong everywhere locally, the server right).
    At 100% accuracy the two-way policy must run the hard ones to the end before offloading (14 + 10 ms);
    the three-way one offloads them at exit 1 (1 + 10 ms) and runs only the medium ones to the end."""
    n_e, n_m, n_h = 60, 20, 20
    conf1 = np.r_[np.full(n_e, 0.95), np.full(n_m, 0.6), np.full(n_h, 0.2)]
    conf2 = np.r_[np.full(n_e, 0.99), np.full(n_m, 0.9), np.full(n_h, 0.3)]
    c1 = np.r_[np.ones(n_e), np.zeros(n_m + n_h)].astype(bool)
    c2 = np.r_[np.ones(n_e + n_m), np.zeros(n_h)].astype(bool)
    z = np.r_[np.full(n_e + n_m, 3.0), np.full(n_h, -3.0)]
    srv = np.r_[np.ones(n_e), np.zeros(n_m), np.ones(n_h)].astype(bool)
    data = SearchData(np.stack([conf1, conf2]), np.stack([c1, c2]), z, srv)
    cost = CostModel([1.0, 14.0], offload_ms=10.0)
    two = evaluate_grid(data, cost, "ee-hi")
    three = evaluate_grid(data, cost, "ee-hi-3way")
    b2, b3 = two.best(1.0), three.best(1.0)
    assert two.cost_ms.flat[b2] == pytest.approx((n_e * 1 + n_m * 14 + n_h * 24) / 100)
    assert three.cost_ms.flat[b3] == pytest.approx((n_e * 1 + n_m * 14 + n_h * 11) / 100)
    p = three.point(b3)
    assert 0.6 < p.exits[0] <= 0.95 and p.offloads[0] is not None and 0.2 < p.offloads[0] <= 0.6
    row = three.row(b3)
    assert row["exit1_offload_fraction"] == pytest.approx(0.2) and row["offload_ratio"] == pytest.approx(0.2)
    # the runtime policy with the chosen thresholds reproduces it on int8 scores of the same confidences
    q = Quant(1 / 256, -128)
    raws = []
    for conf, corr in ((conf1, c1), (conf2, c2)):
        pr = np.repeat(((1 - conf) / 9)[:, None], 10, axis=1)
        pr[np.arange(100), np.where(corr, 0, 1)] = conf
        raws.append(np.clip(np.round(pr * 256) - 128, -128, 127).astype(np.int8))
    ev = apply_point(raws, [q, q], np.zeros(100, dtype=int), np.where(srv, 0, 1), cost, p.exits,
                     Decider.max_softmax(0.5), p.offloads)
    assert ev.accuracy == pytest.approx(1.0) and ev.cost_ms == pytest.approx(three.cost_ms.flat[b3])
    assert ev.offload_fractions == pytest.approx([0.2, 0.0]) and ev.exit_fractions == pytest.approx([0.8, 0.2])


def test_offload_step_must_sit_on_the_exit_grid():
    with pytest.raises(ValueError, match="multiple of the exit step"):
        evaluate_grid(_random_data(2, 20, 0), CostModel([1.0, 2.0]), "ee-hi-3way", step=0.01, offload_step=0.033)
    with pytest.raises(ValueError, match="needs an early exit"):
        evaluate_grid(_random_data(1, 20, 0), CostModel([1.0]), "ee-hi-3way")


def test_cost_model_defaults_come_from_the_device_profile(tmp_path):
    """Device constants live only in the profiles: the search's defaults are rpi4.yaml's cited numbers,
    and another profile (a path) changes them."""
    from hi_runtime.device_profiles import load_profile
    from training.thresholds import reference_costs

    rpi4 = load_profile("rpi4")
    ref = reference_costs()
    assert (ref.full_ms, ref.offload_ms) == (rpi4.model("resnet8").latency_ms.value, rpi4.link().latency_ms.value)
    assert "Table 4" in ref.cite and "Table 3" in ref.cite
    assert CostModel([1.0]).offload_ms == ref.offload_ms
    assert CostModel.from_macs([50, 50]).exit_ms == pytest.approx([ref.full_ms / 2, ref.full_ms])
    board = tmp_path / "board.yaml"
    board.write_text("schema: hi-bench-profile/1\nid: board\nkind: measured\nsource: bench\n"
                     "links: {wifi: {latency_ms: 20.0}}\nmodels: {resnet56: {latency_ms: 40.0}}\n")
    other = reference_costs(str(board), "resnet56")
    assert (other.full_ms, other.offload_ms) == (40.0, 20.0)
    with pytest.raises(ValueError, match="resnet8"):
        reference_costs(str(board))
