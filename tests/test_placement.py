"""hi-train placement: exit costs per candidate layer and EE-HI's saving bound, before any training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import main
from training.placement import HIPoint, candidate_taps, exit_budget_ms, hi_points, saving_bound, tap_costs
from training.thresholds import load_search

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models/cifar10/ee_resnet8_thresholds.json"


def test_exit_macs_equal_what_the_exported_chains_measured():
    """The Keras count of an exit at a tap equals the MACs of the exported INT8 segment 1 (counted from
    the .tflite by hi-train early-exit): the shipped s2_out exit and the s1_out exit with two convs."""
    assert candidate_taps("resnet8") == ["s1_out", "s2_out"]
    shipped = load_search(SHIPPED)["cost_model"]["segment_macs"]
    s1conv = load_search(ROOT / "docs/frontier/ee_resnet8_s1_2conv_teacher_thresholds.json")["cost_model"]["segment_macs"]
    (s2,) = tap_costs("resnet8", ["s2_out"])
    (s1,) = tap_costs("resnet8", ["s1_out"], branch_convs=2)
    assert s2.exit_macs == shipped[0] and s2.plain_macs + s2.branch_macs == sum(shipped)
    assert s1.exit_macs == s1conv[0] and s1.plain_macs + s1.branch_macs == sum(s1conv)


def test_the_bound_is_the_threshold_search_s_bound_and_the_budget_inverts_it():
    search = load_search(SHIPPED)
    full_ms, exit_ms = search["cost_model"]["baseline_ms"], search["cost_model"]["exit_ms"][0]
    recorded = {c["qos"]: c["saving_bound_same_offloads"] for c in search["ee_hi_vs_hi"] if c["policy"] == "ee-hi"}
    points = {p.qos: p for p in hi_points(search)}
    assert recorded and set(recorded) <= set(points)
    for qos, bound in recorded.items():
        assert saving_bound(exit_ms, full_ms, points[qos].cost_ms) == pytest.approx(bound)
    hi = HIPoint("hi", 0.9, 4.0, 0.25)
    budget = exit_budget_ms(1.6, hi, 0.2)
    assert budget == pytest.approx(0.8) and saving_bound(budget, 1.6, hi.cost_ms) == pytest.approx(0.2)
    assert exit_budget_ms(1.0, HIPoint("x", 0.9, 10.0, 0.9), 0.2) < 0  # offloads alone exceed the target


def test_the_command_tells_which_taps_can_reach_the_target(tmp_path, capsys):
    out = tmp_path / "placement.json"
    assert main(["placement", "--arch", "resnet8", "--hi", str(SHIPPED), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [t["tap"] for t in data["taps"]] == ["s1_out", "s2_out"]
    hi = next(p for p in data["hi"] if p["qos"] == "hi")
    assert data["exit_budget_ms"]["hi"] == pytest.approx(1.63 - 0.2 * hi["cost_ms"])
    # at HI's accuracy only the earliest tap is cheap enough, and only if it answered like the full model
    assert "QoS hi (HI 90.02%, 29.5% offloaded, 4.488 ms): 0.732 ms (44.9% of the plain model); taps within it: " \
           "s1_out" in text
    # targets HI meets with the local model alone share one column
    assert "0.70..local" in text and list(data["taps"][0]["saving_bound"])[0] == "0.70..local"


def test_an_unknown_tap_names_the_candidates(capsys):
    """(In process: in a fresh process TensorFlow prints its start-up banner on stderr before the error.)"""
    assert main(["placement", "--arch", "resnet8", "--taps", "s9_out"]) == 2
    assert "resnet8 has no candidate tap(s) s9_out; choose from s1_out, s2_out" in capsys.readouterr().err
