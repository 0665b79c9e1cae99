"""hi-server's command line: a temp YAML config and a stand-in model, served by the real console script."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hi_runtime.offload_client import OffloadClient
from offload_server.cli import main
from offload_server.config import ServerConfig
from offload_server.standin import build_standin_onnx

pytestmark = pytest.mark.timeout(120)
SCRIPT = Path(sys.executable).with_name("hi-server")


def _start(args, tmp_path):
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "offload_server.cli"]
    return subprocess.Popen(cmd + args, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _wait_started(proc) -> dict:
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "server_started":
            return record
    proc.kill()
    raise AssertionError("hi-server did not start:\n" + "".join(lines))


def test_cli_serves_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    model = build_standin_onnx(tmp_path / "models" / "server.onnx")
    cfg = tmp_path / "conf" / "server.yaml"
    cfg.parent.mkdir()
    cfg.write_text(yaml.safe_dump({"host": "127.0.0.1", "port": 0, "metrics_port": 0, "log_format": "json",
                                   "models": [{"id": "cifar10", "path": "../models/server.onnx"}]}))
    proc = _start(["--config", str(cfg), "--max-queue-delay-us", "500"], tmp_path)
    try:
        started = _wait_started(proc)
        assert started["models"] == ["cifar10"] and started["auth"] is False
        img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        import onnxruntime as ort

        want = int(ort.InferenceSession(str(model)).run(None, {"image": img[None].astype(np.float32)})[0].argmax())
        with OffloadClient("127.0.0.1", started["port"]) as client:
            assert client.infer(img, "cifar10", timeout=10).class_id == want
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        tail = proc.stderr.read()
        assert '"server_stopped"' in tail
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = build_standin_onnx(tmp_path / "m.onnx")
    assert main(["--model", f"m={model}", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "without a pre-shared key" in capsys.readouterr().err
    assert main([]) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert main(["--model", "no-equals-sign"]) == 2
    assert "ID=PATH" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--config" in capsys.readouterr().out


def test_cli_check_loads_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = build_standin_onnx(tmp_path / "m.onnx")
    assert main(["--model", f"m={model}", "--check", "--log-level", "WARNING"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["models"]["m"]["input_shape"] == [32, 32, 3] and summary["default_model"] == "m"


def test_example_config_points_at_the_shipped_model(repo_root: Path) -> None:
    data = yaml.safe_load((repo_root / "configs" / "server.yaml").read_text())
    model = data["models"][0]
    assert model["id"] == "cifar10"
    assert (repo_root / "configs" / model["path"]).resolve() == repo_root / "models" / "cifar10" / "server.onnx"
    if (repo_root / "models" / "cifar10" / "server.onnx").exists():
        cfg = ServerConfig.from_yaml(repo_root / "configs" / "server.yaml")
        cfg.validate()
        assert main(["--config", str(repo_root / "configs" / "server.yaml"), "--check", "--log-level",
                     "WARNING"]) == 0
