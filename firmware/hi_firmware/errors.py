"""The two ways a hi-firmware step fails.

* :class:`UsageError` - the user asked for something that cannot work as given (a missing model file, a bad
  option combination, a tool that is not installed): ``hi-firmware`` prints one line naming the problem and
  the fix and exits with code 2, never a traceback.
* :class:`BuildError` - the request was fine but a build or run step failed (compiler errors, QEMU exiting):
  one line plus the tool's output, exit code 1.

``UsageError`` is the core's (``hi_runtime.cli_support``): every CLI of the project follows one pattern.
:func:`need_file` and :func:`need_folder` (the core's too) check a path flag before anything is read or written, so the line
names the flag (a raw OSError later would name only the path) and a mistake leaves no half-made output.
"""
from __future__ import annotations

from hi_runtime.cli_support import UsageError, need_file, need_folder

__all__ = ["BuildError", "UsageError", "need_file", "need_folder"]


class BuildError(RuntimeError):
    """A toolchain or emulator step failed; the message carries the command and its output."""
