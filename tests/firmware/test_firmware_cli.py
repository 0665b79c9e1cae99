"""hi-firmware follows the project's CLI pattern: --help everywhere; a user mistake gives exactly one line
``hi-firmware: error: ...`` naming what was wrong and the fix, exit code 2, and never a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parents[2] / "models" / "cifar10" / "resnet8_int8.tflite"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hi_firmware.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, check=False)


@pytest.mark.parametrize("cmd", [[], ["compile"], ["gen-app"], ["build"], ["flash"], ["run-qemu"], ["profile"]])
def test_help(cmd: list[str]) -> None:
    proc = _run(*cmd, "--help")
    assert proc.returncode == 0 and "usage: hi-firmware" in proc.stdout


@pytest.mark.parametrize("args,says", [
    (["compile", "missing.tflite", "--out", "gen"], "does not exist"),
    (["compile", str(MODEL), "--out", "gen", "--scratch-budget", "-1"], "--scratch-budget"),
    (["--firmware-dir", "/", "compile", str(MODEL), "--out", "gen"], "sources.mk"),
    (["gen-app", "--model", "missing.tflite", "--out", "app"], "does not exist"),
    (["gen-app", "--chain", "missing.json", "--out", "app"], "missing.json"),
    (["gen-app", "--model", str(MODEL), "--decider", "missing.json", "--out", "app"], "missing.json"),
    (["build", "--board", "qemu-m4", "--engine", "tflm", "--model", str(MODEL)], "--engine tflm"),
    (["build", "--board", "host", "--engine", "tflm", "--model", str(MODEL)], "--engine tflm"),
    (["build", "--board", "moon"], "invalid choice"),
    (["run-qemu", "--elf", "missing.elf"], "does not exist"),
    (["flash", "--board", "nano33ble"], "hi-firmware build --board nano33ble"),
    (["profile", "missing.tflite"], "does not exist"),
    (["profile", str(MODEL), "--samples", "0"], "--samples"),
])
def test_user_mistakes_are_one_line_exit_2(args: list[str], says: str, tmp_path: Path) -> None:
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and says in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert not (tmp_path / "gen").exists() and not (tmp_path / "app" / "hi_app_config.c").exists()


def test_the_registry_imports_every_subcommand_module() -> None:
    """No silent drop: every subcommand the docs name is registered."""
    from hi_firmware.cli import build_parser

    text = build_parser().format_help()
    for name in ("compile", "gen-app", "build", "flash", "run-qemu", "profile"):
        assert name in text
