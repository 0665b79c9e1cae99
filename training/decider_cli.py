"""`hi-train decider`: fit the offload decider on the validation split, report it on the test split, and
export it as JSON, a C header and a model card."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from hi_runtime.cli_support import UsageError, at_least, finite, fraction
from training.cli_checks import LOCAL_MODEL_FIX, SERVER_MODEL_FIX, check_out_prefix, user_model

FEATURE_PRESETS = {"paper": "p1,p2", "top2": "p1,p2", "margin": "p1,margin", "rich": "p1,p2,margin,entropy"}


def add_data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist", "folder", "imagenet"],
                   help="dataset kind (default cifar10)")
    p.add_argument("--data", required=required, help="dataset path, e.g. ../shared/datasets/cifar10-jpeg")
    p.add_argument("--val-size", type=at_least(1), default=None,
                   help="validation images carved from train (default 5000)")
    p.add_argument("--image-size", type=at_least(1), default=None, help="resize+center-crop size (folder/imagenet)")
    p.add_argument("--split-seed", type=at_least(0), default=0,
                   help="seed of the validation split (default 0, the split every shipped model, decider and "
                        "threshold uses; the same flag as hi-train model's)")
    p.add_argument("--limit-val", type=at_least(1), default=None,
                   help="use only N validation images, a random fixed subset (smoke runs)")
    p.add_argument("--limit-test", type=at_least(1), default=None,
                   help="use only N test images, a random fixed subset (smoke runs)")


def load_val_test(args):
    from hi_runtime.datasets import load_dataset

    kw = {"val_size": args.val_size, "seed": args.split_seed, "image_size": args.image_size}
    val = load_dataset(args.dataset, args.data, "val", **kw)
    test = load_dataset(args.dataset, args.data, "test", **kw)
    # a random but fixed subset: the archives are ordered by class, so the first N would be 1-2 classes
    rng = np.random.default_rng(args.split_seed)
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
    p.add_argument("--out", default=None,
                   help="output prefix, e.g. models/cifar10/decider_resnet8 (required unless --compare)")
    p.add_argument("--kind", default="logistic", choices=["logistic", "max_softmax", "gbt", "mlp"],
                   help="logistic regression (default), the plain max-softmax threshold, or (--compare only: no "
                        "integer form) gradient-boosted trees or a small MLP (scikit-learn)")
    p.add_argument("--target", default="correct", choices=["correct", "helps"],
                   help="what the decider learns: correct = the local answer is right (the paper's; default), "
                        "helps = offloading would help (local wrong and server right; needs --server)")
    p.add_argument("--features", default="paper",
                   help="comma list of p1, p2, p3, margin, entropy, or a preset: paper (p1,p2; default), "
                        "margin (p1,margin), rich (p1,p2,margin,entropy; no int8/C form)")
    p.add_argument("--C", type=at_least(0, float, exclusive=True), default=1.0,
                   help="inverse L2 strength of the logistic regression (default 1)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--threshold", type=fraction, default=None,
                      help="accept iff score >= this (default 0.5 for logistic: the paper's p = 0.5)")
    goal.add_argument("--max-offload", type=fraction, default=None,
                      help="choose the threshold offloading at most this fraction of the validation split")
    goal.add_argument("--min-hi-accuracy", type=fraction, default=None,
                      help="choose the fewest offloads reaching this HI accuracy on the validation split")
    goal.add_argument("--offload-penalty", type=fraction, default=None, metavar="P",
                      help="cost-sensitive: maximize validation HI accuracy - P x offload ratio (P: the accuracy "
                           "offloading everything must at least buy; e.g. 0.1)")
    p.add_argument("--reference-kernels", action="store_true",
                   help="run the local model with TFLite's reference kernels (TFLite Micro rounding; slower)")
    p.add_argument("--no-header", action="store_true", help="do not write the C header")
    p.add_argument("--no-compare", action="store_true", help="skip the comparison with other deciders")
    p.add_argument("--vectors", default=None,
                   help="also write C test vectors (raw int8 scores -> decision) to this JSON file")
    cmp = p.add_argument_group("comparison at equal offload ratio (docs/decider.md): one row per command")
    cmp.add_argument("--compare", default=None, metavar="FILE.json",
                     help="fit this variant on validation, choose its threshold like the shipped decider "
                          "(--max-offload), score it on test and add/replace its row in FILE.json (plot: "
                          "FILE.png); writes no decider")
    cmp.add_argument("--temperature", default=None, metavar="fit|T",
                     help="--compare: temperature-scale the probabilities first (fit = by NLL on validation)")
    cmp.add_argument("--aux-output", default=None, metavar="NAME",
                     help="--compare: a second view for aux_p1/aux_own/agree: another output of the model "
                          "(e.g. exit1_scores of an EE model)")
    cmp.add_argument("--aux-flip", action="store_true",
                     help="--compare: the second view is the model on the mirrored image (costs a second "
                          "local inference)")
    pub = p.add_argument_group("published weights (no fitting): accept iff sum_f A_f * f + C >= 0")
    pub.add_argument("--coefficients", default=None, metavar="A,B,...",
                     help="one weight per --features entry (e.g. --features top2: the two highest softmax values)")
    pub.add_argument("--intercept", type=finite, default=None, metavar="C", help="the intercept (default 0)")
    pub.add_argument("--int8-scores", action="store_true",
                     help="the weights apply to the raw int8 scores (sorted descending), not to probabilities")
    pub.add_argument("--scale", type=at_least(0, float, exclusive=True), default=None,
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
            with user_model("--model", args.model, LOCAL_MODEL_FIX):
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
        raise UsageError(str(exc)) from None
    form = dec.int8
    if form is not None:
        print(f"int8 form: A={list(form.coef)} B={form.bias} shift={form.shift} exact={form.exact}; grid "
              f"disagreements with the float form: {form.grid_disagreements}")
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def cmd_decider(args) -> int:
    import os

    if args.compare is not None:
        return cmd_compare(args)
    if args.out is None:
        raise UsageError("--out is required (or give --compare FILE.json to compare without writing a decider)")
    check_out_prefix(args.out, "decider")
    compare_only = [f for f, v in (("--temperature", args.temperature), ("--aux-output", args.aux_output),
                                   ("--aux-flip", args.aux_flip or None)) if v is not None]
    if args.kind in ("gbt", "mlp"):
        compare_only.append(f"--kind {args.kind}")
    if compare_only:
        raise UsageError(f"{', '.join(compare_only)} ha(s) no exact integer form and cannot be exported; use it "
                         "with --compare FILE.json")
    if args.coefficients is not None:
        return cmd_published(args)
    stray = [f for f, v in (("--intercept", args.intercept), ("--scale", args.scale),
                            ("--zero-point", args.zero_point), ("--int8-scores", args.int8_scores or None))
             if v is not None]
    if stray:
        raise UsageError(f"{', '.join(stray)} belong(s) to published weights; give --coefficients too (or drop "
                         "them to fit)")
    if args.model is None or args.data is None:
        raise UsageError(f"fitting a decider needs {'--model' if args.model is None else '--data'} (or give "
                         "--coefficients to write published weights)")

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
        settle_off_int8_boundaries,
        write_decider_vectors,
    )

    t0 = time.time()
    try:
        features = parse_features(args.features)
        val, test = load_val_test(args)
        print(f"data: val {len(val)}, test {len(test)} images from {args.data}", flush=True)
        with user_model("--model", args.model, LOCAL_MODEL_FIX):
            lv = local_outputs(args.model, val.images, args.output, reference=args.reference_kernels)
            lt = local_outputs(args.model, test.images, lv.output_name, reference=args.reference_kernels)
        srv_v = srv_t = None
        if args.server:
            print(f"running the server model {args.server} on val and test (cached after the first run) ...",
                  flush=True)
            with user_model("--server", args.server, SERVER_MODEL_FIX):
                srv_v = server_probabilities(args.server, val.images).argmax(1)
                srv_t = server_probabilities(args.server, test.images).argmax(1)
        else:
            print("note: no --server given; HI accuracy is not reported", file=sys.stderr)
        threshold = args.threshold if args.threshold is not None else 0.5
        goals = (args.max_offload, args.min_hi_accuracy, args.offload_penalty)
        if args.kind == "max_softmax" and args.threshold is None and all(g is None for g in goals):
            raise DeciderTrainingError("the max-softmax decider needs --threshold, --max-offload, --min-hi-accuracy "
                                       "or --offload-penalty")
        dec = fit_decider(lv.probs, val.labels, features, kind=args.kind, C=args.C, threshold=threshold,
                          target=args.target, server_correct=None if srv_v is None else srv_v == val.labels)
        op_goal = f"threshold {threshold}" if args.kind == "max_softmax" or args.threshold is not None else "p = 0.5"
        if any(g is not None for g in goals):
            op = choose_operating_point(dec, lv.probs, val.labels,
                                        None if srv_v is None else srv_v == val.labels,
                                        max_offload=args.max_offload, min_hi_accuracy=args.min_hi_accuracy,
                                        offload_penalty=args.offload_penalty)
            dec = dec.with_threshold(op.threshold)
            op_goal = op.goal
        if lv.scale is not None and lv.zero_point is not None:  # the firmware must decide as Python does
            dec = settle_off_int8_boundaries(dec, lv.probs, lv.scale, lv.zero_point)
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
        raise UsageError(str(exc)) from None

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


COMPARE_FORMAT = "hi-decider-compare/1"


def cmd_compare(args) -> int:
    """`hi-train decider --compare FILE.json`: one row of the decider comparison (docs/decider.md)."""
    import json
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.cards import JPEG_NOTE
    from training.decider import (
        DeciderTrainingError,
        DeciderVariant,
        compare_row,
        hi_at_offloads,
        hi_curve,
        local_outputs,
        oracle_scores,
        score_variant,
        server_probabilities,
    )

    try:
        if args.model is None or args.data is None or args.server is None:
            raise DeciderTrainingError("--compare needs --model, --data and --server")
        if args.max_offload is None:
            raise DeciderTrainingError("--compare needs --max-offload R (the offload ratio the deciders are "
                                       "compared at, e.g. 0.29 for the shipped decider)")
        if args.aux_output and args.aux_flip:
            raise DeciderTrainingError("give one second view: --aux-output or --aux-flip")
        aux = (f"output {args.aux_output}" if args.aux_output else "mirrored image" if args.aux_flip else None)
        v = DeciderVariant(kind=args.kind, features=parse_features(args.features), target=args.target,
                           temperature=args.temperature, C=args.C, aux=aux)
        v.check()
        val, test = load_val_test(args)
        print(f"data: val {len(val)}, test {len(test)} images from {args.data}", flush=True)
        with user_model("--model", args.model, LOCAL_MODEL_FIX):
            lv = local_outputs(args.model, val.images, args.output)
            lt = local_outputs(args.model, test.images, lv.output_name)
            av = at = None
            if args.aux_output:
                av = local_outputs(args.model, val.images, args.aux_output).probs
                at = local_outputs(args.model, test.images, args.aux_output).probs
            elif args.aux_flip:
                av = local_outputs(args.model, np.ascontiguousarray(val.images[:, :, ::-1]), lv.output_name).probs
                at = local_outputs(args.model, np.ascontiguousarray(test.images[:, :, ::-1]), lv.output_name).probs
        with user_model("--server", args.server, SERVER_MODEL_FIX):
            sv = server_probabilities(args.server, val.images).argmax(1) == val.labels
            st = server_probabilities(args.server, test.images).argmax(1) == test.labels
        loc_v, loc_t = lv.predicted == val.labels, lt.predicted == test.labels
        scores = score_variant(v, lv.probs, lt.probs, val.labels, sv, av, at, floor=0.5 * lv.scale)
    except (DeciderTrainingError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    ratios = np.round(np.arange(0, 0.5001, 0.005), 4)
    row = compare_row(v, scores, loc_v, loc_t, sv, st, args.max_offload, ratios)
    row["command"] = "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    path = Path(args.compare)
    data = json.loads(path.read_text()) if path.exists() else {}
    if data and data.get("format") != COMPARE_FORMAT:
        raise UsageError(f"{path} is not a decider comparison ({COMPARE_FORMAT}); choose another file")
    setup = {"local_model": Path(args.model).name, "output": lv.output_name, "server": Path(args.server).name,
             "data": str(args.data), "val_images": len(val), "test_images": len(test), "ratio": args.max_offload}
    if data and data.get("setup") != setup:
        raise UsageError(f"{path} compares another setup ({data.get('setup')}); use another file")
    kt = round(args.max_offload * len(test))
    oracles = {}
    for name, knows in (("oracle: knows which local answers are wrong", False),
                        ("oracle: also knows the server's answer (ceiling)", True)):
        o = oracle_scores(loc_t, st, knows_server=knows)
        oracles[name] = {"test_hi_accuracy_at_ratio": hi_at_offloads(o, loc_t, st, kt),
                         "curve": {"offload_ratio": ratios.tolist(),
                                   "hi_accuracy": [round(float(a), 6) for a in hi_curve(o, loc_t, st, ratios)]}}
    rows = [r for r in data.get("rows", []) if r["name"] != row["name"]] + [row]
    data = {"format": COMPARE_FORMAT, "setup": setup,
            "note": (JPEG_NOTE + " " if args.dataset == "cifar10" else "") +
                    "Each decider is fitted on the validation split and its threshold chosen there (the highest "
                    "validation HI accuracy offloading at most the ratio); test_hi_accuracy is at that threshold, "
                    "test_hi_accuracy_at_ratio offloads exactly the ratio of the test split (equal offload for "
                    "all); val_cv_hi_accuracy_at_ratio is out-of-fold on validation (what a choice among "
                    "deciders may use).",
            "local_accuracy_test": float(loc_t.mean()), "server_accuracy_test": float(st.mean()),
            "oracles": oracles, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    png = plot_comparison(data, path.with_suffix(".png"))
    print(comparison_table(data))
    print(f"wrote {path} and {png}")
    return 0


def comparison_table(data: dict) -> str:
    """The comparison as a markdown table (rows sorted by out-of-fold validation HI accuracy)."""
    r0 = data["setup"]["ratio"]
    head = (f"| decider | MCU form | val HI (out-of-fold) @ {100 * r0:.0f}% | test HI @ val threshold (offloaded) "
            f"| test HI @ exactly {100 * r0:.0f}% | test F1 |")
    lines = [head, "| --- | --- | --- | --- | --- | --- |"]
    for r in sorted(data["rows"], key=lambda r: -r["val_cv_hi_accuracy_at_ratio"]):
        lines.append(f"| {r['name']} | {'yes' if r['mcu_form'] else 'no'} "
                     f"| {100 * r['val_cv_hi_accuracy_at_ratio']:.2f}% "
                     f"| {100 * r['test_hi_accuracy']:.2f}% ({100 * r['test_offload_ratio']:.2f}%) "
                     f"| {100 * r['test_hi_accuracy_at_ratio']:.2f}% | {r['test_f1']:.3f} |")
    for name, o in data["oracles"].items():
        lines.append(f"| {name} | - | - | - | {100 * o['test_hi_accuracy_at_ratio']:.2f}% | - |")
    return "\n".join(lines)


def plot_comparison(data: dict, path: Path) -> Path:
    """HI accuracy against the offload ratio on the test split for every row and the oracles (left), and
    a zoom around the compared ratio (right). Solid lines: deciders with an exact integer (MCU) form."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r0 = data["setup"]["ratio"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    for ax, zoom in zip(axes, (False, True)):
        colors = plt.get_cmap("tab20")
        for i, r in enumerate(data["rows"]):  # solid: has an exact integer (MCU) form; dashed: float only
            c = r["curve"]
            ax.plot(c["offload_ratio"], [100 * a for a in c["hi_accuracy"]], lw=1.1, color=colors(i % 20),
                    ls="-" if r["mcu_form"] else "--", label=r["name"])
        if not zoom:
            for name, o in data["oracles"].items():
                c = o["curve"]
                ax.plot(c["offload_ratio"], [100 * a for a in c["hi_accuracy"]],
                        "k-." if "ceiling" in name else "k:", lw=1.0, label=name)
        ax.axvline(r0, color="gray", lw=0.8)
        ax.set_xlabel("offloaded fraction of the test split")
        ax.set_ylabel("HI accuracy (%)")
        ax.grid(True, alpha=0.3)
        if zoom:
            ax.set_xlim(r0 - 0.05, r0 + 0.05)
            ys = [100 * a for r in data["rows"]
                  for x, a in zip(r["curve"]["offload_ratio"], r["curve"]["hi_accuracy"]) if abs(x - r0) <= 0.05]
            if ys:
                ax.set_ylim(min(ys) - 0.2, max(ys) + 0.2)
            ax.set_title(f"zoom around {100 * r0:.0f}% offloaded", fontsize=8)
    axes[0].legend(fontsize=6, loc="lower right")
    axes[0].set_title(f"{data['setup']['local_model']} + {data['setup']['server']} (test split)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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

