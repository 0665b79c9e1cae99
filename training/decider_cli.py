"""`hi-train decider`: fit the offload decider on the validation split, report it on the test split, and
export it as JSON, a C header and a model card."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

FEATURE_PRESETS = {"paper": "p1,p2", "top2": "p1,p2", "margin": "p1,margin", "rich": "p1,p2,margin,entropy"}


def add_data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist", "folder", "imagenet"],
                   help="dataset kind (default cifar10)")
    p.add_argument("--data", required=required, help="dataset path, e.g. ../shared/datasets/cifar10-jpeg")
    p.add_argument("--val-size", type=int, default=None, help="validation images carved from train (default 5000)")
    p.add_argument("--image-size", type=int, default=None, help="resize+center-crop size (folder/imagenet)")
    p.add_argument("--seed", type=int, default=0, help="validation split seed (default 0, as hi-train model)")
    p.add_argument("--limit-val", type=int, default=None, help="use only N validation images, a random fixed subset (smoke runs)")
    p.add_argument("--limit-test", type=int, default=None, help="use only N test images, a random fixed subset (smoke runs)")


def load_val_test(args):
    from training.data import load_dataset

    kw = {"val_size": args.val_size, "seed": args.seed, "image_size": args.image_size}
    val = load_dataset(args.dataset, args.data, "val", **kw)
    test = load_dataset(args.dataset, args.data, "test", **kw)
    # a random but fixed subset: the archives are ordered by class, so the first N would be 1-2 classes
    rng = np.random.default_rng(args.seed)
    if args.limit_val:
        val = val.subset(np.sort(rng.permutation(len(val))[: args.limit_val]))
    if args.limit_test:
        test = test.subset(np.sort(rng.permutation(len(test))[: args.limit_test]))
    return val, test


def parse_features(text: str) -> tuple[str, ...]:
    text = FEATURE_PRESETS.get(text, text)
    return tuple(f.strip() for f in text.split(",") if f.strip())


def register_cli(sub) -> None:
    p = sub.add_parser(
        "decider", help="fit the offload decider (logistic regression on the local softmax) and export it",
        description="Fit the decider on the validation split (target: the local model's answer is correct), "
                    "choose its operating point (p = 0.5 by default, or a goal), report F1/precision/recall, "
                    "offload and false-negative ratios and HI accuracy (Eq. 1 = Eq. 2) on the test split, and "
                    "write <out>.json, <out>.h (exact int8 form) and <out>.card.json. With --coefficients, write "
                    "published weights instead (no data, no fitting).")
    p.add_argument("--model", default=None,
                   help="the local INT8 model, e.g. models/cifar10/resnet8_int8.tflite (required to fit; with "
                        "--coefficients optional: binds the decider to it and reads its output quantization)")
    p.add_argument("--output", default=None,
                   help="output tensor name when the model has several (e.g. final_scores of an EE model)")
    p.add_argument("--server", default=None,
                   help="the server model (.onnx or .tflite) for HI accuracy; without it HI accuracy is not reported")
    add_data_args(p, required=False)
    p.add_argument("--out", required=True, help="output prefix, e.g. models/cifar10/decider_resnet8")
    p.add_argument("--kind", default="logistic", choices=["logistic", "max_softmax"],
                   help="logistic regression (default) or the plain max-softmax threshold")
    p.add_argument("--features", default="paper",
                   help="comma list of p1, p2, p3, margin, entropy, or a preset: paper (p1,p2; default), "
                        "margin (p1,margin), rich (p1,p2,margin,entropy; no int8/C form)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression (default 1)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--threshold", type=float, default=None,
                      help="accept iff score >= this (default 0.5 for logistic: the paper's p = 0.5)")
    goal.add_argument("--max-offload", type=float, default=None,
                      help="choose the threshold offloading at most this fraction of the validation split")
    goal.add_argument("--min-hi-accuracy", type=float, default=None,
                      help="choose the fewest offloads reaching this HI accuracy on the validation split")
    p.add_argument("--reference-kernels", action="store_true",
                   help="run the local model with TFLite's reference kernels (TFLite Micro rounding; slower)")
    p.add_argument("--no-header", action="store_true", help="do not write the C header")
    p.add_argument("--no-compare", action="store_true", help="skip the comparison with other deciders")
    p.add_argument("--vectors", default=None,
                   help="also write C test vectors (raw int8 scores -> decision) to this JSON file")
    pub = p.add_argument_group("published weights (no fitting): accept iff sum_f A_f * f + C >= 0")
    pub.add_argument("--coefficients", default=None, metavar="A,B,...",
                     help="one weight per --features entry (e.g. --features top2: the two highest softmax values)")
    pub.add_argument("--intercept", type=float, default=None, metavar="C", help="the intercept (default 0)")
    pub.add_argument("--int8-scores", action="store_true",
                     help="the weights apply to the raw int8 scores (sorted descending), not to probabilities")
    pub.add_argument("--scale", type=float, default=None,
                     help="output scale of the int8 scores (default: --model's, else 1/256, TFLite's softmax)")
    pub.add_argument("--zero-point", type=int, default=None,
                     help="output zero point of the int8 scores (default: --model's, else -128)")
    p.set_defaults(func=cmd_decider)


def _fmt_pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _parse_numbers(text: str, what: str) -> list[float]:
    from training.decider import DeciderTrainingError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DeciderTrainingError(f"{what} must be a comma list of numbers, e.g. 4.2,-1.5; got {text!r}") from None


def model_binding(model_path: str | Path, output_name: str, scale: float, zero_point: int):
    """What a decider fitted on (or written for) this INT8 model's scores records about it."""
    from hi_runtime.decider import ModelBinding, OutputSpec, file_sha256

    return ModelBinding(OutputSpec("int8_scores", scale, zero_point, output_name), file=Path(model_path).name,
                        sha256=file_sha256(model_path))


def cmd_published(args) -> int:
    """`hi-train decider --coefficients ...`: write published weights as a decider JSON and C header."""
    from hi_runtime.decider import DeciderError
    from training.decider import DeciderTrainingError, export_decider, local_output_quant, published_decider

    try:
        unused = [f for f, v in (("--data", args.data), ("--server", args.server), ("--max-offload", args.max_offload),
                                 ("--min-hi-accuracy", args.min_hi_accuracy), ("--vectors", args.vectors))
                  if v is not None]
        if unused or args.kind != "logistic":
            raise DeciderTrainingError(f"--coefficients writes published weights without fitting; drop "
                                       f"{', '.join(unused) or '--kind'}")
        features = parse_features(args.features)
        coef = _parse_numbers(args.coefficients, "--coefficients")
        scale, zp, binding = args.scale, args.zero_point, None
        if args.model:
            name, mscale, mzp = local_output_quant(args.model, args.output)
            if (scale is not None and scale != mscale) or (zp is not None and zp != mzp):
                raise DeciderTrainingError(f"--scale/--zero-point ({scale}, {zp}) differ from {args.model}'s output "
                                           f"quantization ({mscale}, {mzp}); drop them or the model")
            scale, zp = mscale, mzp
            binding = model_binding(args.model, name, scale, zp)
        assumed = scale is None or zp is None
        scale = 1 / 256 if scale is None else scale
        zp = -128 if zp is None else zp
        if binding is None:
            from hi_runtime.decider import ModelBinding, OutputSpec

            binding = ModelBinding(OutputSpec("int8_scores", scale, zp) if args.int8_scores else
                                   OutputSpec("probabilities"))
        dec = published_decider(coef, 0.0 if args.intercept is None else args.intercept, features,
                                int8_scores=args.int8_scores, scale=scale, zero_point=zp, threshold=args.threshold,
                                binding=binding)
        if assumed:
            print(f"note: int8 form for output scale {scale} and zero point {zp} (TFLite's softmax output; "
                  "--scale/--zero-point or --model set others)", file=sys.stderr)
        dec.meta["published"]["command"] = "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
        out = Path(args.out)
        dec, files = export_decider(dec, out, scale=None, zero_point=None, header=not args.no_header,
                                    source="published weights")
    except (DeciderTrainingError, DeciderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    form = dec.int8
    if form is not None:
        print(f"int8 form: A={list(form.coef)} B={form.bias} shift={form.shift} exact={form.exact}; grid "
              f"disagreements with the float form: {form.grid_disagreements}")
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def cmd_decider(args) -> int:
    import os

    if args.coefficients is not None:
        return cmd_published(args)
    stray = [f for f, v in (("--intercept", args.intercept), ("--scale", args.scale),
                            ("--zero-point", args.zero_point), ("--int8-scores", args.int8_scores or None))
             if v is not None]
    if stray:
        print(f"error: {', '.join(stray)} belong(s) to published weights; give --coefficients too (or drop "
              "them to fit)", file=sys.stderr)
        return 2
    if args.model is None or args.data is None:
        print(f"error: fitting a decider needs {'--model' if args.model is None else '--data'} (or give "
              "--coefficients to write published weights)", file=sys.stderr)
        return 2

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hi_runtime.decider import DeciderError
    from training.cards import JPEG_NOTE, git_commit, write_card
    from training.decider import (
        DeciderTrainingError,
        choose_operating_point,
        evaluate,
        export_decider,
        fit_decider,
        local_outputs,
        server_probabilities,
        write_decider_vectors,
    )

    t0 = time.time()
    try:
        features = parse_features(args.features)
        val, test = load_val_test(args)
        print(f"data: val {len(val)}, test {len(test)} images from {args.data}", flush=True)
        lv = local_outputs(args.model, val.images, args.output, reference=args.reference_kernels)
        lt = local_outputs(args.model, test.images, lv.output_name, reference=args.reference_kernels)
        srv_v = srv_t = None
        if args.server:
            print(f"running the server model {args.server} on val and test (cached after the first run) ...",
                  flush=True)
            srv_v = server_probabilities(args.server, val.images).argmax(1)
            srv_t = server_probabilities(args.server, test.images).argmax(1)
        else:
            print("note: no --server given; HI accuracy is not reported", file=sys.stderr)
        threshold = args.threshold if args.threshold is not None else 0.5
        if args.kind == "max_softmax" and args.threshold is None and args.max_offload is None \
                and args.min_hi_accuracy is None:
            raise DeciderTrainingError("the max-softmax decider needs --threshold, --max-offload or --min-hi-accuracy")
        dec = fit_decider(lv.probs, val.labels, features, kind=args.kind, C=args.C, threshold=threshold)
        op_goal = f"threshold {threshold}" if args.kind == "max_softmax" or args.threshold is not None else "p = 0.5"
        if args.max_offload is not None or args.min_hi_accuracy is not None:
            op = choose_operating_point(dec, lv.probs, val.labels,
                                        None if srv_v is None else srv_v == val.labels,
                                        max_offload=args.max_offload, min_hi_accuracy=args.min_hi_accuracy)
            dec = dec.with_threshold(op.threshold)
            op_goal = op.goal
        rep_val = evaluate(dec.accept(lv.probs), lv.predicted, val.labels, srv_v)
        rep_test = evaluate(dec.accept(lt.probs), lt.predicted, test.labels, srv_t)
        dec.meta["operating_point"] = {"goal": op_goal, "threshold": dec.threshold,
                                       "chosen_on": "validation split"}
        dec.model = model_binding(args.model, lv.output_name, lv.scale, lv.zero_point)
        dec.meta["metrics"] = {"val": rep_val.as_dict(), "test": rep_test.as_dict()}
        out = Path(args.out)
        command = "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
        dec, files = export_decider(dec, out, scale=lv.scale, zero_point=lv.zero_point,
                                    header=not args.no_header, source=f"{Path(args.model).name} [{lv.output_name}]")
        if dec.int8 is not None:
            agree = np.array_equal(dec.accept_int8(lt.raw, lt.scale, lt.zero_point), dec.accept(lt.probs))
            print(f"int8 form: A={list(dec.int8.coef)} B={dec.int8.bias} shift={dec.int8.shift}; agrees with the "
                  f"float form on all {len(lt.raw)} test rows: {agree}; grid disagreements: "
                  f"{dec.int8.grid_disagreements}", flush=True)
            if not agree:
                raise DeciderTrainingError("the int8 form disagrees with the float form on test rows")
        # alternatives at the shipped decider's offload ratio on validation (the test split only reports)
        comparison = {} if args.no_compare else compare_deciders(lv, lt, val.labels, test.labels, srv_v, srv_t,
                                                                 rep_val.offload_ratio)
        if args.vectors:
            p = write_decider_vectors(dec, lt.raw[:100], args.vectors,
                                      note=f"decider {out.name} for {Path(args.model).name}; first 100 rows are "
                                           "real test-split outputs")
            print(f"wrote {p}")
    except (DeciderTrainingError, DeciderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"validation: {rep_val.summary()}")
    print(f"test:       {rep_test.summary()}")
    if comparison:
        print("comparison on the test split (thresholds chosen on validation to match this decider's offload):")
        for name, r in comparison.items():
            print(f"  {name:48s} F1 {r['f1']:.4f}  offload {_fmt_pct(r['offload_ratio'])}  "
                  f"HI {_fmt_pct(r.get('hi_accuracy'))}")
    hi_gain = None if rep_test.hi_accuracy is None else rep_test.hi_accuracy - rep_test.local_accuracy
    card = {
        "card_version": 1,
        "name": out.name,
        "architecture": f"offload decider: {dec.kind} on {','.join(dec.features)}",
        "params": int(len(dec.coefficients) + 1),
        "macs": 0,
        "dataset": {"name": args.dataset, "path": str(args.data), "val_images": len(val), "test_images": len(test),
                    "fit_on": "validation split", "reported_on": "test split",
                    "note": JPEG_NOTE if args.dataset == "cifar10" else ""},
        "training": {"command": command, "kind": dec.kind, "features": list(dec.features), "C": args.C,
                     "operating_point": dec.meta["operating_point"], "seconds": round(time.time() - t0)},
        "git_commit": git_commit(),
        "local_model": {"file": str(args.model), "output": lv.output_name, "test_accuracy": rep_test.local_accuracy},
        "server_model": {"file": str(args.server), "test_accuracy": rep_test.server_accuracy} if args.server else None,
        "test": {"f1": rep_test.f1, "precision": rep_test.precision, "recall": rep_test.recall,
                 "offload_f1": rep_test.offload_f1, "offload_ratio": rep_test.offload_ratio,
                 "false_negative_ratio": rep_test.false_negative_ratio, "hi_accuracy": rep_test.hi_accuracy,
                 "hi_accuracy_eq2": rep_test.hi_accuracy_eq2, "hi_gain_over_local": hi_gain,
                 "paper_f1_resnet8_cifar10": 0.86},
        "val": rep_val.as_dict(),
        "comparison": comparison,
        "int8": dec.int8.to_dict() if dec.int8 else None,
        "artifacts": [{"file": f.name, "kind": "decider JSON" if f.suffix == ".json" else "decider C header",
                       "bytes": f.stat().st_size, "test_accuracy": rep_test.hi_accuracy,
                       "summary": f"(HI) F1 {rep_test.f1:.3f}, offload {100 * rep_test.offload_ratio:.1f}%"}
                      for f in files],
    }
    card_path = write_card(out.with_name(out.name + ".card.json"), card)
    print(f"wrote {', '.join(str(f) for f in files)} and {card_path} (run `hi-train cards` to refresh "
          "the table in models/README.md)")
    return 0


def compare_deciders(lv, lt, yv, yt, srv_v, srv_t, target_offload: float) -> dict:
    """Other deciders behind the same interface at p = 0.5 and at this decider's offload ratio on the
    validation split (``target_offload``), each reported on the test split."""
    from training.decider import choose_operating_point, evaluate, fit_decider

    out = {}
    variants = [("logistic p1,p2 (paper)", "logistic", ("p1", "p2")),
                ("logistic p1,margin", "logistic", ("p1", "margin")),
                ("logistic p1,p2,margin,entropy", "logistic", ("p1", "p2", "margin", "entropy")),
                ("max-softmax threshold", "max_softmax", ("p1",))]
    for name, kind, feats in variants:
        d = fit_decider(lv.probs, yv, feats, kind=kind, threshold=0.5)
        if kind == "logistic":
            r = evaluate(d.accept(lt.probs), lt.predicted, yt, srv_t)
            out[name + " @ p=0.5"] = _short(r)
        op = choose_operating_point(d, lv.probs, yv, None if srv_v is None else srv_v == yv,
                                    max_offload=target_offload)
        d = d.with_threshold(op.threshold)
        r = evaluate(d.accept(lt.probs), lt.predicted, yt, srv_t)
        out[name + f" @ offload<={100 * target_offload:.1f}% (val)"] = {**_short(r), "threshold": d.threshold}
    return out


def _short(r) -> dict:
    return {"f1": r.f1, "precision": r.precision, "recall": r.recall, "offload_ratio": r.offload_ratio,
            "hi_accuracy": r.hi_accuracy}


def main(argv=None) -> int:  # pragma: no cover - convenience for `python -m training.decider_cli`
    from training.cli import main as hi_train

    return hi_train(["decider", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

