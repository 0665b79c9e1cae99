"""The one pattern every command-line tool follows (hi-agent, hi-server, hi-train, hi-bench, hi-firmware).

* ``main(argv)`` builds an argparse parser, registers subcommands and hands over to :func:`run`;
* a subcommand returns an exit code; a user mistake raises :class:`UsageError` with one line that names
  what was wrong and the fix, which :func:`run` prints as ``<tool>: error: <line>`` with exit code 2 (the
  code argparse itself uses), never a traceback;
* a path the command cannot use as given (missing, a file where a folder must be, no permission) is the
  same kind of mistake: one line naming the path, exit 2 (:data:`PATH_MISTAKES`);
* numeric flags take :func:`at_least` / :func:`fraction` as their argparse ``type``, so a negative count
  is refused while parsing;
* subcommands that live in other modules are listed by name and registered with
  :func:`register_subcommands`. Every module of a tool ships in the same distribution, so a module that
  cannot be imported is a broken install or a bug: it fails loudly with its import error instead of
  silently taking its subcommand away.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed (e.g. a server that stayed down, a check that did not pass)
EXIT_USAGE = 2  # the user asked for something that cannot work as given (argparse uses 2 too)
EXIT_INTERRUPTED = 130  # 128 + SIGINT; a run stopped by SIGTERM or SIGHUP exits 128 + that signal


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (systemd, Docker, a closed terminal) while :func:`stop_signals_interrupt` is on:
    a KeyboardInterrupt, so a service stopped that way finishes like Ctrl-C (samples in flight answered,
    the log flushed, the summary printed), and exits 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupted_exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_INTERRUPTED


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (on the main thread; elsewhere, and
    where the platform lacks a signal, nothing changes); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame) -> None:
        raise Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class UsageError(Exception):
    """A user mistake (bad flag value, missing file, wrong combination): one line with the fix."""


class Parser(argparse.ArgumentParser):
    """argparse, but a malformed command line is one line too (what was wrong, where the help is), exit 2;
    subcommands made with ``add_subparsers`` inherit it."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, text: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):  # NaN passes every "not below the minimum" test; inf no bound
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def finite(text: str) -> float:
    """An argparse ``type`` for any finite number (a coefficient, an intercept): NaN and inf are refused."""
    return float(_number(float, text))


def at_least(minimum: float, kind: type = int, *, exclusive: bool = False) -> Callable[[str], float | int]:
    """An argparse ``type`` for a number >= ``minimum`` (> with ``exclusive``), so a negative count or a
    zero period is refused when the command line is parsed, in one line naming the flag, not later with a
    traceback or a silently odd run. ``at_least(1)``: a count of one or more; ``at_least(0, float,
    exclusive=True)``: a positive duration."""

    def parse(text: str) -> float | int:
        value = _number(kind, text)
        if value < minimum or (exclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if exclusive else '>='} {minimum:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid <type> value" message
    return parse


def fraction(text: str) -> float:
    """An argparse ``type`` for a fraction in [0, 1]; a percentage written as 90 is refused with the fix."""
    value = _number(float, text)
    if not 0.0 <= value <= 1.0:
        hint = f" (if you meant {value:g}%, write {value / 100:g})" if 1.0 < value <= 100.0 else ""
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in [0, 1]{hint}")
    return value


def positive_fraction(text: str) -> float:
    """An argparse ``type`` for a fraction in (0, 1]: a weight or a grid step, where 0 would mean nothing
    (or divide by zero)."""
    value = at_least(0, float, exclusive=True)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be <= 1 (a fraction in (0, 1])")
    return value


def number_list(check: Callable[[str], float], example: str) -> Callable[[str], list[float]]:
    """An argparse ``type`` for a comma list whose every entry passes ``check`` (an argparse type such as
    ``at_least(0, float, exclusive=True)`` or ``fraction``), so ``1,x`` is refused while parsing, naming
    the flag."""

    def parse(text: str) -> list[float]:
        parts = [p.strip() for p in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of numbers, e.g. {example}")
        try:
            return [check(p) for p in parts]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (in the comma list {text!r}, e.g. {example})") from None

    parse.__name__ = "list"
    return parse


# Path flags, checked before any work, so the line names the flag (a raw OSError later names only the
# path) and a mistake leaves no half-made output.

def need_file(flag: str, path: str | os.PathLike, what: str) -> Path:
    """``path`` of ``flag`` must be an existing file; ``what`` says which file, e.g. "an INT8 .tflite file"."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give {what}")
    if not p.exists():
        raise UsageError(f"{flag} {path} does not exist; give {what}")
    return p


def need_folder(flag: str, path: str | os.PathLike, *, create: bool = False) -> Path:
    """``path`` of ``flag`` is a folder the command writes: neither it nor a parent may be a file. With
    ``create`` it is made now and must be writable (before a long run, not after)."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():  # the first that exists decides: mkdir(parents=True) goes through it
            if not q.is_dir():
                where = "is a file" if q == p else f"is inside {q}, which is a file"
                raise UsageError(f"{flag} {path} {where}; give a folder (it is made if missing)")
            break
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{flag} {path}: cannot create this folder ({exc.strerror or exc}); give a folder "
                             "you may write") from None
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {path}: permission denied; give a folder you may write")
    return p


def output_file(flag: str, path: str | os.PathLike, example: str = "out.json") -> Path:
    """A file the command will write: a folder given in its place, a file in the way of its folder, or a
    place that cannot be written is one line naming ``flag``; its folder is made now."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file's path, e.g. {p / example}")
    need_folder(flag, p.parent, create=True)
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {path}: permission denied; give a path you may write")
    return p


def distinct_files(outputs: dict[str, str | os.PathLike | None],
                   inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """Files a command writes (``outputs``: flag -> path) must be neither one of the files it reads
    (``inputs``) nor each other: writing there would silently destroy the input, or one output the other."""
    def same(a: Path, b: Path) -> bool:
        try:
            return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
        except OSError:
            return False

    seen: list[tuple[str, Path]] = []
    for flag, path in outputs.items():
        if not path:
            continue
        out = Path(path)
        for in_flag, in_path in (inputs or {}).items():
            if in_path and same(out, Path(in_path)):
                raise UsageError(f"{flag} {path} is the file {in_flag} reads: writing it would destroy the input; "
                                 "give another path")
        for other_flag, other in seen:
            if same(out, other):
                raise UsageError(f"{flag} and {other_flag} name the same file {path}; give each its own path")
        seen.append((flag, out))


def load_subcommand_modules(names: Sequence[str], tool: str = "this tool") -> list[ModuleType]:
    """Import the registry's modules; any that fails to import, or has no ``register_cli``, raises."""
    modules = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeError(f"{tool}: subcommand module {name} cannot be imported ({exc}); the installation "
                               "is broken: reinstall the package with the extras of this role") from exc
        if not hasattr(module, "register_cli"):
            raise RuntimeError(f"{name} is in the {tool} registry but has no register_cli(subparsers)")
        modules.append(module)
    return modules


def register_subcommands(subparsers, names: Sequence[str], tool: str = "this tool") -> None:
    for module in load_subcommand_modules(names, tool):
        module.register_cli(subparsers)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, tool: str,
        before: Callable[[argparse.Namespace], None] | None = None, subcommand: str = "command",
        user_errors: tuple[type[BaseException], ...] = (), failures: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv``, configure logging from ``-v``, run the chosen subcommand (``args.func``) and turn a
    user mistake into one line and exit code 2: :class:`UsageError`, and the tool's own ``user_errors``
    (e.g. its config or dataset errors). ``failures`` are the environment failing (a meter, a server): one
    line and exit 1. Anything else is a bug and keeps its traceback. ``before`` may adjust the parsed
    arguments (e.g. keep the raw argv for a model card); the error lines name ``tool`` and the subcommand
    stored under ``subcommand``."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(getattr(args, "verbose", 0) or 0, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):  # no subcommand: the help, and the one line saying what is missing
        parser.print_help()
        names = [n for a in parser._actions if isinstance(a, argparse._SubParsersAction) for n in a.choices]
        print(f"{tool}: error: no command given; choose one of {', '.join(names)} (see {tool} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    name = getattr(args, subcommand, None)
    label = f"{tool} {name}" if isinstance(name, str) and name else tool
    try:
        if before is not None:
            before(args)
        return int(args.func(args) or 0)
    except (UsageError, argparse.ArgumentTypeError, *user_errors) as exc:  # the latter: a flag's value checked late
        print(f"{label}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print(f"{label}: interrupted", file=sys.stderr)
        return interrupted_exit_code(exc)
    except BrokenPipeError:  # output piped into head & co.
        return EXIT_OK
    except PATH_MISTAKES as exc:
        print(f"{label}: error: {_path_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except failures as exc:
        print(f"{label}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_PACKAGES.get((exc.name or "").split(".")[0])
        if extra is None:  # one of ours, or a core dependency: a broken installation, keep the traceback
            raise
        print(f"{label}: error: this needs the Python package {extra[0]}, which is not installed: "
              f"pip install 'hi-runtime[{extra[1]}]'", file=sys.stderr)
        return EXIT_USAGE


# Imported where a command first needs them, so a role's wheel runs without the others' packages; a
# command of another role's reach then names the extra to install. Module -> (package, extra).
OPTIONAL_PACKAGES = {
    "serial": ("pyserial", "serial"), "bleak": ("bleak", "ble"), "cv2": ("opencv-python-headless", "camera"),
    "matplotlib": ("matplotlib", "measure"), "pyvisa": ("pyvisa", "measure"),
    "tensorflow": ("tensorflow", "train"), "keras": ("keras", "train"), "sklearn": ("scikit-learn", "train"),
    "tf2onnx": ("tf2onnx", "train"), "scipy": ("scipy", "train"), "onnx": ("onnx", "train"),
    "onnxruntime": ("onnxruntime", "server"), "prometheus_client": ("prometheus-client", "server"),
    "ray": ("ray[serve]", "cluster"), "tflite_micro": ("tflite-micro", "firmware"),
    "ai_edge_litert": ("ai-edge-litert", "device"),
}


# A path given on the command line that cannot be used as given: a file where a folder must be (or the
# reverse), a file that does not exist, one that may not be read or written. Raised wherever the command
# first touches the path; the line names the path and what to change, exit 2.
PATH_MISTAKES = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)
_PATH_FIX = {
    FileNotFoundError: "it does not exist (or its folder does not); check the path",
    FileExistsError: "a file is in the way of a folder this command writes there; give another path",
    IsADirectoryError: "it is a folder, a file is needed; give a file's path",
    NotADirectoryError: "a file is in the way of a folder this command needs there; give another path",
    PermissionError: "permission denied; give a path you may read or write",
}


def _path_line(exc: OSError) -> str:
    fix = next((v for k, v in _PATH_FIX.items() if isinstance(exc, k)), exc.strerror or type(exc).__name__)
    if exc.filename is None:
        return _one_line(exc)
    return f"{exc.filename}: {fix}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split("\n")) if text.count("\n") < 3 else text
