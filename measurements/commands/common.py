"""Arguments and loaders shared by several hi-bench subcommands."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hi_runtime.cli_support import UsageError
from hi_runtime.device_profiles import PROFILES_DIR, list_profiles, load_profile


def profiles_dir(text: str) -> Path:
    """An argparse ``type`` for ``--profiles-dir``: a folder holding profile YAML files, checked while
    parsing, so a wrong folder is named as such instead of surfacing as "no profile 'rpi4'"."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist; give a folder of profile YAML files "
                                         f"(default {PROFILES_DIR})")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give the folder that holds profile YAML files")
    if not any(path.glob("*.y*ml")):
        raise argparse.ArgumentTypeError(f"{text} has no profile YAML files (*.yaml); give a folder of "
                                         f"profiles (default {PROFILES_DIR})")
    return path


def accuracy_targets(text: str) -> list[float]:
    """An argparse ``type`` for ``--targets`` (``0.8,0.85,90%``), read by hi_runtime.qos.parse_targets
    while parsing, so a bad target is refused before any work (hi-bench reproduce runs for long)."""
    from hi_runtime.qos import QoSError
    from hi_runtime.qos import parse_targets as parse

    try:
        return parse(text)
    except QoSError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_targets(targets: Sequence[float]) -> str:
    """``accuracy_targets`` back to the flag's text (for a subcommand run with an argv)."""
    return ",".join(repr(float(t)) for t in targets)


def check_run_logs(paths: Sequence[Path], flag: str = "--runs") -> None:
    """Every run log given to ``flag`` (empty: a positional argument) exists and is a file; checked before
    slow work, and the line names the flag the log was given to."""
    for path in paths:
        if not Path(path).is_file():
            what = "is a folder" if Path(path).is_dir() else "does not exist"
            raise UsageError(f"{flag + ': ' if flag else ''}run log {path} {what}; give hi-agent run logs "
                             "(written by hi-agent run --log)")


def add_profile_args(parser: argparse.ArgumentParser, multiple: bool = False, required: bool = False) -> None:
    if multiple:
        parser.add_argument("--device", action="append", default=None, metavar="ID",
                            help="device profile id (repeatable; default: every profile)")
    else:
        parser.add_argument("--device", required=required, metavar="ID",
                            help="device profile id, e.g. rpi4 (see `hi-bench plan --list`)")
    parser.add_argument("--profiles-dir", action="append", type=profiles_dir, default=None, metavar="DIR",
                        help=f"folder(s) with profile YAML files (default: {PROFILES_DIR})")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", type=Path, default=[], metavar="LOG",
                        help="hi-agent run logs (JSONL/CSV) whose measured accuracy, decider operating "
                             "point and EE-HI sweep fill what the profiles lack")
    parser.add_argument("--run-model", default=None, metavar="NAME",
                        help="model name for logs whose header names none (e.g. resnet8)")


def add_qos_args(parser: argparse.ArgumentParser, default: str = "") -> None:
    parser.add_argument("--qos", default=default, metavar="SPEC",
                        help="the requirement(s) to fix, e.g. accuracy=0.9 (or 90%%), latency=half-offload, "
                             "energy=2 (ms, mJ); what is not fixed is optimized, as in the paper "
                             "(half-offload: at most half of offloading one sample, the paper's rule)")
    parser.add_argument("--objective", choices=("auto", "accuracy", "latency", "energy"), default="auto",
                        help="what the recommendation optimizes among configurations that pass (auto: lowest "
                             "latency when accuracy is fixed, else highest accuracy)")


def load_profiles(devices: Sequence[str] | None, dirs: Sequence[Path] | None):
    search = list(dirs) if dirs else None
    if devices:
        return [load_profile(d, search) for d in devices]
    return list_profiles(search)


def load_runs(paths: Sequence[Path], energy_model=None, measured_energy_j=None, flag: str = "--runs"):
    from measurements.logs import read_run_log
    from measurements.metrics import compute_metrics

    check_run_logs(paths, flag)
    runs = []
    for path in paths:
        log = read_run_log(path)
        runs.append((log, compute_metrics(log, energy_model, measured_energy_j)))
    return runs


def run_stats(paths: Sequence[Path], model: str | None):
    from measurements.planner import RunStats

    if not paths:
        return RunStats(), []
    runs = load_runs(paths)
    return RunStats.from_runs(runs, model_override=model), runs


def add_targets_arg(parser: argparse.ArgumentParser, default: str = "0.8,0.85,0.9") -> None:
    parser.add_argument("--targets", type=accuracy_targets, default=default,
                        help=f"accuracy targets (fractions or %%; default {default})")
