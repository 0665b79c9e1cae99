"""Flash and RAM per compiled model, next to what TFLite Micro needs for the same model.

Run:  python -m measurements.bench_firmware_memory [MODEL.tflite ...] [--mlperf-resnet8] [--json out.json]
With no model arguments it measures every shipped */*_int8*.tflite (hi_runtime.artifacts: $HI_MODELS_DIR, else
the installed models).

What is measured, and how (WHY each number is what a firmware author provisions):
  * arena      - the static RAM arena of the generated code (hi_model_NAME_arena), from the memory planner.
  * scratch    - the static scratch the convolutions' strip path shares (hi_model_NAME_scratch: input rows
                 widened to int16, the fused residual ADD's tables), RAM besides the arena.
  * io         - bytes of the input + output buffers, which the caller owns (TFLite Micro keeps them inside
                 its arena, so "arena + scratch + io" (all RAM) is the fair comparison).
  * tflm_arena - the smallest arena tflite-micro's Python interpreter (reference kernels, 64-bit host
                 build) accepts for the same model, found by bisection. On a 32-bit Cortex-M the TFLM number
                 is somewhat smaller (pointer-sized bookkeeping), e.g. 54,996 B reported for MLPerf Tiny's
                 INT8 ResNet-8 on Cortex-M4.
  * const      - weights, folded biases, multipliers and shifts emitted as const arrays (flash).
  * text/rodata/bss (Cortex-M4) - section sizes of the generated model + hi_nn kernels compiled with
                 arm-none-eabi-gcc -O2 for Cortex-M4F, when that toolchain is installed (flash = text+data).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-std=c99",
             "-ffp-contract=off", "-ffunction-sections", "-fdata-sections", "-c"]


@dataclass
class MemoryRow:
    model: str
    arena: int
    scratch: int
    io: int
    tflm_arena: int | None
    const: int
    arm_text: int | None
    arm_data: int | None
    arm_bss: int | None

    @property
    def saving(self) -> float | None:
        if not self.tflm_arena:
            return None
        return 1.0 - (self.arena + self.scratch + self.io) / self.tflm_arena


def arm_sections(gen_dir: Path, name: str) -> tuple[int, int, int] | None:
    """(text, data, bss) of model + kernels for Cortex-M4F, or None without the ARM toolchain."""
    from hi_firmware.compiler import kernel_dir
    from hi_firmware.compiler.hostbuild import kernel_sources

    if not shutil.which("arm-none-eabi-gcc") or not shutil.which("arm-none-eabi-size"):
        return None
    sources = [gen_dir / f"hi_model_{name}.c", *kernel_sources()]
    objs = []
    for src in sources:
        obj = gen_dir / (src.stem + ".o")
        subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, f"-I{kernel_dir()}", f"-I{gen_dir}", str(src), "-o", str(obj)],
                       check=True, capture_output=True)
        objs.append(str(obj))
    out = subprocess.run(["arm-none-eabi-size", "-t", *objs], check=True, capture_output=True, text=True).stdout
    total = out.strip().splitlines()[-1].split()
    return int(total[0]), int(total[1]), int(total[2])


def measure(model_bytes: bytes, label: str, name: str) -> MemoryRow:
    from hi_firmware.compiler import compile_bytes
    from hi_runtime.backends import tflm_arena_bytes

    gen, graph, plan = compile_bytes(model_bytes, name, label)
    io = sum(graph.tensors[t].nbytes for t in graph.inputs) + sum(graph.tensors[t].nbytes for t in graph.outputs)
    with tempfile.TemporaryDirectory() as tmp:
        gen.write(Path(tmp))
        sections = arm_sections(Path(tmp), name)
    return MemoryRow(
        model=label, arena=plan.arena_size, scratch=gen.scratch_size, io=io, tflm_arena=tflm_arena_bytes(model_bytes), const=gen.flash_bytes,
        arm_text=sections[0] if sections else None, arm_data=sections[1] if sections else None,
        arm_bss=sections[2] if sections else None,
    )


def render(rows: list[MemoryRow]) -> str:
    head = f"{'model':<34} {'arena':>8} {'scratch':>8} {'io':>6} {'all RAM':>8} {'TFLM arena':>11} {'saving':>7} {'const':>8} {'M4 text':>8} {'M4 bss':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        sav = f"{100 * r.saving:.0f}%" if r.saving is not None else "n/a"
        lines.append(
            f"{r.model:<34} {r.arena:>8} {r.scratch:>8} {r.io:>6} {r.arena + r.scratch + r.io:>8} {r.tflm_arena if r.tflm_arena else 'n/a':>11} "
            f"{sav:>7} {r.const:>8} {r.arm_text if r.arm_text is not None else 'n/a':>8} {r.arm_bss if r.arm_bss is not None else 'n/a':>7}"
        )
    lines.append("bytes; TFLM arena measured with the tflite-micro Python interpreter (64-bit host); "
                 "M4 = arm-none-eabi-gcc -O2 Cortex-M4F, model + kernels")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m measurements.bench_firmware_memory",
        description="Flash/RAM of models compiled by hi-firmware, next to TFLite Micro's arena for the same model.",
    )
    parser.add_argument("models", nargs="*",
                        help=".tflite files (default: every shipped */*_int8*.tflite, found by hi_runtime.artifacts "
                             "wherever installed; $HI_MODELS_DIR overrides)")
    parser.add_argument("--mlperf-resnet8", action="store_true",
                        help="also build MLPerf Tiny's ResNet-8 architecture (random weights) and measure it")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    args = parser.parse_args(argv)

    from hi_firmware.compiler import CompileError
    from hi_firmware.compiler.emitter import c_identifier

    if args.models:
        paths = [Path(m) for m in args.models]
    else:
        from hi_runtime.artifacts import MODELS_ENV, ArtifactError, models_root

        try:
            root = models_root()
        except ArtifactError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        paths = sorted(root.glob("**/*_int8*.tflite"))
        if not paths and not args.mlperf_resnet8:
            print(f"error: no shipped */*_int8*.tflite under {root}; pass .tflite files, set {MODELS_ENV} to a "
                  "folder of shipped models, or use --mlperf-resnet8", file=sys.stderr)
            return 2
    rows: list[MemoryRow] = []
    for p in paths:
        if not p.exists():
            print(f"error: {p} does not exist", file=sys.stderr)
            return 2
        try:
            rows.append(measure(p.read_bytes(), p.name, c_identifier(p.stem)))
        except CompileError as exc:
            print(f"skipping {p}: {exc}", file=sys.stderr)
    if args.mlperf_resnet8:
        from hi_firmware.compiler.testing import mlperf_tiny_resnet8_int8

        rows.append(measure(mlperf_tiny_resnet8_int8(seed=0), "mlperf_tiny_resnet8 (random weights)", "mlperf_resnet8"))
    if not rows:
        print("no model could be measured (see the skipped ones above); pass other .tflite files or --mlperf-resnet8",
              file=sys.stderr)
        return 1
    print(render(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) | {"saving": r.saving} for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
