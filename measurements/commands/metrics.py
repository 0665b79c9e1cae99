"""``hi-bench metrics``: summarize run logs (accuracy Eq. 1/2, latency Eq. 3, energy Eq. 4)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hi_runtime.cli_support import at_least
from measurements.commands.common import profiles_dir


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "metrics", help="summarize hi-agent/firmware run logs (Eq. 1-4)",
        description="Read per-sample run logs and report accuracy (Eq. 1, checked with Eq. 2), latency "
                    "per inference (Eq. 3) and energy per inference (Eq. 4). Energy is measured with "
                    "--energy-j (a meter's total for the run), modeled from a device profile's power "
                    "with --profile, and otherwise not reported.",
    )
    p.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="run logs (.jsonl or .csv)")
    p.add_argument("--profile", metavar="ID", help="device profile whose power models the energy")
    p.add_argument("--profiles-dir", action="append", type=profiles_dir, default=None, metavar="DIR")
    p.add_argument("--link", default=None, help="link whose per-offload energy the profile gives (default: its default link)")
    p.add_argument("--energy-j", type=at_least(0, float), default=None, metavar="J",
                   help="energy a meter measured over the whole run (only with one log)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from measurements.commands.common import load_runs
    from measurements.metrics import EnergyModel, format_metrics
    from hi_runtime.device_profiles import load_profile

    if args.energy_j is not None and len(args.logs) != 1:
        raise ValueError("--energy-j is the energy of one run; give exactly one log with it")
    energy_model = None
    if args.profile:
        profile = load_profile(args.profile, args.profiles_dir)
        energy_model = EnergyModel.from_profile(profile, args.link)
    runs = load_runs(args.logs, energy_model, args.energy_j, flag="")
    if args.json:
        print(json.dumps([{"log": str(log.path), **m.to_dict()} for log, m in runs], indent=2, default=str))
    else:
        print("\n\n".join(f"{log.path}\n{format_metrics(m)}" for log, m in runs))
    return 0
