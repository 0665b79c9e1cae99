"""`hi-firmware`: one command for the firmware tooling (model compiler, boards, model bench).

The project's one CLI pattern (hi_runtime.cli_support): argparse with subcommands; a subcommand returns an
exit code; a user mistake raises UsageError and becomes one line ``hi-firmware <command>: error: ...``
with exit code 2 (argparse's own usage errors exit 2 too); a failed build or emulator run (BuildError) is
one line plus the tool's output, exit 1. No traceback for either. ``--firmware-dir`` (or HI_FIRMWARE_DIR)
selects the C sources (hi_firmware.paths).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hi_runtime.cli_support import Parser, run

from . import bench, boards
from .compiler import cli as compiler_cli
from .errors import BuildError
from .paths import FIRMWARE_ENV, set_firmware_dir

# Subcommand modules in --help order; each defines register_cli(subparsers). Imported directly: a module
# that cannot be imported is a broken install and must fail loudly, never silently drop its commands.
SUBCOMMAND_MODULES = (compiler_cli, boards, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="hi-firmware",
        description="Firmware tooling for the HI runtime: compile INT8 TFLite models to C, build and run boards, "
                    "profile a model on the emulated Cortex-M4.",
    )
    parser.add_argument("--firmware-dir", metavar="DIR",
                        help=f"the firmware C sources (default: ${FIRMWARE_ENV}, then the installed package data, "
                             "then the checkout)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        module.register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv, tool="hi-firmware", before=lambda a: set_firmware_dir(a.firmware_dir),
               failures=(BuildError,))


if __name__ == "__main__":
    sys.exit(main())
