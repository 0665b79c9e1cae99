"""`hi-agent demo` on tiny models in a temporary models directory (the real one needs the shipped models),
its refusal to run with missing artifacts, and the shipped demo sample."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_agent_kit import tiny_kit_fixture

from hi_runtime.agent.cli import main

tiny_kit = tiny_kit_fixture  # the shared session fixture, made visible to pytest in this module

pytestmark = pytest.mark.timeout(180)


@pytest.fixture()
def models_dir(tiny_kit, tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(tiny_kit / "local_int8.tflite", d / "resnet8_int8.tflite")
    shutil.copy(tiny_kit / "decider.json", d / "decider_resnet8.json")
    shutil.copy(tiny_kit / "server.onnx", d / "server_cpu.onnx")
    shutil.copy(tiny_kit / "samples.npz", d / "demo_samples.npz")
    for f in ("ee_seg1_int8.tflite", "ee_seg2_int8.tflite", "ee_decider.json"):
        shutil.copy(tiny_kit / f, d / f)
    shutil.copy(tiny_kit / "ee.json", d / "ee_resnet8.json")
    return d


def test_demo_runs_every_strategy_and_writes_the_report(models_dir, tmp_path, capsys):
    from measurements.logs import read_run_log

    out = tmp_path / "demo"
    rc = main(["demo", "--models-dir", str(models_dir), "--out", str(out), "--no-progress", "--latency-budget-ms",
               "3000", "--rate", "300"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for word in ("local", "hi", "remote", "ee-hi", "accuracy", "report:", "child process", "x remote's"):
        assert word in captured.out
    report = (out / "report.md").read_text()
    assert "| strategy |" in report and "JPEG" in report and "loopback" in report and "shed" in report
    summaries = {s["strategy"]: s for s in json.loads((out / "summary.json").read_text())}
    assert set(summaries) == {"local", "hi", "remote", "ee-hi", "hi@rate:300", "remote@rate:300"}
    n = 200
    logs = {"hi@rate:300": "hi_rate-300.jsonl", "remote@rate:300": "remote_rate-300.jsonl"}
    for strategy, s in summaries.items():
        assert s["samples"] == n and s["degraded"] == 0, (out / "report.md").read_text()
        log = read_run_log(out / logs.get(strategy, f"{strategy}.jsonl"))
        assert len(log) == n and log.header["demo"] is True
        assert log.header["arrival"] == ("rate:300" if "@" in strategy else "closed")
    assert (out / "server.log").read_text().count("server_started") == 1  # the child process's own log
    assert summaries["local"]["offload_ratio"] == 0 and summaries["remote"]["offload_ratio"] == 1
    assert 0 < summaries["hi"]["offload_ratio"] < 1
    # the labels and accuracies in the summary are the logged ones, recomputed here
    hi = read_run_log(out / "hi.jsonl").records
    assert summaries["hi"]["accuracy"] == pytest.approx(np.mean([r.final_class == r.label for r in hi]))


def test_demo_without_ee_chain_says_so(models_dir, tmp_path, capsys):
    (models_dir / "ee_resnet8.json").unlink()
    out = tmp_path / "demo"
    assert main(["demo", "--models-dir", str(models_dir), "--out", str(out), "--limit", "30", "--no-progress"]) == 0
    assert "EE-HI skipped" in (out / "report.md").read_text()
    assert not (out / "ee-hi.jsonl").exists()


@pytest.mark.parametrize("name, command", [("server_cpu.onnx", "hi-train member "),
                                           ("decider_resnet8.json", "hi-train decider"),
                                           ("resnet8_int8.tflite", "hi-train model --arch resnet8"),
                                           ("demo_samples.npz", "hi-agent demo --make-samples")])
def test_demo_refuses_to_run_without_an_artifact_and_names_the_fix(models_dir, tmp_path, capsys, name, command):
    (models_dir / name).unlink()
    rc = main(["demo", "--models-dir", str(models_dir), "--out", str(tmp_path / "demo"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert name in err and command in err
    assert not (tmp_path / "demo" / "report.md").exists()


def test_shipped_demo_sample_is_stratified_small_and_readable(repo_root):
    from hi_runtime.agent.inputs import load_npz

    path = repo_root / "models" / "cifar10" / "demo_samples.npz"
    if not path.exists():
        pytest.skip("models/cifar10/demo_samples.npz not generated yet (hi-agent demo --make-samples)")
    assert path.stat().st_size < 2 * 1024 * 1024
    src = load_npz(path)
    assert src.images.shape[1:] == (32, 32, 3) and src.images.dtype == np.uint8
    counts = np.bincount(src.labels, minlength=10)
    assert counts.min() == counts.max() and counts.sum() == len(src.images) >= 300
    assert src.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                               "truck"]
    assert len(set(src.ids)) == len(src.ids)
