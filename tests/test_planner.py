"""QoS planner and strategy comparison on constructed profiles and on the paper's profiles (the
paper's Table 5 and 6 themselves: tests/test_paper_tables.py)."""
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
    parse_targets,
    plan,
)
from hi_runtime.qos import QoSError
from hi_runtime.device_profiles import ProfileError, load_profile, profile_from_dict


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


PAPER_RULES = dict(max_latency=HALF_OFFLOAD, max_energy=HALF_OFFLOAD)


def test_plan_picks_the_cheapest_configuration_that_passes():
    p = plan(device(), QoS(min_accuracy=0.9, **PAPER_RULES), ee_stats())
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


def test_remote_competes_and_is_the_half_offload_fallback():
    p = plan(device(), QoS(min_accuracy=0.95), ee_stats())  # only the server is that accurate
    assert p.best.label == "remote via wifi" and "lowest latency" in p.reason
    p = plan(device(), QoS(min_accuracy=0.95, **PAPER_RULES), ee_stats())  # remote fails the half rule itself
    assert p.best.label == "remote via wifi" and "offload every sample" in p.reason
    assert by_label(p.candidates)["remote via wifi"].verdict.startswith("fails: latency")
    p = plan(device(), QoS(min_accuracy=0.99), ee_stats())
    assert p.best is None and "no configuration" in p.reason


def test_the_remote_fallback_keeps_every_numeric_limit_and_one_reference_link():
    # offloading everything costs 27.67 mJ on the Pi 4 over WiFi: no fallback under energy <= 5 mJ
    p = plan(load_profile("rpi4"), parse_qos("latency=half-offload,energy=5"))
    assert p.best is None and "no configuration" in p.reason
    # with --link ble every candidate, on-device ones too, is held against half of a BLE offload
    p = plan(load_profile("rpi4"), parse_qos("latency=half-offload"), links=["ble"])
    assert by_label(p.candidates)["on-device resnet56"].verdict == "ok"


def test_fixing_latency_or_energy_maximizes_accuracy():
    """The paper's procedure: with a cost fixed, the most accurate configuration that meets it wins."""
    p = plan(device(), QoS(max_latency=HALF_OFFLOAD), ee_stats())  # <= 6 ms
    assert p.objective == "accuracy"
    assert p.best.label == "hi tiny via wifi"  # 91% at 4.6 ms; EE-HI 90.5% at 4.3 ms; mid (93%) needs 8 ms
    assert "highest accuracy" in p.reason
    p = plan(device(), QoS(max_latency=10.0))
    assert p.best.label == "on-device mid"
    p = plan(device(), QoS(max_energy=HALF_OFFLOAD))  # <= 10 mJ
    assert p.best.label == "hi tiny via wifi"  # 7 mJ; mid needs 12 mJ


def test_absolute_limits():
    p = plan(device(), QoS(min_accuracy=0.9, max_latency=4.5, max_energy=None), ee_stats())
    assert p.best.label == "ee-hi tiny via wifi threshold 0.9"  # 4.3 ms
    p = plan(device(), QoS(min_accuracy=0.9, max_latency=4.0, max_energy=None), ee_stats())
    assert p.best is None  # the server's 12 ms does not meet a 4 ms limit either


def test_measured_stats_fill_what_a_profile_lacks():
    raw = {**DEVICE, "models": {"tiny": {**DEVICE["models"]["tiny"], "accuracy": None,
                                         "decider": {}}}}
    profile = profile_from_dict(raw)
    assert plan(profile, QoS(min_accuracy=0.9, **PAPER_RULES)).best.label == "remote via wifi"
    stats = RunStats()
    stats.models["tiny"] = ModelStats(local_accuracy=0.8, hi=HIPoint(0.92, 0.25, "measured: hi.jsonl"),
                                      source="measured: hi.jsonl")
    p = plan(profile, QoS(min_accuracy=0.9, **PAPER_RULES), stats)
    assert p.best.label == "hi tiny via wifi"
    assert p.best.latency_ms == pytest.approx(1.0 + 0.25 * 12.0)
    assert any("measured: hi.jsonl" in i for i in p.best.inputs)


def test_a_measured_decider_point_replaces_an_assumed_one():
    """The Pi 4 profile's ResNet-8 HI point is Table 7's, transferred (an assumption): a measured HI run
    of the user's model takes its place; printed costs stay."""
    stats = RunStats()
    stats.models["resnet8"] = ModelStats(local_accuracy=0.85, hi=HIPoint(0.90, 0.30, "measured: hi.jsonl"),
                                         source="measured")
    p = plan(load_profile("rpi4"), QoS(min_accuracy=0.9), stats)
    assert p.best is not None and p.best.label == "hi resnet8 via wifi"
    assert p.best.accuracy == 0.90
    assert p.best.latency_ms == pytest.approx(1.63 + 0.30 * 9.68)
    assert p.best.energy_mj == pytest.approx(6.22 + 0.30 * 27.67)
    assert any("measured: hi.jsonl" in i for i in p.best.inputs)
    # the Nano's point is printed for the Nano itself (Table 7): a measurement does not replace it
    nano = plan(load_profile("arduino_nano33ble"), QoS(max_latency=5000.0), stats)
    assert by_label(nano.candidates)["hi resnet8 via ble"].accuracy == pytest.approx(0.9575)


@pytest.mark.parametrize("device_id, expected", [
    ("rpi4", "hi resnet8 via wifi"), ("coral_micro", "hi resnet8 via wifi"),
    ("jetson_orin_nano_15w", "on-device resnet56"), ("jetson_orin_nano_7w", "on-device resnet56"),
    ("esp32", "remote via wifi"), ("arduino_nano33ble", "remote via ble"),
])
def test_the_readme_command_recommends_out_of_the_box(device_id, expected):
    """`hi-bench plan --device D --qos accuracy=0.9` on the shipped paper profiles alone."""
    p = plan(load_profile(device_id), parse_qos("accuracy=0.9"))
    assert p.best is not None and p.best.label == expected
    assert p.dataset == "cifar10"


def test_one_dataset_at_a_time():
    p = plan(load_profile("rpi4"), QoS(min_accuracy=0.8), dataset="imagenet")
    assert {c.dataset for c in p.candidates} == {"imagenet"}
    assert p.best.label == "remote via wifi" and p.best.latency_ms == pytest.approx(28.74)  # ImageNet's Table 3
    hi = by_label(p.candidates)["hi resnet18 via wifi"]
    assert hi.latency_ms == pytest.approx(227.66 + 0.40 * 28.74)
    assert "imagenet" in " ".join(plan(load_profile("rpi4"), QoS(min_accuracy=0.9)).notes)
    with pytest.raises(ProfileError, match="no model for dataset"):
        plan(load_profile("rpi4"), QoS(), dataset="mnist")


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
    ("accuracy=0.9", QoS(0.9)),
    ("accuracy=90%", QoS(0.9)),
    ("accuracy=0.85, latency=none, energy=5", QoS(0.85, None, 5.0)),
    ("acc=0.8;latency=12ms;energy=half", QoS(0.8, 12.0, HALF_OFFLOAD)),
    ("latency=half-offload", QoS(None, HALF_OFFLOAD, None)),
    ("energy=2mJ", QoS(None, None, 2.0)),
    ("", QoS()),
])
def test_parse_qos(text, expected):
    assert parse_qos(text) == expected


@pytest.mark.parametrize("text, message", [
    ("accuracy", "needs key=value"), ("speed=3", "unknown QoS key"), ("latency=soon", "not a number"),
    ("accuracy=150%", "outside"), ("latency=-1", "positive"), ("accuracy=1.5", "did you mean 1.5%"),
    ("accuracy=90", "write 0.9 or 90%"), ("accuracy=abc", "not a number"), ("energy=0", "positive"),
    ("accuracy=nan", "fraction"), ("latency=inf", "positive"),
])
def test_parse_qos_rejects_with_the_fix(text, message):
    with pytest.raises(QoSError, match=message):
        parse_qos(text)


def test_targets_share_the_accuracy_grammar():
    assert parse_targets("0.8, 85%,0.9") == [0.8, 0.85, 0.9]
    with pytest.raises(QoSError, match="did you mean"):
        parse_targets("0.8,85")


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
