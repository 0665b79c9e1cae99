"""`hi-train`: train models, export them for devices and the server, and write their cards.

Subcommands live in small modules that expose ``register_cli(subparsers)``; they are imported lazily so
``hi-train --help`` answers without loading TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hi_runtime.cli_support import (
    Parser,
    UsageError,
    at_least,
    fraction,
    positive_fraction,
    register_subcommands,
    run,
)
from training.cli_checks import (
    TEACHER_FIX,
    check_keras_file,
    check_out_prefix,
    load_keras,
    user_model,
)
from training.models import ARCHITECTURES

# Modules that add subcommands (each exposes register_cli(subparsers)); missing ones are skipped.
SUBCOMMAND_MODULES = (
    "training.decider_cli",
    "training.early_exit_cli",
    "training.thresholds_cli",
    "training.placement_cli",
    "training.member_cli",
    "training.split_ee_cli",
)

DEVICE_EXPORTS = "int8,float"
EXPORT_KINDS = ("int8", "float", "onnx")


def export_kinds(text: str) -> list[str]:
    """``--export``: a comma list of int8, float, onnx (argparse type, so a typo is a usage error)."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in EXPORT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown export kind(s) {', '.join(unknown) or '(none given)'}; "
                                         f"use a comma list of {', '.join(EXPORT_KINDS)}")
    return kinds



def check_input_shape(what: str, model_shape: Sequence, data, dataset: str) -> None:
    """A model built for other images (a 32x32x3 CIFAR-10 model on 28x28x1 MNIST) is a usage error."""
    want = tuple(int(d) for d in model_shape if d is not None and int(d) > 0)
    have = tuple(int(d) for d in data.images.shape[1:])
    if want != have:
        raise UsageError(f"{what} takes {'x'.join(map(str, want))} images but the {dataset} data is "
                         f"{'x'.join(map(str, have))}; use a model made for {dataset} images, or the --dataset "
                         "it was trained on")


def _file_input_shape(path: str, flag: str, fix: str) -> tuple:
    """Input shape (without the batch) of the .onnx or .tflite file the user named with ``flag``."""
    from hi_runtime.backends import open_backend

    with user_model(flag, path, fix):
        backend = open_backend(path, providers=["CPUExecutionProvider"] if str(path).endswith(".onnx") else None)
    if hasattr(backend, "sample_shape"):
        return tuple(d for d in backend.sample_shape if d > 0)
    return tuple(int(d) for d in backend.input.shape[1:])
RESUME_NOTE = ("the run was stopped and resumed; each entry of 'runs' is one (re)start with the epoch it "
               "started from. The learning-rate schedule is a function of the optimizer step and of --epochs, "
               "so a resume with a different --epochs changes the cosine horizon from that epoch on.")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist", "folder", "imagenet"],
                   help="dataset kind (default: cifar10). cifar10: the JPEG image-folder archives or the official "
                        "batches; mnist: a folder with the four MNIST IDX files (train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally "
                        ".gz); folder/imagenet: an image-folder tree <split>/<class>/<image>")
    p.add_argument("--data", required=True,
                   help="dataset path, e.g. ../shared/datasets/cifar10-jpeg or ../shared/datasets/mnist")
    p.add_argument("--val-size", type=at_least(1), default=None,
                   help="validation images carved from the training split (default 5000 for CIFAR-10)")
    p.add_argument("--image-size", type=at_least(1), default=None, help="resize+center-crop size (folder/imagenet)")
    p.add_argument("--limit-train", type=at_least(1), default=None,
                   help="use only the first N training images (a random but fixed subset): for smoke runs")
    p.add_argument("--limit-test", type=at_least(1), default=None, help="evaluate on only N test images")
    p.add_argument("--split-seed", type=at_least(0), default=0,
                   help="seed of the validation split (default 0, the split every shipped model, decider and "
                        "threshold uses; --seed changes only the training run, so members of an ensemble "
                        "trained with different --seed never see the validation images)")


def _load_splits(args):
    import numpy as np

    from hi_runtime.datasets import load_dataset

    kw = dict(val_size=args.val_size, seed=args.split_seed, image_size=args.image_size)
    train = load_dataset(args.dataset, args.data, "train", **kw)
    val = load_dataset(args.dataset, args.data, "val", **kw)
    test = load_dataset(args.dataset, args.data, "test", **kw)
    rng = np.random.default_rng(args.split_seed)
    if args.limit_train:
        train = train.subset(np.sort(rng.permutation(len(train))[: args.limit_train]))
        val = val.subset(np.sort(rng.permutation(len(val))[: max(1, args.limit_train // 5)]))
    if args.limit_test:
        test = test.subset(np.sort(rng.permutation(len(test))[: args.limit_test]))
    return train, val, test


def cmd_model(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.train import (
        TrainConfig,
        TrainingError,
        claim_checkpoint,
        mark_checkpoint_complete,
        threads_hint,
        train_model,
    )

    threads_hint()
    out = check_out_prefix(args.out, args.arch)
    teacher_shape: tuple = ()
    if args.teacher:  # a teacher that cannot be loaded is found before the data loads
        if not Path(args.teacher).is_file():
            raise UsageError(f"--teacher {args.teacher} does not exist; {TEACHER_FIX}")
        teacher_shape = _file_input_shape(args.teacher, "--teacher", TEACHER_FIX)
    ckpt = args.ckpt_dir or str(out.parent / f".{out.name}.ckpt")
    # flip and pad-and-crop are the CIFAR-10 recipe; a mirrored digit is another digit, so never on MNIST
    augment = not args.no_augment and args.dataset != "mnist"
    cfg = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                      label_smoothing=args.label_smoothing, augment=augment, seed=args.seed,
                      ckpt_dir=ckpt, precision=args.precision, teacher=args.teacher or "",
                      distill_weight=args.distill_weight if args.teacher else 0.0, temperature=args.temperature)
    train, val, test = _load_splits(args)
    print(f"data: train {len(train)}, val {len(val)}, test {len(test)} images from {args.data}", flush=True)
    if args.teacher:
        check_input_shape(f"teacher {args.teacher}", teacher_shape, train, args.dataset)
    command = "hi-train " + " ".join(shlex.quote(a) for a in args.argv)
    refused = claim_checkpoint(ckpt, args.resume, command)
    if refused:
        raise UsageError(refused)
    runs = record_command(Path(ckpt), command, args.resume)
    t0 = time.time()
    try:
        model = train_model(cfg, train, val, resume=args.resume)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    seconds = time.time() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    keras_path = out.with_suffix(".keras")
    model.save(keras_path)
    print(f"saved {keras_path} after {seconds / 60:.1f} min", flush=True)
    training = {"config": cfg.to_dict(), "epochs": cfg.epochs, "seconds": round(seconds), "command": command}
    if len(runs) > 1:
        training["runs"] = runs
        training["note"] = RESUME_NOTE
    history = Path(ckpt) / "history.jsonl"
    if history.exists():
        training["history"] = [json.loads(l) for l in history.read_text().splitlines() if l.strip()]
        training["seconds"] = history_seconds(training["history"], seconds)
    card = export_and_card(model, out, args.export, train, val, test, args, training=training)
    mark_checkpoint_complete(ckpt, out, command)
    print(json.dumps({a["file"]: a.get("test_accuracy") for a in card["artifacts"]}, indent=2))
    return 0


def record_command(ckpt: Path, command: str, resume: bool) -> list[dict]:
    """Append this (re)start to <ckpt>/runs.jsonl so the card can say exactly how the model was made."""
    ckpt.mkdir(parents=True, exist_ok=True)
    runs_file = ckpt / "runs.jsonl"
    history = ckpt / "history.jsonl"
    done = len(history.read_text().splitlines()) if (resume and history.exists()) else 0
    if not resume and runs_file.exists():
        runs_file.unlink()
    with open(runs_file, "a") as fh:
        fh.write(json.dumps({"command": command, "started_at_epoch": done + 1,
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    return [json.loads(l) for l in runs_file.read_text().splitlines() if l.strip()]


def cmd_export(args) -> int:
    """Re-export a saved Keras model (or an ensemble of several) and rewrite its card (e.g. after changing
    the exporter, or to add test-time augmentation)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = check_out_prefix(args.out, "resnet8")
    ckpts = list(args.ckpt_dir or [])
    if ckpts and len(ckpts) != len(args.keras):
        raise UsageError(f"--ckpt-dir got {len(ckpts)} directories for {len(args.keras)} --keras models; give one "
                         "checkpoint directory per model, in the same order, or none")
    fix = "give the .keras file hi-train model wrote (`hi-train model ... --out PREFIX` writes PREFIX.keras)"
    for path in args.keras:  # every file checked before the first loads
        check_keras_file(path, "--keras", fix)
    members = [load_keras(p, "--keras", fix) for p in args.keras]  # export needs no optimizer
    train, val, test = _load_splits(args)
    for path, member in zip(args.keras, members):
        check_input_shape(f"model {path}", member.inputs[0].shape[1:], train, args.dataset)
    command = "hi-train " + " ".join(shlex.quote(a) for a in args.argv)
    if len(members) == 1:
        model, extra, float_probs = members[0], None, None
        training = {}
        card_path = out.with_suffix(".json")
        if card_path.exists():
            training = json.loads(card_path.read_text()).get("training", {})
        if ckpts:
            training = training_record(Path(ckpts[0])) or training
    else:
        model, training, extra, float_probs = _ensemble_of(members, args.keras, ckpts, test)
    export_and_card(model, out, args.export, train, val, test, args, training=training,
                    export_command=command, extra=extra, float_probs=float_probs)
    return 0


def _ensemble_of(members: list, paths: Sequence[str], ckpts: Sequence[str], test) -> tuple:
    """The ensemble of ``members``, its training record and card section (each member's file, architecture,
    size, test accuracy and training record; the training time is the members' sum), and its test-split
    probabilities."""
    import numpy as np

    from training.export import accuracy
    from training.models import count_params_and_macs, ensemble

    described, member_probs = [], []
    for i, (m, path) in enumerate(zip(members, paths)):
        stats = count_params_and_macs(m)
        probs = m.predict(test.images.astype(np.float32), batch_size=500, verbose=0)
        member_probs.append(probs)
        rec = training_record(Path(ckpts[i])) if ckpts else {}
        described.append({"keras": str(path), "architecture": m.name, **stats.as_dict(),
                          "test_accuracy": accuracy(probs, test.labels), "training": rec})
        print(f"member {path}: {m.name}, test accuracy {described[-1]['test_accuracy']:.4f}", flush=True)
    seconds = sum(d["training"].get("seconds", 0) for d in described)
    training = {"ensemble_of": len(members), "seconds": seconds,
                "note": "each member was trained separately by the command in ensemble.members[i].training; "
                        "seconds is their sum"}
    extra = {"ensemble": {"members": described, "combination": "mean of the members' softmax probabilities"}}
    # the ensemble's own test probabilities are the mean of the members': no second pass over the test split
    return ensemble(members), training, extra, np.mean(member_probs, axis=0)


def history_seconds(history: list[dict], this_session_s: float) -> int:
    """The run's training time: every epoch's, over all its sessions (a resumed run's last session alone
    would understate it), or this session's when the history has no times."""
    times = [h["seconds"] for h in history if isinstance(h.get("seconds"), (int, float))]
    return round(sum(times)) if times else round(this_session_s)


def training_record(ckpt: Path) -> dict:
    """How a checkpointed run was made, from its checkpoint directory: config, every (re)start command and
    the per-epoch history."""
    rec: dict = {}
    if (ckpt / "config.json").exists():
        cfg = json.loads((ckpt / "config.json").read_text())
        rec["config"] = cfg
        rec["epochs"] = cfg.get("epochs")
    runs_file, history = ckpt / "runs.jsonl", ckpt / "history.jsonl"
    if runs_file.exists():
        runs = [json.loads(l) for l in runs_file.read_text().splitlines() if l.strip()]
        rec["command"] = runs[-1]["command"]
        if len(runs) > 1:
            rec["runs"] = runs
            rec["note"] = RESUME_NOTE
    if history.exists():
        rec["history"] = [json.loads(l) for l in history.read_text().splitlines() if l.strip()]
        rec["seconds"] = history_seconds(rec["history"], 0.0)
    return rec


def export_and_card(model, out: Path, exports: Sequence[str], train, val, test, args, training: dict,
                    export_command: str | None = None, extra: dict | None = None, float_probs=None) -> dict:
    """Export ``model`` in each of ``exports``, score every file on the test split and write the card.
    ``export_command`` is the `hi-train export` command when the files were re-exported from a saved model
    (the training command alone would not reproduce them, e.g. with --tta); ``extra`` adds card sections;
    ``float_probs`` are the model's test probabilities when the caller has them already."""
    import numpy as np

    from hi_runtime.backends import TFLiteBackend, open_backend, tflm_arena_bytes
    from training.cards import JPEG_NOTE, git_commit, update_models_readme, write_card
    from training.export import (
        accuracy,
        export_float_tflite,
        export_int8_tflite,
        export_onnx,
        representative_subset,
    )
    from training.models import TTA_WRAPPERS, count_params_and_macs

    stats = count_params_and_macs(model)
    artifacts = []
    keras_path = out.with_suffix(".keras")
    if float_probs is None:
        float_probs = model.predict(test.images.astype(np.float32), batch_size=500, verbose=0)
    float_acc = accuracy(float_probs, test.labels)

    def keras_artifact(path: Path, kind: str, acc: float, **overrides) -> dict:
        return {"file": path.name, "kind": kind, **overrides, "bytes": path.stat().st_size, "test_accuracy": acc,
                "evaluated_with": f"keras {__import__('keras').__version__}"}

    members = (extra or {}).get("ensemble", {}).get("members", [])
    if keras_path.exists() and not members:
        artifacts.append(keras_artifact(keras_path, "keras (float32, training form)", float_acc))
    for i, member in enumerate(members):  # the ensemble's saved members that ship beside it
        path = Path(member["keras"])
        if path.exists() and path.resolve().parent == out.parent.resolve():
            artifacts.append(keras_artifact(path, f"keras (float32, training form), ensemble member {i + 1}",
                                            member["test_accuracy"], architecture=member["architecture"],
                                            params=member["params"], macs=member["macs"]))
    for kind in exports:
        if kind == "int8":
            path = export_int8_tflite(model, representative_subset(train.images, 500, args.seed),
                                      out.parent / f"{out.name}_int8.tflite")
            tm = TFLiteBackend(path)
            shape = [int(v) for v in tm.input.shape]  # the file's own (batch 1), before evaluation resizes it
            acc = accuracy(tm.predict(test.images), test.labels)
            s_in, z_in = tm.input.quant
            s_out, z_out = tm.output().quant
            print("measuring the TFLite Micro arena ...", flush=True)
            arena = tflm_arena_bytes(path, test.images[:1])
            artifacts.append({
                "file": path.name, "kind": "tflite int8 (device)", "bytes": path.stat().st_size,
                "test_accuracy": acc,
                "evaluated_with": "ai-edge-litert default kernels (XNNPACK), which may differ from LiteRT's "
                                  "reference kernels and TFLite Micro by a few int8 steps on rare samples",
                "ops": tm.op_names(),
                "tflm_arena_bytes": arena,
                "tflm_arena_note": "smallest arena the tflite-micro Python interpreter (x86-64, 64-bit "
                                   "pointers) runs with; a 32-bit Cortex-M needs somewhat less",
                "input": {"dtype": "int8", "shape": shape, "layout": "NHWC",
                          "scale": s_in, "zero_point": z_in,
                          "meaning": "q = round(pixel / scale) + zero_point; for scale 1, zp -128: pixel - 128"},
                "output": {"dtype": "int8", "scale": s_out, "zero_point": z_out,
                           "meaning": "softmax probabilities: p = (q - zero_point) * scale"},
            })
        elif kind == "float":
            path = export_float_tflite(model, out.parent / f"{out.name}_float.tflite")
            tm = TFLiteBackend(path)
            acc = accuracy(tm.predict(test.images), test.labels)
            artifacts.append({"file": path.name, "kind": "tflite float32", "bytes": path.stat().st_size,
                              "test_accuracy": acc, "evaluated_with": "ai-edge-litert", "ops": tm.op_names(),
                              "input": {"dtype": "float32", "layout": "NHWC", "meaning": "raw pixels 0..255"}})
        elif kind == "onnx":
            path = out.parent / f"{out.name}.onnx"
            tta = getattr(args, "tta", "none")
            served = model if tta == "none" else TTA_WRAPPERS[tta](model)
            export_onnx(served, path, validate_images=val.images[:256])
            acc = accuracy(open_backend(path, providers=["CPUExecutionProvider"]).predict(test.images, batch=500),
                           test.labels)
            art = {"file": path.name, "kind": "onnx float32 (server)", "bytes": path.stat().st_size,
                   "test_accuracy": acc, "evaluated_with": "onnxruntime CPUExecutionProvider",
                   "input": {"dtype": "float32", "shape": ["N", *test.images.shape[1:]],
                             "layout": "NHWC", "meaning": "raw pixels 0..255"},
                   "output": {"meaning": "softmax probabilities [N, classes]"}}
            if tta != "none":
                art["kind"] += f", {tta} test-time augmentation (2 passes)"
                art["test_time_augmentation"] = {
                    "kind": tta, "forward_passes": 2, "macs_per_image": 2 * stats.macs,
                    "meaning": "mean of the softmax on the image and on its horizontal mirror",
                    "test_accuracy_without": float_acc}
            artifacts.append(art)
        else:
            raise UsageError(f"unknown export kind {kind!r}; use {', '.join(EXPORT_KINDS)}")
    card = {
        "card_version": 1,
        "name": out.name,
        "architecture": model.name,
        "params": stats.params,
        "macs": stats.macs,
        "dataset": {"name": args.dataset, "path": str(args.data), "train_images": len(train),
                    "val_images": len(val), "test_images": len(test),
                    "val_split": f"class-stratified, seed {args.split_seed}, carved from the training split",
                    "note": JPEG_NOTE if args.dataset == "cifar10" else ""},
        "training": training,
        **({"export_command": export_command} if export_command else {}),
        **(extra or {}),
        "git_commit": git_commit(),
        "float_test_accuracy": float_acc,
        "artifacts": artifacts,
    }
    card_path = write_card(out.with_suffix(".json"), card)
    print(f"wrote card {card_path}", flush=True)
    models_root = _models_root(out)
    if models_root is not None:
        update_models_readme(models_root)
    return card


def _models_root(out: Path) -> Path | None:
    for parent in [out.parent, *out.parent.parents]:
        if parent.name == "models":
            return parent
    return None


def cmd_cards(args) -> int:
    from training.cards import update_models_readme

    models = Path(args.models)
    if not models.is_dir():
        raise UsageError(f"--models {args.models} {'is not a folder' if models.exists() else 'does not exist'}; "
                         "give the folder that holds the model cards, e.g. models")
    print(f"updated {update_models_readme(models)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hi-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("model", help="train a model, export it and write its card",
                       description="Train ARCH on a dataset with flip/crop augmentation, SGD with warm-up and "
                                   "cosine decay; checkpoint every epoch (resume with --resume); export INT8/"
                                   "float TFLite and/or ONNX and write a model card.")
    m.add_argument("--arch", default="resnet8", choices=sorted(ARCHITECTURES), metavar="ARCH",
                   help="resnet8, resnet20, resnet56, resnet9, resnet9_w32, resnet9_w48, resnet18, tiny_cnn, or lr "
                        "(softmax regression, the paper's MNIST model for microcontrollers; INT8 export has no MUL: "
                        "the input scaling is folded into its weights) (default resnet8)")
    _add_data_args(m)
    m.add_argument("--epochs", type=at_least(1), default=30)
    m.add_argument("--batch-size", type=at_least(1), default=64)
    m.add_argument("--lr", type=at_least(0, float, exclusive=True), default=0.1,
                   help="peak learning rate (default 0.1)")
    m.add_argument("--weight-decay", type=at_least(0, float), default=1e-4, help="L2 on kernels (default 1e-4)")
    m.add_argument("--warmup-epochs", type=at_least(0, float), default=1.0)
    m.add_argument("--label-smoothing", type=fraction, default=0.0)
    m.add_argument("--no-augment", action="store_true",
                   help="disable flip and pad-and-crop (never applied to mnist: a mirrored digit is another digit)")
    m.add_argument("--seed", type=at_least(0), default=0,
                   help="seed of the run: initialization, shuffling, augmentation (default 0)")
    m.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                   help="compute precision; mixed_bfloat16 keeps float32 weights and about halves the step time "
                        "on CPUs with AVX512-BF16 (the saved model is float32; default float32)")
    m.add_argument("--teacher", default=None,
                   help="distil from this model's probabilities (.onnx or .tflite), e.g. models/cifar10/server.onnx")
    m.add_argument("--distill-weight", type=positive_fraction, default=0.5,
                   help="weight of the distillation term with --teacher, in (0, 1] (default 0.5)")
    m.add_argument("--temperature", type=at_least(0, float, exclusive=True), default=4.0,
                   help="distillation temperature (default 4)")
    m.add_argument("--out", required=True, help="output prefix, e.g. models/cifar10/resnet8")
    m.add_argument("--export", default=export_kinds(DEVICE_EXPORTS), type=export_kinds,
                   help="comma list of int8, float, onnx (default int8,float). The firmware C of an int8 model: "
                        "hi-firmware compile OUT_int8.tflite --out DIR")
    m.add_argument("--tta", default="none", choices=["none", "flip"],
                   help="test-time augmentation baked into the ONNX (server) export: flip = mean of the image "
                        "and its mirror, two forward passes per image (default none; device exports never use it)")
    m.add_argument("--ckpt-dir", default=None, help="checkpoint directory (default: <out dir>/.<name>.ckpt)")
    m.add_argument("--resume", action="store_true", help="continue the run checkpointed in --ckpt-dir")
    m.set_defaults(func=cmd_model)

    e = sub.add_parser("export", help="export a saved .keras model (or an ensemble) again and write its card",
                       description="Export a saved Keras model again and rewrite its card. Given several "
                                   "--keras models, export one model that averages their softmax (an ensemble, "
                                   "for the server); the card lists every member with its accuracy.")
    e.add_argument("--keras", required=True, nargs="+",
                   help="the saved model, e.g. models/cifar10/resnet8.keras; several = their ensemble")
    _add_data_args(e)
    e.add_argument("--seed", type=at_least(0), default=0)
    e.add_argument("--out", required=True, help="output prefix, e.g. models/cifar10/resnet8")
    e.add_argument("--export", default=export_kinds(DEVICE_EXPORTS), type=export_kinds,
                   help="comma list of int8, float, onnx")
    e.add_argument("--tta", default="none", choices=["none", "flip"],
                   help="test-time augmentation baked into the ONNX (server) export: flip = mean of the image "
                        "and its mirror, two forward passes per image (default none; device exports never use it)")
    e.add_argument("--ckpt-dir", default=None, nargs="+",
                   help="the run's checkpoint directory (one per --keras model, same order): its config, commands "
                        "and history go into the card")
    e.set_defaults(func=cmd_export)

    c = sub.add_parser("cards", help="regenerate the table in models/README.md from the cards")
    c.add_argument("--models", default="models")
    c.set_defaults(func=cmd_cards)

    register_subcommands(sub, SUBCOMMAND_MODULES, "hi-train")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hi_runtime.datasets import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)

    def keep_argv(args) -> None:
        args.argv = argv  # the exact command goes into the model card

    return run(build_parser(), argv, tool="hi-train", before=keep_argv, user_errors=(DatasetError,))


if __name__ == "__main__":
    sys.exit(main())
