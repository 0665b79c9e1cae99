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

from hi_runtime.cli_support import Parser, run
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
    "measurements.commands.paper",
    "measurements.commands.frontier",
    "measurements.bench_server",
    "measurements.bench_agent",
    "measurements.bench_firmware",
)


def load_subcommand_modules(names: Sequence[str] = SUBCOMMAND_MODULES) -> list:
    """Import the registry's modules; one that cannot be imported (missing or broken) raises, never
    silently drops its subcommand (hi_runtime.cli_support.load_subcommand_modules)."""
    return _load(names, "hi-bench")


def build_parser(names: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = Parser(
        prog="hi-bench",
        description="Measure hierarchical inference: run metrics (Eq. 1-4), device profiles, the QoS "
                    "planner (best strategy per device), the paper's Tables 5 and 6, figures and reports.",
    )
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")  # not "command": power has an argument of that name
    for module in load_subcommand_modules(names):
        module.register_cli(sub)
    return parser


# A user mistake (bad QoS, unknown profile or model, unreadable log, missing file) exits 2 with one line;
# a failure of the environment (a meter, a server, a subprocess) exits 1.
# (paths: hi_runtime.cli_support.PATH_MISTAKES, for every tool)
USER_ERRORS = (ValueError,)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv, tool="hi-bench", subcommand="subcommand", user_errors=USER_ERRORS,
               failures=(OSError, RuntimeError))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
