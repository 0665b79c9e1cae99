"""Device profiles: the shipped paper profiles, citations, inheritance, round trip."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hi_runtime.device_profiles import (
    PROFILES_DIR,
    DeviceProfile,
    ProfileError,
    list_profiles,
    load_profile,
    profile_from_dict,
    profile_to_dict,
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


def test_printed_anchors_are_in_the_profiles():
    rpi = load_profile("rpi4")
    assert rpi.model("resnet8").latency_ms.value == pytest.approx(1.63)
    assert rpi.link("wifi").latency_ms.value == pytest.approx(9.68)
    assert rpi.link("wifi").for_dataset("imagenet").latency_ms.value == pytest.approx(28.74)
    assert rpi.link("wifi").for_dataset("cifar10").latency_ms.value == pytest.approx(9.68)
    assert rpi.model("resnet56").accuracy.value == pytest.approx(0.9353)
    nano = load_profile("arduino_nano33ble")
    assert nano.model("resnet8").latency_ms.value == pytest.approx(1230.48)
    assert nano.default_link == "ble"
    # model-level constants come from the shared file, once
    for device in ("rpi4", "coral_micro", "jetson_orin_nano_7w", "jetson_orin_nano_15w", "esp32"):
        assert load_profile(device).model("resnet8").decider.f1.value == pytest.approx(0.86)
        assert load_profile(device).server_for("cifar10").accuracy.value == pytest.approx(0.9877)


@dataclass(frozen=True)
class Fact:
    """A number we actually read, where it sits in the profiles and the source its cite must name.
    ``device`` ``"*"`` means every paper device whose profile carries that path (inherited values);
    ``assumed`` facts are derived under a stated assumption, and their cite must say "assumption"."""

    device: str
    path: str
    value: float
    source: str
    assumed: bool = False


TABLES = json.loads((Path(__file__).resolve().parents[1] / "measurements" / "paper_tables.json").read_text())
SHARED_TABLES = Path(__file__).resolve().parents[2] / "shared" / "paper" / "tables.json"
DEVICE_KEYS = {"coral": "coral_micro", "rpi": "rpi4", "jetson_7w": "jetson_orin_nano_7w",
               "jetson_15w": "jetson_orin_nano_15w"}
MODEL_KEYS = {"resnet8_cifar10": "resnet8", "resnet56_cifar10": "resnet56", "alexnet_cifar10": "alexnet_cifar10",
              "resnet18_imagenet": "resnet18", "resnet50_imagenet": "resnet50", "alexnet_imagenet": "alexnet_imagenet",
              "regnety32gf_imagenet": "regnety32gf"}


def paper_facts() -> tuple[Fact, ...]:
    """Every number the paper profiles may hold, built from the transcription of the printed tables
    (measurements/paper_tables.json), independently of the YAML files."""
    facts = []
    t3 = TABLES["table3_offload_wifi"]
    for key, device in DEVICE_KEYS.items():
        for q in ("latency_ms", "energy_mj"):
            facts.append(Fact(device, f"links.wifi.{q}", t3["cifar10"][q][key], "Table 3"))
            facts.append(Fact(device, f"links.wifi.datasets.imagenet.{q}", t3["imagenet"][q][key], "Table 3"))
        for tkey, model in MODEL_KEYS.items():
            row = TABLES["table4_on_device_int8"][key].get(tkey)
            if row is None or row["latency_ms"] is None:
                continue
            facts += [Fact(device, f"models.{model}.latency_ms", row["latency_ms"], "Table 4"),
                      Fact(device, f"models.{model}.energy_mj", row["energy_mj"], "Table 4"),
                      Fact(device, f"models.{model}.accuracy", row["accuracy_pct"] / 100, "Table 4")]
    t7 = TABLES["table7_mcu_resnet8_cifar10"]
    nano, esp = t7["arduino_nano33ble"], t7["esp32"]
    facts += [
        Fact("arduino_nano33ble", "links.ble.latency_ms", nano["remote_latency_ms"], "Table 7"),
        Fact("arduino_nano33ble", "models.resnet8.latency_ms", nano["device_latency_ms"], "Table 7"),
        Fact("arduino_nano33ble", "models.resnet8.accuracy", nano["device_accuracy_pct"] / 100, "Table 7"),
        Fact("arduino_nano33ble", "models.resnet8.decider.offload_fraction", nano["hi_offload_pct"] / 100, "Table 7"),
        Fact("arduino_nano33ble", "models.resnet8.decider.hi_accuracy", nano["hi_accuracy_pct"] / 100, "Table 7"),
        Fact("esp32", "links.wifi.latency_ms", esp["remote_latency_ms"], "Table 7"),
        Fact("esp32", "models.resnet8.latency_ms", esp["device_latency_ms"], "Table 7"),
    ]
    ble = TABLES["rpi_link_one_cifar_image"]["ble"]
    facts += [Fact("rpi4", "links.ble.latency_ms", ble["transfer_ms"], "Sec. 4.2.1"),
              Fact("rpi4", "links.ble.energy_mj", ble["energy_mj"], "Sec. 4.2.1")]
    t6 = TABLES["table6_ee_hi_vs_hi_at_90pct"]["resnet8"]["rpi"]
    facts.append(Fact("rpi4", "claims.ee_hi_latency_saving_vs_hi_resnet8",
                      round(1 - t6["ee_hi_ms"] / t6["hi_ms"], 2), "Table 6"))
    f1 = TABLES["decider_f1"]
    head = TABLES["headlines"]
    regnety = TABLES["table4_on_device_int8"]["jetson_15w"]["regnety32gf_imagenet"]["accuracy_pct"]
    facts += [
        Fact("*", "models.resnet8.decider.f1", f1["resnet8_cifar10"], "decider F1"),
        Fact("*", "models.resnet18.decider.f1", f1["resnet18_imagenet"], "decider F1"),
        Fact("*", "servers.vit_h14.accuracy", TABLES["server"]["cifar10"]["accuracy_pct"] / 100, "Sec. 4.1"),
        Fact("*", "servers.convnext.accuracy", TABLES["server"]["imagenet"]["accuracy_pct"] / 100, "Sec. 4.1"),
        Fact("*", "claims.hi_latency_reduction_vs_on_device_max", head["hi_vs_on_device_latency_reduction_max_pct"] / 100,
             "headline claims"),
        Fact("*", "claims.hi_energy_reduction_vs_on_device_max", head["hi_vs_on_device_energy_reduction_max_pct"] / 100,
             "headline claims"),
        Fact("*", "claims.ee_hi_latency_reduction_vs_hi_max", head["ee_hi_vs_hi_latency_reduction_max_pct"] / 100,
             "headline claims"),
        Fact("*", "claims.ee_hi_energy_reduction_vs_hi_max", head["ee_hi_vs_hi_energy_reduction_max_pct"] / 100,
             "headline claims"),
        # the two printed HI operating points, used for the same model on every device (assumption A1)
        Fact("*", "models.resnet8.decider.offload_fraction", nano["hi_offload_pct"] / 100, "Table 7", assumed=True),
        Fact("*", "models.resnet8.decider.hi_accuracy", nano["hi_accuracy_pct"] / 100, "Table 7", assumed=True),
        Fact("*", "models.resnet18.decider.hi_accuracy", (regnety + 2.14) / 100, "headline claim", assumed=True),
        Fact("*", "models.resnet18.decider.offload_fraction", 0.40, "implied by the headline claim", assumed=True),
        # our MNIST logistic regression on the microcontrollers: the card's accuracy, and a latency modeled
        # from the instruction counts of the same compiled firmware on QEMU (LR / ResNet-8)
        *[f for dev, row in (("arduino_nano33ble", nano), ("esp32", esp)) for f in (
            Fact(dev, "models.lr_mnist.latency_ms",
                 round(row["device_latency_ms"] * LR_INSTRUCTIONS / RESNET8_INSTRUCTIONS, 4), "modeled (this project"),
            Fact(dev, "models.lr_mnist.accuracy", LR_CARD_ACCURACY, "models/mnist/lr_mnist.json"))],
        # Table 1 hardware
        Fact("rpi4", "hardware.clock_mhz", 1500, "Table 1"),
        Fact("coral_micro", "hardware.clock_mhz", 800, "Table 1"),
        Fact("coral_micro", "hardware.ram_bytes", 64 * 2**20, "Table 1"),
        Fact("coral_micro", "hardware.flash_bytes", 128 * 2**20, "datasheet"),
        Fact("arduino_nano33ble", "hardware.clock_mhz", 64, "Table 1"),
        Fact("esp32", "hardware.clock_mhz", 240, "Table 1"),
        Fact("jetson_orin_nano_15w", "hardware.power_mode_budget_w", 15, "Table 1"),
        Fact("jetson_orin_nano_7w", "hardware.power_mode_budget_w", 7, "Table 1"),
    ]
    return tuple(facts)


# instructions per inference on QEMU mps2-an386 (tests/test_mnist_lr.py, docs/firmware.md)
LR_INSTRUCTIONS, RESNET8_INSTRUCTIONS = 19523, 14.3596e6  # docs/firmware.md, tests/test_mnist_lr.py
LR_CARD_ACCURACY = next(
    a["test_accuracy"] for a in json.loads((Path(__file__).resolve().parents[1] / "models" / "mnist" /
                                            "lr_mnist.json").read_text())["artifacts"]
    if a["file"] == "lr_mnist_int8.tflite")
PAPER_FACTS = paper_facts()


def test_the_transcription_is_the_shared_one():
    """measurements/paper_tables.json is a copy of ../shared/paper/tables.json (when that exists here)."""
    if not SHARED_TABLES.exists():
        pytest.skip(f"{SHARED_TABLES} not on this machine")
    assert json.loads(SHARED_TABLES.read_text()) == TABLES


def numbers_in(profile: DeviceProfile) -> dict[str, tuple[float, str]]:
    """Every known number of a profile by dotted path, with its citation. ``hardware`` is free-form:
    its numbers are cited by the section's ``*_cite`` strings."""
    out = {path: (value.value, value.cite) for path, value in profile.cited_values() if value.known}
    hardware_cites = " ".join(str(v) for k, v in profile.hardware.items() if k.endswith("cite"))
    for key, value in profile.hardware.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"hardware.{key}"] = (float(value), hardware_cites)
    return out


def facts_for(device: str, facts=PAPER_FACTS) -> dict[str, Fact]:
    return {f.path: f for f in facts if f.device in (device, "*")}


def unsourced_numbers(profiles, facts=PAPER_FACTS) -> list[str]:
    """Numbers in paper profiles that are not a listed fact, differ from it, or whose cite does not
    name the fact's source."""
    problems = []
    for profile in profiles:
        known = facts_for(profile.id, facts)
        for path, (value, cite) in numbers_in(profile).items():
            fact = known.get(path)
            if fact is None:
                problems.append(f"{profile.id}: {path} = {value:g} is not a number we read (no fact)")
            elif value != pytest.approx(fact.value):
                problems.append(f"{profile.id}: {path} = {value:g} but the source says {fact.value:g}")
            elif fact.source.lower() not in cite.lower():
                problems.append(f"{profile.id}: {path} cite does not name its source {fact.source!r}")
            elif fact.assumed and profile.id not in _printed_there(path) and "assumption" not in cite.lower():
                problems.append(f"{profile.id}: {path} is derived under an assumption its cite does not state")
    return problems


def _printed_there(path: str) -> set[str]:
    """Devices for which an assumed shared value is printed as such (Table 7 is the Nano's own)."""
    return {f.device for f in PAPER_FACTS if f.path == path and not f.assumed and f.device != "*"}


def test_the_paper_profiles_hold_no_unsourced_numbers():
    """Guard against invented constants: every number in a paper profile is a fact we read, at
    that place, citing that source."""
    assert unsourced_numbers(list_profiles(kind="paper")) == []


def test_every_fact_is_in_its_profiles():
    for fact in PAPER_FACTS:
        devices = PAPER_DEVICES if fact.device == "*" else {fact.device}
        carried = 0
        for device in devices:
            numbers = numbers_in(load_profile(device))
            if fact.device == "*" and fact.path not in numbers:
                continue  # e.g. a shared model constant of a model the device does not run
            assert fact.path in numbers, f"{device}: {fact.path} missing (fact {fact.value:g})"
            assert numbers[fact.path][0] == pytest.approx(fact.value)
            carried += 1
        assert carried, f"no paper profile carries {fact.path}"


def test_the_guard_catches_an_invented_number(tmp_path: Path):
    raw = yaml.safe_load((PROFILES_DIR / "rpi4.yaml").read_text())
    raw["models"]["resnet8"]["energy_mj"] = {"value": 4.2, "cite": "Table 4"}  # not the printed value
    raw["models"]["resnet8"]["exits"] = [{"latency_ms": {"value": 1.1, "cite": "Table 4"}}]  # not a fact
    raw["links"]["wifi"]["latency_ms"] = {"value": 9.7, "cite": "Table 3"}  # wrong value
    raw["hardware"] = {"threads": 4, "clock_cite": "datasheet"}  # unlisted hardware number
    raw["claims"]["ee_hi_latency_saving_vs_hi_resnet8"]["cite"] = "somewhere"  # source not named
    raw["models"]["resnet8"]["decider"] = {"hi_accuracy": {"value": 0.9575, "cite": "Table 7"}}  # assumption unstated
    (tmp_path / "_paper_models.yaml").write_text((PROFILES_DIR / "_paper_models.yaml").read_text())
    (tmp_path / "rpi4.yaml").write_text(yaml.safe_dump(raw))
    problems = "\n".join(unsourced_numbers([load_profile("rpi4", search_dirs=[tmp_path])]))
    assert "models.resnet8.energy_mj = 4.2 but the source says 6.22" in problems
    assert "models.resnet8.exits[0].latency_ms = 1.1 is not a number we read" in problems
    assert "links.wifi.latency_ms = 9.7 but the source says 9.68" in problems
    assert "hardware.threads = 4 is not a number we read" in problems
    assert "claims.ee_hi_latency_saving_vs_hi_resnet8 cite does not name" in problems
    assert "models.resnet8.decider.hi_accuracy is derived under an assumption its cite does not state" in problems


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
    ({"kind": "paper"}, "id: required"),
    ({"id": "x", "kind": "guess"}, "kind: Input should be 'paper', 'measured' or 'models', got 'guess'"),
    ({"id": "x", "schema": "other/2"}, "schema: Input should be 'hi-bench-profile/1'"),
    ({"id": "x", "models": {"m": {"latency_ms": {"value": "fast", "cite": "t"}}}},
     "models.m.latency_ms.value: Input should be a valid number, got 'fast'"),
    ({"id": "x", "models": {"m": {"latency_ms": {"value": 1.0, "cite": "t", "typo": 1}}}},
     r"models.m.latency_ms: unknown keys \['typo'\]; use value, cite, unit, note"),
    ({"id": "x", "models": {"m": {"latency_ms": {"value": 1.0}}}}, "models.m.latency_ms: a value needs a cite"),
    ({"id": "x", "power": {"watts": 3}}, r"power: unknown keys \['watts'\]"),
    ({"id": "x", "models": {"m": {"latency_ms": True}}}, "models.m.latency_ms: expected a number, got a boolean"),
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
    assert "resnet56" not in load_profile("arduino_nano33ble").models
    assert set(load_profile("rpi4").models) == {"resnet8", "resnet56", "alexnet_cifar10", "resnet18", "resnet50",
                                                "alexnet_imagenet"}
    assert "regnety32gf" in load_profile("jetson_orin_nano_15w").models
    assert "regnety32gf" not in load_profile("jetson_orin_nano_7w").models


def test_per_dataset_link_costs_round_trip_and_validate(tmp_path: Path):
    p = profile_from_dict({"id": "d", "source": "s", "links": {"wifi": {
        "latency_ms": 10, "energy_mj": 20, "datasets": {"imagenet": {"latency_ms": 30}}}}})
    assert p.link("wifi").for_dataset("imagenet").latency_ms.value == 30
    assert p.link("wifi").for_dataset("cifar10").latency_ms.value == 10
    assert p.link("wifi").for_dataset(None).energy_mj.value == 20
    again = load_profile(save_profile(p, tmp_path / "d.yaml"))
    assert again.link("wifi").for_dataset("imagenet").latency_ms.value == 30
    with pytest.raises(ProfileError, match="unknown keys"):
        profile_from_dict({"id": "d", "links": {"wifi": {"latncy_ms": 3}}})
    assert PROFILES_DIR.exists()


# --- the schema (pydantic): one line per mistake, naming the file, the key path and what is expected ----------


def _problem_in(tmp_path: Path, raw: dict, name: str = "x.yaml") -> str:
    """The ProfileError of loading ``raw`` from a file: exactly one line, starting with the file's name."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{path}: "), text
    return text[len(f"{path}: "):]


def _rpi4(**changes) -> dict:
    raw = yaml.safe_load((PROFILES_DIR / "rpi4.yaml").read_text())
    raw.pop("inherit")
    raw.update(changes)
    return raw


def test_a_string_latency_names_the_key(tmp_path: Path):
    raw = _rpi4()
    raw["models"]["resnet8"]["latency_ms"] = "1.63 ms"
    assert _problem_in(tmp_path, raw) == ("models.resnet8.latency_ms: expected a number, null or a {value, cite} "
                                          "mapping, got '1.63 ms'")
    raw["models"]["resnet8"]["latency_ms"] = {"value": "1.63", "cite": "Table 4"}
    assert _problem_in(tmp_path, raw) == "models.resnet8.latency_ms.value: Input should be a valid number, got '1.63'"


def test_a_negative_latency_names_the_key(tmp_path: Path):
    raw = _rpi4()
    raw["models"]["resnet8"]["latency_ms"] = -1.63  # a bare number: the key as written
    assert _problem_in(tmp_path, raw) == "models.resnet8.latency_ms: Input should be greater than 0, got -1.63"
    raw["models"]["resnet8"]["latency_ms"] = {"value": -1.63, "cite": "Table 4"}
    assert _problem_in(tmp_path, raw) == "models.resnet8.latency_ms.value: Input should be greater than 0, got -1.63"


@pytest.mark.parametrize("where,value,message", [
    (("links", "wifi", "latency_ms"), 0, "Input should be greater than 0, got 0"),
    (("links", "wifi", "datasets", "imagenet", "energy_mj"), -1, "Input should be greater than or equal to 0"),
    (("models", "resnet8", "accuracy"), 87.8, "Input should be less than or equal to 1, got 87.8"),  # a percentage
    (("models", "resnet8", "decider", "offload_fraction"), -0.1, "Input should be greater than or equal to 0"),
    (("models", "resnet8", "exits"), [{"latency_ms": float("nan")}], "Input should be a finite number, got nan"),
    (("models", "resnet8", "energy_mj"), True, "expected a number, got a boolean"),
    (("models", "resnet8", "decider"), [0.86], "expected a mapping of f1, offload_fraction, hi_accuracy"),
])
def test_out_of_range_values_name_the_key(tmp_path: Path, where, value, message):
    raw = _rpi4()
    node = raw
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    problem = _problem_in(tmp_path, raw)
    key = ".".join(where) + ("[0].latency_ms" if where[-1] == "exits" else "")
    assert problem.startswith(f"{key}: {message}"), problem


def test_an_unknown_top_level_key_is_refused(tmp_path: Path):
    """The reader used to ignore unknown keys outside power, links and cited values; no shipped profile or
    test relied on that, and a misspelt section (``model:``) silently lost every number in it."""
    assert _problem_in(tmp_path, _rpi4(model={})) == (
        "unknown keys ['model']; use schema, id, name, kind, source, inherit, notes, hardware, power, links, "
        "default_link, models, servers, claims")


@pytest.mark.parametrize("where,key", [
    (("models", "resnet8"), "latency"),
    (("models", "resnet8", "decider"), "F1"),
    (("servers",), None),
    (("models", "resnet8", "exits"), "acc"),
])
def test_unknown_keys_inside_sections_are_refused(tmp_path: Path, where, key):
    raw = _rpi4()
    if where == ("servers",):
        raw["servers"] = {"vit": {"datset": "cifar10"}}
        where, key = ("servers", "vit"), "datset"
    elif where[-1] == "exits":
        raw["models"]["resnet8"]["exits"] = [{key: 0.5}]
        where = ("models", "resnet8", "exits[0]")
    else:
        node = raw
        for k in where:
            node = node.setdefault(k, {})
        node[key] = 1.0
    assert _problem_in(tmp_path, raw).startswith(f"{'.'.join(where)}: unknown keys [{key!r}]; use ")


def test_a_missing_id_names_the_key(tmp_path: Path):
    raw = _rpi4()
    del raw["id"]
    assert _problem_in(tmp_path, raw) == "id: required (a short name such as rpi4)"
    assert _problem_in(tmp_path, _rpi4(id="")).startswith("id: String should have at least 1 character")


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path):
    raw = _rpi4()
    raw["models"]["resnet8"]["latency_ms"] = -1
    raw["models"]["resnet56"]["accuracy"] = 93.53
    assert _problem_in(tmp_path, raw) == ("models.resnet56.accuracy: Input should be less than or equal to 1, "
                                          "got 93.53 (and 1 more problem(s))")  # the file's order (sorted here)


def test_a_problem_in_the_inherited_file_names_that_file(tmp_path: Path):
    shared = yaml.safe_load((PROFILES_DIR / "_paper_models.yaml").read_text())
    shared["models"]["resnet8"]["decider"]["f1"] = {"value": 86, "cite": "Sec. 4"}  # a percentage
    (tmp_path / "_paper_models.yaml").write_text(yaml.safe_dump(shared))
    (tmp_path / "rpi4.yaml").write_text((PROFILES_DIR / "rpi4.yaml").read_text())
    with pytest.raises(ProfileError) as err:
        load_profile("rpi4", search_dirs=[tmp_path])
    assert str(err.value) == (f"{tmp_path / '_paper_models.yaml'}: models.resnet8.decider.f1.value: "
                              "Input should be less than or equal to 1, got 86")
    # the device's own mistake names the device's file
    raw = yaml.safe_load((PROFILES_DIR / "rpi4.yaml").read_text())
    raw["models"]["resnet8"]["accuracy"] = "high"
    (tmp_path / "rpi4.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError, match=rf"^{tmp_path / 'rpi4.yaml'}: models.resnet8.accuracy: expected a number"):
        load_profile("rpi4", search_dirs=[tmp_path])


def test_the_cli_reports_a_bad_profile_in_one_line(tmp_path: Path, capsys):
    from measurements import cli

    raw = _rpi4()
    raw["links"]["wifi"]["latency_ms"] = {"value": -9.68, "cite": "Table 3"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["plan", "--device", str(tmp_path / "bad.yaml"), "--qos", "accuracy=0.9"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"hi-bench plan: error: {tmp_path / 'bad.yaml'}: links.wifi.latency_ms.value: "
                           "Input should be greater than 0, got -9.68")


# --- the shipped profiles load to the same values as before the pydantic schema ------------------------------

SNAPSHOT = Path(__file__).resolve().parent / "data" / "shipped_profiles.json"


def _sources(path: Path) -> dict[str, str]:
    """The files a profile is read from (itself and its ``inherit``) with their SHA-256."""
    files = [path.name]
    inherit = yaml.safe_load(path.read_text()).get("inherit")
    if inherit:
        files.append(str(inherit))
    return {f: hashlib.sha256((path.parent / f).read_bytes()).hexdigest() for f in files}


def write_snapshot() -> None:
    """Record how every shipped profile loads (run ``python tests/test_profiles.py`` after an intended change)."""
    data = {path.name: {"sha256": _sources(path), "profile": profile_to_dict(load_profile(path))}
            for path in sorted(PROFILES_DIR.glob("*.yaml")) if not path.name.startswith("_")}
    SNAPSHOT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def test_every_shipped_profile_is_in_the_snapshot():
    shipped = {p.name for p in PROFILES_DIR.glob("*.yaml") if not p.name.startswith("_")}
    assert shipped == set(json.loads(SNAPSHOT.read_text())), "run python tests/test_profiles.py"


@pytest.mark.parametrize("name", sorted(json.loads(SNAPSHOT.read_text())))
def test_shipped_profiles_load_as_recorded(name):
    """Every value, citation, unit and note of each shipped profile is what the hand-written reader
    loaded before the schema moved to pydantic (tests/data/shipped_profiles.json was written by that
    reader); a profile edited since then is compared once its snapshot is rewritten."""
    recorded = json.loads(SNAPSHOT.read_text())[name]
    path = PROFILES_DIR / name
    if _sources(path) != recorded["sha256"]:
        pytest.skip(f"{name} (or the file it inherits) changed since the snapshot: run python tests/test_profiles.py")
    loaded = json.loads(json.dumps(profile_to_dict(load_profile(path)), ensure_ascii=False))
    assert loaded == recorded["profile"]


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
