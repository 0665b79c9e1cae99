"""`hi-train thresholds`: search early-exit (and EE-HI decider) thresholds on the validation split, compare
EE, EE-HI and HI at QoS accuracy targets on the test split (the paper's Table 6), write the Pareto fronts
(CSV + plot) and optionally the chosen thresholds into the chain."""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from hi_runtime.cli_support import UsageError, at_least, number_list, positive_fraction
from training.cli_checks import SERVER_MODEL_FIX, check_out_prefix, user_model

BASELINE_FIX = "give the plain INT8 .tflite model, e.g. models/cifar10/resnet8_int8.tflite"


def register_cli(sub) -> None:
    from training.decider_cli import add_data_args
    from training.thresholds import DEFAULT_DEVICE, DEFAULT_REF_MODEL

    p = sub.add_parser(
        "thresholds", help="brute-force exit/decider thresholds for a QoS target (EE, EE-HI vs HI)",
        description="Evaluate every exit-threshold combination (step 0.01, plus 'never exit'; the full grid for "
                    "two exits) and, for EE-HI, every decider threshold on the validation split; for each QoS "
                    "accuracy target pick the cheapest combination per policy and report it on the test split. "
                    "Costs: device time of each segment (MACs scaled to --full-ms for --ref-macs MACs, or "
                    "--exit-ms) plus --offload-ms per offloaded sample; unset, both come from the --device profile "
                    "(default: the paper's Raspberry Pi 4).")
    p.add_argument("--chain", required=True, help="the early-exit chain JSON, e.g. models/cifar10/ee_resnet8.json")
    p.add_argument("--decider", default=None, help="decider for the final exit (default: the chain's)")
    p.add_argument("--server", required=True, help="the server model (.onnx or .tflite)")
    p.add_argument("--baseline-model", default=None,
                   help="plain local model for the HI baseline, e.g. models/cifar10/resnet8_int8.tflite")
    p.add_argument("--baseline-decider", default=None, help="its decider, e.g. models/cifar10/decider_resnet8.json")
    add_data_args(p)
    p.add_argument("--qos", default="hi",
                   help="comma list of minimum system accuracies in the shared QoS grammar (0.9, 90%% or "
                        "accuracy=0.9, as hi-agent/hi-bench --qos and hi-bench --targets read them), 'hi' = the "
                        "validation accuracy of "
                        "the baseline HI at its decider's own threshold, 'local' / 'local+P' = the baseline model "
                        "alone on validation (+P percentage points) (default: hi)")
    p.add_argument("--device", default=DEFAULT_DEVICE, metavar="PROFILE",
                   help=f"device profile (name in hi_runtime/profiles/ or a YAML path) the default --full-ms and "
                        f"--offload-ms are read from (default {DEFAULT_DEVICE}: the paper's Raspberry Pi 4)")
    p.add_argument("--ref-model", default=DEFAULT_REF_MODEL,
                   help=f"model of the --device profile whose latency is the default --full-ms (default "
                        f"{DEFAULT_REF_MODEL}; resnet56 for a ResNet-56 chain)")
    p.add_argument("--full-ms", type=at_least(0, float, exclusive=True), default=None,
                   help="measured device time of the reference model (default: the --ref-model latency in the "
                        "--device profile, 1.63 ms for ResNet-8 on the paper's Pi 4)")
    p.add_argument("--ref-macs", type=at_least(1), default=None,
                   help="MACs of the model --full-ms was measured on (default: the baseline model's, else the chain's)")
    p.add_argument("--exit-ms", default=None, type=number_list(at_least(0, float, exclusive=True), "0.5,1.6"),
                   help="measured cumulative device ms to each exit, comma list (overrides MAC scaling)")
    p.add_argument("--offload-ms", type=at_least(0, float), default=None,
                   help="cost of one offload (default: the --device profile's default link, 9.68 ms for the "
                        "paper's Pi 4 over WiFi)")
    p.add_argument("--decider-ms", type=at_least(0, float), default=0.0, help="device time of the decider (default 0)")
    p.add_argument("--step", type=positive_fraction, default=0.01, help="threshold grid step (default 0.01)")
    p.add_argument("--policies", default="ee,ee-hi,ee-hi-3way",
                   help="comma list of EE policies to search: ee (exits only), ee-hi (exits, then the final "
                        "decider offloads), ee-hi-3way (at every early exit: exit, offload now or continue); "
                        "default all three (hi, the baseline, is added with --baseline-model)")
    p.add_argument("--offload-step", type=positive_fraction, default=0.05,
                   help="grid step of the ee-hi-3way offload thresholds, a multiple of --step (default 0.05; "
                        "0.1 makes a two-early-exit search about 3x faster)")
    p.add_argument("--write-from", default="ee-hi", choices=["ee-hi", "ee-hi-3way"],
                   help="which policy's point --write-policy writes (default ee-hi)")
    p.add_argument("--out", required=True, help="output prefix for <out>.csv, <out>.png, <out>.json")
    p.add_argument("--write-policy", default=None, metavar="QOS",
                   help="write the thresholds chosen for this QoS entry (e.g. 'hi' or 0.88) by the --write-from "
                        "policy into the chain JSON and the final decider's threshold into its JSON/header")
    p.add_argument("--vectors", default=None,
                   help="with --write-policy: also write C test vectors of the written policy (raw int8 scores of "
                        "every exit -> exit, class, offload) to this JSON file")
    p.set_defaults(func=cmd_thresholds)


def _baseline_macs(path: str) -> int:
    """MACs of --baseline-model, read before the data loads: a file that is not a TFLite model fails fast."""
    from training.early_exit import tflite_ops_and_macs

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--baseline-model {path} {'is a folder' if p.exists() else 'does not exist'}; {BASELINE_FIX}")
    try:
        return tflite_ops_and_macs(p.read_bytes())[1]
    except ValueError as exc:
        raise UsageError(f"--baseline-model {path} is not a TFLite model ({exc}); {BASELINE_FIX}") from None


def _qos_list(text: str) -> list[str]:
    return [q.strip() for q in text.split(",") if q.strip()]


def cmd_thresholds(args) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from hi_runtime.decider import Decider, DeciderError
    from hi_runtime.early_exit import NEVER, EarlyExitError, SegmentChain
    from training.decider import DeciderTrainingError, evaluate, local_outputs, server_probabilities
    from training.decider_cli import load_val_test
    from training.thresholds import (
        POLICIES,
        THRESHOLDS_FORMAT,
        CostModel,
        SearchData,
        apply_point,
        offload_grid_indices,
        plot_pareto,
        reference_costs,
        write_pareto_csv,
    )

    t0 = time.time()
    check_out_prefix(args.out, "thresholds")
    base_macs = _baseline_macs(args.baseline_model) if args.baseline_model else None
    try:
        chain = SegmentChain.load(args.chain)
        if not chain.single_model:
            raise EarlyExitError(f"{args.chain} names no single-model file")
        single = chain.path.parent / chain.single_model["file"]
        dec_path = Path(args.decider) if args.decider else (
            chain.path.parent / chain.decider_file if chain.decider_file else None)
        if dec_path is None:
            raise EarlyExitError("no final decider: pass --decider (make one with `hi-train decider --model "
                                 f"{single} --output {chain.segments[-1].scores} ...`)")
        decider = Decider.load(dec_path)
        if (args.baseline_model is None) != (args.baseline_decider is None):
            raise EarlyExitError("give both --baseline-model and --baseline-decider (or neither)")
        policies = _qos_list(args.policies)
        bad = [x for x in policies if x not in POLICIES or x == "hi"]
        if bad or not policies:
            raise EarlyExitError(f"--policies: unknown {bad or 'empty list'}; choose from ee, ee-hi, ee-hi-3way")
        if args.write_policy is not None and args.write_from not in policies:
            raise EarlyExitError(f"--write-from {args.write_from} is not among --policies {args.policies}")
        if "ee-hi-3way" in policies and len(chain.segments) >= 2:
            offload_grid_indices(args.step, args.offload_step)  # a ValueError unless a multiple of --step
        if args.exit_ms and len(args.exit_ms) != len(chain.segments):
            raise EarlyExitError(f"--exit-ms gives {len(args.exit_ms)} time(s) but {args.chain} has "
                                 f"{len(chain.segments)} exits: one cumulative time per exit, the final exit last")
        if args.full_ms is None or args.offload_ms is None:  # device constants live in the profiles
            ref = reference_costs(args.device, args.ref_model)
            args.full_ms = ref.full_ms if args.full_ms is None else args.full_ms
            args.offload_ms = ref.offload_ms if args.offload_ms is None else args.offload_ms
        qos_entries = _qos_list(args.qos)
        if any(not _is_number(q) for q in qos_entries) and not args.baseline_model:
            raise EarlyExitError("QoS 'hi' and 'local[+points]' need --baseline-model and --baseline-decider")
        for q in qos_entries:
            if not (_is_number(q) or q == "hi" or q == "local" or q.startswith("local+")):
                raise EarlyExitError(f"QoS entry {q!r} is not an accuracy (0.9, 90%, accuracy=0.9), 'hi', 'local' "
                                     "or 'local+POINTS'")
            if q.startswith("local+") and not _is_float(q.split("+", 1)[1]):
                raise EarlyExitError(f"QoS entry {q!r}: local+POINTS takes percentage points, e.g. local+2")
        val, test = load_val_test(args)
        print(f"data: val {len(val)}, test {len(test)}", flush=True)
        names = [s.scores for s in chain.segments]
        with user_model(f"--chain {args.chain}: its single model", single,
                        "export the chain again with hi-train early-exit"):
            lv = [local_outputs(single, val.images, nm) for nm in names]
            lt = [local_outputs(single, test.images, nm) for nm in names]
        with user_model("--server", args.server, SERVER_MODEL_FIX):
            srv_v = server_probabilities(args.server, val.images).argmax(1)
            srv_t = server_probabilities(args.server, test.images).argmax(1)
        quants = chain.scores_quants()
        seg_macs = [int(s.macs) for s in chain.segments]
        ref = args.ref_macs or base_macs or sum(seg_macs)
        if args.exit_ms:
            cost = CostModel(list(args.exit_ms), args.offload_ms, args.decider_ms,
                             "measured per-exit times (--exit-ms)")
        else:
            cost = CostModel.from_macs(seg_macs, args.full_ms, ref, args.offload_ms)
            cost.decider_ms = args.decider_ms
        data_v = SearchData.from_probs([o.probs for o in lv], val.labels, decider, srv_v)
        if len(chain.segments) < 2:
            policies = [x for x in policies if x != "ee-hi-3way"]
        grids = {pol: _search(data_v, cost, pol, args, decider.threshold) for pol in policies}
        base = None
        if args.baseline_model:
            bdec = Decider.load(args.baseline_decider)
            with user_model("--baseline-model", args.baseline_model, BASELINE_FIX):
                bv = local_outputs(args.baseline_model, val.images)
                bt = local_outputs(args.baseline_model, test.images)
            bcost = CostModel([args.full_ms * base_macs / ref], args.offload_ms, args.decider_ms,
                              f"{args.full_ms} ms per {ref} MACs")
            grids["hi"] = _search(SearchData.from_probs([bv.probs], val.labels, bdec, srv_v), bcost, "hi", args,
                                  bdec.threshold)
            own_v = evaluate(bdec.accept(bv.probs), bv.predicted, val.labels, srv_v)
            own_t = evaluate(bdec.accept(bt.probs), bt.predicted, test.labels, srv_t)
            base = {"decider": bdec, "val": bv, "test": bt, "cost": bcost, "own_val": own_v, "own_test": own_t}
        print(f"grids evaluated in {time.time() - t0:.1f} s (cost model: {cost.source})", flush=True)

        rows = []
        chosen_for_plot: list[tuple[str, dict]] = []
        policy_points = {}
        for entry in qos_entries:
            target = _qos_target(entry, base)
            for pol, g in grids.items():
                idx = g.best(target)
                row = {"qos": entry, "qos_accuracy_val": target, "policy": pol}
                if idx is None:
                    row["note"] = "no combination reaches the target on the validation split"
                    rows.append(row)
                    continue
                pt = g.point(idx)
                exits, dthr = pt.exits, pt.decider_threshold
                row.update({"val": g.row(idx)})
                if pol == "hi":
                    d = base["decider"].with_threshold(dthr)
                    ev = apply_point([base["test"].raw], [_q(base["test"])], test.labels, srv_t, base["cost"], [], d)
                else:
                    d = decider.with_threshold(dthr) if pol != "ee" else None
                    ev = apply_point([o.raw for o in lt], quants, test.labels, srv_t, cost, exits, d, pt.offloads)
                    exp_macs = float(np.dot(ev.exit_fractions, np.cumsum(seg_macs)))
                    row["test_expected_macs"] = exp_macs
                row["exit_thresholds"] = [None if t == NEVER else t for t in exits]
                if g.three_way:
                    row["offload_thresholds"] = pt.offloads
                row["decider_threshold"] = dthr
                row["test"] = ev.as_dict()
                rows.append(row)
                policy_points[(entry, pol)] = pt
                chosen_for_plot.append((pol, {"cost_ms": row["val"]["cost_ms"], "accuracy": row["val"]["accuracy"]}))
        if base is not None:
            t = base["own_test"]
            rows.append({"qos": "-", "policy": "hi (decider's own threshold)", "decider_threshold": base["decider"].threshold,
                         "test": {"accuracy": t.hi_accuracy, "offload_ratio": t.offload_ratio,
                                  "cost_ms": (base["cost"].exit_ms[0] + base["cost"].decider_ms
                                              + t.offload_ratio * base["cost"].offload_ms),
                                  "exit_fractions": [1.0], "n": t.n}})
    except (EarlyExitError, DeciderError, DeciderTrainingError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    out = Path(args.out)
    csv_path = write_pareto_csv(list(grids.values()), out.with_suffix(".csv"))
    png_path = plot_pareto(list(grids.values()), out.with_suffix(".png"), chosen=chosen_for_plot,
                           title=f"{chain.path.stem}: Pareto fronts on the validation split\n{cost.source}")
    comparisons = _savings(rows, cost.exit_ms[0], base["cost"].exit_ms[0] if base else None)
    summary = {
        "format": THRESHOLDS_FORMAT,
        "chain": str(args.chain), "decider": str(dec_path), "server": str(args.server),
        "baseline": {"model": args.baseline_model, "decider": args.baseline_decider} if base else None,
        "cost_model": {"exit_ms": cost.exit_ms, "offload_ms": cost.offload_ms, "decider_ms": cost.decider_ms,
                       "segment_macs": seg_macs, "ref_macs": ref, "source": cost.source,
                       "baseline_ms": base["cost"].exit_ms[0] if base else None},
        "grid": {"step": args.step, "exit_thresholds": "0..1 and never", "offload_step": args.offload_step,
                 "offload_thresholds": "ee-hi-3way: never, offload_step..1 (offload iff confidence < o)",
                 "searched_on": "validation split", "reported_on": "test split (runtime ExitPolicy, exact int8 form)"},
        "rows": rows,
        "ee_hi_vs_hi": comparisons,
        "command": "hi-train " + " ".join(shlex.quote(a) for a in getattr(args, "argv", [])),
        "seconds": round(time.time() - t0, 1),
        "note": "accuracies on CIFAR-10 re-encoded as JPEG (q75) when the data is ../shared/datasets/cifar10-jpeg",
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_table(rows, comparisons)
    print(f"wrote {csv_path}, {png_path}, {out.with_suffix('.json')}")

    if args.write_policy is not None:
        key = (args.write_policy, args.write_from)
        if key not in policy_points:
            raise UsageError(f"no {args.write_from} point for QoS {args.write_policy!r}; choose one of "
                             f"{_qos_list(args.qos)}")
        _write_policy(chain, dec_path, decider, policy_points[key], summary, args)
        if args.vectors:
            from training.thresholds import write_ee_vectors

            p = write_ee_vectors(chain, [o.raw[:100] for o in lt], args.vectors,
                                 note=f"policy of {chain.path.name} (QoS {args.write_policy}); the first 100 cases are "
                                      "real test-split outputs")
            print(f"wrote {p}")
    return 0


def _search(data, cost, policy: str, args, own_threshold: float | None = None):
    """One policy's grid, with a progress bar when it is evaluated in chunks; the decider's own threshold
    is searched too (every policy's, HI's and EE-HI's alike)."""
    from tqdm import tqdm

    from training.thresholds import evaluate_grid

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if total > 1 and bar is None:
            bar = tqdm(total=total, desc=f"{policy} grid", leave=False)
        if bar is not None:
            bar.update(done - bar.n)

    try:
        return evaluate_grid(data, cost, policy, step=args.step, offload_step=args.offload_step, progress=progress,
                             decider_extra=() if own_threshold is None or policy == "ee" else (own_threshold,))
    finally:
        if bar is not None:
            bar.close()


def _accuracy(text: str) -> float | None:
    """A QoS entry as a minimum accuracy in the shared grammar (hi_runtime.qos): ``0.9``, ``90%`` or
    ``accuracy=0.9`` as hi-agent and hi-bench take it; None for a word (``hi``, ``local[+P]``). A bare
    number outside [0, 1], or a latency/energy requirement (the search minimizes the cost, it does not bound
    it), raises QoSError with the grammar's hint."""
    from hi_runtime.qos import QoSError, parse_accuracy, parse_qos

    if "=" in text:
        q = parse_qos(text)
        if q.min_accuracy is None or q.max_latency is not None or q.max_energy is not None:
            raise QoSError(f"QoS entry {text!r}: hi-train thresholds takes minimum accuracies (accuracy=0.9, 0.9, "
                           "90%, hi, local or local+POINTS); the search minimizes the cost")
        return q.min_accuracy
    try:
        float(text.removesuffix("%"))
    except ValueError:
        return None
    return parse_accuracy(text, "QoS accuracy")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_number(text: str) -> bool:
    return _accuracy(text) is not None


def _qos_target(entry: str, base) -> float:
    """A QoS entry as a minimum accuracy: an accuracy (:func:`_accuracy`), 'hi' (the baseline HI at its
    decider's threshold, on validation) or 'local[+P]' (the baseline model alone on validation, plus P
    percentage points)."""
    accuracy = _accuracy(entry)
    if accuracy is not None:
        return accuracy
    if entry == "hi":
        return base["own_val"].hi_accuracy
    extra = float(entry.split("+", 1)[1]) / 100 if "+" in entry else 0.0
    return base["own_val"].local_accuracy + extra


def _q(lo):
    from hi_runtime.early_exit import Quant

    return Quant(lo.scale, lo.zero_point)


def _savings(rows: list[dict], first_exit_ms: float, hi_local_ms: float | None) -> list[dict]:
    """EE-HI (and EE-HI 3-way) vs HI on the test split at each QoS entry. ``saving_bound_same_offloads``:
    the most EE-HI could save with HI's offloads and no loss of accuracy, i.e. if every sample were answered
    or offloaded at the first exit: (HI's local time - first exit's time) / HI's cost per sample."""
    from training.placement import saving_bound

    out = []
    by = {(r["qos"], r["policy"]): r for r in rows if "test" in r}
    for (qos, pol), r in by.items():
        if pol not in ("ee-hi", "ee-hi-3way") or (qos, "hi") not in by:
            continue
        h = by[(qos, "hi")]
        out.append({"qos": qos, "policy": pol, "hi_cost_ms": h["test"]["cost_ms"],
                    "ee_hi_cost_ms": r["test"]["cost_ms"],
                    "latency_saving": 1 - r["test"]["cost_ms"] / h["test"]["cost_ms"],
                    "hi_accuracy": h["test"]["accuracy"], "ee_hi_accuracy": r["test"]["accuracy"],
                    "accuracy_delta": r["test"]["accuracy"] - h["test"]["accuracy"],
                    "saving_bound_same_offloads": (None if hi_local_ms is None else
                                                   saving_bound(first_exit_ms, hi_local_ms, h["test"]["cost_ms"]))})
    return out


def _print_table(rows: list[dict], comparisons: list[dict]) -> None:
    print(f"{'QoS':>14s} {'policy':>28s} {'exit thr':>12s} {'offl thr':>12s} {'dec thr':>8s} {'val acc':>8s} "
          f"{'test acc':>8s} {'offload':>8s} {'ms/sample':>9s}")
    for r in rows:
        if "test" not in r:
            print(f"{r['qos']!s:>14s} {r['policy']:>28s}  {r.get('note', '')}")
            continue
        thr = ",".join("never" if t is None else f"{t:.2f}" for t in r.get("exit_thresholds", []) or []) or "-"
        oth = ",".join("never" if t is None else f"{t:.2f}" for t in r.get("offload_thresholds", []) or []) or "-"
        dt = r.get("decider_threshold")
        va = r.get("val", {}).get("accuracy")
        print(f"{r['qos']!s:>14s} {r['policy']:>28s} {thr:>12s} {oth:>12s} {('-' if dt is None else f'{dt:.2f}'):>8s} "
              f"{('-' if va is None else f'{100 * va:.2f}'):>8s} {100 * r['test']['accuracy']:8.2f} "
              f"{100 * r['test']['offload_ratio']:7.2f}% {r['test']['cost_ms']:9.3f}")
    for c in comparisons:
        print(f"QoS {c['qos']}: {c['policy'].upper()} {c['ee_hi_cost_ms']:.3f} ms vs HI {c['hi_cost_ms']:.3f} ms per sample: "
              f"{abs(100 * c['latency_saving']):.1f}% {'lower' if c['latency_saving'] >= 0 else 'HIGHER'} latency, accuracy {100 * c['ee_hi_accuracy']:.2f}% vs "
              f"{100 * c['hi_accuracy']:.2f}%" + ("" if c["saving_bound_same_offloads"] is None else
                                                  f" (bound at HI's offloads: {100 * c['saving_bound_same_offloads']:.1f}%)"))


def _write_policy(chain, dec_path: Path, decider, point, summary: dict, args) -> None:
    from hi_runtime.early_exit import ExitPolicy
    from training.cards import write_card

    exits, dthr = point.exits, point.decider_threshold

    new_dec = decider.with_threshold(dthr)
    previous = dict(decider.meta.get("operating_point") or {})
    if previous.get("by") == "hi-train thresholds":
        # a re-run of the search: keep the decider's own fit as the provenance, not the last search's point
        previous = dict(previous.get("fitted_at") or {})
    fitted = previous.get("threshold", decider.threshold)
    goal = "EE-HI" if args.write_from == "ee-hi" else f"EE-HI ({args.write_from})"
    new_dec.meta["operating_point"] = {"goal": f"{goal} threshold search, QoS {args.write_policy}",
                                       "threshold": dthr, "chosen_on": "validation split",
                                       "by": "hi-train thresholds", "summary": str(Path(args.out).with_suffix(".json")),
                                       "fitted_at": previous}
    if "metrics" in new_dec.meta:
        new_dec.meta["metrics_note"] = (f"'metrics' were measured at the fitted threshold {fitted}, before "
                                        "the threshold search; the EE-HI system metrics at this threshold are in "
                                        "the summary")
    new_dec.save(dec_path)
    h = dec_path.with_suffix(".h")
    if h.exists() and new_dec.int8 is not None:
        guard = "HI_" + "".join(c if c.isalnum() else "_" for c in dec_path.stem).upper()
        h.write_text(new_dec.to_c_header(prefix=guard, source=f"{chain.single_model['file']} "
                                                              f"[{chain.segments[-1].scores}]"))
    chain.policy = ExitPolicy(list(exits), new_dec, list(point.offloads))
    try:
        chain.decider_file = str(dec_path.resolve().relative_to(chain.path.parent.resolve()))
    except ValueError:
        chain.decider_file = str(dec_path.resolve())
    chain.meta["thresholds_search"] = {"qos": args.write_policy, "summary": str(Path(args.out).with_suffix(".json"))}
    if args.write_from != "ee-hi":
        chain.meta["thresholds_search"]["policy"] = args.write_from
    chain.save()
    row = next(r for r in summary["rows"] if r["qos"] == args.write_policy and r["policy"] == args.write_from)
    dcard = dec_path.with_name(dec_path.stem + ".card.json")
    if dcard.exists():
        card = json.loads(dcard.read_text())
        card["threshold_search"] = {
            "threshold": dthr, "qos": args.write_policy, "exit_thresholds": row["exit_thresholds"],
            **({"policy": args.write_from, "offload_thresholds": row["offload_thresholds"]}
               if args.write_from != "ee-hi" else {}),
            "ee_hi_test": row["test"], "summary": str(Path(args.out).with_suffix(".json")),
            "note": f"the decider's 'test' metrics are at the fitted threshold {fitted}; as the final "
                    f"exit's decider of {chain.path.name} it runs at {dthr}"}
        write_card(dcard, card)
    card_path = chain.path.with_name(chain.path.stem + ".card.json")
    if card_path.exists():
        card = json.loads(card_path.read_text())
        card["thresholds"] = {"qos": args.write_policy, "exit_thresholds": row["exit_thresholds"],
                              **({"policy": args.write_from, "offload_thresholds": row["offload_thresholds"]}
                                 if args.write_from != "ee-hi" else {}),
                              "decider_threshold": dthr, "test": row["test"],
                              "test_expected_macs": row.get("test_expected_macs"),
                              "ee_hi_vs_hi": [c for c in summary["ee_hi_vs_hi"] if c["qos"] == args.write_policy
                                              and c["policy"] == args.write_from],
                              "cost_model": summary["cost_model"], "command": summary["command"]}
        write_card(card_path, card)
    offl = f", offload thresholds {point.offloads}" if any(o is not None for o in point.offloads) else ""
    print(f"wrote thresholds {exits}{offl} and decider threshold {dthr} into {chain.path} and {dec_path}")
