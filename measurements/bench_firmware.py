"""Instructions per inference (and per layer), flash and RAM of the firmware on the emulated Cortex-M4F.

Run:  python -m measurements.bench_firmware [--model M.tflite | --chain EE.json | --mlperf-resnet8]
                                            [--runs 5] [--samples 50] [--no-layers]
      hi-bench firmware ...   (the same, through hi-bench)

How it is measured (WHY these numbers mean instructions):
  * The image is built for QEMU's mps2-an386 (Cortex-M4F, arm-none-eabi-gcc -O2, DSP kernels) by
    hi_firmware.boards and run with ``-icount shift=0``: every guest instruction advances virtual time by
    exactly 1 ns, and the firmware's SysTick (25 MHz) timestamps it. The MLPerf Tiny ``infer N W`` command
    prints ``m-lap-us`` before and after N runs, so (t1 - t0) * 1000 / N is instructions per inference, to
    within 1000/N instructions (timestamps are whole microseconds). This is an instruction count, not
    cycles: a real Cortex-M4 takes about 1-1.5 cycles per instruction on this code (flash wait states,
    multi-cycle loads), so cycles on a board are somewhat higher.
  * With ``--samples`` the HI decision (`hi run`) runs on CIFAR-10 test images (JPEG re-encoded, see
    docs/measurements.md) and reports the device time per sample by exit taken (early-exit chains).
  * Per layer: each model is also built into the model bench (hi-firmware profile: the same board startup
    and kernels, semihosting output) and SysTick timestamps every kernel step (HI_MODEL_STEP_HOOK), so the
    table shows layer, MACs, instructions and instructions per MAC (exact to 40 instructions per step).
  * ``--mlperf-resnet8``: MLPerf Tiny's reference ResNet-8 structure (random weights, converted the MLPerf
    way; needs TensorFlow) instead of a shipped model.
  * flash = text + data and RAM = data + bss from ``arm-none-eabi-size`` of the whole image (startup,
    core, kernels, model, application, serial buffers and a 16 KiB stack); the model's own arena, scratch
    and constants come from the compiler.
Anchors for MLPerf Tiny's INT8 ResNet-8 on this emulated board: TFLite Micro + CMSIS-NN 29.9 M
instructions per inference, reference kernels 824 M; the project's goal is at most 20 M (stretch 12 M).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from hi_runtime.cli_support import Parser, UsageError, at_least
from hi_runtime.cli_support import run as run_cli

DEFAULT_DATA = Path("../shared/datasets/cifar10-jpeg")  # relative to the working directory (a checkout's root)
ANCHORS_M = {"TFLite Micro + CMSIS-NN": 29.9, "TFLite Micro reference kernels": 824.0, "goal": 20.0, "stretch goal": 12.0}


def _images(n: int, data: Path | None):
    root = data or DEFAULT_DATA
    if not (root / "test.tar.gz").exists():
        raise SystemExit(f"bench_firmware: CIFAR-10 JPEG test archive not found under {root}; pass --data DIR or "
                         "--samples 0")
    from hi_runtime.datasets import load_dataset

    ds = load_dataset("cifar10", root, "test", progress=False)
    idx = np.linspace(0, len(ds.labels) - 1, n).astype(int)
    return ds.images[idx], ds.labels[idx]


def layer_profiles(info, build_dir: Path) -> list[dict]:
    """Per-layer instructions of every segment of the application (hi_firmware.bench)."""
    from hi_firmware.bench import profile_model

    out = []
    for seg in info.segments:
        prof = profile_model(Path(seg.model_path), work_dir=build_dir / f"bench_{seg.name}")
        out.append({"segment": seg.name, **prof.to_dict()})
    return out


def measure(model: Path | None, chain: Path | None, decider: Path | None, runs: int, samples: int,
            data: Path | None, build_dir: Path, layers: bool = True) -> dict:
    from hi_firmware.app_config import generate_app
    from hi_firmware.boards import default_decider_for
    from hi_firmware.qemu import QEMU_INSTRUCTIONS_PER_US, build_qemu, run_qemu
    from hi_firmware.toolchain import elf_size

    from hi_runtime.agent.serial_bridge import SerialDevice

    kwargs = {"model": model, "chain": chain}
    if decider is not None:
        kwargs["decider"] = decider
    elif model is not None and default_decider_for(Path(model)) is not None:
        kwargs["decider"] = default_decider_for(Path(model))
    info = generate_app(build_dir / "app", **kwargs)
    elf = build_qemu(build_dir / "app", build_dir)
    size = elf_size(elf)
    out: dict = {
        "board": "QEMU mps2-an386 (Cortex-M4F), -icount shift=0",
        "model": str(chain or model),
        "segments": [{"name": s.name, "arena_bytes": s.arena_bytes, "scratch_bytes": s.scratch_bytes,
                      "const_bytes": s.flash_bytes} for s in info.segments],
        "image": {**size, "elf": str(elf)},
        "anchors_M_instructions": ANCHORS_M,
    }
    if layers:
        out["layers"] = layer_profiles(info, build_dir)
    with run_qemu(elf, icount=True) as qemu, SerialDevice.open(qemu.url, timeout=600) as dev:
        dev.sync()
        img = np.random.default_rng(0).integers(0, 256, (*info.input_shape,), dtype=np.uint8)
        dev.load(img)
        laps, _ = dev.infer(runs, 1, timeout=1200)
        out["instructions_per_inference"] = (laps[1] - laps[0]) * QEMU_INSTRUCTIONS_PER_US / runs
        out["runs"] = runs
        if samples:
            images, labels = _images(samples, data)
            by_exit: dict[int, list[int]] = {}
            correct = offloads = 0
            for i, (x, y) in enumerate(zip(images, labels)):
                dev.load(x)
                res = dev.run_hi(i + 1)
                if res.offload is not None:
                    dev.degraded(i + 1)
                    offloads += 1
                by_exit.setdefault(res.local.exit_index, []).append(res.local.device_us)
                correct += int(res.local.class_id == int(y))
            all_us = [u for v in by_exit.values() for u in v]
            out["hi_run"] = {
                "samples": samples,
                "local_accuracy": correct / samples,
                "offload_decisions": offloads,
                "mean_instructions_per_sample": float(np.mean(all_us)) * QEMU_INSTRUCTIONS_PER_US,
                "by_exit": {str(k): {"samples": len(v), "mean_instructions": float(np.mean(v)) * QEMU_INSTRUCTIONS_PER_US}
                            for k, v in sorted(by_exit.items())},
            }
    return out


def _short(tensor: str) -> str:
    from hi_firmware.bench import short_name

    return short_name(tensor)


def report(res: dict) -> str:
    m = res["instructions_per_inference"] / 1e6
    lines = [f"firmware on {res['board']}", f"  model: {res['model']}",
             f"  instructions per inference: {m:.3f} M (mean of {res['runs']} runs, +-{1 / res['runs']:.3f} k)"]
    for name, ref in res["anchors_M_instructions"].items():
        lines.append(f"    vs {name:32s} {ref:8.1f} M  ({m / ref:.2f}x)")
    img = res["image"]
    lines.append(f"  image: flash {img['flash']} B (text {img['text']} + data {img['data']}), RAM {img['ram']} B "
                 f"(data {img['data']} + bss {img['bss']}, incl. 16 KiB stack)")
    for s in res["segments"]:
        lines.append(f"    {s['name']}: arena {s['arena_bytes']} B, scratch {s.get('scratch_bytes', 0)} B, "
                     f"constants {s['const_bytes']} B")
    for seg in res.get("layers", []):
        lines.append(f"  per layer, {seg['segment']} (model bench: one invoke {seg['instructions'] / 1e6:.3f} M "
                     f"instructions, {seg['macs']:,} MACs):")
        lines.append("    " + f"{'step':>4}  {'layer':<36} {'MACs':>10} {'instructions':>13} {'instr/MAC':>9}")
        for st in seg["steps"]:
            if not st["instructions"] and not st["macs"]:
                continue
            per = f"{st['instructions'] / st['macs']:9.3f}" if st["macs"] else f"{'-':>9}"
            label = f"{st['kind']} {_short(st['output'])}"[:36]
            lines.append(f"    {st['index']:>4}  {label:<36} {st['macs']:>10,} {st['instructions']:>13,} {per}")
    if "hi_run" in res:
        h = res["hi_run"]
        lines.append(f"  hi run on {h['samples']} CIFAR-10 JPEG test images: local accuracy {h['local_accuracy']:.3f}, "
                     f"{h['offload_decisions']} offload decisions, {h['mean_instructions_per_sample'] / 1e6:.3f} M "
                     "instructions per sample (inference + decision)")
        for k, v in h["by_exit"].items():
            lines.append(f"    exit {k}: {v['samples']} samples, {v['mean_instructions'] / 1e6:.3f} M instructions")
    return "\n".join(lines)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="INT8 .tflite (default models/cifar10/resnet8_int8.tflite)")
    src.add_argument("--chain", type=Path, help="early-exit chain JSON (models/cifar10/ee_resnet8.json)")
    src.add_argument("--mlperf-resnet8", action="store_true",
                     help="MLPerf Tiny's reference ResNet-8 structure (random weights; needs TensorFlow)")
    ap.add_argument("--decider", type=Path, help="decider JSON (default: the shipped one for the shipped model)")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer table (one build less per model)")
    ap.add_argument("--runs", type=at_least(1), default=5, help="timed inferences (default 5)")
    ap.add_argument("--samples", type=at_least(0), default=0,
                    help="also run `hi run` on this many CIFAR-10 test images")
    ap.add_argument("--data", type=Path,
                    help=f"CIFAR-10 JPEG dir (default {DEFAULT_DATA}, relative to the working directory)")
    ap.add_argument("--build-dir", type=Path, help="where to build (default: a temporary directory)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    """A usage mistake raises UsageError (hi_firmware's too: the same class), a failed build BuildError (a
    RuntimeError): the caller's cli_support.run prints one line, exit 2 or 1."""
    from hi_firmware.boards import default_model

    if args.samples:  # checked before the firmware is built and run, which takes minutes
        root = args.data or DEFAULT_DATA
        if not (root / "test.tar.gz").exists():
            raise UsageError(f"--data {root}: no CIFAR-10 JPEG test archive (test.tar.gz) there; pass --data DIR "
                             "or --samples 0")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.mlperf_resnet8:
            from hi_firmware.compiler.testing import mlperf_tiny_resnet8_int8

            model = Path(tmp) / "mlperf_tiny_resnet8_int8.tflite"
            model.write_bytes(mlperf_tiny_resnet8_int8(seed=0))
        elif model is None and args.chain is None:
            model = default_model()
        res = measure(model, args.chain, args.decider, args.runs, args.samples, args.data,
                      Path(args.build_dir or tmp), layers=not args.no_layers)
        if args.mlperf_resnet8:
            res["model"] = "MLPerf Tiny ResNet-8 structure (random weights, hi_firmware.compiler.testing)"
    print(report(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def register_cli(subparsers) -> None:
    """``hi-bench firmware``."""
    ap = subparsers.add_parser("firmware", help="instructions per inference, flash and RAM on the emulated Cortex-M4",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    ap.set_defaults(func=run)


def main(argv=None) -> int:
    """``python -m measurements.bench_firmware``: the same checks, one line as bench_firmware."""
    ap = Parser(prog="bench_firmware", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    ap.set_defaults(func=run)
    return run_cli(ap, argv, tool="bench_firmware", user_errors=(ValueError,), failures=(OSError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
