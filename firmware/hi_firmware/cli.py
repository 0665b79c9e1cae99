"""`hi-firmware`: one command for the firmware tooling, assembled from subcommand modules.

WHY a registry: several people own different subcommands (the model compiler, board build/flash/QEMU).
Each module exposes register_cli(subparsers); a module that is not present yet is skipped, so one missing
part never breaks the others.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hi_runtime.cli_support import register_subcommands

# Modules providing subcommands, in --help order. Each must define register_cli(subparsers), and every
# subparser it adds must set a `func(args) -> int` default.
SUBCOMMAND_MODULES = [
    "hi_firmware.compiler.cli",
    "hi_firmware.boards",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hi-firmware",
        description="Firmware tooling for the HI runtime: compile INT8 TFLite models to C, build and run boards.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_subcommands(sub, SUBCOMMAND_MODULES, "hi-firmware")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
