"""Report and figure generation on a small constructed run."""
from __future__ import annotations

from pathlib import Path

import pytest

from measurements.logs import SampleRecord, write_jsonl
from measurements.metrics import EnergyModel, compute_metrics
from measurements.planner import EEPoint, RunStats
from measurements.plots import TradeoffPoint, plot_tradeoffs, tradeoff_figure
from hi_runtime.device_profiles import profile_from_dict
from measurements.report import build_report


def c(value):
    return {"value": value, "cite": "constructed"}


PROFILE = {
    "id": "dev", "kind": "measured", "source": "constructed",
    "power": {"compute_w": c(1.0), "offload_w": c(0.5)},
    "links": {"wifi": {"latency_ms": c(10.0), "energy_mj": c(20.0)}},
    "servers": {"big": {"dataset": "cifar10", "latency_ms": c(2.0), "accuracy": c(0.98)}},
    "models": {"resnet8": {"dataset": "cifar10", "latency_ms": c(1.0), "energy_mj": c(1.0),
                           "exits": [{"latency_ms": c(0.4), "energy_mj": c(0.4)}]}},
}


def sample(i, offloaded, local, label, server=None, exit_index=None, strategy="hi"):
    t_off = 10.0 if offloaded else 0.0
    return SampleRecord(i, strategy, local, 0.5, exit_index, 0.5, offloaded, server,
                        server if offloaded else local, False, label, 0.1, 0.8, 0.1, t_off, 1.0 + t_off)


def write_runs(folder: Path) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    hi = [sample(i, i >= 7, local=1 if i < 6 else 0, label=1, server=1 if i >= 7 else None) for i in range(10)]
    local = [sample(i, False, local=1 if i < 6 else 0, label=1, strategy="local") for i in range(10)]
    paths = [
        write_jsonl(folder / "hi.jsonl", hi, {"device": "dev", "model": "resnet8", "strategy": "hi"}),
        write_jsonl(folder / "local.jsonl", local, {"device": "dev", "model": "resnet8", "strategy": "local"}),
    ]
    for threshold, n_early in ((0.6, 8), (0.9, 5)):
        ee = [sample(i, i >= 9, local=1, label=1, server=1 if i >= 9 else None,
                     exit_index=0 if i < n_early else 1, strategy="ee-hi") for i in range(10)]
        paths.append(write_jsonl(folder / f"ee_{threshold}.jsonl", ee,
                                 {"device": "dev", "model": "resnet8", "strategy": "ee-hi", "ee_threshold": threshold}))
    return paths


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_on_a_constructed_run(tmp_path: Path, fmt: str):
    from measurements.logs import read_run_log

    paths = write_runs(tmp_path / "logs")
    profile = profile_from_dict(PROFILE)
    energy = EnergyModel.from_profile(profile)
    runs = [(log, compute_metrics(log, energy)) for log in map(read_run_log, paths)]
    stats = RunStats.from_runs(runs)
    assert [p.threshold for p in stats.models["resnet8"].ee] == [0.6, 0.9]
    assert stats.models["resnet8"].hi.offload_fraction == pytest.approx(0.3)

    out = build_report(tmp_path / "report", [profile], runs, stats, targets=[0.6, 0.9], fmt=fmt, today="2025-01-01")
    text = out.read_text()
    assert out.name == f"report.{fmt}"
    for name in ("accuracy_vs_latency.png", "accuracy_vs_energy.png", "best_strategy.png"):
        figure = tmp_path / "report" / "figures" / name
        assert figure.exists() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for expected in ("hi.jsonl", "Table 5 form", "Table 6 form", "ee-hi resnet8 via wifi threshold 0.6",
                     "modeled", "JPEG", "2025-01-01"):
        assert expected in text, expected
    # the HI run: accuracy (6 local right + 3 server right) / 10
    assert "90.00%" in text
    if fmt == "md":
        assert "![accuracy vs latency per strategy and device](figures/accuracy_vs_latency.png)" in text
    else:
        assert text.startswith("<!DOCTYPE html>") and "<img src='figures/accuracy_vs_energy.png'" in text


def _legend(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_figures_have_no_empty_panel_and_percent_accuracy(tmp_path: Path):
    points = [
        TradeoffPoint("nano", "on-device", "on-device resnet8", 0.85, 1230.0, None, dataset="cifar10"),
        TradeoffPoint("nano", "remote", "remote via ble", 0.98, 5.0, 2.0, energy_modeled=True, dataset="cifar10"),
        TradeoffPoint("pi", "hi", "hi resnet8", 0.9, 1.0, None, measured=True, dataset="cifar10"),
    ]
    latency = tradeoff_figure(points, "latency")
    assert [ax.get_title() for ax in latency.axes] == ["nano (cifar10)", "pi (cifar10)"]
    for ax in latency.axes:
        assert ax.collections, "a panel without a point"
        assert ax.get_ylabel() == "accuracy (%)" and "ms" in ax.get_xlabel()
        ys = [y for coll in ax.collections for _, y in coll.get_offsets()]
        assert all(80 <= y <= 100 for y in ys)  # percent, not a fraction
    assert latency.axes[0].get_xscale() == "log"  # 5 ms to 1230 ms
    assert "black outline: our measured runs" in _legend(latency)
    pi_point = latency.axes[1].collections[0]
    assert tuple(pi_point.get_edgecolor()[0][:3]) == (0.0, 0.0, 0.0)  # the outline the legend promises
    energy = tradeoff_figure(points, "energy")
    assert [ax.get_title() for ax in energy.axes] == ["nano (cifar10)"]  # only where energy is known
    assert "black outline: our measured runs" not in _legend(energy)  # no measured point has energy
    assert "hollow: energy modeled (power x time)" in _legend(energy)
    assert plot_tradeoffs([p for p in points if p.energy_mj is None], "energy", tmp_path / "e.png") is None
    assert not (tmp_path / "e.png").exists()
    out = plot_tradeoffs(points, "latency", tmp_path / "l.png")
    assert out.stat().st_size > 10_000


def test_report_rejects_unknown_format(tmp_path: Path):
    with pytest.raises(ValueError, match="md or html"):
        build_report(tmp_path, [], fmt="pdf")


def test_an_ee_log_without_a_threshold_is_one_unlabeled_point(tmp_path: Path):
    """hi-agent demo writes EE-HI logs without ee_threshold; report and plan accept them."""
    import math

    from measurements.logs import read_run_log
    from measurements.planner import format_threshold

    path = write_jsonl(tmp_path / "ee.jsonl", [sample(0, False, 1, 1, exit_index=0, strategy="ee-hi")],
                       {"model": "resnet8", "strategy": "ee-hi"})
    log = read_run_log(path)
    stats = RunStats.from_runs([(log, compute_metrics(log))])
    (point,) = stats.models["resnet8"].ee
    assert math.isnan(point.threshold) and format_threshold(point.threshold) == "not logged"
    assert stats.models["resnet8"].local_accuracy is None  # its local answers mix exits
    assert isinstance(EEPoint(0.5, {}, 0.0, 1.0, "x"), EEPoint)


def test_a_remote_log_without_a_model_gives_the_server_accuracy(tmp_path: Path):
    from measurements.logs import read_run_log

    recs = [sample(i, True, None, 1, server=1 if i else 0, strategy="remote") for i in range(4)]
    log = read_run_log(write_jsonl(tmp_path / "remote.jsonl", recs, {"strategy": "remote"}))
    stats = RunStats.from_runs([(log, compute_metrics(log))])
    assert stats.server_accuracy == pytest.approx(0.75) and not stats.models
    hi = read_run_log(write_jsonl(tmp_path / "hi.jsonl", [sample(0, False, 1, 1)], {"strategy": "hi"}))
    with pytest.raises(ValueError, match="--run-model"):
        RunStats.from_runs([(hi, compute_metrics(hi))])


def test_ee_runs_give_on_device_accuracy_only_without_early_exits(tmp_path: Path):
    """An EE-HI run's local answers mix exits; only a run whose exit never fires measures the model alone."""
    from measurements.logs import read_run_log

    recs = [sample(i, False, local=1 if i < 4 else 0, label=1, exit_index=1, strategy="ee-hi") for i in range(10)]
    early = write_jsonl(tmp_path / "ee_05.jsonl", recs, {"model": "ee", "strategy": "ee-hi", "ee_threshold": 0.5})
    never = write_jsonl(tmp_path / "ee_never.jsonl", recs,
                        {"model": "ee", "strategy": "ee-hi", "ee_threshold": None, "ee_thresholds": [None]})
    runs = [(log, compute_metrics(log)) for log in map(read_run_log, (early,))]
    assert RunStats.from_runs(runs).models["ee"].local_accuracy is None
    runs += [(log, compute_metrics(log)) for log in map(read_run_log, (never,))]
    stats = RunStats.from_runs(runs).models["ee"]
    assert stats.local_accuracy == pytest.approx(0.4)
    assert [p.threshold for p in stats.ee] == [0.5, float("inf")]


def test_every_log_hi_agent_demo_writes_is_accepted_by_report_and_plan(tmp_path, capsys):
    """The demo's own logs (its EE-HI header has no ee_threshold, its remote run no local model in use)."""
    from hi_runtime.agent.cli import main as agent
    from measurements.cli import main as bench

    out = tmp_path / "demo"
    assert agent(["demo", "--out", str(out), "--limit", "24", "--no-progress"]) == 0
    logs = sorted(str(p) for p in out.glob("*.jsonl"))
    assert len(logs) >= 3
    capsys.readouterr()
    assert bench(["report", "--out", str(tmp_path / "rep"), "--device", "this_machine", "--runs", *logs]) == 0
    assert bench(["plan", "--device", "rpi4", "--runs", *logs]) == 0
    assert bench(["plan", "--device", "this_machine", "--runs", *logs, "--qos", "accuracy=0.5"]) == 0
    text = capsys.readouterr()
    assert "Traceback" not in text.err and "error" not in text.err
    assert (tmp_path / "rep" / "figures" / "accuracy_vs_latency.png").exists()
