"""`hi-firmware compile MODEL.tflite --out DIR [--name NAME]`: the compiler's command line."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from hi_runtime.cli_support import at_least

from hi_runtime.artifacts import find_model

from ..errors import UsageError, need_file, need_folder
from . import CompileError, CompileOptions, compile_model
from .lowering import CONV_SCRATCH_BUDGET

C_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _default_name(out_dir: Path, model: Path) -> str:
    base = out_dir.name or model.stem
    return re.sub(r"[^0-9a-zA-Z_]", "_", base)


def run_compile(args: argparse.Namespace) -> int:
    model = need_file("MODEL", find_model(args.model), "an INT8 .tflite file")
    out_dir = need_folder("--out", args.out)
    name = args.name or _default_name(out_dir, model)
    if not C_IDENT.fullmatch(name):  # checked here to name the flag; the emitter refuses it too
        if args.name:
            raise UsageError(f"--name {name!r} is not a C identifier; use letters, digits and underscores, "
                             "not starting with a digit")
        raise UsageError(f"the model's C name defaults to the --out folder's name, and {name!r} is not a C "
                         "identifier; give --name NAME (letters, digits, underscores)")
    options = CompileOptions(fuse_residual_add=not args.no_fuse, inplace=not args.no_inplace,
                             scratch_budget=args.scratch_budget)
    try:
        result = compile_model(model, out_dir, name=name, options=options)
    except CompileError as exc:  # a model this compiler cannot translate (or a missing file): the input
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"{model}: {exc}") from None
    gen = result.generated
    print(f"compiled {model} -> {', '.join(str(f) for f in result.files)}")
    print(f"  model name      : {gen.name} (call hi_model_{gen.name}_invoke)")
    print(f"  inputs          : {', '.join(gen.input_names)}")
    print(f"  outputs         : {', '.join(gen.output_names)}")
    print(f"  arena (RAM)     : {gen.arena_size} bytes (+ caller-owned input/output buffers)")
    print(f"  scratch (RAM)   : {gen.scratch_size} bytes (static, shared by the convolutions)")
    print(f"  constants (ROM) : {gen.flash_bytes} bytes of weights/biases/multipliers")
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "compile",
        help="compile an INT8 .tflite model to C99 (weights in flash, one static arena)",
        description=(
            "Compile a full-integer INT8 TFLite model ahead of time into hi_model_NAME.h/.c that call the "
            "hi_nn kernels in firmware/lib/hi_nn. Outputs are byte-identical to TFLite Micro's reference kernels."
        ),
    )
    p.add_argument("model", help="path to the .tflite flatbuffer")
    p.add_argument("--out", required=True, help="output directory, e.g. firmware/generated/resnet8")
    p.add_argument("--name", help="C name of the model (default: the output directory's name)")
    p.add_argument("--no-fuse", action="store_true", help="do not fuse residual ADDs into convolutions")
    p.add_argument("--no-inplace", action="store_true", help="do not let elementwise ops overwrite their inputs")
    p.add_argument("--scratch-budget", type=at_least(0), default=CONV_SCRATCH_BUDGET, metavar="BYTES",
                   help=f"static scratch the fast conv path may use (default {CONV_SCRATCH_BUDGET}; 0: every conv "
                        "reads its weights in place, slower, no scratch)")
    p.set_defaults(func=run_compile)
