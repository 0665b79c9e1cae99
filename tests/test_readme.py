"""The README's "Try it in a minute" block, run line by line exactly as written (installed entry points,
from the repository root), so the first commands a new user types keep working. Lines that need the
shared datasets or a C compiler are skipped where those are absent, and say so."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEGIN, END = "<!-- fast-commands:begin -->", "<!-- fast-commands:end -->"


def fast_commands(readme: str) -> list[str]:
    """The shell lines of the fenced block between the fast-commands markers (comments dropped)."""
    if BEGIN not in readme or END not in readme:
        raise AssertionError(f"README.md lost its {BEGIN} ... {END} block")
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    fenced = re.search(r"```(?:bash|sh)?\n(.*?)```", block, re.S)
    assert fenced, "the fast-commands block holds no fenced code block"
    lines = [ln.split(" #", 1)[0].strip() for ln in fenced.group(1).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def test_the_block_is_found_and_names_every_role():
    cmds = fast_commands((ROOT / "README.md").read_text())
    tools = {shlex.split(c)[0] for c in cmds}
    assert {"hi-agent", "hi-server", "hi-bench", "hi-firmware", "hi-train"} <= tools
    # the parser sees a planted line and drops comments
    planted = f"x\n{BEGIN}\n```bash\n# note\nhi-agent demo  # quick\n```\n{END}\n"
    assert fast_commands(planted) == ["hi-agent demo"]


CMDS = fast_commands((ROOT / "README.md").read_text())


def _missing_requirement(cmd: str) -> str | None:
    for token in shlex.split(cmd):
        if token.startswith("../shared") and not (ROOT / token).exists():
            return f"{token} is absent"
    if cmd.startswith("hi-firmware build") and not (shutil.which("cc") or shutil.which("gcc")):
        return "no C compiler"
    return None


@pytest.mark.parametrize("cmd", CMDS, ids=[c.split(" --")[0] for c in CMDS])
def test_fast_command_runs_as_written(cmd):
    reason = _missing_requirement(cmd)
    if reason:
        pytest.skip(reason)
    argv = shlex.split(cmd)
    exe = BIN / argv[0]
    assert exe.exists(), f"{argv[0]} is not installed beside {sys.executable}"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", HI_NO_PROGRESS="1")
    proc = subprocess.run([str(exe), *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}:\n{out[-3000:]}"
    assert "Traceback" not in out, f"`{cmd}` printed a traceback:\n{out[-3000:]}"
