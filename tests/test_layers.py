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


# ---- one model-runner layer: only hi_runtime/backends.py builds an interpreter or an inference session -------

# The allow-list: the core's runner layer (TFLiteBackend, TflmBackend, OnnxBackend, tflm_arena_bytes) is the
# one place that constructs LiteRT / tflite-runtime / tf.lite interpreters, TFLite Micro interpreters and ONNX
# Runtime sessions, and the one place that imports their runtimes. Everything else goes through open_backend
# and the Backend classes (reference kernels and TFLite Micro included), so every caller gets the same
# quantization, batching and error messages. (hi_runtime/tflite_schema.py imports only the schema modules of
# ai_edge_litert / tflite_micro, which run nothing.)
RUNNER_ALLOWED = {"hi_runtime/backends.py"}
RUNNER_CLASSES = {"Interpreter", "InferenceSession"}
RUNNER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime", "onnxruntime", "tflite_micro.runtime")


def runner_uses(source: str) -> list[str]:
    """Where ``source`` constructs an interpreter/session (``Interpreter(...)``, ``tf.lite.Interpreter(...)``,
    ``runtime.Interpreter.from_bytes(...)``, ``ort.InferenceSession(...)``) or imports a runtime's module."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            names = [f.id] if isinstance(f, ast.Name) else [f.attr] if isinstance(f, ast.Attribute) else []
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute):
                names.append(f.value.attr)  # Interpreter.from_bytes(...)
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                names.append(f.value.id)
            if RUNNER_CLASSES & set(names):
                found.append(f"line {node.lineno}: constructs {'/'.join(sorted(RUNNER_CLASSES & set(names)))}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom):
                mods += [f"{node.module}.{a.name}" for a in node.names]
            hits = sorted({m for m in mods if m.startswith(RUNNER_MODULES)})
            if hits:
                found.append(f"line {node.lineno}: imports {', '.join(hits)}")
    return found


def test_only_the_core_runner_layer_builds_interpreters(repo_root: Path):
    offenders = {}
    for rel in PACKAGES.values():
        for path in sorted((repo_root / rel).rglob("*.py")):
            name = path.relative_to(repo_root).as_posix()
            if name in RUNNER_ALLOWED or "/build/" in name:
                continue
            uses = runner_uses(path.read_text(encoding="utf-8"))
            if uses:
                offenders[name] = uses
    assert offenders == {}, ("run models through hi_runtime.backends (open_backend, TFLiteBackend(reference=True), "
                             f"TflmBackend, OnnxBackend) instead: {offenders}")
    # the allow-listed file really is where they are built (so the checker recognises what it looks for)
    allowed = runner_uses((repo_root / "hi_runtime" / "backends.py").read_text(encoding="utf-8"))
    assert any("InferenceSession" in u for u in allowed) and any("Interpreter" in u for u in allowed), allowed


@pytest.mark.parametrize("planted", [
    "from ai_edge_litert.interpreter import Interpreter\n",
    "def f(b):\n    return Interpreter(model_content=b)\n",
    "import tensorflow as tf\ndef f(b):\n    return tf.lite.Interpreter(model_content=b)\n",
    "def f(b):\n    return runtime.Interpreter.from_bytes(b)\n",
    "def f(p, ort):\n    return ort.InferenceSession(p)\n",
    "import onnxruntime as ort\n",
])
def test_a_planted_interpreter_is_found(planted: str):
    assert runner_uses(planted), planted
    assert runner_uses("from hi_runtime.backends import open_backend\nb = open_backend(p)\n") == []
