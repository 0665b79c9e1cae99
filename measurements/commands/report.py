"""``hi-bench report``: Markdown or HTML report with tables and figures."""
from __future__ import annotations

import argparse
from pathlib import Path

from measurements.commands.common import add_profile_args, add_qos_args, add_run_args, add_targets_arg


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write a Markdown/HTML report with figures",
        description="Write report.md (or report.html) and figures/ into --out: our runs, every "
                    "device's configurations, accuracy-vs-latency/energy figures, and the Table 5/6 forms.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", choices=("md", "html"), default="md")
    add_targets_arg(p)
    p.add_argument("--run-device", default=None,
                   help="device name for the runs' points (default: the logs' header 'device')")
    p.add_argument("--energy-profile", default=None, metavar="ID",
                   help="profile whose power models the runs' energy (labeled modeled)")
    add_profile_args(p, multiple=True)
    add_qos_args(p, default="")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hi_runtime.cli_support import need_folder
    from measurements.commands.common import load_profiles, load_runs
    from measurements.metrics import EnergyModel
    from measurements.planner import QoS, RunStats, parse_qos
    from hi_runtime.device_profiles import load_profile
    from measurements.report import build_report

    targets = args.targets  # parsed by common.accuracy_targets
    profiles = load_profiles(args.device, args.profiles_dir)
    energy_model = None
    if args.energy_profile:
        energy_model = EnergyModel.from_profile(load_profile(args.energy_profile, args.profiles_dir))
    runs = load_runs(args.runs, energy_model) if args.runs else []
    stats = RunStats.from_runs(runs, model_override=args.run_model) if runs else RunStats()
    qos = parse_qos(args.qos) if args.qos else QoS()
    need_folder("--out", args.out, create=True)  # made here, after the inputs are read: a file in the way is named as --out
    path = build_report(args.out, profiles, runs, stats, targets, qos, fmt=args.format, run_device=args.run_device)
    print(f"report written to {path}")
    return 0
