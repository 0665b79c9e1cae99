"""``hi-bench compare``: every strategy per device, the best per accuracy target (Table 5 form) and
the EE-HI thresholds (Table 6 form)."""
from __future__ import annotations

import argparse

from measurements.commands.common import add_profile_args, add_qos_args, add_run_args, add_targets_arg


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="compare strategies across devices (Table 5 and 6 forms)",
        description="For each device profile: all configurations with accuracy, latency and energy, "
                    "then the best configuration per accuracy target and the EE-HI threshold table.",
    )
    add_profile_args(p, multiple=True)
    add_qos_args(p, default="")
    add_run_args(p)
    add_targets_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from measurements.commands.common import load_profiles, run_stats
    from measurements.planner import (
        QoS,
        best_strategy_table,
        candidates_for,
        ee_threshold_table,
        evaluate,
        format_candidates,
        format_threshold,
        parse_qos,
    )

    targets = args.targets  # parsed by common.accuracy_targets
    base = parse_qos(args.qos) if args.qos else QoS()
    profiles = load_profiles(args.device, args.profiles_dir)
    stats, _ = run_stats(args.runs, args.run_model)
    for profile in profiles:
        cands = candidates_for(profile, stats)
        evaluate(cands, profile, base.with_accuracy(targets[0]), objective=args.objective)
        print(f"== {profile.id} ({profile.kind}) ==")
        print(format_candidates(cands))
        print()
    print("== best configuration per device and accuracy target (Table 5 form) ==")
    for row in best_strategy_table(profiles, targets, stats, args.objective, base):
        best = row.best.label if row.best else "none"
        print(f"{row.device:<24} >= {100 * row.target:5.1f}%  {best:<36} {row.reason}")
    rows = ee_threshold_table(profiles, targets, stats, args.objective, base)
    print("\n== EE-HI threshold per device, model and target (Table 6 form) ==")
    if not rows:
        print("no EE-HI sweep given (pass EE-HI run logs with 'ee_threshold' in their header via --runs)")
    for r in rows:
        threshold = "none" if r["threshold"] is None else format_threshold(r["threshold"])
        print(f"{r['device']:<24} {r['model']:<10} >= {100 * r['target']:5.1f}%  threshold {threshold}")
    return 0
