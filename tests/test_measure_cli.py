"""hi-bench: subcommand registry and every subcommand end to end (small inputs, offline)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from measurements import cli
from measurements.logs import SampleRecord, write_jsonl
from hi_runtime.device_profiles import load_profile


def sample(i, offloaded, local, label, server=None, strategy="hi", t_off=9.0):
    return SampleRecord(i, strategy, local, 0.7, None, 0.4, offloaded, server, server if offloaded else local,
                        False, label, 0.05, 1.5, 0.02, t_off if offloaded else 0.0,
                        1.57 + (t_off if offloaded else 0.0))


@pytest.fixture()
def hi_log(tmp_path: Path) -> Path:
    records = [sample(i, i >= 7, local=2 if i < 6 else 0, label=2, server=2 if i >= 7 else None) for i in range(10)]
    return write_jsonl(tmp_path / "hi.jsonl", records, {"device": "rpi4", "model": "resnet8", "strategy": "hi"})


@pytest.fixture()
def remote_log(tmp_path: Path) -> Path:
    records = [SampleRecord(i, "remote", None, None, None, None, True, 2, 2, False, 2, 0.05, None, None, 8.5, 8.55)
               for i in range(4)]
    return write_jsonl(tmp_path / "remote.jsonl", records, {"device": "box", "model": "resnet8", "strategy": "remote"})


def test_registry_fails_loudly_on_missing_or_broken_modules(monkeypatch):
    good = types.ModuleType("hi_bench_test_good")
    good.register_cli = lambda sub: sub.add_parser("hello", help="test").set_defaults(func=lambda a: 7)
    monkeypatch.setitem(sys.modules, "hi_bench_test_good", good)
    parser = cli.build_parser(("hi_bench_test_good",))
    args = parser.parse_args(["hello"])
    assert args.func(args) == 7
    # every module of a tool ships with it: one that cannot be imported is a broken install, not an
    # absent feature, so its subcommand must not silently disappear
    with pytest.raises(RuntimeError, match="bench_does_not_exist_yet cannot be imported"):
        cli.build_parser(("hi_bench_test_good", "measurements.bench_does_not_exist_yet"))
    broken = types.ModuleType("hi_bench_test_broken")
    monkeypatch.setitem(sys.modules, "hi_bench_test_broken", broken)
    with pytest.raises(RuntimeError, match="register_cli"):
        cli.build_parser(("hi_bench_test_broken",))


def test_every_subcommand_has_help(capsys):
    for command in ("metrics", "plan", "compare", "report", "profile", "power"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: hi-bench " + command in capsys.readouterr().out


def test_metrics_text_and_json(hi_log, capsys):
    assert cli.main(["metrics", str(hi_log)]) == 0
    out = capsys.readouterr().out
    assert "accuracy (Eq. 1): 90.00%" in out and "energy per inference (Eq. 4): n/a" in out
    assert cli.main(["metrics", str(hi_log), "--json", "--energy-j", "0.05"]) == 0
    data = json.loads(capsys.readouterr().out)[0]
    assert data["energy_source"] == "measured" and data["energy_mj"] == pytest.approx(5.0)
    assert data["offload_fraction"] == pytest.approx(0.3)


def test_metrics_errors_name_the_problem(tmp_path, hi_log, capsys):
    assert cli.main(["metrics", str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["metrics", str(hi_log), "--profile", "rpi4"]) == 2
    assert "power.compute_w" in capsys.readouterr().err  # the paper prints energies, not the Pi 4's power


def test_plan_rpi4_with_a_measured_hi_run(hi_log, capsys):
    code = cli.main(["plan", "--device", "rpi4", "--qos", "accuracy=0.9", "--runs", str(hi_log), "-v"])
    out = capsys.readouterr().out
    assert code == 0
    assert "recommended: hi resnet8 via wifi" in out
    assert "accuracy 90.00%" in out  # the measured HI point replaces the profile's assumed one
    assert "1.63 (Table 4 (RPi, ResNet-8 INT8, CIFAR-10)" in out
    assert cli.main(["plan", "--device", "rpi4", "--json"]) == 0  # the paper's profile alone decides
    data = json.loads(capsys.readouterr().out)
    assert data["recommended"]["label"] == "hi resnet8 via wifi" and data["dataset"] == "cifar10"
    assert cli.main(["plan", "--device", "rpi4", "--qos", "accuracy=0.999", "--json"]) == 3  # nothing that accurate
    assert json.loads(capsys.readouterr().out)["recommended"] is None


def test_plan_needs_a_known_device(capsys):
    assert cli.main(["plan"]) == 2
    assert "--device is required" in capsys.readouterr().err
    assert cli.main(["plan", "--device", "toaster"]) == 2
    assert "known profiles" in capsys.readouterr().err
    assert cli.main(["plan", "--device", "rpi4", "--qos", "speed=fast"]) == 2
    assert "unknown QoS key" in capsys.readouterr().err


def test_compare_prints_both_tables(hi_log, capsys):
    assert cli.main(["compare", "--device", "rpi4", "--device", "esp32", "--runs", str(hi_log),
                     "--targets", "80%,0.9"]) == 0
    out = capsys.readouterr().out
    assert "== rpi4 (paper) ==" in out and "== esp32 (paper) ==" in out
    assert "Table 5 form" in out and "Table 6 form" in out
    assert "no EE-HI sweep given" in out


def test_report_command(tmp_path, hi_log, capsys):
    out_dir = tmp_path / "rep"
    assert cli.main(["report", "--out", str(out_dir), "--device", "rpi4", "--runs", str(hi_log),
                     "--format", "html"]) == 0
    assert (out_dir / "report.html").exists() and (out_dir / "figures" / "accuracy_vs_latency.png").exists()
    assert "report written" in capsys.readouterr().out


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """A tiny INT8 model built here (shipped models may not exist yet)."""
    tf = pytest.importorskip("tensorflow")
    import numpy as np

    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax")(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 8, 8, 3), dtype=np.float32) * 255] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("tiny") / "tiny_int8.tflite"
    path.write_bytes(converter.convert())
    return path


def test_profile_measures_this_machine(tmp_path, tiny_tflite, hi_log, remote_log, capsys):
    out = tmp_path / "profiles" / "box.yaml"
    code = cli.main(["profile", "--model", str(tiny_tflite), "--out", str(out), "--id", "box", "--runs", "30",
                     "--warmup", "3", "--rapl", "off", "--power-w", "15", "--no-progress",
                     "--run-log", str(hi_log), str(remote_log)])
    assert code == 0
    assert "profile written" in capsys.readouterr().out
    raw = yaml.safe_load(out.read_text())
    assert raw["kind"] == "measured" and raw["id"] == "box"
    profile = load_profile(out)
    model = profile.model("resnet8")
    assert model.latency_ms.value > 0 and "invoke() calls" in model.latency_ms.cite
    assert model.energy_mj.value == pytest.approx(15 * model.latency_ms.value, rel=1e-4)
    assert "modeled" in model.energy_mj.cite
    assert profile.link("wifi").latency_ms.value == pytest.approx(8.5)
    assert model.decider.offload_fraction.value == pytest.approx(0.3)
    assert model.decider.hi_accuracy.value == pytest.approx(0.9)
    assert model.accuracy.value == pytest.approx(0.6)
    assert profile.server_for("cifar10").accuracy.value == pytest.approx(1.0)  # the remote run's answers
    # the measured profile plugs straight into the planner
    assert cli.main(["plan", "--profiles-dir", str(out.parent), "--device", "box",
                     "--qos", "accuracy=0.85,energy=none"]) in (0, 3)


def test_profile_times_each_early_exit_segment(tmp_path, tiny_tflite, capsys):
    """--ee-chain: exit k costs segments 1..k, the EE model's full latency all segments; the chain's model
    name keys it, as the EE-HI run logs do."""
    seg = {"file": tiny_tflite.name, "input": "image", "outputs": {"features": "f", "scores": "s"}}
    chain = tiny_tflite.parent / "ee_tiny.json"
    chain.write_text(json.dumps({"format": "hi-ee-chain/1", "model": "ee_tiny", "policy": {"exit_thresholds": [0.9]},
                                 "segments": [seg, {**seg, "outputs": {"features": None, "scores": "s"}}]}))
    out = tmp_path / "box.yaml"
    assert cli.main(["profile", "--model", str(tiny_tflite), "--out", str(out), "--id", "box", "--runs", "20",
                     "--warmup", "2", "--rapl", "off", "--no-progress", "--ee-chain", str(chain)]) == 0
    assert "ee_tiny: segments" in capsys.readouterr().out
    ee = load_profile(out).model("ee_tiny")
    (exit1,) = ee.exits
    assert 0 < exit1.latency_ms.value < ee.latency_ms.value and "segments 1..1" in exit1.latency_ms.cite
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert cli.main(["profile", "--model", str(tiny_tflite), "--out", str(out), "--rapl", "off", "--no-progress",
                     "--runs", "2", "--ee-chain", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_profile_rejects_a_missing_model(tmp_path, capsys):
    assert cli.main(["profile", "--model", str(tmp_path / "none.tflite"), "--out", str(tmp_path / "p.yaml"),
                     "--rapl", "off"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_energy_counter_gives_measured_energy_per_invoke(tiny_tflite):
    from measurements.machine_profile import build_measured_profile, time_tflite_invoke

    class FakeCounter:
        def __init__(self):
            self.readings = iter([10.0, 10.3])

        def read_energy_j(self):
            return next(self.readings)

    timing = time_tflite_invoke(tiny_tflite, runs=20, warmup=1, energy_counter=FakeCounter())
    assert timing.energy_j == pytest.approx(0.3) and len(timing.samples_ms) == 20
    profile = build_measured_profile("box", "tiny", timing, energy_source="RAPL package package-0",
                                     today="2025-01-01")
    energy = profile.model("tiny").energy_mj
    assert energy.value == pytest.approx(300.0 / 20, rel=1e-5)
    assert "measured (RAPL package package-0)" in energy.cite and "2025-01-01" in energy.cite
    # the power is the energy over the time the counter covered (the whole loop), not the invokes alone
    assert timing.loop_s >= sum(timing.samples_ms) / 1000.0
    assert profile.power.compute_w.value == pytest.approx(0.3 / timing.loop_s, rel=1e-3)


def test_measured_profiles_take_our_models_accuracy_from_their_cards(tmp_path):
    """Profiles of our own models carry the accuracy hi-train wrote on the model card."""
    import shutil as _shutil

    from measurements.machine_profile import build_measured_profile, card_accuracy

    models = Path(__file__).resolve().parents[1] / "models" / "cifar10"
    acc = card_accuracy(models / "resnet8_int8.tflite")
    card = json.loads((models / "resnet8.json").read_text())
    want = next(a["test_accuracy"] for a in card["artifacts"] if a["file"] == "resnet8_int8.tflite")
    assert acc.value == want and "model card resnet8.json" in acc.cite and "JPEG" in acc.note
    profile = build_measured_profile("box", "resnet8", None, model_path=models / "resnet8_int8.tflite",
                                     today="2025-01-01")
    assert profile.model("resnet8").accuracy.value == want
    lone = tmp_path / "lone_int8.tflite"
    _shutil.copy(models / "resnet8_int8.tflite", lone)  # no card beside it: nothing invented
    assert card_accuracy(lone) is None
    assert build_measured_profile("box", "m", None, model_path=lone).model("m").accuracy.known is False
