"""`hi-train split-ee MODEL.tflite --out PREFIX --data ...`: a single-file early-exit model (IF operators)
to an INT8 segment chain that `hi-firmware compile` and `hi-agent run --strategy ee-hi --ee-chain` take."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hi_runtime.cli_support import UsageError, at_least, number_list


def register_cli(sub) -> None:
    from hi_runtime.input_spec import add_cli_args

    p = sub.add_parser(
        "split-ee", help="split a single-file early-exit model (IF operators) into an INT8 segment chain",
        description="Read the exits of an early-exit .tflite whose IF operators pick the exit (the scores of the "
                    "exit taken and its index as outputs), rebuild trunk, exits and branches as one graph, "
                    "quantize it to full-integer INT8 on training images, and cut it into segments: writes "
                    "<out>.json (the chain: hi-agent --ee-chain), <out>_seg{k}_int8.tflite (hi-firmware compile) "
                    "and <out>_int8.tflite (every exit's scores, for hi-train thresholds). The exit thresholds "
                    "come from the model's comparison constants, or --exit-threshold. Then it checks the chain "
                    "against the model on test images.",
        epilog="example: hi-train split-ee ee_resnet56.tflite --out models/cifar10/ee_resnet56_split "
               "--data ../shared/datasets/cifar10-jpeg --input-scale 1/255 --input-mean 0.4914,0.4822,0.4465 "
               "--input-std 0.247,0.2435,0.2616")
    p.add_argument("model", help="the single-file early-exit .tflite")
    p.add_argument("--out", required=True, help="output prefix, e.g. models/cifar10/ee_resnet56_split")
    p.add_argument("--data", required=True,
                   help="images to calibrate on and check with: a dataset path (--dataset kind) or an .npz with "
                        "'images' (uint8 NHWC) and optional 'labels'")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist", "folder", "imagenet"],
                   help="dataset kind of --data (default cifar10)")
    p.add_argument("--image-size", type=at_least(1), default=None, help="resize+center-crop size (folder/imagenet)")
    p.add_argument("--calibration", type=at_least(1), default=300,
                   help="training images to calibrate the INT8 quantization on (default 300)")
    p.add_argument("--check", type=at_least(0), default=500,
                   help="test images to compare the chain with the model on (default 500; 0 skips)")
    p.add_argument("--exit-threshold", default=None, metavar="T[,T...]",
                   type=number_list(_exit_threshold, "0.8,0.9"),
                   help="exit thresholds (max softmax >= T exits), one per non-final exit; needed when the "
                        "model's exit test is not a comparison with a plain constant, else it overrides it")
    p.add_argument("--decider", default=None, help="final-exit decider JSON to name in the chain (EE-HI)")
    add_cli_args(p, "model")
    p.set_defaults(func=cmd_split_ee)


def _exit_threshold(text: str) -> float:
    """One --exit-threshold entry: a max-softmax value in [0, 1] (0.8, or a fraction such as 4/5)."""
    from hi_runtime.input_spec import parse_number

    value = parse_number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a max-softmax threshold in [0, 1]")
    return value


def _images(args) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(calibration images, check images, check labels or None)."""
    from hi_runtime.datasets import DatasetError, load_dataset, load_npz_arrays

    rng = np.random.default_rng(0)
    if args.data.endswith(".npz"):
        try:
            arrays = load_npz_arrays(args.data)
        except DatasetError as exc:
            raise UsageError(f"--data: {exc}") from None
        images = np.asarray(arrays.images)
        labels = np.asarray(arrays.labels) if arrays.labels is not None else None
        order = rng.permutation(len(images))
        cal = order[: min(args.calibration, len(images))]
        chk = order[len(cal):][: args.check]
        return images[cal], images[chk], (labels[chk] if labels is not None else None)
    train = load_dataset(args.dataset, args.data, "trainval", image_size=args.image_size)
    cal = train.images[np.sort(rng.permutation(len(train))[: args.calibration])]
    if args.check <= 0:
        return cal, cal[:0], None
    test = load_dataset(args.dataset, args.data, "test", image_size=args.image_size)
    pick = np.sort(rng.permutation(len(test))[: args.check])
    return cal, test.images[pick], test.labels[pick]


def _error(msg: str) -> int:
    print(f"hi-train split-ee: error: {msg}", file=sys.stderr)
    return 2


def cmd_split_ee(args: argparse.Namespace) -> int:
    from hi_runtime.datasets import DatasetError
    from hi_runtime.early_exit import EarlyExitError
    from hi_runtime.input_spec import InputSpecError, from_cli
    from training.early_exit import EarlyExitExportError
    from training.split_ee import SplitError, split_early_exit
    from training.tflite_to_tf import TfliteImportError

    model = Path(args.model)
    if not model.is_file():
        return _error(f"model file {model} does not exist")
    if Path(args.out).is_dir():
        return _error(f"--out {args.out} is a folder; give an output prefix inside it, e.g. "
                      f"{Path(args.out) / model.stem}")
    thresholds = args.exit_threshold  # a list of fractions (argparse type)
    try:
        spec, source = from_cli(args, model)
        cal, check, labels = _images(args)
        if source:
            print(f"model input: {spec.describe()} (from {source})", flush=True)
        report = split_early_exit(model, args.out, cal, input_format=spec, exit_thresholds=thresholds,
                                  check_images=check, check_labels=labels, decider_file=args.decider,
                                  log=lambda m: print(m, flush=True))
    except (SplitError, EarlyExitError, TfliteImportError, InputSpecError, DatasetError, ValueError) as exc:
        return _error(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    except EarlyExitExportError as exc:
        return _error(str(exc))
    ex = report.export
    print(f"chain {ex.chain.path}: {len(ex.segment_files)} segments "
          f"({', '.join(p.name for p in ex.segment_files)}), MACs {ex.macs_per_segment}")
    for k, (t, src) in enumerate(zip(report.thresholds, report.threshold_sources)):
        print(f"  exit {k + 1}: threshold {t:.6g} ({src})")
    if report.unsupported_ops:
        print(f"  note: the segments use {report.unsupported_ops}, which hi-firmware compile does not support; "
              "the chain still runs on LiteRT (hi-agent)")
    c = report.check
    if c:
        acc = (f"; accuracy model {c['accuracy_model']:.2%}, chain {c['accuracy_chain']:.2%}"
               if "accuracy_model" in c else "")
        print(f"  check on {c['images']} images: same exit {c['same_exit']:.1%}, same class {c['same_class']:.1%}, "
              f"exit rates model {[round(r, 3) for r in c['exit_rates_model']]} vs chain "
              f"{[round(r, 3) for r in c['exit_rates_chain']]}{acc}")
    return 0
