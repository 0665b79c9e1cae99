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
