"""``hi-bench frontier``: every early-exit variant's EE-HI against its HI baseline, from the
``hi-train thresholds`` results, as one table and one figure (docs/decider.md section 4)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "frontier", help="EE-HI vs HI for several early-exit variants, from hi-train thresholds results",
        description="Read the <out>.json files written by `hi-train thresholds` (one per early-exit chain) and "
                    "print, per variant and QoS target, EE-HI's and its HI baseline's test accuracy, offloaded "
                    "share and expected latency, the saving, and each variant's best saving at equal or better "
                    "accuracy; optionally write the table's JSON and a figure (test accuracy vs latency).",
    )
    p.add_argument("variants", nargs="+", metavar="[LABEL=]THRESHOLDS.json",
                   help="a hi-train thresholds result, optionally labelled (default label: the chain's name)")
    p.add_argument("--policy", choices=("ee-hi-3way", "ee-hi", "ee"), default=None,
                   help="EE policy to compare (default: three-way where searched, else EE-HI)")
    p.add_argument("--out", type=Path, default=None, metavar="PREFIX",
                   help="also write PREFIX.json (the table) and PREFIX.png (the figure)")
    p.add_argument("--matched", action="store_true",
                   help="also print, for every HI point, the cheapest EE-HI point of each variant that is at least "
                        "as accurate on test, and the saving")
    p.add_argument("--title", default="EE-HI vs HI: test accuracy against expected latency",
                   help="the figure's title")
    p.set_defaults(func=run)


def _parse_variant(text: str) -> tuple[str | None, Path]:
    label, sep, path = text.partition("=")
    if not sep:
        return None, Path(text)
    if not label.strip() or not path:
        raise ValueError(f"variant {text!r}: write LABEL=PATH (or only PATH)")
    return label.strip(), Path(path)


def run(args: argparse.Namespace) -> int:
    from measurements.frontier import (as_json, build_series, comparisons, format_best, format_matched,
                                       format_table, matched)
    from training.thresholds import load_search

    searches = []
    for text in args.variants:
        label, path = _parse_variant(text)
        data = load_search(path)
        if label is None:
            label = Path(str(data.get("chain") or path)).stem
        if any(label == s[0] for s in searches):
            raise ValueError(f"two variants are labelled {label!r}: label them, e.g. {label}-b={path}")
        searches.append((label, path, data))
    series = build_series(searches, args.policy)
    comps = comparisons(series)
    if not comps:
        raise ValueError("no QoS row has both EE-HI and HI on the test split: give files written with "
                         "--baseline-model (hi-train thresholds)")
    print(format_table(comps))
    print()
    print(format_best(comps, series))
    if args.matched:
        print()
        print(format_matched(matched(series)))
    for s in series:
        if s.kind == "ee-hi" and s.baseline is None:
            print(f"{s.label}: drawn without a comparison (searched without --baseline-model, so it has no HI rows)")
    notes = sorted({d.get("note", "") for _, _, d in searches} - {""})
    costs = sorted({(d.get("cost_model") or {}).get("source", "") for _, _, d in searches} - {""})
    for line in notes + costs:
        print(f"note: {line}")
    if args.out is not None:
        from measurements.plots import plot_frontier

        args.out.parent.mkdir(parents=True, exist_ok=True)
        js = args.out.with_name(args.out.name + ".json")
        js.write_text(json.dumps(as_json(series, comps) | {"notes": notes + costs}, indent=1) + "\n")
        png = plot_frontier(series, args.out.with_name(args.out.name + ".png"), args.title,
                            "; ".join(notes)[:220])
        print(f"wrote {js}" + (f" and {png}" if png else ""))
    return 0
