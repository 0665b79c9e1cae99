"""``hi-bench plan``: recommend a configuration for one device under a QoS target."""
from __future__ import annotations

import argparse
import json

from measurements.commands.common import add_profile_args, add_qos_args, add_run_args


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="recommend on-device / remote / HI / EE-HI for a device and QoS",
        description="Evaluate every configuration a device profile (plus optional measured runs) "
                    "describes under the QoS requirement and print the recommendation and why. Fix one "
                    "requirement (the paper's procedure) and the others are optimized. Exit code 0 with a "
                    "recommendation, 3 when nothing meets the requirement, 2 on a usage error. Example: "
                    "hi-bench plan --device rpi4 --qos accuracy=0.9 --runs runs/hi.jsonl",
    )
    add_profile_args(p)
    add_qos_args(p, default="accuracy=0.9")
    add_run_args(p)
    p.add_argument("--link", action="append", default=None, help="offload link(s) to consider (default: the profile's)")
    p.add_argument("--model", default=None, help="only configurations with this local model")
    p.add_argument("--dataset", default=None,
                   help="the task's dataset (cifar10, imagenet, mnist; default: the profile's first)")
    p.add_argument("--list", action="store_true", help="list the known device profiles and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="show every input and its citation")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from measurements.commands.common import run_stats
    from measurements.planner import format_plan, parse_qos, plan
    from hi_runtime.device_profiles import list_profiles, load_profile

    if args.list:
        for profile in list_profiles(args.profiles_dir):
            print(f"{profile.id:<24} {profile.kind:<9} {profile.name}")
        return 0
    if not args.device:
        raise ValueError("--device is required, e.g. --device rpi4 (`hi-bench plan --list` lists the profiles)")
    profile = load_profile(args.device, args.profiles_dir)
    stats, _ = run_stats(args.runs, args.run_model)
    result = plan(profile, parse_qos(args.qos), stats, args.objective, args.link, args.model, args.dataset)
    if args.json:
        def cand(c):
            return None if c is None else {
                "label": c.label, "strategy": c.strategy, "model": c.model, "link": c.link,
                "threshold": c.threshold, "accuracy": c.accuracy, "latency_ms": c.latency_ms,
                "energy_mj": c.energy_mj, "energy_modeled": c.energy_modeled, "verdict": c.verdict,
                "unchecked": c.unchecked, "inputs": c.inputs, "missing": list(dict.fromkeys(c.missing)),
            }
        print(json.dumps({"device": result.device, "dataset": result.dataset, "qos": result.qos.describe(),
                          "objective": result.objective, "recommended": cand(result.best), "reason": result.reason,
                          "notes": result.notes,
                          "candidates": [cand(c) for c in result.candidates]}, indent=2))
    else:
        print(format_plan(result, verbose=args.verbose))
    return 0 if result.best is not None else 3
