"""measurements/bench_agent.py runs on a tiny model and reports what it measured (no goal numbers here:
those are measured on ResNet-8 and quoted in docs/agent.md)."""
from __future__ import annotations

import json

from test_agent_kit import tiny_kit_fixture

tiny_kit = tiny_kit_fixture  # the shared session fixture, made visible to pytest in this module


def test_bench_agent_reports_bare_and_agent_times(tiny_kit, tmp_path, capsys):
    from measurements.bench_agent import main

    out = tmp_path / "bench.json"
    rc = main(["--model", str(tiny_kit / "local_int8.tflite"), "--decider", str(tiny_kit / "decider.json"),
               "--samples", str(tiny_kit / "samples.npz"), "-n", "40", "--rounds", "3", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "bare" in text and "overhead" in text
    res = json.loads(out.read_text())
    assert res["samples"] == 40 and res["rounds"] == 3
    assert res["bare_ms_mean"] > 0 and res["agent_ms_mean"] > 0
    assert res["stage_ms"]["t_local_ms"] > 0 and res["stage_ms"]["t_decide_ms"] > 0


def test_bench_agent_without_a_model_says_how_to_get_one(tmp_path, capsys):
    from measurements.bench_agent import main

    assert main(["--model", str(tmp_path / "missing.tflite")]) == 2
    assert "--standin resnet8" in capsys.readouterr().err
