"""``hi-bench power``: energy and mean power over a time window or around a command."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from hi_runtime.cli_support import UsageError, at_least


def meter_spec(text: str) -> str:
    """An argparse ``type`` for ``--meter``: the spec is parsed while the command line is (a typo is a
    usage error, exit 2), and kept as text for MeteredBlock."""
    from measurements.power.base import MeterError
    from measurements.power.factory import parse_meter_spec

    try:
        parse_meter_spec(text)
    except MeterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "power", help="measure energy with a meter (PM1000+, SCPI, RAPL) over a window or a command",
        description="Measure energy and mean power with a meter, either for --seconds or while a command "
                    "runs (give it after --). With --log, also divide by the log's sample count and print "
                    "the measured energy per inference. Example: hi-bench power --meter "
                    "pm1000:GPIB0::8::INSTR --log run.jsonl -- <command that writes run.jsonl>",
    )
    p.add_argument("--meter", required=True, type=meter_spec, help="rapl | pm1000:<VISA address> | scpi:<VISA address>[|query]")
    p.add_argument("--visa-backend", default="", help="PyVISA backend (@py, file.yaml@sim; default: system VISA)")
    p.add_argument("--seconds", type=at_least(0, float, exclusive=True), default=None,
                   help="measure for this long (when no command is given)")
    p.add_argument("--interval", type=at_least(0, float, exclusive=True), default=0.5,
                   help="meter polling interval in s (default 0.5)")
    p.add_argument("--log", type=Path, default=None, help="run log whose samples share the energy")
    p.add_argument("--json", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run while measuring (after --)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from measurements.power.factory import MeteredBlock

    command = [c for c in args.command if c != "--"] if args.command else []
    if not command and args.seconds is None:
        raise ValueError("give --seconds or a command after -- to measure")
    if command and args.seconds is not None:
        raise ValueError("give either --seconds or a command, not both")
    # the arguments are checked before the meter is opened: a mistake is named even where no meter is
    if command and shutil.which(command[0]) is None:
        raise UsageError(f"command {command[0]!r} not found (not an executable file, nor on PATH); give the "
                         "command to measure after --")
    if args.log is not None:
        if args.log.is_dir():
            raise UsageError(f"--log {args.log} is a folder; give the run log file (JSONL/CSV) the run writes")
        if not command and not args.log.is_file():  # with a command, the command may write it
            raise UsageError(f"--log {args.log} does not exist; give an existing run log, or a command after -- "
                             "that writes it")
    rc = 0
    with MeteredBlock(args.meter, args.visa_backend, args.interval) as block:
        if command:
            rc = subprocess.call(command)
        else:
            time.sleep(args.seconds)
    m = block.result
    out = {"energy_j": m.energy_j, "duration_s": m.duration_s, "mean_power_w": m.mean_power_w, "source": m.source,
           "command_exit_code": rc if command else None}
    if args.log is not None:
        from measurements.logs import read_run_log

        n = len(read_run_log(args.log))
        out["samples"] = n
        out["energy_mj_per_inference"] = m.energy_j * 1000.0 / n
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        mean = "n/a" if m.mean_power_w is None else f"{m.mean_power_w:.4f} W"
        print(f"{m.source}: {m.energy_j:.6f} J over {m.duration_s:.3f} s (mean {mean})")
        if "samples" in out:
            print(f"per inference: {out['energy_mj_per_inference']:.4f} mJ over {out['samples']} samples "
                  f"(includes idle and logging overhead of the whole run)")
    return rc
