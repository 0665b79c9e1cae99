"""The two ways a hi-firmware step fails.

* :class:`UsageError` - the user asked for something that cannot work as given (a missing model file, a bad
  option combination, a tool that is not installed): ``hi-firmware`` prints one line naming the problem and
  the fix and exits with code 2, never a traceback.
* :class:`BuildError` - the request was fine but a build or run step failed (compiler errors, QEMU exiting):
  one line plus the tool's output, exit code 1.

WHY the same name as the core's ``hi_runtime.cli_support.UsageError``: every CLI of the project follows one
pattern; when the two meet, this class becomes an alias of that one.
"""
from __future__ import annotations


class UsageError(Exception):
    """A user mistake: the message is one line with the fix."""


class BuildError(RuntimeError):
    """A toolchain or emulator step failed; the message carries the command and its output."""
