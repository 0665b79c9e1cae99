"""Device profiles: the shipped paper profiles, citations, inheritance, round trip."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from measurements.profiles import (
    PROFILES_DIR,
    ProfileError,
    list_profiles,
    load_profile,
    profile_from_dict,
    save_profile,
)

PAPER_DEVICES = {"arduino_nano33ble", "esp32", "coral_micro", "rpi4", "jetson_orin_nano_7w", "jetson_orin_nano_15w"}


def test_all_paper_devices_are_shipped():
    ids = {p.id for p in list_profiles(kind="paper")}
    assert PAPER_DEVICES <= ids


@pytest.mark.parametrize("device", sorted(PAPER_DEVICES))
def test_every_paper_value_says_where_it_came_from(device):
    profile = load_profile(device)
    assert profile.kind == "paper" and "2407.11061" in profile.source
    for path, value in profile.cited_values():
        assert value.cite, f"{device}: {path} has no citation"
        if value.known:
            assert "not found" not in value.cite.lower(), f"{device}: {path} has a value but says not found"
        else:
            # a null must say it was not found (or not given), never be silently empty
            assert "not" in value.cite.lower(), f"{device}: {path} is null without saying why"


def test_issue_anchors_are_in_the_profiles():
    rpi = load_profile("rpi4")
    assert rpi.model("resnet8").latency_ms.value == pytest.approx(1.63)
    assert rpi.link("wifi").latency_ms.value == pytest.approx(9.68)
    assert rpi.claims["ee_hi_latency_saving_vs_hi_resnet8"].value == pytest.approx(0.29)
    nano = load_profile("arduino_nano33ble")
    assert nano.model("resnet8").latency_ms.value == pytest.approx(1230)
    assert nano.default_link == "ble"
    # model-level constants come from the shared file, once
    for device in PAPER_DEVICES:
        assert load_profile(device).model("resnet8").decider.f1.value == pytest.approx(0.86)


def test_the_paper_profiles_hold_no_unsourced_numbers():
    """Guard against invented constants: the only numbers in the paper profiles are those we could
    read (issue anchors, abstract claims), listed here explicitly."""
    allowed = {0.86, 1.63, 9.68, 1230.0, 0.29, 0.73, 0.77, 0.597, 0.604}
    for profile in list_profiles(kind="paper"):
        for path, value in profile.cited_values():
            if value.known:
                assert value.value in allowed, f"{profile.id}: {path} = {value.value} is not a known source value"


def test_round_trip(tmp_path: Path):
    profile = load_profile("rpi4")
    out = save_profile(profile, tmp_path / "copy.yaml")
    again = load_profile(out)
    assert again.cited_values() == profile.cited_values()
    assert again.links.keys() == profile.links.keys()


def test_bare_numbers_take_the_profile_source():
    p = profile_from_dict({"id": "m", "kind": "measured", "source": "hi-bench profile on box",
                           "models": {"tiny": {"latency_ms": 0.5}}})
    assert p.model("tiny").latency_ms.value == 0.5
    assert p.model("tiny").latency_ms.cite == "hi-bench profile on box"


@pytest.mark.parametrize("raw,message", [
    ({"kind": "paper"}, "'id' is required"),
    ({"id": "x", "kind": "guess"}, "kind"),
    ({"id": "x", "schema": "other/2"}, "schema"),
    ({"id": "x", "models": {"m": {"latency_ms": {"value": "fast", "cite": "t"}}}}, "must be a number"),
    ({"id": "x", "models": {"m": {"latency_ms": {"value": 1.0, "cite": "t", "typo": 1}}}}, "unknown keys"),
    ({"id": "x", "models": {"m": {"latency_ms": {"value": 1.0}}}}, "needs a cite"),
    ({"id": "x", "power": {"watts": 3}}, "unknown power keys"),
    ({"id": "x", "models": {"m": {"latency_ms": True}}}, "boolean"),
])
def test_malformed_profiles_are_rejected_with_the_reason(raw, message):
    with pytest.raises(ProfileError, match=message):
        profile_from_dict(raw)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="rpi4"):
        load_profile("no_such_board")


def test_inherit_lets_the_device_override(tmp_path: Path):
    (tmp_path / "_shared.yaml").write_text(yaml.safe_dump({
        "id": "_shared", "kind": "models",
        "models": {"m": {"dataset": "cifar10", "accuracy": {"value": 0.8, "cite": "shared"}}},
    }))
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump({
        "id": "dev", "inherit": "_shared.yaml",
        "models": {"m": {"latency_ms": {"value": 2.0, "cite": "dev table"},
                         "accuracy": {"value": None, "cite": "not found"}}},
    }))
    profile = load_profile("dev", search_dirs=[tmp_path])
    assert profile.model("m").accuracy.value == 0.8 and profile.model("m").accuracy.cite == "shared"
    assert profile.model("m").latency_ms.value == 2.0
    assert [p.id for p in list_profiles([tmp_path])] == ["dev"]
    assert set(profile.models) == {"m"}


def test_shared_models_do_not_add_models_to_a_device():
    assert set(load_profile("arduino_nano33ble").models) == {"resnet8"}
    assert set(load_profile("rpi4").models) == {"resnet8", "resnet56"}
    assert PROFILES_DIR.exists()
