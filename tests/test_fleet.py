"""``hi-bench fleet`` against in-process servers: every frame accounted for, shed and degraded counted,
per-replica load from the server's metrics, and one-line errors (the Ray runs are in test_server_ray.py)."""
from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from measurements.cli import main
from measurements.commands.fleet import Arrival, FleetConfig, offload_prob_from_card, simulate
from offload_server.config import ModelConfig, ServerConfig
from offload_server.server import run_server_in_thread
from offload_server.standin import build_standin_onnx

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin_onnx(tmp_path_factory.mktemp("fleet") / "tiny.onnx", kind="linear")


def _server(model_path: Path, **kw) -> ServerConfig:
    return ServerConfig(models=[ModelConfig(id="cifar10", path=str(model_path), max_queue_delay_us=500)],
                        port=0, log_level="WARNING", **kw)


def _accounted(r) -> None:
    assert r.frames == r.local + r.ok + r.shed + r.degraded, r.summary()
    assert r.offloaded == r.ok + r.degraded + r.errors.get("BUSY", 0), r.summary()
    assert len(r.latencies_ms) == r.ok


def test_fleet_counts_every_frame(model_path) -> None:
    with run_server_in_thread(_server(model_path, metrics_port=0)) as handle:
        cfg = FleetConfig(servers=[("127.0.0.1", handle.port)], devices=10, arrival=Arrival("poisson", 40),
                          offload_prob=0.5, duration_s=1.5, deadline_ms=2000)
        result = asyncio.run(simulate(cfg))
    _accounted(result)
    assert result.ok > 100 and result.degraded == 0
    assert 0.3 < result.offloaded / result.frames < 0.7  # about half the frames were offloaded
    assert result.percentile(50) <= result.percentile(99)


def test_fleet_against_a_dead_server_degrades_every_offload(model_path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = FleetConfig(servers=[("127.0.0.1", port)], devices=3, arrival=Arrival("rate", 20), offload_prob=1.0,
                      duration_s=0.5, deadline_ms=200)
    result = asyncio.run(simulate(cfg))
    _accounted(result)
    assert result.ok == 0 and result.degraded == result.offloaded > 0


def test_fleet_counts_busy_as_shed_and_fails_over(model_path) -> None:
    """Devices refused with BUSY (per-peer cap 2) shed; with a second front door they fail over to it."""
    with run_server_in_thread(_server(model_path, max_connections_per_peer=2)) as a, \
            run_server_in_thread(_server(model_path)) as b:
        cfg = FleetConfig(servers=[("127.0.0.1", a.port)], devices=6, arrival=Arrival("rate", 20), offload_prob=1.0,
                          duration_s=1.0, deadline_ms=2000)
        alone = asyncio.run(simulate(cfg))
        cfg.servers = [("127.0.0.1", a.port), ("127.0.0.1", b.port)]
        both = asyncio.run(simulate(cfg))
    _accounted(alone)
    assert alone.errors.get("BUSY", 0) > 0 and alone.shed >= alone.errors["BUSY"] and alone.ok > 0
    _accounted(both)
    assert both.ok > alone.ok  # the refused devices moved to the second front door


def test_decider_card_gives_the_offload_probability(repo_root: Path, tmp_path: Path) -> None:
    card = repo_root / "models" / "cifar10" / "decider_resnet8.card.json"
    assert offload_prob_from_card(card) == json.loads(card.read_text())["test"]["offload_ratio"]
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="offload_ratio"):
        offload_prob_from_card(tmp_path / "x.json")


def test_fleet_cli_with_metrics_url(model_path, tmp_path, capsys, repo_root) -> None:
    with run_server_in_thread(_server(model_path, metrics_port=0)) as handle:
        code = main(["fleet", "--server", f"127.0.0.1:{handle.port}", "--metrics-url",
                     f"http://127.0.0.1:{handle.metrics_port}/metrics", "--devices", "4", "--arrival", "rate:25",
                     "--decider-card", str(repo_root / "models/cifar10/decider_resnet8.card.json"), "--duration", "1",
                     "--deadline-ms", "2000", "--plot", str(tmp_path / "f.png"), "--json", str(tmp_path / "f.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    row = json.loads((tmp_path / "f.json").read_text())[0]
    assert row["replica_load"] == {"local": row["ok"]}  # in-process: one "replica"
    assert "per replica: local:" in out and (tmp_path / "f.png").exists()


@pytest.mark.parametrize("argv, words", [
    (["--server", "127.0.0.1:1", "--arrival", "often"], "--arrival"),
    (["--server", "127.0.0.1:1", "--offload-prob", "2"], "--offload-prob"),
    (["--server", "127.0.0.1:1", "--decider-card", "missing.json"], "does not exist"),
    (["--server", "nonsense"], "HOST:PORT"),
    (["--local", "ray", "--replicas", "0"], "--replicas"),
    (["--local", "inprocess", "--model", "missing.onnx"], "--model"),
])
def test_fleet_cli_errors_are_one_line(argv, words, capsys, tmp_path) -> None:
    try:
        code = main(["fleet", *argv, "--duration", "0.2", "--plot", str(tmp_path / "f.png")])
    except SystemExit as exc:  # refused while parsing (argparse exits), as the entry point would
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err and "Traceback" not in err
