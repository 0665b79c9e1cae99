"""hi-bench frontier: EE variants against their HI baseline, read from hi-train thresholds results."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from measurements import cli
from measurements.frontier import best_across_targets, best_at_equal_accuracy, build_series, comparisons, matched
from training.thresholds import load_search

ROOT = Path(__file__).resolve().parents[1]


def _row(qos, policy, acc, ms, off=0.0):
    return {"qos": qos, "policy": policy, "val": {"accuracy": acc}, "test": {"accuracy": acc, "cost_ms": ms,
                                                                             "offload_ratio": off}}


def _search(tmp: Path, name: str, ee_rows: list[dict], *, baseline="models/r8.tflite", hi=None) -> Path:
    hi = hi if hi is not None else [_row("0.80", "hi", 0.83, 1.63), _row("local", "hi", 0.83, 1.63), _row("hi", "hi", 0.90, 4.5, 0.3)]
    data = {"format": "hi-thresholds/1", "chain": f"models/{name}.json", "server": "models/server.onnx",
            "baseline": {"model": baseline, "decider": "models/d.json"},
            "cost_model": {"offload_ms": 9.68, "source": "MAC-scaled: test"},
            "rows": ee_rows + hi + [{"qos": "0.99", "policy": "ee", "note": "no combination reaches the target"}],
            "note": "toy numbers"}
    path = tmp / f"{name}_thresholds.json"
    path.write_text(json.dumps(data))
    return path


def test_savings_are_against_the_same_qos_row_and_the_headline_needs_equal_accuracy(tmp_path):
    a = _search(tmp_path, "a", [
        _row("0.80", "ee-hi", 0.80, 1.20), _row("0.80", "ee-hi-3way", 0.81, 1.00),  # 3-way preferred
        _row("local", "ee-hi-3way", 0.84, 1.30),  # +1 point, 20.2% cheaper: the headline
        _row("hi", "ee-hi-3way", 0.895, 3.0, 0.2),  # bigger saving, but less accurate than HI
    ])
    b = _search(tmp_path, "b", [_row("local", "ee-hi", 0.82, 1.5), _row("hi", "ee-hi", 0.89, 4.4, 0.3)])
    series = build_series([("A", a, load_search(a)), ("B", b, load_search(b))])
    assert [s.kind for s in series] == ["ee-hi", "ee-hi", "hi"]  # one HI line for the shared baseline
    assert series[2].label == "HI r8" and {p.qos for p in series[2].points} == {"0.80", "local", "hi"}
    comps = comparisons(series)
    by = {(c.variant, c.qos): c for c in comps}
    assert by[("A", "0.80")].ee.policy == "ee-hi-3way"
    assert by[("A", "0.80")].saving == pytest.approx(1 - 1.00 / 1.63)
    assert by[("A", "hi")].saving == pytest.approx(1 - 3.0 / 4.5)
    assert by[("A", "hi")].accuracy_delta == pytest.approx(-0.005)
    best = best_at_equal_accuracy(comps)
    assert best["A"].qos == "local" and best["A"].saving == pytest.approx(1 - 1.30 / 1.63)
    assert best["B"] is None  # never as accurate as HI
    across = best_across_targets(series)
    # B's only point at least as accurate as an HI point (89% at QoS hi against HI's 83% at local) is
    # dearer: the best pair is a negative saving, reported as such
    assert across["B"].ee.qos == "hi" and across["B"].saving == pytest.approx(1 - 4.4 / 1.63)
    assert across["A"].ee.qos == "local" and across["A"].saving == pytest.approx(best["A"].saving)


def test_across_targets_pairs_an_ee_point_with_a_less_accurate_hi_point_of_another_target(tmp_path):
    """Validation can favour the plain model (HI's test accuracy above its target): EE-HI at the next
    target up is then compared with the HI point it actually matches on test."""
    hi = [_row("t1", "hi", 0.850, 2.40, 0.08), _row("t2", "hi", 0.860, 2.80, 0.12)]
    a = _search(tmp_path, "a", [_row("t1", "ee-hi", 0.845, 1.90), _row("t2", "ee-hi", 0.855, 2.10)], hi=hi)
    series = build_series([("A", a, load_search(a))])
    assert best_at_equal_accuracy(comparisons(series))["A"] is None  # below HI at both targets
    across = best_across_targets(series)["A"]
    assert (across.ee.qos, across.hi.qos) == ("t2", "t1")
    assert across.saving == pytest.approx(1 - 2.10 / 2.40)
    rows = {c.hi.qos: c for c in matched(series)}
    assert rows["t1"].ee.qos == "t2" and rows["t1"].saving == pytest.approx(across.saving)
    assert "t2" not in rows  # no EE-HI point reaches HI's 86.0%


def test_a_baseline_with_other_numbers_under_the_same_names_is_its_own_line(tmp_path):
    a = _search(tmp_path, "a", [_row("hi", "ee-hi", 0.90, 3.6, 0.25)])
    b = _search(tmp_path, "b", [_row("hi", "ee-hi", 0.90, 3.6, 0.25)], hi=[_row("hi", "hi", 0.91, 4.9, 0.33)])
    series = build_series([("A", a, load_search(a)), ("B", b, load_search(b))])
    hi = [s for s in series if s.kind == "hi"]
    assert [s.label for s in hi] == ["HI r8", "HI r8 (b_thresholds)"]
    by = {c.variant: c for c in comparisons(series)}
    assert by["A"].hi.accuracy == 0.90 and by["B"].hi.accuracy == 0.91  # each against its own HI


def test_the_command_prints_the_table_and_writes_figure_and_json(tmp_path, capsys):
    a = _search(tmp_path, "a", [_row("local", "ee-hi", 0.82, 1.30), _row("hi", "ee-hi", 0.90, 3.6, 0.25)])
    c = _search(tmp_path, "c", [_row("local", "ee-hi", 0.85, 10.0)], baseline="models/r56.tflite",
                hi=[_row("local", "hi", 0.85, 14.36)])
    out = tmp_path / "fig" / "frontier"
    assert cli.main(["frontier", f"mine={a}", str(c), "--out", str(out), "--matched"]) == 0
    text = capsys.readouterr().out
    assert "| mine | hi | 90.00% / 30.0% / 4.50 | ee-hi | 90.00% / 25.0% / 3.60 | 20.0% | +0.00 |" in text
    # default label: the chain's name
    assert "c: best saving at equal or better test accuracy, same QoS target: 30.4% (10.00 vs 14.36 ms" in text
    assert "note: toy numbers" in text
    assert "| mine | hi: 90.00% / 4.50 | hi: 90.00% / 3.60 | 20.0% |" in text  # --matched
    data = json.loads((tmp_path / "fig" / "frontier.json").read_text())
    assert data["best_at_equal_accuracy"]["mine"] == {"qos": "hi", "saving": pytest.approx(0.2)}
    assert sorted(s["label"] for s in data["series"] if s["kind"] == "hi") == ["HI r56", "HI r8"]
    assert (tmp_path / "fig" / "frontier.png").stat().st_size > 10_000


def test_a_search_without_a_baseline_is_drawn_and_said_so(tmp_path, capsys):
    a = _search(tmp_path, "a", [_row("local", "ee-hi", 0.84, 1.30)])
    lone = _search(tmp_path, "lone", [_row("local", "ee-hi", 0.84, 1.30)], baseline=None, hi=[])
    assert cli.main(["frontier", str(a), str(lone), "--out", str(tmp_path / "f")]) == 0
    assert "lone: drawn without a comparison (searched without --baseline-model" in capsys.readouterr().out
    assert cli.main(["frontier", str(lone)]) == 2
    assert "no QoS row has both EE-HI and HI" in capsys.readouterr().err


def test_a_policy_the_file_lacks_and_twice_the_same_label_are_user_errors(tmp_path, capsys):
    a = _search(tmp_path, "a", [_row("local", "ee-hi", 0.84, 1.30)])
    assert cli.main(["frontier", str(a), "--policy", "ee-hi-3way"]) == 2
    assert "has no 'ee-hi-3way' rows" in capsys.readouterr().err
    assert cli.main(["frontier", f"x={a}", f"x={a}"]) == 2
    assert "two variants are labelled 'x'" in capsys.readouterr().err


def test_the_shipped_resnet56_search_reads_back_as_its_own_comparison(capsys):
    path = ROOT / "models/cifar10/ee_resnet56_thresholds.json"
    data = load_search(path)
    comps = {c.qos: c for c in comparisons(build_series([("ee56", path, data)]))}
    recorded = {c["qos"]: c for c in data["ee_hi_vs_hi"] if c["policy"] == "ee-hi-3way"}
    assert recorded and set(recorded) <= set(comps)
    for qos, c in recorded.items():
        assert comps[qos].saving == pytest.approx(c["latency_saving"])
        assert comps[qos].accuracy_delta == pytest.approx(c["accuracy_delta"])
