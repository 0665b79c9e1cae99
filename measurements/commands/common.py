"""Arguments and loaders shared by several hi-bench subcommands."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hi_runtime.device_profiles import PROFILES_DIR, list_profiles, load_profile


def add_profile_args(parser: argparse.ArgumentParser, multiple: bool = False, required: bool = False) -> None:
    if multiple:
        parser.add_argument("--device", action="append", default=None, metavar="ID",
                            help="device profile id (repeatable; default: every profile)")
    else:
        parser.add_argument("--device", required=required, metavar="ID",
                            help="device profile id, e.g. rpi4 (see `hi-bench plan --list`)")
    parser.add_argument("--profiles-dir", action="append", type=Path, default=None, metavar="DIR",
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


def load_runs(paths: Sequence[Path], energy_model=None, measured_energy_j=None):
    from measurements.logs import read_run_log
    from measurements.metrics import compute_metrics

    runs = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"run log {path} does not exist; give hi-agent run logs (--log) to --runs")
        log = read_run_log(path)
        runs.append((log, compute_metrics(log, energy_model, measured_energy_j)))
    return runs


def run_stats(paths: Sequence[Path], model: str | None):
    from measurements.planner import RunStats

    if not paths:
        return RunStats(), []
    runs = load_runs(paths)
    return RunStats.from_runs(runs, model_override=model), runs


def parse_targets(text: str) -> list:
    from hi_runtime.qos import parse_targets as parse

    return parse(text)
