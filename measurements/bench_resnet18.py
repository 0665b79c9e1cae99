"""ResNet-18 for ImageNet-1K end to end without ImageNet: the paper's ImageNet device model through
the project's own tools, on a small generated image-folder set.

Run:  python -m measurements.bench_resnet18 --work runs/resnet18 [--classes 1000] [--image-size 224]

Steps (each one the command a user runs; a user with ImageNet replaces step 1 by the real image-folder
tree, see docs/reproduction.md):

1. a generated image-folder tree ``<split>/<class>/<image>.jpg`` with ``--classes`` classes (1000: the
   ImageNet head), ``--per-class`` images per class and split, at ``--image-size`` pixels;
2. ``hi-train model --arch resnet18 --dataset imagenet`` for ``--steps`` optimizer steps (the weights are
   only as good as that: the point is the pipeline), INT8 export calibrated on the generated training
   images, and its model card;
3. ``hi-firmware compile`` of the INT8 file: the static arena (RAM) and constants (flash) of the generated
   C, against the Coral Dev Board Micro's memory (hi_runtime/profiles/coral_micro.yaml);
4. host latency: ``invoke()`` of the INT8 and float TFLite files with LiteRT on this machine.

Accuracy on generated images means nothing and is not reported as an accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def make_image_folder(root: Path, classes: int, per_class: int, size: int, splits=("train", "test"),
                      seed: int = 0) -> Path:
    """``root/<split>/cNNNN/<i>.jpg``: smooth random colour fields with a class-dependent blob, so the
    images look like photographs to the JPEG coder and to calibration (not pure noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for split in splits:
        for k in range(classes):
            folder = root / split / f"c{k:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            cy, cx = (k * 0.6180339 % 1.0), (k * 0.7548776 % 1.0)
            for i in range(per_class):
                base = rng.uniform(40, 200, 3)
                ramp = rng.uniform(-60, 60, (2, 3))
                blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02))[..., None] * rng.uniform(60, 120, 3)
                img = base + ramp[0] * yy[..., None] + ramp[1] * xx[..., None] + blob + rng.normal(0, 8, (size, size, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg", quality=90)
    return root


def memory_report(arena: int, constants: int, io_bytes: int, profile_id: str = "coral_micro") -> dict:
    """The compiled model's memory against a device profile's RAM and flash (``hardware.ram_bytes``,
    ``hardware.flash_bytes``)."""
    from hi_runtime.device_profiles import load_profile

    hw = load_profile(profile_id).hardware
    ram, flash = hw.get("ram_bytes"), hw.get("flash_bytes")
    out = {"device": profile_id, "arena_bytes": arena, "io_bytes": io_bytes, "constants_bytes": constants,
           "ram_bytes": ram, "flash_bytes": flash, "memory_cite": hw.get("memory_cite")}
    if ram:
        out["ram_share"] = (arena + io_bytes) / ram
    if flash:
        out["flash_share"] = constants / flash
    out["fits"] = bool(ram and flash and arena + io_bytes <= ram and constants <= flash)
    return out


def _merge_timings(parts: list):
    """One InvokeTiming from several short ones (all their samples)."""
    from measurements.machine_profile import InvokeTiming

    samples = sorted(v for t in parts for v in t.samples_ms)
    return InvokeTiming(runs=len(samples), mean_ms=float(np.mean(samples)),
                        p50_ms=float(np.percentile(samples, 50)), p95_ms=float(np.percentile(samples, 95)),
                        min_ms=samples[0], samples_ms=samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m measurements.bench_resnet18", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/resnet18"), help="work folder (default runs/resnet18)")
    p.add_argument("--classes", type=int, default=1000, help="classes of the generated set (default 1000, ImageNet's)")
    p.add_argument("--per-class", type=int, default=1, help="images per class and split (default 1)")
    p.add_argument("--image-size", type=int, default=224, help="image side in pixels (default 224)")
    p.add_argument("--steps", type=int, default=8, help="training steps of batch --batch-size (default 8)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--timing-runs", type=int, default=40, help="timed invokes per TFLite file, in rounds of 4 alternating INT8 and float (default 40)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.classes < 2 or args.per_class < 1 or args.image_size < 32 or args.steps < 1:
        print("bench_resnet18: error: need --classes >= 2, --per-class >= 1, --image-size >= 32, --steps >= 1",
              file=sys.stderr)
        return 2

    from hi_firmware.compiler import compile_model

    from measurements.machine_profile import time_tflite_invoke
    from training.cli import main as hi_train

    def say(msg: str) -> None:
        print(f"bench_resnet18: {msg}", file=sys.stderr, flush=True)

    work = args.work
    data = work / "data"
    if not (data / "test").exists():
        say(f"generating {args.classes} classes x {args.per_class} images x 2 splits at {args.image_size} px in {data}")
        make_image_folder(data, args.classes, args.per_class, args.image_size)
    out = work / "models" / "resnet18"
    n_train = args.steps * args.batch_size
    command = ["model", "--arch", "resnet18", "--dataset", "imagenet", "--data", str(data),
               "--image-size", str(args.image_size), "--epochs", "1", "--batch-size", str(args.batch_size),
               "--limit-train", str(n_train), "--limit-test", str(min(100, args.classes * args.per_class)),
               "--val-size", str(max(1, args.classes * args.per_class // 10)), "--warmup-epochs", "0",
               "--export", "int8,float", "--out", str(out)]
    say("hi-train " + " ".join(command))
    t0 = time.time()
    rc = hi_train(command)
    if rc != 0:
        return rc
    train_s = time.time() - t0
    card = json.loads(out.with_suffix(".json").read_text())
    int8 = out.parent / f"{out.name}_int8.tflite"
    flt = out.parent / f"{out.name}_float.tflite"
    say(f"hi-firmware compile {int8}")
    t0 = time.time()
    res = compile_model(int8, work / "firmware" / "resnet18_int8", name="resnet18_int8")
    compile_s = time.time() - t0
    gen = res.generated
    art = next(a for a in card["artifacts"] if a["file"] == int8.name)
    io_bytes = int(np.prod(art["input"]["shape"][1:])) + args.classes  # one image in, one score per class out
    report = memory_report(gen.arena_size, gen.flash_bytes, io_bytes)
    source_bytes = sum(f.stat().st_size for f in res.files)
    say("timing invoke() with LiteRT, INT8 and float alternately")
    rounds = max(1, args.timing_runs // 4)
    per_round: dict[str, list] = {int8.name: [], flt.name: []}
    for _ in range(rounds):  # alternate, so a load change on this shared machine hits both alike
        for path in (int8, flt):
            per_round[path.name].append(time_tflite_invoke(path, 4, 1))
    timings = {name: _merge_timings(ts) for name, ts in per_round.items()}
    result = {
        "architecture": card["architecture"], "params": card["params"], "macs": card["macs"],
        "classes": args.classes, "image_size": args.image_size, "train_images": n_train,
        "int8_ops": art["ops"], "int8_file_bytes": art["bytes"], "tflm_arena_bytes": art.get("tflm_arena_bytes"),
        "train_and_export_seconds": round(train_s), "compile_seconds": round(compile_s),
        "generated_c_bytes": source_bytes, "memory": report,
        "host_latency_ms": {name: {"mean": t.mean_ms, "p50": t.p50_ms, "min": t.min_ms, "runs": t.runs}
                            for name, t in timings.items()},
        "int8_over_float_latency": timings[int8.name].p50_ms / timings[flt.name].p50_ms,
    }
    mib = 1024 * 1024
    print(f"ResNet-18 ({card['params']:,} parameters, {card['macs'] / 1e9:.3f} G MACs at {args.image_size} px, "
          f"{args.classes} classes)")
    print(f"  INT8 TFLite: {art['bytes'] / mib:.2f} MiB, ops {', '.join(art['ops'])}")
    print(f"  compiled C: arena {gen.arena_size:,} B + I/O {io_bytes:,} B (RAM), constants {gen.flash_bytes:,} B "
          f"(flash); {source_bytes / mib:.1f} MiB of C source, {compile_s:.0f} s")
    if report.get("ram_bytes"):
        print(f"  Coral Dev Board Micro: {100 * report['ram_share']:.1f}% of its {report['ram_bytes'] / mib:.0f} MiB "
              f"SDRAM, {100 * report['flash_share']:.1f}% of its {report['flash_bytes'] / mib:.0f} MiB flash "
              f"-> {'fits' if report['fits'] else 'does NOT fit'}")
    if art.get("tflm_arena_bytes"):
        print(f"  TFLite Micro arena for the same file (64-bit host interpreter): {art['tflm_arena_bytes']:,} B")
    for name, t in timings.items():
        print(f"  host invoke() {name}: mean {t.mean_ms:.2f} ms, p50 {t.p50_ms:.2f} ms over {t.runs} (LiteRT, 1 thread)")
    print(f"  INT8 / float latency on this host (medians, timed alternately): {result['int8_over_float_latency']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
