"""The shipped models are found wherever the package is installed: a command's flag, then $HI_MODELS_DIR,
then the installed hi_models package (the checkout in an editable install); the hi-bench commands that
default to a shipped model use that resolver, not a path relative to their source file."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hi_runtime import artifacts


def test_flag_beats_env_beats_the_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    flag, env = tmp_path / "flag", tmp_path / "env"
    (env / "cifar10").mkdir(parents=True)
    monkeypatch.delenv(artifacts.MODELS_ENV, raising=False)
    installed = artifacts.models_dir("cifar10")
    assert (installed / "resnet8_int8.tflite").is_file()  # the installed data package holds the models
    monkeypatch.setenv(artifacts.MODELS_ENV, str(env))
    assert artifacts.models_dir("cifar10") == env / "cifar10"
    assert artifacts.default_path("resnet8_int8.tflite") is None  # not in $HI_MODELS_DIR: no default
    flag.mkdir()
    assert artifacts.models_dir("cifar10", flag) == flag  # a flat folder of models is taken as is
    (flag / "cifar10").mkdir()
    assert artifacts.models_dir("cifar10", flag) == flag / "cifar10"


def test_hi_bench_defaults_follow_the_resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from measurements.cli import main
    from measurements.commands.fleet import _model_for

    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "server.onnx").write_bytes(b"")
    monkeypatch.setenv(artifacts.MODELS_ENV, str(tmp_path))
    args = argparse.Namespace(standin=None, model=None)
    assert _model_for(args) == tmp_path / "cifar10" / "server.onnx"
    assert main(["reproduce", "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "missing model files" in err and str(tmp_path / "cifar10") in err, err


def test_no_module_locates_files_beside_its_source(repo_root: Path):
    """A path walked up from a module's own file (``Path(__file__).parents[1] / "models"``) exists in a checkout
    only; in an installed wheel the shipped models are found through hi_runtime.artifacts."""
    offenders = []
    for rel in ("hi_runtime", "offload_server", "training", "measurements", "firmware/hi_firmware"):
        for path in (repo_root / rel).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "parents[" in line and "__file__" in line:
                    offenders.append(f"{path.relative_to(repo_root)}:{number}: {line.strip()}")
    assert offenders == [], "use hi_runtime.artifacts (shipped/require/default_path) instead:\n" + "\n".join(offenders)


def _one_error_line(err: str, *words: str) -> None:
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in err


def test_bench_defaults_follow_the_resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """hi-bench server / agent and the firmware memory bench take the shipped models from the resolver: an
    empty $HI_MODELS_DIR is one line naming --model (or the model arguments) and $HI_MODELS_DIR, exit 2."""
    from measurements import bench_agent, bench_firmware_memory
    from measurements.cli import main

    monkeypatch.setenv(artifacts.MODELS_ENV, str(tmp_path))
    assert main(["server", "--requests", "1", "--clients", "1"]) == 2
    _one_error_line(capsys.readouterr().err, "--model", artifacts.MODELS_ENV, "server.onnx", "--standin")
    assert main(["agent", "--rounds", "1"]) == 2
    _one_error_line(capsys.readouterr().err, "--model", artifacts.MODELS_ENV, "resnet8_int8.tflite", "--standin")
    assert bench_firmware_memory.main([]) == 2
    _one_error_line(capsys.readouterr().err, artifacts.MODELS_ENV, str(tmp_path))

    # the demo sample comes from the same place
    assert bench_agent._shipped_samples() is None
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "demo_samples.npz").write_bytes(b"")
    assert bench_agent._shipped_samples() == tmp_path / "cifar10" / "demo_samples.npz"


def test_bench_firmware_data_default_is_not_beside_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from measurements.bench_firmware import _images

    monkeypatch.chdir(tmp_path)  # ../shared/datasets is looked up from the working directory
    with pytest.raises(SystemExit, match="pass --data DIR"):
        _images(2, None)


def test_a_bare_model_name_outside_the_checkout_is_the_shipped_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys):
    """With only a role's wheel there is no models/ folder to point at: `hi-server --model c=server_cpu.onnx`,
    a YAML config naming `server_cpu.onnx`, and `hi-firmware compile resnet8_int8.tflite` find the shipped
    files by name; a file of that name in the folder still wins, and a path with a folder is never redirected."""
    from hi_firmware.cli import main as firmware
    from offload_server.cli import main as server
    from offload_server.config import ServerConfig

    monkeypatch.delenv(artifacts.MODELS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    shipped = artifacts.shipped("server_cpu.onnx")
    assert artifacts.find_model("server_cpu.onnx") == str(shipped)
    assert artifacts.find_model("sub/server_cpu.onnx") == "sub/server_cpu.onnx"
    assert artifacts.find_model("nope.onnx") == "nope.onnx"
    conf = tmp_path / "conf"  # anchored at a config's folder: relative paths come back absolute, from there
    assert artifacts.find_model("server_cpu.onnx", base=conf) == str(shipped)
    assert artifacts.find_model("sub/m.onnx", base=conf) == str(conf / "sub" / "m.onnx")
    assert artifacts.find_model("nope.onnx", base=conf) == str(conf / "nope.onnx")
    assert artifacts.find_model(str(tmp_path / "abs.onnx"), base=conf) == str(tmp_path / "abs.onnx")
    assert server(["--model", "c=server_cpu.onnx", "--check"]) == 0
    (tmp_path / "cfg.yaml").write_text("models:\n  - {id: c, path: server_cpu.onnx}\n")
    assert ServerConfig.from_yaml(tmp_path / "cfg.yaml").models[0].path == str(shipped)
    (tmp_path / "server_cpu.onnx").write_bytes(b"mine")
    assert artifacts.find_model("server_cpu.onnx") == "server_cpu.onnx"
    assert ServerConfig.from_yaml(tmp_path / "cfg.yaml").models[0].path == str(tmp_path / "server_cpu.onnx")
    capsys.readouterr()
    assert firmware(["compile", "resnet8_int8.tflite", "--out", str(tmp_path / "fw")]) == 0
    assert (tmp_path / "fw").is_dir()
