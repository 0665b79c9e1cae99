"""The layers of docs/architecture.md hold (import-linter contracts in pyproject.toml), and the check
really fails when a lower layer imports a higher one, even inside a function."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = {"hi_runtime": "hi_runtime", "offload_server": "offload_server", "training": "training",
            "measurements": "measurements", "hi_firmware": "firmware/hi_firmware"}


def lint(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install 'hi-runtime[dev]')")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'firmware'}"}
    return subprocess.run([str(exe), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold(repo_root: Path):
    out = lint(repo_root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout


def _copy_sources(repo_root: Path, dst: Path) -> None:
    for rel in PACKAGES.values():
        shutil.copytree(repo_root / rel, dst / rel, ignore=shutil.ignore_patterns("*.pyc", "__pycache__", "*.c",
                                                                                  "*.h", "build", "*.o"))
    shutil.copy(repo_root / "pyproject.toml", dst / "pyproject.toml")


def test_a_planted_function_level_import_breaks_the_contracts(repo_root: Path, tmp_path: Path):
    _copy_sources(repo_root, tmp_path)
    eq = tmp_path / "hi_runtime" / "equations.py"
    eq.write_text(eq.read_text() + "\n\ndef _planted():\n    from training.train import fit  # noqa: F401\n")
    out = lint(tmp_path)
    assert out.returncode != 0
    assert "the core imports no application and no measurement BROKEN" in " ".join(out.stdout.split())
    assert "hi_runtime.equations -> training.train" in out.stdout


def test_a_planted_cli_cycle_breaks_the_contracts(repo_root: Path, tmp_path: Path):
    """The serial bridge (or the BLE gateway) importing the agent's CLI back, even inside a function, is the
    cli <-> bridge cycle the agent-cli-on-top contract forbids."""
    _copy_sources(repo_root, tmp_path)
    bridge = tmp_path / "hi_runtime" / "agent" / "serial_bridge.py"
    bridge.write_text(bridge.read_text() + "\n\ndef _planted():\n    from hi_runtime.agent.cli import main  # noqa: F401\n")
    out = lint(tmp_path)
    assert out.returncode != 0
    text = " ".join(out.stdout.split())
    assert "no cli <-> gateway / bridge cycles) BROKEN" in text, out.stdout[-3000:]
    assert "hi_runtime.agent.serial_bridge -> hi_runtime.agent.cli" in out.stdout
