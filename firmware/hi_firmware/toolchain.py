"""The one driver of the host C compiler: shared libraries for ctypes and test programs, cached by content.

Every Python-side host build goes through :func:`build_shared` (the generated models for the byte-exactness
tests, the core for its binding tests, the whole firmware as a host device). The Cortex-M builds are
described by firmware/qemu/Makefile (board image and model bench) and run through :func:`run_make`.

WHY a content-hash cache: pytest builds the same libraries in many tests; a library is rebuilt only when a
source, a header of an include directory or a flag changed, and written atomically so parallel runs never
load a half-written file.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import BuildError, UsageError

#: -ffp-contract=off: the few float steps (QUANTIZE/DEQUANTIZE, feature requantization) must round like
#: TFLite Micro / numpy, so the compiler may not fuse multiply-adds.
HOST_CFLAGS = ("-std=c99", "-O2", "-g", "-fPIC", "-ffp-contract=off", "-Wall", "-Wextra",
               "-Werror=implicit-function-declaration")


def require(tool: str, hint: str) -> str:
    """Path of an external tool, or a UsageError naming how to install it."""
    path = shutil.which(tool)
    if not path:
        raise UsageError(f"{tool} not found: {hint}")
    return path


def host_cc() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if not cc:
        raise UsageError("no host C compiler found: install gcc (Debian: apt-get install gcc) or set CC")
    return cc


def _digest(sources: Sequence[Path], includes: Sequence[Path], flags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in sources:
        h.update(str(p.name).encode())
        h.update(Path(p).read_bytes())
    for d in includes:
        for hdr in sorted(Path(d).glob("*.h")):
            h.update(hdr.read_bytes())
    h.update(" ".join(flags).encode())
    return h.hexdigest()[:12]


def build_shared(sources: Sequence[Path], includes: Sequence[Path], out_dir: Path, stem: str,
                 flags: Sequence[str] = ()) -> Path:
    """Compile sources into out_dir/<stem>_<hash>.so (reused when nothing changed); returns its path."""
    all_flags = [*HOST_CFLAGS, "-shared", *flags]
    out = Path(out_dir) / f"{stem}_{_digest(sources, includes, all_flags)}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [host_cc(), *all_flags, *[f"-I{d}" for d in includes], *map(str, sources), "-o", str(tmp), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"host build failed ({' '.join(cmd)}):\n{proc.stderr}")
    os.replace(tmp, out)
    return out


def run_make(directory: Path, target: str, variables: dict[str, str], what: str) -> str:
    """``make -s -C directory VAR=value ... target``; its output, or a BuildError with it."""
    require("make", "install make (Debian: apt-get install make)")
    cmd = ["make", "-s", "-C", str(directory), *[f"{k}={v}" for k, v in variables.items()], target]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def elf_size(elf: Path) -> dict[str, int]:
    """text/data/bss from arm-none-eabi-size (Berkeley format); flash = text + data, RAM = data + bss."""
    tool = require("arm-none-eabi-size", "install gcc-arm-none-eabi (binutils)")
    out = subprocess.run([tool, str(elf)], capture_output=True, text=True, check=True).stdout.splitlines()
    text, data, bss = (int(x) for x in out[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}
