"""``hi-bench paper``: the paper's Tables 5 and 6 rebuilt from its own printed numbers."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "paper", help="rebuild the paper's Table 5 (planner) and Table 6 (Eq. 3/4) from its printed numbers",
        description="Run the planner on the paper's device profiles (Tables 3, 4, 7) for every cell of its "
                    "Table 5, under assumption A1 (HI only with the two printed operating points) and A2 (an "
                    "Eq. 2 operating point for every other model), and flag the cells where they disagree; "
                    "fit the offload and exit ratios that make Eq. 3/4 reproduce Table 6. Details: "
                    "docs/reproduction.md.",
    )
    p.add_argument("--out", type=Path, default=None,
                   help="also write table5.json, table6.json and figures/table5.png into this folder")
    p.add_argument("--no-extra", action="store_true", help="only Table 5's devices (not the Jetson 7 W mode)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hi_runtime.cli_support import need_folder
    from measurements.paper import format_claims, format_table5, format_table6, headline_claims, table5, table6_fits

    if args.out is not None:
        need_folder("--out", args.out, create=True)  # before the tables are computed: a file in the way is named as --out
    cells = table5(extra_devices=not args.no_extra)
    fits = table6_fits()
    print("== Table 5: best strategy per QoS requirement (paper vs planner on the paper's profiles) ==")
    print(format_table5(cells))
    printed = [c for c in cells if c.paper is not None]
    for a in cells[0].results:
        same = sum(1 for c in printed if c.results[a] == c.paper)
        print(f"assumption {a}: {same} of {len(printed)} cells as printed")
    flagged = [c for c in printed if c.flagged]
    print(f"flagged (A1 and A2 disagree: the cell depends on HI operating points the paper only plots): "
          f"{len(flagged)}")
    print("\n== Table 6: EE-HI vs HI at the 90% accuracy QoS (paper vs Eq. 3/4 with Tables 3/4) ==")
    print(format_table6(fits))
    print("\n== Headline claims recomputed from the printed tables ==")
    print(format_claims(headline_claims()))
    if args.out is not None:
        from measurements.plots import plot_table5_grid

        (args.out / "table5.json").write_text(json.dumps(
            [{"dataset": c.dataset, "device": c.device, "requirement": c.requirement, "paper": c.paper,
              "planner": c.results, "flagged": c.flagged,
              "recommended": {a: (p.best.label if p.best else None) for a, p in c.plans.items()}} for c in cells],
            indent=2) + "\n")
        (args.out / "table6.json").write_text(json.dumps(
            {m: {"hi_offload": f.hi_offload, "ee_hi_offload": f.ee_offload, "ee_hi_local_cost": f.ee_local,
                 "rows": {d: {q: {"paper": v[0], "eq": v[1]} for q, v in r.items()} for d, r in f.rows.items()},
                 "max_relative_error": f.max_error()} for m, f in fits.items()}, indent=2) + "\n")
        figure = plot_table5_grid(cells, args.out / "figures" / "table5.png")
        print(f"\nwrote {args.out / 'table5.json'}, {args.out / 'table6.json'}, {figure}")
    return 0
