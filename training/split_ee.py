"""Split a single-file early-exit model (IF operators pick the exit) into an INT8 segment chain.

The firmware runs a chain of single-subgraph INT8 segments and decides the exits itself; a model built the
paper's way decides them inside the graph with IF operators, whose branches the TFLite converter leaves in
float. So the split has three steps:

1. read the exits from the flatbuffer (:func:`hi_runtime.early_exit_graph.analyze`): each exit's scores,
   its threshold when the IF tests ``max(scores)`` against a plain constant (else ``exit_thresholds``
   must be given), and the one trunk tensor the continue branch carries on;
2. rebuild trunk, exits and branches as ONE TensorFlow graph whose outputs are every exit's scores and
   every cut's features (:mod:`training.tflite_to_tf`), and convert it to full-integer INT8 on
   representative images, exactly as ``hi-train early-exit`` converts a Keras model;
3. cut the segments out of that one converted model (:func:`training.early_exit.cut_chain`, the same
   flatbuffer surgery as every exported chain), so feature quantizations match by construction.

The chain is a re-quantization of the model: :func:`split_early_exit` compares it with the original on
check images (exit taken, class) and reports how often they agree.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hi_runtime.early_exit import ExitPolicy, SegmentChain
from hi_runtime.early_exit_graph import IfEarlyExitModel, analyze
from hi_runtime.input_spec import IDENTITY, InputSpec
from hi_runtime.tflite_schema import constant, read_model, tensor_name
from training.early_exit import FIRMWARE_OPS, ChainExport, cut_chain, features_name, scores_name


class SplitError(ValueError):
    """The model cannot be split as asked (the message names why and what to give)."""


@dataclass
class SplitReport:
    export: ChainExport
    thresholds: list[float]
    threshold_sources: list[str]  # per exit: "model constant (exit iff ...)" or "--exit-threshold"
    unsupported_ops: list[str]  # operators of the segments the firmware compiler does not support
    check: dict[str, Any] = field(default_factory=dict)  # agreement with the original on check images


def _thresholds(ee: IfEarlyExitModel, given: Sequence[float] | None) -> tuple[list[float], list[str]]:
    n = len(ee.levels)
    if given is not None and len(given) != n:
        raise SplitError(f"the model has {n} early exit(s); got {len(given)} exit threshold(s)")
    out, sources = [], []
    for k, level in enumerate(ee.levels):
        if given is not None:
            out.append(float(given[k]))
            sources.append("--exit-threshold" + (f" (the model's own test: {level.comparison})"
                                                 if level.comparison else ""))
        elif level.threshold is not None:
            out.append(level.threshold)
            sources.append(f"model constant ({level.comparison})")
        else:
            raise SplitError(f"exit {k + 1}: {level.problem}; give --exit-threshold T (the chain exits where the "
                             "max softmax probability >= T)")
    return out, sources


def _features(model, ee: IfEarlyExitModel, name: str) -> list[int]:
    """Per exit, the one computed tensor (in the exit's subgraph) its continue branch carries on."""
    out = []
    for k, level in enumerate(ee.levels):
        sg = model.subgraphs[level.subgraph]
        computed = [pt for _, pt in level.carried if constant(model, sg.tensors[pt]) is None]
        if len(computed) != 1:
            names = [tensor_name(sg.tensors[t]) for t in computed]
            raise SplitError(f"{name}, exit {k + 1}: the continue branch reads {len(computed)} computed tensors "
                             f"{names}; a segment chain carries exactly one feature tensor from segment to segment")
        out.append(computed[0])
    return out


def _signature_outputs(full: bytes, keys: list[str], name: str) -> dict[str, int]:
    """Output key -> tensor index, from the converted model's signature (the function's output dict)."""
    sigs = read_model(full).signatureDefs or []
    if not sigs:
        raise SplitError(f"{name}: the converted model has no signature to name its outputs")
    by_key = {(o.name.decode() if isinstance(o.name, bytes) else str(o.name)): int(o.tensorIndex)
              for o in sigs[0].outputs}
    missing = sorted(set(keys) - set(by_key))
    if missing:
        raise SplitError(f"{name}: the converted model's signature lacks outputs {missing} (has {sorted(by_key)})")
    return {k: by_key[k] for k in keys}


def _check_mapping(full: bytes, omap: dict[str, int], fn, x: np.ndarray, name: str) -> None:
    """Each output key's tensor in the converted model must be closer to the float graph's output of that
    key than to any other output of the same shape (so no two outputs are swapped). INT8 outputs differ
    from float by their quantization error, which on confident scores can exceed a fixed tolerance."""
    from hi_runtime.backends import TFLiteBackend

    backend = TFLiteBackend(full)
    by_index = {s.index: s for s in backend.outputs}
    got: dict[str, list] = {k: [] for k in omap}
    want: dict[str, list] = {k: [] for k in omap}
    for i in range(len(x)):
        out = backend.run(backend.input.quantize(x[i:i + 1]))
        ref = fn(x[i:i + 1])
        for k, t in omap.items():
            spec = by_index[t]
            got[k].append(spec.dequantize(out[spec.name]))
            want[k].append(np.asarray(ref[k], dtype=np.float32))
    for k in omap:
        g = np.concatenate(got[k])
        errors = {j: float(np.abs(g - np.concatenate(want[j])).mean()) for j in omap
                  if np.concatenate(want[j]).shape == g.shape}
        if min(errors, key=errors.get) != k:
            raise SplitError(f"{name}: the converted model's output {k} matches {min(errors, key=errors.get)} "
                             f"better than itself (mean errors {errors}); the outputs are misordered")


def _model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Real-valued model input (float32, in the model's layout) of uint8 NHWC pixels."""
    x = spec.normalize(pixels)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if spec.layout == "NCHW" else x


def split_early_exit(model_path: str | Path, out_prefix: str | Path, calibration: np.ndarray, *,
                     input_format: InputSpec = IDENTITY, exit_thresholds: Sequence[float] | None = None,
                     check_images: np.ndarray | None = None, check_labels: np.ndarray | None = None,
                     decider_file: str | None = None, log: Callable[[str], None] = print) -> SplitReport:
    """Write ``<prefix>.json`` + ``<prefix>_seg{k}_int8.tflite`` (+ ``<prefix>_int8.tflite``, every exit's
    scores) for the single-file early-exit model ``model_path``; ``calibration`` and ``check_images`` are
    uint8 NHWC images (training images for calibration), ``input_format`` how the model wants them."""
    import tensorflow as tf

    from training.export import convert_full_int8
    from training.tflite_to_tf import GraphImporter, build_function

    model_path = Path(model_path)
    data = model_path.read_bytes()
    name = model_path.name
    ee = analyze(data, name=name)
    n = ee.num_exits
    thresholds, sources = _thresholds(ee, exit_thresholds)
    model = read_model(data)
    feats = _features(model, ee, name)
    main = model.subgraphs[0]
    if len(main.inputs) != 1:
        raise SplitError(f"{name} has {len(main.inputs)} inputs; an image classifier has one")
    in_t = int(main.inputs[0])
    sample_shape = tuple(int(d) for d in main.tensors[in_t].shape[1:])
    if len(calibration) == 0:
        raise SplitError("no calibration images: give a training set with --data")

    importer = GraphImporter(model, name)

    def bind(imp: GraphImporter, x) -> None:
        imp.bind(0, in_t, x)
        for level in ee.levels:
            for branch_t, parent_t in level.carried:
                imp.bind(level.continue_branch, branch_t, imp.value(level.subgraph, parent_t))

    outputs: dict[str, Callable[[GraphImporter], Any]] = {}
    for k, level in enumerate(ee.levels):
        outputs[scores_name(k, n)] = lambda imp, lv=level: imp.value(lv.subgraph, lv.scores)
        outputs[features_name(k)] = lambda imp, lv=level, t=feats[k]: imp.value(lv.subgraph, t)
    outputs[scores_name(n - 1, n)] = lambda imp: imp.value(ee.final_subgraph, ee.final_scores)
    log(f"{name}: {n} exits; rebuilding trunk, exits and branches as one graph")
    fn = build_function(importer, (1, *sample_shape), outputs, bind)
    concrete = fn.get_concrete_function()
    rep = _model_input(calibration, input_format)
    log(f"converting to full-integer INT8, calibrated on {len(rep)} images")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    holder = tf.Module()  # the converter wants the function's owner (it holds no variables here)
    holder.fn = fn
    full = convert_full_int8(tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder), rep)
    omap = _signature_outputs(full, list(outputs), name)
    _check_mapping(full, omap, fn, _model_input(calibration[:16], input_format), name)
    meta: dict[str, Any] = {
        "model": model_path.stem, "split_from": name, "source_sha256": hashlib.sha256(data).hexdigest(),
        "exit_tests": [lv.comparison for lv in ee.levels], "threshold_sources": sources,
        "note": "made by hi-train split-ee: a re-quantization of the single-file model, cut into segments",
    }
    if not input_format.is_identity:
        meta["input"] = input_format.to_dict()
    export = cut_chain(full, omap, n, out_prefix, policy=ExitPolicy(thresholds), decider_file=decider_file,
                       meta=meta, allowed_ops=None)
    unsupported = sorted(set(export.ops) - FIRMWARE_OPS)
    report = SplitReport(export, thresholds, sources, unsupported)
    if check_images is not None and len(check_images):
        report.check = compare(model_path, export.chain.path, check_images, check_labels, input_format)
        export.chain.meta["split_check"] = report.check
        export.chain.save()
    return report


def compare(model_path: str | Path, chain_path: str | Path, images: np.ndarray, labels: np.ndarray | None,
            input_format: InputSpec = IDENTITY) -> dict[str, Any]:
    """Agreement of the chain with the single-file model it was split from (LiteRT both): how often they
    take the same exit and give the same class; accuracies when ``labels`` are known."""
    from hi_runtime.backends import ChainRunner, SingleModelEarlyExit

    single = SingleModelEarlyExit(model_path, "litert", input_format=input_format)
    chain = ChainRunner(SegmentChain.load(chain_path), "litert", input_format=input_format)
    a = [single.run(single.preprocess(img)) for img in images]
    b = [chain.run(chain.preprocess(img)) for img in images]
    exit_a = np.array([r.exit_index for r in a])
    exit_b = np.array([r.exit_index for r in b])
    cls_a = np.array([r.predicted_class for r in a])
    cls_b = np.array([r.predicted_class for r in b])
    out: dict[str, Any] = {
        "images": len(images), "same_exit": float((exit_a == exit_b).mean()),
        "same_class": float((cls_a == cls_b).mean()),
        "exit_rates_model": [float((exit_a == k).mean()) for k in range(single.num_exits)],
        "exit_rates_chain": [float((exit_b == k).mean()) for k in range(single.num_exits)],
    }
    if labels is not None:
        out["accuracy_model"] = float((cls_a == labels).mean())
        out["accuracy_chain"] = float((cls_b == labels).mean())
    return out
