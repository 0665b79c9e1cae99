"""``hi-bench``: measurements, device profiles, planner and reports.

Subcommands come from a registry of module names, each exposing ``register_cli(subparsers)``. They
are imported lazily when the parser is built, and a module that does not exist (yet) is skipped, so
other parts of the project add their own benchmarks (``hi-bench server``, ``hi-bench agent``,
``hi-bench firmware``) by creating the module, without editing this file's logic. A module that
exists but fails to import is an error, not silently skipped.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hi_runtime.cli_support import load_subcommand_modules as _load

SUBCOMMAND_MODULES: tuple = (
    "measurements.commands.metrics",
    "measurements.commands.plan",
    "measurements.commands.compare",
    "measurements.commands.report",
    "measurements.commands.profile",
    "measurements.commands.power",
    "measurements.commands.reproduce",
    "measurements.commands.fleet",
    # Written by other helpers; skipped until they exist.
    "measurements.bench_server",
    "measurements.bench_agent",
    "measurements.bench_firmware",
)


def load_subcommand_modules(names: Sequence[str] = SUBCOMMAND_MODULES) -> list:
    """Import the registry's modules; missing ones are skipped, broken ones raise."""
    return _load(names, "hi-bench")


def build_parser(names: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hi-bench",
        description="Measure hierarchical inference: run metrics (Eq. 1-4), device profiles, the QoS "
                    "planner (best strategy per device), figures and reports.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in load_subcommand_modules(names):
        module.register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Profile, log, meter and QoS errors all carry a message that says what to fix.
        print(f"hi-bench {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
