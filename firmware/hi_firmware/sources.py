"""The firmware's one source list (firmware/sources.mk) for the Python builds.

sources.mk is plain ``NAME := a b c`` lines that make includes, CMake parses and this module reads, so the
host libraries, the QEMU image, the model bench and the PlatformIO/CMake descriptions all build the same
files (tests/firmware/test_sources.py checks every description against it).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .paths import MARKER, firmware_dir


@lru_cache(maxsize=8)
def _parse(path: Path) -> dict[str, tuple[str, ...]]:
    text = path.read_text().replace("\\\n", " ")
    out: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Z0-9_]+)\s*:=\s*(.*)", line)
        if not m:
            raise ValueError(f"{path}: not a `NAME := words` line: {line!r}")
        out[m.group(1)] = tuple(m.group(2).split())
    return out


def lists(root: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Every list in sources.mk, paths relative to the firmware directory."""
    return dict(_parse((root or firmware_dir()) / MARKER))


def paths(name: str, root: Path | None = None) -> list[Path]:
    """Absolute paths of one list, e.g. ``paths("HI_CORE_SRCS")``."""
    root = root or firmware_dir()
    try:
        rel = _parse(root / MARKER)[name]
    except KeyError:
        raise KeyError(f"{root / MARKER} has no list {name}") from None
    return [root / r for r in rel]


def include_dirs(root: Path | None = None) -> list[Path]:
    return paths("HI_INCLUDE_DIRS", root)
