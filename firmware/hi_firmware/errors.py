"""The two ways a hi-firmware step fails.

* :class:`UsageError` - the user asked for something that cannot work as given (a missing model file, a bad
  option combination, a tool that is not installed): ``hi-firmware`` prints one line naming the problem and
  the fix and exits with code 2, never a traceback.
* :class:`BuildError` - the request was fine but a build or run step failed (compiler errors, QEMU exiting):
  one line plus the tool's output, exit code 1.

``UsageError`` is the core's (``hi_runtime.cli_support``): every CLI of the project follows one pattern.
:func:`need_file` and :func:`need_folder` check a path flag before anything is read or written, so the line
names the flag (a raw OSError later would name only the path) and a mistake leaves no half-made output.
"""
from __future__ import annotations

import os
from pathlib import Path

from hi_runtime.cli_support import UsageError

__all__ = ["BuildError", "UsageError", "need_file", "need_folder"]


class BuildError(RuntimeError):
    """A toolchain or emulator step failed; the message carries the command and its output."""


def need_file(flag: str, path: str | os.PathLike, what: str) -> Path:
    """``path`` of ``flag`` must be an existing file; ``what`` says which file, e.g. "an INT8 .tflite file"."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give {what}")
    if not p.exists():
        raise UsageError(f"{flag} {path} does not exist; give {what}")
    return p


def need_folder(flag: str, path: str | os.PathLike) -> Path:
    """``path`` of ``flag`` is a folder the command writes (made if missing): neither it nor a parent may be
    a file."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():  # the first that exists decides: mkdir(parents=True) goes through it
            if not q.is_dir():
                where = "is a file" if q == p else f"is inside {q}, which is a file"
                raise UsageError(f"{flag} {path} {where}; give a folder (it is made if missing)")
            break
    return p
