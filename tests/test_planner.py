"""QoS planner and strategy comparison on constructed profiles (the paper's own Table 5 inputs could
not be read, so Table 5 itself cannot be reproduced; see docs/measurements.md)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from measurements.planner import (
    HALF_OFFLOAD,
    EEPoint,
    HIPoint,
    ModelStats,
    QoS,
    RunStats,
    best_strategy_table,
    candidates_for,
    ee_threshold_table,
    format_plan,
    model_key,
    parse_qos,
    plan,
)
from measurements.profiles import ProfileError, load_profile, profile_from_dict


def c(value, cite="constructed test value"):
    return {"value": value, "cite": cite}


DEVICE = {
    "id": "dev", "kind": "measured", "source": "constructed",
    "power": {"compute_w": c(1.0), "offload_w": c(0.5)},
    "links": {"wifi": {"latency_ms": c(10.0), "energy_mj": c(20.0)}},
    "servers": {"big": {"dataset": "cifar10", "latency_ms": c(2.0), "accuracy": c(0.98)}},
    "models": {
        "tiny": {"dataset": "cifar10", "accuracy": c(0.80), "latency_ms": c(1.0), "energy_mj": c(1.0),
                 "decider": {"hi_accuracy": c(0.91), "offload_fraction": c(0.3)},
                 "exits": [{"latency_ms": c(0.4), "energy_mj": c(0.4)}]},
        "mid": {"dataset": "cifar10", "accuracy": c(0.93), "latency_ms": c(8.0), "energy_mj": c(12.0)},
    },
}


def device():
    return profile_from_dict(DEVICE)


def ee_stats():
    stats = RunStats()
    stats.for_model("tiny").ee = [
        EEPoint(0.5, {0: 0.8, 1: 0.2}, 0.2, 0.88, "constructed"),
        EEPoint(0.9, {0: 0.5, 1: 0.5}, 0.3, 0.905, "constructed"),
    ]
    return stats


def by_label(candidates):
    return {x.label: x for x in candidates}


def test_candidates_follow_eq3_and_eq4():
    cands = by_label(candidates_for(device(), ee_stats()))
    remote = cands["remote via wifi"]
    assert (remote.accuracy, remote.latency_ms, remote.energy_mj) == (0.98, 12.0, 20.0)
    hi = cands["hi tiny via wifi"]
    assert hi.latency_ms == pytest.approx(1.0 + 0.3 * 12.0)
    assert hi.energy_mj == pytest.approx(1.0 + 0.3 * 20.0)
    ee = cands["ee-hi tiny via wifi threshold 0.9"]
    assert ee.latency_ms == pytest.approx(0.5 * 0.4 + 0.5 * 1.0 + 0.3 * 12.0)
    assert ee.energy_mj == pytest.approx(0.5 * 0.4 + 0.5 * 1.0 + 0.3 * 20.0)
    assert cands["hi mid via wifi"].missing  # no decider operating point for mid


def test_plan_picks_the_cheapest_configuration_that_passes():
    p = plan(device(), QoS(min_accuracy=0.9), ee_stats())
    assert p.best.label == "ee-hi tiny via wifi threshold 0.9"
    verdicts = {x.label: x.verdict for x in p.candidates}
    assert verdicts["on-device tiny"].startswith("fails: accuracy")
    assert "latency 8.000 ms > 6.000 ms" in verdicts["on-device mid"]  # half of 12 ms
    assert "energy 12.0000 mJ > 10.0000 mJ" in verdicts["on-device mid"]  # half of 20 mJ
    assert verdicts["ee-hi tiny via wifi threshold 0.5"].startswith("fails: accuracy")
    text = format_plan(p)
    assert "recommended: ee-hi tiny via wifi threshold 0.9" in text and "why:" in text


def test_without_ee_data_hi_wins_and_energy_objective_can_differ():
    p = plan(device(), QoS(min_accuracy=0.9))
    assert p.best.label == "hi tiny via wifi"
    relaxed = QoS(min_accuracy=0.8, max_latency=None, max_energy=None)
    assert plan(device(), relaxed, objective="latency").best.label == "on-device tiny"
    assert plan(device(), relaxed, objective="energy").best.label == "on-device tiny"


def test_remote_is_the_fallback_and_none_when_nothing_passes():
    p = plan(device(), QoS(min_accuracy=0.95), ee_stats())
    assert p.best.label == "remote via wifi"
    assert "offload every sample" in p.reason
    p = plan(device(), QoS(min_accuracy=0.99), ee_stats())
    assert p.best is None and "no configuration" in p.reason


def test_absolute_limits():
    p = plan(device(), QoS(min_accuracy=0.9, max_latency=4.5, max_energy=None), ee_stats())
    assert p.best.label == "ee-hi tiny via wifi threshold 0.9"  # 4.3 ms
    p = plan(device(), QoS(min_accuracy=0.9, max_latency=4.0, max_energy=None), ee_stats())
    assert p.best.label == "remote via wifi"


def test_measured_stats_fill_what_a_profile_lacks():
    raw = {**DEVICE, "models": {"tiny": {**DEVICE["models"]["tiny"], "accuracy": None,
                                         "decider": {}}}}
    profile = profile_from_dict(raw)
    assert plan(profile, QoS(min_accuracy=0.9)).best.label == "remote via wifi"
    stats = RunStats()
    stats.models["tiny"] = ModelStats(local_accuracy=0.8, hi=HIPoint(0.92, 0.25, "measured: hi.jsonl"),
                                      source="measured: hi.jsonl")
    p = plan(profile, QoS(min_accuracy=0.9), stats)
    assert p.best.label == "hi tiny via wifi"
    assert p.best.latency_ms == pytest.approx(1.0 + 0.25 * 12.0)
    assert any("measured: hi.jsonl" in i for i in p.best.inputs)


def test_paper_rpi4_with_measured_decider_point():
    """The Pi 4's published costs (issue anchors) plus a decider point from our runs: HI passes the
    latency rule; the energy rule cannot be checked because Table 3's energy was not readable."""
    stats = RunStats()
    stats.models["resnet8"] = ModelStats(local_accuracy=0.85, hi=HIPoint(0.90, 0.30, "measured"), source="measured")
    p = plan(load_profile("rpi4"), QoS(min_accuracy=0.9), stats)
    assert p.best is not None and p.best.label == "hi resnet8 via wifi"
    assert p.best.latency_ms == pytest.approx(1.63 + 0.30 * 9.68)
    assert p.best.latency_ms <= 0.5 * 9.68
    assert any("energy rule" in u for u in p.best.unchecked)
    assert "not checked" in format_plan(p)


def test_paper_profiles_alone_cannot_decide():
    for device_id in ("rpi4", "esp32", "jetson_orin_nano_15w"):
        p = plan(load_profile(device_id), QoS(min_accuracy=0.8))
        assert p.best is None
        assert all(x.verdict.startswith("incomplete") for x in p.candidates)


def test_table5_and_table6_shapes():
    rows = best_strategy_table([device()], [0.85, 0.9, 0.95, 0.99], ee_stats())
    assert [r.best.label if r.best else None for r in rows] == [
        "ee-hi tiny via wifi threshold 0.5", "ee-hi tiny via wifi threshold 0.9", "remote via wifi", None]
    ee_rows = ee_threshold_table([device()], [0.85, 0.9, 0.95], ee_stats())
    assert [(r["target"], r["threshold"]) for r in ee_rows] == [(0.85, 0.5), (0.9, 0.9), (0.95, None)]


def test_unknown_model_or_link_names_are_errors():
    with pytest.raises(ProfileError, match="no model"):
        plan(device(), QoS(), model="huge")
    with pytest.raises(ProfileError, match="no link"):
        plan(device(), QoS(), links=["lora"])
    with pytest.raises(ValueError, match="objective"):
        plan(device(), QoS(), objective="fun")


@pytest.mark.parametrize("text,expected", [
    ("accuracy=0.9", QoS(0.9, HALF_OFFLOAD, HALF_OFFLOAD)),
    ("accuracy=90%", QoS(0.9, HALF_OFFLOAD, HALF_OFFLOAD)),
    ("accuracy=85, latency=none, energy=5", QoS(0.85, None, 5.0)),
    ("acc=0.8;latency=12ms;energy=half", QoS(0.8, 12.0, HALF_OFFLOAD)),
    ("", QoS()),
])
def test_parse_qos(text, expected):
    assert parse_qos(text) == expected


@pytest.mark.parametrize("text", ["accuracy", "speed=3", "latency=soon", "accuracy=150%", "latency=-1"])
def test_parse_qos_rejects(text):
    with pytest.raises(ValueError):
        parse_qos(text)


@given(st.floats(0.0, 1.0), st.floats(0.01, 1e4), st.floats(0.01, 1e4))
def test_parse_qos_round_trips_numbers(acc, lat, en):
    q = parse_qos(f"accuracy={acc!r},latency={lat!r},energy={en!r}")
    assert q.min_accuracy == pytest.approx(acc) and q.max_latency == pytest.approx(lat)
    assert q.max_energy == pytest.approx(en)


@pytest.mark.parametrize("logged, key", [
    ("resnet8_int8.tflite", "resnet8"), ("models/cifar10/resnet8_float.tflite", "resnet8"),
    ("ee_resnet8.json", "ee_resnet8"), ("server.onnx", "server"), ("resnet8", "resnet8"), (None, None),
])
def test_model_key_maps_logged_files_to_profile_names(logged, key):
    """hi-agent logs the model file; profiles and run statistics key models by name."""
    assert model_key(logged) == key
