"""hi-bench reproduce end to end on the tiny models and 40 JPEG CIFAR-10 test images (offline)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from measurements import cli
from measurements.commands.reproduce import RunRow, pi4_cost_ms, savings
from test_agent_kit import tiny_kit_fixture

tiny_kit = tiny_kit_fixture


def shipped_layout(kit: Path, folder: Path) -> Path:
    """The tiny kit under the shipped models' file names (the chain finds its segments beside it)."""
    folder.mkdir()
    for f in kit.iterdir():
        (folder / f.name).symlink_to(f)
    for alias, src in (("resnet8_int8.tflite", "local_int8.tflite"), ("decider_resnet8.json", "decider.json"),
                       ("ee_resnet8.json", "ee.json")):
        (folder / alias).symlink_to(kit / src)
    return folder


def test_reproduce_runs_every_strategy_and_writes_the_summary(tiny_kit, cifar10_jpeg_dir, tmp_path, capsys):
    models = shipped_layout(tiny_kit, tmp_path / "models")
    out = tmp_path / "repro"
    rc = cli.main(["reproduce", "--data", str(cifar10_jpeg_dir), "--models", str(models), "--out", str(out),
                   "--limit", "40", "--ee-thresholds", "0,never", "--timing-runs", "20", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    runs = {r["name"]: r for r in summary["runs"]}
    assert set(runs) == {"local", "remote", "hi", "ee-hi@0", "ee-hi@never", "ee@0.9"}
    assert runs["ee@0.9"]["strategy"] == "ee" and runs["ee@0.9"]["offloaded"] == 0.0
    assert all(r["samples"] == 40 for r in runs.values())
    assert runs["remote"]["offloaded"] == 1.0 and runs["local"]["offloaded"] == 0.0
    assert runs["ee-hi@0"]["exit1_share"] == 1.0 and runs["ee-hi@never"]["exit1_share"] == 0.0
    # Pi 4 model: local is the full ResNet-8, remote one offload, exit 1 cheaper than the full chain
    assert runs["local"]["pi4_ms"] == pytest.approx(1.63)
    assert runs["remote"]["pi4_ms"] == pytest.approx(9.68)
    assert runs["ee-hi@0"]["pi4_ms"] < runs["ee-hi@never"]["pi4_ms"]
    assert "EE-HI against HI" in (out / "summary.md").read_text()
    compare = (out / "compare.txt").read_text()
    assert "this_machine (measured)" in compare and "Table 5 form" in compare and "Table 6 form" in compare
    assert "ee-hi" in compare and "no EE-HI sweep given" not in compare  # the sweep met its profile entry
    assert (out / "report" / "report.md").exists() and (out / "this_machine.yaml").exists()
    assert len(list((out / "runs").glob("*.jsonl"))) == 6
    # every agent run got reproduce's generous budget, and none of the 40 samples degraded
    header = json.loads((out / "runs" / "hi.jsonl").read_text().splitlines()[0])
    assert header["latency_budget_ms"] == 2000.0
    assert all(r["degraded"] == 0 for r in runs.values())


def test_reproduce_names_missing_models(tmp_path, capsys):
    assert cli.main(["reproduce", "--data", str(tmp_path), "--models", str(tmp_path), "--out",
                     str(tmp_path / "o")]) == 2
    assert "missing model files" in capsys.readouterr().err


def row(name, strategy, acc, pi4, host=1.0):
    return RunRow(name, strategy, None, 10, acc, 0.0, None, host, host, pi4)


def test_savings_take_the_cheapest_point_at_or_above_the_floor():
    rows = [row("hi", "hi", 0.87, 4.0), row("a", "ee-hi", 0.86, 2.0), row("b", "ee-hi", 0.88, 3.0),
            row("c", "ee-hi", 0.89, 3.5)]
    got = savings(rows, 0.87)
    assert got["ee_hi"] == "b" and got["pi4_saving"] == pytest.approx(0.25)
    assert savings(rows, 0.95) is None


def test_pi4_cost_by_exit_shares():
    assert pi4_cost_ms("ee-hi", 0.1, {0: 0.5, 1: 0.5}, [1.0, 2.0], 1.63, 9.68) == pytest.approx(1.5 + 0.968)
    assert pi4_cost_ms("hi", 0.2, {}, [], 1.63, 9.68) == pytest.approx(1.63 + 1.936)


def test_summary_counts_degraded_samples_and_warns():
    from measurements.commands.reproduce import summary_markdown

    meta = {"data": "d", "samples": 10, "host": "h", "server": "s", "pi4_full_ms": 1.63, "pi4_exit_ms": [1.0],
            "pi4_offload_ms": 9.68, "latency_budget_ms": 100.0}
    clean = [row("local", "local", 0.8, 1.63), row("hi", "hi", 0.9, 4.4)]
    assert "degraded**" not in summary_markdown(clean, {}, meta)
    late = [clean[0], RunRow("hi", "hi", None, 10, 0.85, 0.3, None, 1.0, 1.0, 4.4, degraded=3)]
    text = summary_markdown(late, {}, meta)
    assert "| hi | 85.00% | 30.00% | 3 |" in text
    assert "**3 samples degraded**" in text and "100.0 ms budget" in text and "--latency-budget-ms" in text
