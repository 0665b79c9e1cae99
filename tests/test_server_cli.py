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


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert len(err.splitlines()) == 1, err
    return err


def test_every_user_mistake_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Wrong flag values, wrong settings by type or range, missing files, a port in use: one line on stderr
    naming what was wrong and the fix, exit 2, no traceback."""
    import socket

    model = build_standin_onnx(tmp_path / "m.onnx")

    def config(**settings) -> str:
        path = tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump({"models": [{"id": "m", "path": str(model)}], **settings}))
        return str(path)

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [
            (["--config", config(port="abc"), "--check"], ["port", "whole number"]),
            (["--config", config(port=70000), "--check"], ["port 70000", "0..65535"]),
            (["--config", config(max_inflight=1.5), "--check"], ["max_inflight", "whole number"]),
            (["--config", config(compat_reply_bytes=3), "--check"], ["compat_reply_bytes", "1 or 2"]),
            (["--config", config(backend="spark"), "--check"], ["backend", "'inprocess' or 'ray'"]),
            (["--config", config(ray={"num_replicas": "two"}), "--check"], ["ray.num_replicas", "whole number"]),
            (["--config", config(ray={"replicas": 2}), "--check"], ["unknown setting", "num_replicas"]),
            (["--config", config(models=[{"id": "m", "path": str(model), "max_batch_size": "big"}]), "--check"],
             ["models[0].max_batch_size", "whole number"]),
            (["--config", config(log_level="loud"), "--check"], ["log_level"]),
            (["--config", str(tmp_path / "missing.yaml")], ["does not exist"]),
            (["--model", f"m={tmp_path / 'missing.onnx'}", "--check"], ["does not exist"]),
            (["--model", f"m={model}", "--key-file", str(tmp_path / "no-key")], ["auth_key_file"]),
            (["--model", f"m={model}", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")],
             ["tls_cert"]),
            (["--model", f"m={model}", "--port", "abc"], ["--port", "invalid int"]),
            (["--model", f"m={model}", "--compat-reply-bytes", "3"], ["--compat-reply-bytes"]),
            (["--model", f"m={model}", "--backend", "spark"], ["--backend"]),
            (["--model", f"m={model}", "--replicas", "0", "--backend", "ray", "--check"], ["num_replicas"]),
            (["--model", f"m={model}", "--port", str(busy.getsockname()[1]), "--log-level", "ERROR"],
             ["address already in use", "--port"]),
            (["--model", f"m={model}", "--bogus"], ["unrecognized arguments"]),
        ]
        for argv, words in cases:
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code
            err = _one_line_error(capsys)
            assert code == 2, (argv, err)
            for word in words:
                assert word.lower() in err.lower(), (argv, err)
    finally:
        busy.close()


def test_real_script_reports_a_bad_type_without_traceback(tmp_path: Path) -> None:
    """The console script as a user runs it: `port: "abc"` fails --check with one line, exit 2."""
    model = build_standin_onnx(tmp_path / "m.onnx")
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({"port": "abc", "models": [{"id": "m", "path": str(model)}]}))
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "offload_server.cli"]
    proc = subprocess.run(cmd + ["--config", str(cfg), "--check"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hi-server: error: setting port = 'abc' is invalid: use a whole number, e.g. port: 8555"]
