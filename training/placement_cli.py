"""`hi-train placement`: the cost of an exit at every candidate layer and the most EE-HI could save with it
(``training.placement``), before training any branch."""
from __future__ import annotations

import json
from pathlib import Path

from hi_runtime.cli_support import UsageError, at_least, fraction


def register_cli(sub) -> None:
    from training.models import ARCHITECTURES
    from training.thresholds import DEFAULT_DEVICE

    p = sub.add_parser(
        "placement", help="exit placement: each candidate layer's exit cost and EE-HI's saving bound",
        description="For every residual block output of ARCH (or --taps), the MACs and device time of an exit "
                    "branch there (as hi-train early-exit builds it) and what a sample that continues pays for "
                    "it. With --hi (a hi-train thresholds result that has HI rows), the most EE-HI could save "
                    "against HI at each QoS target if it offloaded as many samples as HI and the exit answered "
                    "like the full model, and the largest exit cost that still allows --target. A placement "
                    "below the target here cannot reach it whatever its branch learns. No data, no training.")
    p.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES), help="the trunk architecture")
    p.add_argument("--taps", default=None,
                   help="comma list of layers to branch from (default: every residual block output but the last)")
    p.add_argument("--branch-convs", type=at_least(0), default=0,
                   help="3x3 convolutions at the start of the branch, as hi-train early-exit --branch-convs (default 0)")
    p.add_argument("--branch-width", type=at_least(1), default=64,
                   help="channels of the branch's 1x1 conv (default 64)")
    p.add_argument("--hi", default=None, metavar="SEARCH.json",
                   help="a hi-train thresholds result with HI rows (--baseline-model), e.g. "
                        "models/cifar10/ee_resnet8_thresholds.json: its HI costs per QoS and its cost model")
    p.add_argument("--target", type=fraction, default=0.2,
                   help="the saving to test each placement against, a fraction (default 0.2: issue 21's ResNet-8 goal)")
    p.add_argument("--device", default=DEFAULT_DEVICE, metavar="PROFILE",
                   help=f"device profile for the model's time without --hi (default {DEFAULT_DEVICE})")
    p.add_argument("--full-ms", type=at_least(0, float, exclusive=True), default=None,
                   help="device time of the plain ARCH without --hi (default: its latency in the --device profile)")
    p.add_argument("--out", default=None, help="also write the table as JSON to this file")
    p.set_defaults(func=cmd_placement)


def _full_ms(args, search: dict | None) -> tuple[float, str]:
    from hi_runtime.device_profiles import ProfileError
    from training.thresholds import reference_costs

    if search is not None:
        cost = search.get("cost_model") or {}
        ms = cost.get("baseline_ms")
        if not ms:
            raise UsageError(f"{args.hi} has no baseline time in its cost model: give a search run with "
                             "--baseline-model (hi-train thresholds)")
        if args.full_ms is not None:
            raise UsageError(f"--full-ms conflicts with --hi: its HI rows were costed with {ms} ms for the plain "
                             "model; drop --full-ms (or re-run hi-train thresholds with --full-ms)")
        return float(ms), f"{args.hi}: {cost.get('source', '')}"
    if args.full_ms is not None:
        return args.full_ms, f"--full-ms {args.full_ms}"
    try:
        ref = reference_costs(args.device, args.arch)
    except (ProfileError, KeyError, ValueError) as exc:
        raise UsageError(f"{exc}; give --full-ms (the device time of a plain {args.arch})") from None
    return ref.full_ms, f"{ref.device}: {ref.cite}"


def _distinct(points):
    """QoS targets that HI meets with the same configuration (every target below the local model's accuracy:
    the local model alone) collapse into one column, labelled by the first and last of them."""
    from dataclasses import replace

    out, run = [], []
    for p in points + [None]:
        if run and (p is None or (p.cost_ms, p.offload_ratio) != (run[0].cost_ms, run[0].offload_ratio)):
            out.append(replace(run[0], qos=run[0].qos if len(run) == 1 else f"{run[0].qos}..{run[-1].qos}"))
            run = []
        if p is not None:
            run.append(p)
    return out


def cmd_placement(args) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm import tqdm

    from training.placement import candidate_taps, exit_budget_ms, hi_points, saving_bound, tap_costs
    from training.thresholds import load_search

    if not 0 < args.target < 1:
        raise UsageError(f"--target {args.target} is not a fraction in (0, 1); write 0.2 for 20%")
    if args.out and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give the JSON file to write, e.g. "
                         f"{Path(args.out) / f'placement_{args.arch}.json'}")
    search = None
    if args.hi is not None:
        try:
            search = load_search(args.hi)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    points = _distinct(hi_points(search)) if search is not None else []
    if search is not None and not points:
        raise UsageError(f"{args.hi} has no HI rows: give a search run with --baseline-model (hi-train thresholds)")
    full_ms, source = _full_ms(args, search)
    candidates = candidate_taps(args.arch)
    taps = [t.strip() for t in args.taps.split(",") if t.strip()] if args.taps else candidates
    unknown = [t for t in taps if t not in candidates]
    if unknown or not taps:
        raise UsageError(f"{args.arch} has no candidate tap(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(candidates)}")
    bar = tqdm(total=len(taps), desc="building exits", leave=False, disable=None)
    costs = tap_costs(args.arch, taps, branch_convs=args.branch_convs, branch_width=args.branch_width,
                      progress=lambda done, total: bar.update(1))
    bar.close()

    head = f"{'tap':>10s} {'exit MACs':>11s} {'share':>6s} {'exit ms':>8s} {'branch ms':>9s}"
    head += "".join(f" {p.qos:>14s}" for p in points)
    print(f"{args.arch}, exit branch with {args.branch_convs} conv(s), width {args.branch_width}; "
          f"plain model {costs[0].plain_macs / 1e6:.2f} M MACs = {full_ms:.3f} ms ({source})")
    if points:
        print(f"{'':>49s} saving bound against HI at QoS:")
    print(head)
    rows = []
    for c in costs:
        ems = c.exit_ms(full_ms)
        bounds = {p.qos: saving_bound(ems, full_ms, p.cost_ms) for p in points}
        line = (f"{c.tap:>10s} {c.exit_macs / 1e6:9.2f} M {100 * c.share:5.1f}% {ems:8.3f} "
                f"{full_ms * c.branch_macs / c.plain_macs:9.3f}")
        line += "".join(f" {100 * b:13.1f}%" for b in bounds.values())
        print(line)
        rows.append({"tap": c.tap, "exit_macs": c.exit_macs, "branch_macs": c.branch_macs, "share": c.share,
                     "exit_ms": ems, "branch_ms": full_ms * c.branch_macs / c.plain_macs, "saving_bound": bounds})
    budgets = {}
    if points:
        print(f"\nlargest exit cost for a {100 * args.target:.0f}% saving against HI with HI's offloads "
              "(the exit answering like the full model):")
        for p in points:
            b = exit_budget_ms(full_ms, p, args.target)
            budgets[p.qos] = b
            fits = [r["tap"] for r in rows if r["exit_ms"] <= b]
            if len(fits) > 4:
                fits = [f"{len(fits)} ({fits[0]} to {fits[-1]})"]
            what = ("no exit can: HI's offloads alone cost more than the target allows" if b <= 0 else
                    f"{b:.3f} ms ({100 * b / full_ms:.1f}% of the plain model); taps within it: "
                    f"{', '.join(fits) if fits else 'none'}")
            print(f"  QoS {p.qos} (HI {100 * p.accuracy:.2f}%, {100 * p.offload_ratio:.1f}% offloaded, "
                  f"{p.cost_ms:.3f} ms): {what}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "format": "hi-placement/1", "arch": args.arch, "branch_convs": args.branch_convs,
            "branch_width": args.branch_width, "full_ms": full_ms, "cost_source": source, "target": args.target,
            "hi": [vars(p) for p in points], "taps": rows, "exit_budget_ms": budgets}, indent=1) + "\n")
        print(f"wrote {out}")
    return 0
