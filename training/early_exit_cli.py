"""`hi-train early-exit`: train a BranchyNet early-exit model and export it as a chain of INT8 segments."""
from __future__ import annotations

import math
import shlex
import time
from pathlib import Path

import numpy as np

from hi_runtime.cli_support import UsageError, at_least, fraction, positive_fraction
from training.cli_checks import TEACHER_FIX, check_keras_file, check_out_prefix, load_keras
from training.models import ARCHITECTURES


def register_cli(sub) -> None:
    p = sub.add_parser(
        "early-exit", help="train an early-exit (BranchyNet) model and export its INT8 segment chain",
        description="Add exit branches to ARCH (ResNet-8: one after the second residual stack; ResNet-56: after "
                    "residual blocks 2 and 19), train with the joint weighted loss over all exits (optionally "
                    "starting the trunk from a trained plain model: branches first with the trunk frozen, then "
                    "everything jointly), export one INT8 model and cut it into segments, and write "
                    "<out>.json (the chain), <out>.keras and <out>.card.json.")
    p.add_argument("--arch", default="resnet8", choices=sorted(ARCHITECTURES),
                   help="base architecture (default resnet8; resnet56, resnet20 and tiny_cnn have exit presets too, "
                        "any other needs --exits)")
    p.add_argument("--exits", default=None, help="comma list of layer names to branch after (default: preset)")
    p.add_argument("--init", default=None, help="trained plain model to copy the trunk from, e.g. "
                                                 "models/cifar10/resnet8.keras")
    p.add_argument("--keras", default=None, help="skip training: export this saved early-exit .keras model")
    from training.decider_cli import add_data_args

    add_data_args(p)
    p.add_argument("--limit-train", type=at_least(1), default=None, help="train on only N images (smoke runs)")
    p.add_argument("--seed", type=at_least(0), default=0,
                   help="seed of the run: initialization, shuffling, augmentation (default 0); the validation "
                        "split has its own --split-seed, so a run with another --seed never trains on the images "
                        "the deciders and the threshold search are fitted on")
    p.add_argument("--epochs-branch", type=at_least(0), default=1,
                   help="epochs training only the branches (default 1)")
    p.add_argument("--epochs-joint", type=at_least(0), default=2, help="epochs of joint fine-tuning (default 2)")
    p.add_argument("--lr-branch", type=at_least(0, float, exclusive=True), default=0.05)
    p.add_argument("--lr-joint", type=at_least(0, float, exclusive=True), default=0.005)
    p.add_argument("--loss-weights", default=None,
                   help="comma list, one weight per exit with the final exit last (default all 1)")
    p.add_argument("--branch-width", type=at_least(1), default=64,
                   help="channels of the branch's 1x1 conv (default 64)")
    p.add_argument("--branch-convs", default=None,
                   help="comma list, one per exit branch: 3x3 convolutions (stride 2 while the map is larger than "
                        "8x8, channels doubling) at the start of the branch, for exits placed early in the trunk; "
                        "e.g. 3,0 for ResNet-56 as shipped (default none)")
    p.add_argument("--batch-size", type=at_least(1), default=64)
    p.add_argument("--weight-decay", type=at_least(0, float), default=1e-4)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--teacher", default=None,
                   help="teacher model (.onnx/.tflite, e.g. models/cifar10/server.onnx): with --epochs it teaches the "
                        "final exit (earlier exits learn from that one with --self-distill); with --init it teaches "
                        "every exit being trained, so branches on a frozen trunk learn from the server model")
    p.add_argument("--distill-weight", type=positive_fraction, default=0.5,
                   help="weight of the teacher term, in (0, 1] (default 0.5)")
    p.add_argument("--temperature", type=at_least(0, float, exclusive=True), default=4.0,
                   help="softening temperature T (default 4)")
    j = p.add_argument_group(
        "joint training from scratch (long schedules; the plain trainer's loop: warm-up + cosine, a checkpoint "
        "every epoch, --resume)")
    j.add_argument("--epochs", type=at_least(0), default=0,
                   help="train every exit jointly from scratch for N epochs (instead of --init + branch/joint phases)")
    j.add_argument("--lr", type=at_least(0, float, exclusive=True), default=0.05,
                   help="peak learning rate (default 0.05)")
    j.add_argument("--warmup-epochs", type=at_least(0, float), default=1.0)
    j.add_argument("--label-smoothing", type=fraction, default=0.0)
    j.add_argument("--self-distill", type=fraction, default=0.0,
                   help="weight a in [0, 1] of the self-distillation term: each earlier exit also learns the "
                        "final exit's softened output (Zhang et al., 'Be Your Own Teacher'); default 0")
    j.add_argument("--restart-from", default=None, metavar="EE_KERAS",
                   help="start the --epochs run from this trained early-exit model's weights (same --arch, exits "
                        "and branches) instead of from scratch: a warm restart, one more warm-up + cosine cycle "
                        "that extends a finished schedule (e.g. models/cifar10/ee_resnet8.keras)")
    j.add_argument("--ckpt-dir", default=None, help="checkpoint directory (default <out dir>/.<name>.ckpt)")
    j.add_argument("--resume", action="store_true", help="continue the run checkpointed in --ckpt-dir")
    p.add_argument("--out", required=True, help="output prefix, e.g. models/cifar10/ee_resnet8")
    p.add_argument("--no-arena", action="store_true", help="skip measuring the TFLite Micro arena of each segment")
    p.set_defaults(func=cmd_early_exit)


KERAS_EE_FIX = ("give an early-exit model saved by hi-train early-exit (<out>.keras), or leave --keras out to "
                "train one")


def init_fix(arch: str) -> str:
    """What --init takes: the trained plain model whose trunk the early-exit model starts from."""
    return (f"give a trained plain .keras model of --arch {arch} (e.g. models/cifar10/{arch}.keras), or leave "
            "--init out")


def _loss_weights(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(f"--loss-weights {text!r} is not a comma list of numbers, e.g. 0.5,1") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise UsageError(f"--loss-weights {text!r}: every weight must be a finite number >= 0 and one of them "
                         "positive, e.g. 0.5,1")
    return weights


def _branch_convs(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        convs = [int(c) for c in text.split(",")]
    except ValueError:
        convs = [-1]
    if min(convs) < 0:
        raise UsageError(f"--branch-convs {text!r} is not a comma list of counts >= 0, e.g. 2,0")
    return convs


def check_args(args) -> None:
    """The mistakes the flags alone show, found before TensorFlow starts and the dataset loads."""
    from training.early_exit import EXIT_PRESETS

    check_out_prefix(args.out, f"ee_{args.arch}")
    if args.keras:
        check_keras_file(args.keras, "--keras", KERAS_EE_FIX)
        return
    if args.resume and not args.epochs:
        raise UsageError("--resume continues a --epochs run from its checkpoint; the --init + branch/joint "
                         "schedule keeps none: add the --epochs of the stopped run, or drop --resume")
    if args.init and args.epochs:
        raise UsageError("--epochs trains from scratch and --init starts from a trained trunk; give one of them")
    if args.restart_from:
        if not args.epochs:
            raise UsageError("--restart-from starts an --epochs run from a trained early-exit model; add --epochs N "
                             "(the length of the new cycle)")
        check_keras_file(args.restart_from, "--restart-from", KERAS_EE_FIX)
    if args.init:
        check_keras_file(args.init, "--init", init_fix(args.arch))
    if args.teacher and not Path(args.teacher).is_file():
        raise UsageError(f"--teacher {args.teacher} does not exist; {TEACHER_FIX}")
    taps = [t for t in args.exits.split(",") if t.strip()] if args.exits else list(EXIT_PRESETS.get(args.arch, ()))
    if not taps:
        raise UsageError(f"--arch {args.arch} has no exit preset; name the layers to branch after with --exits "
                         f"LAYER[,LAYER] (presets: {', '.join(sorted(EXIT_PRESETS))})")
    convs = _branch_convs(args.branch_convs)
    if convs and len(convs) != len(taps):
        raise UsageError(f"--branch-convs gives {len(convs)} count(s) but {args.arch} with exits {','.join(taps)} "
                         f"has {len(taps)} exit branch(es): one count per branch, the final exit has none")
    weights = _loss_weights(args.loss_weights)
    if weights and len(weights) != len(taps) + 1:
        raise UsageError(f"--loss-weights gives {len(weights)} weight(s) but {args.arch} with exits "
                         f"{','.join(taps)} has {len(taps) + 1} exits: one weight per exit, the final exit last")


def _train_joint(args, train, val, out: Path):
    """--epochs: joint training from scratch (or --restart-from a trained model); returns (model, training record, history)."""
    import json

    from training.cli import RESUME_NOTE, history_seconds, record_command
    from training.early_exit import EEJointConfig, RestartMismatch, train_early_exit_joint
    from training.train import TrainConfig, TrainingError, claim_checkpoint, threads_hint

    threads_hint()
    ckpt = args.ckpt_dir or str(out.parent / f".{out.name}.ckpt")
    command = "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    refused = claim_checkpoint(ckpt, args.resume, command)
    if refused:
        raise UsageError(refused)
    tc = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                     label_smoothing=args.label_smoothing, augment=not args.no_augment, seed=args.seed,
                     ckpt_dir=ckpt, teacher=args.teacher or "",
                     distill_weight=args.distill_weight if args.teacher else 0.0, temperature=args.temperature)
    weights = _loss_weights(args.loss_weights)
    cfg = EEJointConfig(train=tc, exits=args.exits.split(",") if args.exits else [], loss_weights=weights,
                        branch_width=args.branch_width, branch_convs=_branch_convs(args.branch_convs),
                        self_distill=args.self_distill, restart_from=args.restart_from or "")
    runs = record_command(Path(ckpt), command, args.resume)
    t0 = time.time()
    try:
        model = train_early_exit_joint(cfg, train, val, resume=args.resume)
    except RestartMismatch as exc:
        raise UsageError(f"--restart-from {args.restart_from}: {exc}") from None
    except (TrainingError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    model.save(out.with_suffix(".keras"))
    hist_file = Path(ckpt) / "history.jsonl"
    history = [json.loads(l) for l in hist_file.read_text().splitlines() if l.strip()] if hist_file.exists() else []
    start = (f"restarted from {args.restart_from} (warm restart: a new {args.epochs}-epoch warm-up + cosine "
             "cycle)" if args.restart_from else "trained from scratch")
    note = (f"{start}, all exits jointly" + (f", self-distillation {args.self_distill}" if args.self_distill else "")
            + (f", taught by {args.teacher} (weight {args.distill_weight}, T={args.temperature})" if args.teacher
               else ""))
    training = {"config": cfg.to_dict(), "seconds": history_seconds(history, time.time() - t0), "init_note": note}
    if len(runs) > 1:
        training["runs"] = runs
        training["note"] = RESUME_NOTE
    return model, training, history


def _load_ee_keras(path: str):
    """--keras: the saved early-exit model to export; a plain model (no exit branches) is a usage error."""
    from training.early_exit import exit_taps

    model = load_keras(path, "--keras", KERAS_EE_FIX)
    try:
        exit_taps(model)
    except ValueError:
        raise UsageError(f"--keras {path} is a plain model ({model.name}) without exit branches; give an early-exit "
                         f"model saved by hi-train early-exit (<out>.keras), or train one from it with --init {path}"
                         ) from None
    return model


def cmd_early_exit(args) -> int:
    import os

    check_args(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hi_runtime.early_exit import SegmentChain
    from training.cards import JPEG_NOTE, git_commit, write_card
    from hi_runtime.datasets import load_dataset
    from training.decider_cli import load_val_test
    from training.early_exit import (
        EarlyExitExportError,
        EETrainConfig,
        exit_probabilities,
        export_early_exit,
        save_history,
        train_early_exit,
    )
    from hi_runtime.backends import ChainRunner, TFLiteBackend, tflm_arena_bytes
    from training.export import accuracy, representative_subset
    from training.models import count_params_and_macs
    from training.train import TrainingError

    t0 = time.time()
    out = Path(args.out)
    keras_model = _load_ee_keras(args.keras) if args.keras else None  # before the data: a wrong file fails fast
    teacher_shape = None
    if args.teacher and not args.keras:
        from training.cli import _file_input_shape

        teacher_shape = _file_input_shape(args.teacher, "--teacher", TEACHER_FIX)
    out.parent.mkdir(parents=True, exist_ok=True)
    val, test = load_val_test(args)
    train = load_dataset(args.dataset, args.data, "train", val_size=args.val_size, seed=args.split_seed,
                         image_size=args.image_size)
    if args.limit_train:
        rng = np.random.default_rng(args.split_seed)
        train = train.subset(np.sort(rng.permutation(len(train))[: args.limit_train]))
    print(f"data: train {len(train)}, val {len(val)}, test {len(test)}", flush=True)
    if teacher_shape is not None:
        from training.cli import check_input_shape

        check_input_shape(f"teacher {args.teacher}", teacher_shape, train, args.dataset)
    history: list[dict] = []
    cfg = None
    if keras_model is not None:
        model = keras_model
        training = {"note": f"exported from {args.keras} without training"}
    elif args.epochs:
        model, training, history = _train_joint(args, train, val, out)
    else:
        weights = _loss_weights(args.loss_weights)
        cfg = EETrainConfig(arch=args.arch, exits=args.exits.split(",") if args.exits else [],
                            loss_weights=weights, branch_width=args.branch_width,
                            branch_convs=_branch_convs(args.branch_convs), init=args.init or "",
                            epochs_branch=args.epochs_branch, epochs_joint=args.epochs_joint,
                            lr_branch=args.lr_branch, lr_joint=args.lr_joint, batch_size=args.batch_size,
                            weight_decay=args.weight_decay, augment=not args.no_augment, seed=args.seed,
                            teacher=args.teacher or "", distill_weight=args.distill_weight,
                            temperature=args.temperature)
        try:
            model, history = train_early_exit(cfg, train, val)
        except (ValueError, TrainingError) as exc:
            raise UsageError(str(exc)) from None
        model.save(out.with_suffix(".keras"))
        save_history(out.parent / f"{out.name}.history.jsonl", history)
        training = {"config": cfg.to_dict(), "seconds": round(time.time() - t0),
                    "init_note": (f"trunk initialized from {args.init} (the shipped plain model), branches trained "
                                  f"{args.epochs_branch} epoch(s) with the trunk frozen, then {args.epochs_joint} "
                                  "epoch(s) of joint fine-tuning with the weighted loss over all exits; not trained "
                                  "from scratch, to save CPU") if args.init else "trained from scratch"}
        if args.teacher:
            training["init_note"] += (f"; every trained exit taught by {args.teacher} (weight {args.distill_weight}, "
                                      f"T={args.temperature})")
    try:
        exp = export_early_exit(model, representative_subset(train.images, 500, args.seed), out,
                                class_names=test.class_names, check_images=val.images[:1])
    except EarlyExitExportError as exc:
        raise UsageError(f"export: {exc}") from None
    chain = SegmentChain.load(exp.chain.path)
    n = chain.num_exits
    names = [s.scores for s in chain.segments]
    _, test_probs = exit_probabilities(exp.single_model, test.images, names)
    exit_acc = {nm: accuracy(p, test.labels) for nm, p in zip(names, test_probs)}
    print("test accuracy per exit (INT8 single model): " +
          ", ".join(f"{k} {100 * v:.2f}%" for k, v in exit_acc.items()), flush=True)
    # the chain must give the same exits and classes as the single model (reference kernels on both)
    k_check = min(200, len(test))
    raw_ref, _ = exit_probabilities(exp.single_model, test.images[:k_check], names, reference=True)
    runner = ChainRunner(chain, "litert", reference=True)
    s_in = chain.segments[0].input_quant
    same = 0
    for i in range(k_check):
        x = np.clip(np.round(test.images[i:i + 1].astype(np.float64) / s_in.scale) + s_in.zero_point,
                    -128, 127).astype(np.int8)
        feats = x
        equal = True
        for k in range(n):
            feats, scores = runner(k, feats)
            equal &= np.array_equal(scores[0], raw_ref[k][i])
        same += int(equal)
    print(f"chain vs single model: identical scores at every exit on {same}/{k_check} test images", flush=True)
    arenas = []
    if not args.no_arena:
        for s in chain.segments:
            det = TFLiteBackend(s.file).input
            dummy = np.zeros([1, *det.shape[1:]], dtype=np.uint8)
            arenas.append(tflm_arena_bytes(s.file, dummy if s.input == "image" else None))
    stats = count_params_and_macs(model)
    command = "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    artifacts = [{"file": exp.single_model.name, "kind": "tflite int8, every exit's scores (desktop evaluation)",
                  "bytes": exp.single_model.stat().st_size, "test_accuracy": exit_acc[names[-1]],
                  "summary": "(final exit; " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in exit_acc.items()) + ")"}]
    for k, (s, f) in enumerate(zip(chain.segments, exp.segment_files)):
        art = {"file": f.name, "kind": f"tflite int8 segment {k + 1}/{n} (device)", "bytes": f.stat().st_size,
               "test_accuracy": exit_acc[s.scores], "macs": s.macs, "input": s.input,
               "outputs": {"features": s.features, "scores": s.scores},
               "summary": f"(exit {k + 1})"}
        if arenas:
            art["tflm_arena_bytes"] = arenas[k]
        artifacts.append(art)
    ckeras = out.with_suffix(".keras")
    if ckeras.exists():
        artifacts.append({"file": ckeras.name, "kind": "keras (float32, training form)", "bytes": ckeras.stat().st_size,
                          "test_accuracy": None})
    card = {
        "card_version": 1,
        "name": out.name,
        "architecture": model.name,
        "params": stats.params,
        "macs": int(sum(exp.macs_per_segment)),
        "macs_per_segment": exp.macs_per_segment,
        "exit_taps": list(chain.meta.get("exit_taps", [])),
        "ops": exp.ops,
        "dataset": {"name": args.dataset, "path": str(args.data), "train_images": len(train),
                    "val_images": len(val), "test_images": len(test),
                    "val_split": f"class-stratified, seed {args.split_seed}, carved from the training split",
                    "note": JPEG_NOTE if args.dataset == "cifar10" else ""},
        "training": {**training, "command": command, "history": history},
        "git_commit": git_commit(),
        "test_accuracy_per_exit": exit_acc,
        "chain_check": {"images": k_check, "identical": same,
                        "how": "segments run one after another vs the single model, both with the reference kernels"},
        "chain": exp.chain.path.name,
        "artifacts": artifacts,
        "thresholds": None,
    }
    card_path = write_card(out.with_name(out.name + ".card.json"), card)
    if args.epochs:
        from training.train import mark_checkpoint_complete

        mark_checkpoint_complete(args.ckpt_dir or str(out.parent / f".{out.name}.ckpt"), out,
                                 "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", [])))
    print(f"wrote {exp.chain.path}, {card_path}; set thresholds with `hi-train thresholds --chain {exp.chain.path}`")
    return 0 if same == k_check else 3
