"""measurements/bench_server.py runs end to end at a tiny size (the numbers themselves are not checked)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from measurements import bench_server

pytestmark = pytest.mark.timeout(120)


def test_bench_server_smoke(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    assert bench_server.main(["--standin", "linear", "--clients", "4", "--requests", "3", "--warmup", "1",
                              "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    rows = {r["mode"]: r for r in summary["results"]}
    assert set(rows) == {"batch1", "batched"}
    for row in rows.values():
        assert row["requests"] == 12 and row["errors"] == 0
        assert row["throughput_rps"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert rows["batch1"]["mean_batch_size"] == 1.0
    assert "speedup" in summary and "throughput" in capsys.readouterr().out


def test_bench_server_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench_server.main(["--model", str(tmp_path / "none.onnx")]) == 1
    assert "--standin" in capsys.readouterr().err
    assert bench_server.main(["--standin", "linear", "--modes", "fast"]) == 1
    with pytest.raises(SystemExit):
        bench_server.main(["--help"])
    assert "--clients" in capsys.readouterr().out


def test_refused_requests_are_errors_not_served_requests(tmp_path: Path) -> None:
    """A fast ERROR is no answer: it adds to the errors, never to the latencies (throughput, p50/p99);
    warm-up requests count in neither."""
    import multiprocessing as mp

    from offload_server.config import ModelConfig, ServerConfig
    from offload_server.server import run_server_in_thread
    from offload_server.standin import build_standin_onnx

    model = build_standin_onnx(tmp_path / "m.onnx")
    with run_server_in_thread(ServerConfig(models=[ModelConfig(id="bench", path=str(model))], port=0)) as handle:
        parent, child = mp.Pipe(duplex=False)
        bench_server._load_worker(handle.port, 2, 3, 1, "no-such-model", child)
        result = parent.recv()
    assert result["latencies"] == [] and result["n_errors"] == 2 * 3
