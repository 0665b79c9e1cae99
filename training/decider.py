"""Fit, evaluate and export the offload decider (the math itself lives in ``hi_runtime.decider``).

* :func:`fit_decider`: the paper's binary logistic regression (scikit-learn) on the validation split:
  features of the local model's softmax (default the two highest probabilities), target "the local answer
  is correct". Features are standardized (mean/scale stored in the JSON) so the L2 penalty treats them
  alike; the max-softmax threshold and richer features sit behind the same :class:`Decider`.
* :func:`choose_operating_point`: the threshold for a goal instead of p = 0.5: at most a given offload
  ratio, or at least a given HI accuracy, on the validation split. It scans every distinct operating
  point exactly (sort + cumulative sums), not a coarse grid.
* :func:`evaluate`: F1/precision/recall of both classes (positive = accept = the local answer is correct,
  the paper's convention), offload ratio, false-negative ratio, and HI accuracy by the paper's Eq. 1
  (per sample) and Eq. 2 (from the confusion counts; ``hi_runtime.equations`` holds both), which must
  agree.
* Predictions of the local and server models are cached on disk (keyed by file content and images), so
  the decider, the early-exit decider and the threshold search do not re-run the server model.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hi_runtime.decider import (
    INT32_MAX,
    LINEAR_FEATURES,
    PAPER_FEATURES,
    Decider,
    DeciderError,
    Int8Form,
    ModelBinding,
    compute_features,
    int8_rank_range,
)

JSON_SUFFIX = ".json"


class DeciderTrainingError(Exception):
    pass


# ----------------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------------

def fit_decider(probs: np.ndarray, labels: np.ndarray, features: Sequence[str] = PAPER_FEATURES, *,
                kind: str = "logistic", C: float = 1.0, threshold: float = 0.5,
                max_iter: int = 1000, target: str = "correct",
                server_correct: np.ndarray | None = None) -> Decider:
    """Fit a decider on validation probabilities [N, C] and labels [N].

    ``target``: ``correct`` (the paper's: 1 = the local answer is right) or ``helps`` (1 = offloading would
    not help, i.e. 0 only where the local answer is wrong AND the server's right; needs
    ``server_correct``): the same model and integer form, trained to offload where offloading pays."""
    if kind == "max_softmax":
        return Decider.max_softmax(threshold)
    if kind != "logistic":
        raise DeciderTrainingError(f"unknown decider kind {kind!r}; choose logistic or max_softmax")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    probs = np.asarray(probs, dtype=np.float64)
    y = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.int64)
    meaning = "1 = local answer correct (accept), 0 = wrong (offload)"
    if target == "helps":
        if server_correct is None:
            raise DeciderTrainingError("target 'helps' needs the server's predictions (--server)")
        y = (~((y == 0) & np.asarray(server_correct, dtype=bool))).astype(np.int64)
        meaning = "1 = offloading does not help (accept), 0 = local wrong and server right (offload)"
    elif target != "correct":
        raise DeciderTrainingError(f"unknown target {target!r}; choose correct or helps")
    if y.min() == y.max():
        raise DeciderTrainingError(
            f"the local model is {'always' if y[0] else 'never'} right on these {len(y)} samples, so there is "
            "nothing to learn; use more (or harder) validation data")
    x = compute_features(probs, features)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    lr = LogisticRegression(C=C, max_iter=max_iter).fit((x - scaler.mean_) / scale, y)
    return Decider(features=tuple(features), coefficients=lr.coef_[0], intercept=float(lr.intercept_[0]),
                   threshold=threshold, kind="logistic", mean=scaler.mean_, scale=scale,
                   meta={"fit": {"estimator": "sklearn.linear_model.LogisticRegression", "C": C,
                                 "samples": len(y), "positives": int(y.sum()),
                                 "target": meaning}})


def sklearn_reference(probs: np.ndarray, labels: np.ndarray, features: Sequence[str], C: float = 1.0):
    """The scikit-learn pipeline the decider is fitted with, for checking the JSON round trip."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = (np.asarray(probs).argmax(1) == np.asarray(labels)).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000)).fit(
        compute_features(probs, features), y)


# ----------------------------------------------------------------------------------------------------
# Published weights (no fitting)
# ----------------------------------------------------------------------------------------------------

def published_decider(coefficients: Sequence[float], intercept: float, features: Sequence[str] = PAPER_FEATURES,
                      *, int8_scores: bool = False, scale: float = 1 / 256, zero_point: int = -128,
                      threshold: float | None = None, binding: ModelBinding | None = None) -> Decider:
    """A decider from published weights instead of a fit.

    * on probabilities (default): ``accept <=> sum_f coefficients[f] * f(p) + intercept >= logit(threshold)``
      (threshold 0.5: ``>= 0``), with ``f`` the named features of the descending softmax probabilities;
    * ``int8_scores``: the weights apply to the raw int8 scores ``q`` (features of the descending raw
      values, e.g. ``p1`` is ``q(0)``): ``accept <=> sum_f coefficients[f] * f(q) + intercept >= 0``.
      Since ``q(r) = p(r) / scale + zero_point``, the float form gets coefficients ``c_f / scale`` and
      intercept ``intercept + zero_point * sum_f c_f * sum_r w_fr``. With integer weights the integer form
      IS the published formula (shift 0, exact); otherwise it is compiled like a fitted decider.

    The int8 form is compiled for ``scale``/``zero_point`` (default: TFLite's softmax output, 1/256, -128).
    """
    features = tuple(features)
    coef = np.asarray(coefficients, dtype=np.float64).reshape(-1)
    if len(coef) != len(features):
        raise DeciderTrainingError(f"{len(coef)} coefficient(s) for {len(features)} feature(s) {list(features)}; "
                                   "give one per feature")
    if not np.all(np.isfinite(coef)) or not np.isfinite(intercept):
        raise DeciderTrainingError("coefficients and intercept must be finite numbers")
    source = {"coefficients": coef.tolist(), "intercept": float(intercept), "features": list(features),
              "on": "raw int8 scores" if int8_scores else "softmax probabilities"}
    if not int8_scores:
        dec = Decider(features=features, coefficients=coef, intercept=float(intercept),
                      threshold=0.5 if threshold is None else threshold, kind="logistic", model=binding,
                      meta={"published": {**source, "formula": "accept iff sum_f c_f * f(p) + intercept >= "
                                                                 "logit(threshold)"}})
        return dec.with_int8(scale, zero_point) if dec.supports_int8 else dec
    if threshold not in (None, 0.5):
        raise DeciderTrainingError("published int8-score weights decide at 0 (accept iff the sum >= 0); "
                                   "fold any threshold into the intercept")
    bad = [f for f in features if f not in LINEAR_FEATURES]
    if bad:
        raise DeciderTrainingError(f"feature(s) {bad} are not linear in the raw scores; int8-score weights "
                                   f"take {', '.join(LINEAR_FEATURES)}")
    scale, zero_point = float(scale), int(zero_point)
    weight_sums = np.array([sum(LINEAR_FEATURES[f].values()) for f in features])
    dec = Decider(features=features, coefficients=coef / scale,
                  intercept=float(intercept) + zero_point * float(np.dot(coef, weight_sums)), threshold=0.5,
                  kind="logistic", model=binding,
                  meta={"published": {**source, "formula": "accept iff sum_f c_f * f(q) + intercept >= 0 on the "
                                                           "descending raw int8 scores q",
                                      "scale": scale, "zero_point": zero_point}})
    ints = np.append(coef, intercept)
    if not np.all(ints == np.round(ints)):
        return dec.with_int8(scale, zero_point)
    # integer weights: the integer form is the formula itself
    k = max(max(LINEAR_FEATURES[f]) for f in features) + 1
    a = [0] * k
    for f, c in zip(features, coef):
        for r, m in LINEAR_FEATURES[f].items():
            a[r] += round(float(c)) * int(m)
    b = round(float(intercept)) + zero_point * sum(a)  # sum a_r q(r) + c = sum a_r (q(r) - zp) + (c + zp sum a_r)
    lo, hi = int8_rank_range(zero_point)
    if sum(abs(x) for x in a) * max(abs(lo), abs(hi)) + abs(b) > INT32_MAX:
        raise DeciderTrainingError("the published integer weights can overflow an int32 accumulator")
    form = Int8Form(scale, zero_point, tuple(a), b, 0, exact=True)
    from dataclasses import replace

    form = replace(form, grid_disagreements=dec._grid_disagreements(form))
    return replace(dec, int8=form)


# ----------------------------------------------------------------------------------------------------
# Operating points
# ----------------------------------------------------------------------------------------------------

def _z_to_threshold(decider: Decider, z: float) -> float:
    if decider.kind == "logistic":
        if z == -math.inf:
            return 0.0
        if z == math.inf:
            return 1.0
        return float(1.0 / (1.0 + math.exp(-z)))
    return float(z)


@dataclass
class OperatingPoint:
    threshold: float
    offload_ratio: float
    hi_accuracy: float | None
    goal: str


def score_curve(z: np.ndarray, local_ok: np.ndarray, server_ok: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every distinct operating point of acceptance scores ``z`` (higher = keep): offloading the k
    lowest-scored samples, k = 0..N at the boundaries of ties. Returns the threshold in score space
    (accept iff z >= it), the number and ratio offloaded, and the HI accuracy when the server's correctness
    is known. Exact: one sort and cumulative sums, no grid."""
    z = np.asarray(z, dtype=np.float64)
    order = np.argsort(z, kind="stable")
    zs = z[order]
    n = len(z)
    ks = np.unique(np.concatenate([[0], np.flatnonzero(np.diff(zs) > 0) + 1, [n]]))
    zt = np.empty(len(ks))
    for i, k in enumerate(ks):  # a threshold between z[k-1] and z[k]: offloads exactly the first k
        zt[i] = -math.inf if k == 0 else (math.inf if k == n else 0.5 * (zs[k - 1] + zs[k]))
    out = {"z_threshold": zt, "offloaded": ks, "offload_ratio": ks / n}
    if server_ok is not None:
        loc = np.asarray(local_ok)[order]
        srv = np.asarray(server_ok)[order]
        srv_cum = np.concatenate([[0], np.cumsum(srv)])
        loc_cum = np.concatenate([[0], np.cumsum(loc)])
        out["hi_accuracy"] = (srv_cum[ks] + (loc_cum[-1] - loc_cum[ks])) / n
    return out


def operating_curve(decider: Decider, probs: np.ndarray, labels: np.ndarray,
                    server_correct: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``score_curve`` of a decider's decision values, with thresholds in the decider's own terms."""
    local_ok = np.asarray(probs).argmax(1) == labels
    out = score_curve(decider.decision_value(probs), local_ok, server_correct)
    out["threshold"] = np.array([_z_to_threshold(decider, v) for v in out.pop("z_threshold")])
    return out


def pick_point(curve: dict[str, np.ndarray], *, max_offload: float | None = None,
               min_hi_accuracy: float | None = None, offload_penalty: float | None = None) -> tuple[int, str]:
    """Index into a curve for one goal (see :func:`choose_operating_point`) and the goal's description."""
    if sum(g is not None for g in (max_offload, min_hi_accuracy, offload_penalty)) != 1:
        raise DeciderTrainingError("give exactly one goal: max_offload, min_hi_accuracy or offload_penalty")
    has_hi = "hi_accuracy" in curve
    if max_offload is not None:
        if not 0.0 <= max_offload <= 1.0:
            raise DeciderTrainingError(f"max offload ratio must be in [0, 1], got {max_offload}")
        ok = np.flatnonzero(curve["offload_ratio"] <= max_offload + 1e-12)
        best = ok[np.argmax(curve["hi_accuracy"][ok])] if has_hi else ok[-1]  # first maximum = fewest offloads
        return int(best), f"max offload ratio {max_offload}"
    if not has_hi:
        raise DeciderTrainingError("this goal needs the server model's predictions (--server)")
    if min_hi_accuracy is not None:
        ok = np.flatnonzero(curve["hi_accuracy"] >= min_hi_accuracy - 1e-12)
        if len(ok) == 0:
            raise DeciderTrainingError(
                f"no threshold reaches HI accuracy {min_hi_accuracy} on the validation split (best "
                f"{curve['hi_accuracy'].max():.4f}); lower the target")
        return int(ok[0]), f"min HI accuracy {min_hi_accuracy}"
    if offload_penalty < 0:
        raise DeciderTrainingError(f"the offload penalty must be >= 0, got {offload_penalty}")
    value = curve["hi_accuracy"] - offload_penalty * curve["offload_ratio"]
    return int(np.argmax(value)), f"max HI accuracy - {offload_penalty} x offload ratio"


def settle_off_int8_boundaries(decider: Decider, probs: np.ndarray, scale: float, zero_point: int,
                               fractions: tuple[float, ...] = (0.5, 0.3, 0.7, 0.15, 0.85, 0.05, 0.95, 0.01, 0.99),
                               ) -> Decider:
    """The same decider with its threshold moved, inside the gap between the scores of ``probs`` (the
    validation split) around it, to a point where the exact integer form agrees with the float form on
    the whole int8 grid; every decision on ``probs`` stays the same.

    Why: a threshold half-way between two validation scores often falls exactly on the score of another
    grid point (the scores are linear in the int8 ranks), where the float comparison and the integer one
    round differently: the firmware would then decide one output row differently from Python. Returns
    the decider unchanged if it has no int8 form, no disagreement, or no point of the gap clears them."""
    if not decider.supports_int8 or decider.kind != "logistic":
        return decider
    if not decider.compile_int8(scale, zero_point).grid_disagreements:
        return decider
    z = decider.decision_value(probs)
    zt = decider.z_threshold
    below, above = z[z < zt], z[z >= zt]
    lo = float(below.max()) if below.size else zt - 1.0
    hi = float(above.min()) if above.size else zt + 1.0
    keep = decider.accept(probs)
    for f in fractions:
        cand = decider.with_threshold(_z_to_threshold(decider, lo + f * (hi - lo)))
        if np.array_equal(cand.accept(probs), keep) and not cand.compile_int8(scale, zero_point).grid_disagreements:
            return cand
    return decider


def choose_operating_point(decider: Decider, probs: np.ndarray, labels: np.ndarray,
                           server_correct: np.ndarray | None = None, *, max_offload: float | None = None,
                           min_hi_accuracy: float | None = None,
                           offload_penalty: float | None = None) -> OperatingPoint:
    """The threshold that meets the goal on the given (validation) data.

    * ``max_offload``: among thresholds offloading at most that fraction, the one with the highest HI
      accuracy (with server predictions) or else the most offloads (the paper's intent: use the budget);
    * ``min_hi_accuracy``: the fewest offloads that reach that HI accuracy (needs server predictions);
    * ``offload_penalty`` (cost-sensitive): the highest HI accuracy - penalty x offload ratio, i.e. offload
      a sample only while the accuracy it buys is worth its cost: with a latency budget, penalty = the
      accuracy one is willing to give up per unit of offload ratio (e.g. 0.1: 10 points for offloading all).
    """
    curve = operating_curve(decider, probs, labels, server_correct)
    best, goal = pick_point(curve, max_offload=max_offload, min_hi_accuracy=min_hi_accuracy,
                            offload_penalty=offload_penalty)
    return OperatingPoint(float(curve["threshold"][best]), float(curve["offload_ratio"][best]),
                          float(curve["hi_accuracy"][best]) if "hi_accuracy" in curve else None, goal)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------

@dataclass
class DeciderReport:
    n: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    offload_precision: float
    offload_recall: float
    offload_f1: float
    offload_ratio: float
    false_negative_ratio: float
    local_accuracy: float
    server_accuracy: float | None = None
    server_accuracy_offloaded: float | None = None
    hi_accuracy: float | None = None
    hi_accuracy_eq2: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        s = (f"F1 {self.f1:.4f} (precision {self.precision:.4f}, recall {self.recall:.4f}); offload class F1 "
             f"{self.offload_f1:.4f}; offload {100 * self.offload_ratio:.2f}%; false negatives "
             f"{100 * self.false_negative_ratio:.2f}%; local accuracy {100 * self.local_accuracy:.2f}%")
        if self.hi_accuracy is not None:
            s += f"; HI accuracy {100 * self.hi_accuracy:.2f}% (server alone {100 * self.server_accuracy:.2f}%)"
        return s


def evaluate(accept: np.ndarray, local_pred: np.ndarray, labels: np.ndarray,
             server_pred: np.ndarray | None = None) -> DeciderReport:
    """Decider metrics with "accept (local answer correct)" as the positive class.

    The false-negative ratio is FN / N: the fraction of all samples offloaded although the device was
    right (wasted offloads). HI accuracy: Eq. 1 counts per sample (accepted and local right, or
    offloaded and server right); Eq. 2 uses the confusion counts, (TP + server accuracy on the offloaded
    x offloaded) / N. They are computed independently and must agree."""
    from sklearn.metrics import precision_recall_fscore_support

    from hi_runtime.equations import DeciderConfusion, hi_accuracy, hi_accuracy_from_confusion

    accept = np.asarray(accept, dtype=bool)
    labels = np.asarray(labels)
    local_ok = np.asarray(local_pred) == labels
    n = len(labels)
    tp = int(np.sum(accept & local_ok))
    fp = int(np.sum(accept & ~local_ok))
    fn = int(np.sum(~accept & local_ok))
    tn = int(np.sum(~accept & ~local_ok))
    p, r, f, _ = precision_recall_fscore_support(local_ok.astype(int), accept.astype(int), labels=[1, 0],
                                                 zero_division=0)
    rep = DeciderReport(n=n, tp=tp, fp=fp, fn=fn, tn=tn, precision=float(p[0]), recall=float(r[0]),
                        f1=float(f[0]), offload_precision=float(p[1]), offload_recall=float(r[1]),
                        offload_f1=float(f[1]), offload_ratio=float((~accept).mean()),
                        false_negative_ratio=fn / n, local_accuracy=float(local_ok.mean()))
    if server_pred is not None:
        server_ok = np.asarray(server_pred) == labels
        off = ~accept
        eq1 = hi_accuracy(int(np.sum(accept & local_ok)), int(np.sum(off & server_ok)), n)
        srv_off = float(server_ok[off].mean()) if off.any() else 0.0
        eq2 = hi_accuracy_from_confusion(DeciderConfusion(tp=tp, fp=fp, fn=fn, tn=tn), srv_off)
        if abs(eq1 - eq2) > 1e-9:
            raise AssertionError(f"Eq. 1 ({eq1}) and Eq. 2 ({eq2}) disagree")
        rep.server_accuracy = float(server_ok.mean())
        rep.server_accuracy_offloaded = srv_off if off.any() else None
        rep.hi_accuracy = eq1
        rep.hi_accuracy_eq2 = eq2
    return rep


# ----------------------------------------------------------------------------------------------------
# Model outputs (cached)
# ----------------------------------------------------------------------------------------------------

@dataclass
class LocalOutputs:
    """A local model's raw int8 scores, their quantization, and the dequantized probabilities."""

    raw: np.ndarray
    scale: float
    zero_point: int
    output_name: str

    @property
    def probs(self) -> np.ndarray:
        return (self.raw.astype(np.float64) - self.zero_point) * self.scale

    @property
    def predicted(self) -> np.ndarray:
        return self.raw.argmax(axis=1)


def _digest(path: Path, images: np.ndarray, extra: str) -> str:
    h = hashlib.sha256(Path(path).read_bytes())
    h.update(hashlib.sha256(np.ascontiguousarray(images).tobytes()).digest())
    h.update(extra.encode())
    return h.hexdigest()[:24]


def _cache_file(key: str) -> Path:
    from hi_runtime.datasets import cache_dir

    return cache_dir() / "predictions" / f"{key}.npz"


def _cached_arrays(key: str, compute, use_cache: bool) -> dict[str, np.ndarray]:
    f = _cache_file(key)
    if use_cache and f.exists():
        try:
            with np.load(f) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            pass
    arrays = compute()
    if use_cache:
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(f)
        except OSError:
            pass
    return arrays


def _int8_output(model_path: str | Path, output: str | None, reference: bool = False):
    """(backend, output name, scale, zero point) of an INT8 model's chosen output."""
    from hi_runtime.backends import TFLiteBackend

    model_path = Path(model_path)
    if not model_path.exists():
        raise DeciderTrainingError(f"local model {model_path} does not exist")
    tm = TFLiteBackend(model_path, reference=reference)
    names = [o.name for o in tm.outputs]
    if output is None:
        if len(names) != 1:
            raise DeciderTrainingError(f"{model_path} has outputs {names}; choose one with --output NAME")
        output = names[0]
    if output not in names:
        raise DeciderTrainingError(f"{model_path} has no output {output!r}; its outputs are {names}")
    det = tm.output(output)
    if det.dtype != np.int8:
        raise DeciderTrainingError(f"output {output!r} of {model_path} is {det.dtype.name}, "
                                   "not int8; the decider is fitted on a full-integer model's scores")
    scale, zp = det.quant
    return tm, output, float(scale), int(zp)


def check_images_fit(backend, images: np.ndarray, what: str) -> None:
    """A model built for other images (a 32x32x3 CIFAR-10 model on 28x28x1 MNIST) is a
    DeciderTrainingError naming both shapes, not the runtime's traceback. Dynamic dimensions match any size."""
    want = tuple(int(d) for d in (getattr(backend, "sample_shape", None) or backend.input.shape[1:]))
    have = tuple(int(d) for d in images.shape[1:])
    if len(want) != len(have) or any(w > 0 and w != h for w, h in zip(want, have)):
        def fmt(shape):
            return "x".join("?" if d <= 0 else str(d) for d in shape)

        raise DeciderTrainingError(f"{what} takes {fmt(want)} images but the data is {fmt(have)}; use a model "
                                   "made for these images, or the --dataset it was trained on")


def local_output_quant(model_path: str | Path, output: str | None = None) -> tuple[str, float, int]:
    """(output name, scale, zero point) of an INT8 model's output, without running it."""
    _, name, scale, zp = _int8_output(model_path, output)
    return name, scale, zp


def local_outputs(model_path: str | Path, images: np.ndarray, output: str | None = None, *,
                  reference: bool = False, use_cache: bool = True) -> LocalOutputs:
    """Raw outputs of an INT8 TFLite model, output chosen by tensor name (default: the only output)."""
    tm, output, scale, zp = _int8_output(model_path, output, reference)

    def compute():
        check_images_fit(tm, images, f"local model {model_path}")
        return {"raw": tm.predict_raw(images, [output])[output]}

    arr = _cached_arrays(_digest(model_path, images, f"local|{output}|{reference}"), compute, use_cache)
    return LocalOutputs(arr["raw"], float(scale), int(zp), output)


def server_probabilities(model_path: str | Path, images: np.ndarray, *, use_cache: bool = True) -> np.ndarray:
    """Softmax probabilities of the server model (.onnx with ONNX Runtime, or a float/int8 .tflite)."""
    from tqdm import tqdm

    from hi_runtime.backends import open_backend

    model_path = Path(model_path)
    if not model_path.exists():
        raise DeciderTrainingError(f"server model {model_path} does not exist")

    def compute():
        if model_path.suffix == ".onnx":
            m = open_backend(model_path, providers=["CPUExecutionProvider"])
            check_images_fit(m, images, f"server model {model_path}")
            outs = [m.predict(images[i:i + 500], batch=500) for i in
                    tqdm(range(0, len(images), 500), desc=f"server {model_path.name}", leave=False)]
            return {"probs": np.concatenate(outs).astype(np.float32)}
        if model_path.suffix == ".tflite":
            m = open_backend(model_path)
            check_images_fit(m, images, f"server model {model_path}")
            return {"probs": m.predict(images).astype(np.float32)}
        raise DeciderTrainingError(f"server model {model_path} must be .onnx or .tflite")

    return _cached_arrays(_digest(model_path, images, "server"), compute, use_cache)["probs"]


# ----------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------

def export_decider(decider: Decider, out_prefix: str | Path, *, scale: float | None, zero_point: int | None,
                   header: bool = True, source: str = "") -> tuple[Decider, list[Path]]:
    """Write ``<prefix>.json`` (with the int8 form when the features allow it) and ``<prefix>.h``."""
    out_prefix = Path(out_prefix)
    files = []
    if scale is not None and zero_point is not None and decider.supports_int8:
        decider = decider.with_int8(scale, zero_point)
    elif header and not decider.supports_int8:
        raise DeciderError(f"features {list(decider.features)} have no exact int8 form (entropy); the C header "
                           "cannot be written. Use linear features, or pass --no-header")
    files.append(decider.save(out_prefix.with_suffix(JSON_SUFFIX)))
    if header:
        guard = "HI_" + "".join(c if c.isalnum() else "_" for c in out_prefix.name).upper()
        h = out_prefix.with_suffix(".h")
        h.write_text(decider.to_c_header(prefix=guard, source=source))
        files.append(h)
    return decider, files


def _boundary_rows(f, n_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Rows whose integer accumulator lies at or next to 0 (top-1 and top-2 forms)."""
    rows = []

    def row_with(top: list[int]) -> np.ndarray:
        r = rng.integers(-128, min(top) + 1, size=n_classes)
        idx = rng.permutation(n_classes)[:len(top)]
        r[idx] = top
        return r

    zp = f.zero_point
    if f.top_k == 1 and f.coef[0] != 0:
        m = -f.bias // f.coef[0] + zp  # the smallest q with acc >= 0 when coef = 1
        for q1 in (m - 2, m - 1, m, m + 1):
            if -128 <= q1 <= 127:
                rows.append(row_with([q1]))
    elif f.top_k == 2 and f.coef[1] != 0:
        for q1 in range(-128, 128):
            q2_real = zp - (f.coef[0] * (q1 - zp) + f.bias) / f.coef[1]
            for q2 in {math.floor(q2_real) - 1, math.floor(q2_real), math.ceil(q2_real), math.ceil(q2_real) + 1}:
                if -128 <= q2 <= q1:
                    rows.append(row_with([q1, q2]))
    return rows


def write_decider_vectors(decider: Decider, raw_scores: np.ndarray, path: str | Path, *, n_random: int = 200,
                          seed: int = 0, note: str = "") -> Path:
    """Test vectors for the C firmware: raw int8 score rows, the integer form and the expected decisions.

    Rows: real model outputs (given), random rows, and rows sitting on or next to the integer decision
    boundary (accumulator within a step of 0), so an off-by-one in C cannot pass."""
    if decider.int8 is None:
        raise DeciderError("the decider has no int8 form to write vectors for")
    f = decider.int8
    rng = np.random.default_rng(seed)
    raw_scores = np.asarray(raw_scores)
    c = raw_scores.shape[1] if raw_scores.ndim == 2 and len(raw_scores) else 10
    rows = [np.asarray(r, dtype=np.int64) for r in raw_scores]
    rows += [rng.integers(-128, 128, size=c) for _ in range(n_random)]
    rows += _boundary_rows(f, c, rng)
    q = np.stack(rows).astype(np.int64)
    acc = f.accumulate(q)
    data = {
        "format": "hi-decider-vectors/1",
        "note": note or "raw int8 scores -> accept (true) / offload (false) by the exact integer form",
        "decider": decider.to_dict(),
        "cases": [{"q": r.tolist(), "acc": int(a), "accept": bool(a >= 0)} for r, a in zip(q, acc)],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_one_case_per_line(data))
    return path


def json_one_case_per_line(data: dict[str, Any]) -> str:
    """JSON with every element of ``cases`` on its own line: readable diffs, no giant files."""
    head = {k: v for k, v in data.items() if k != "cases"}
    text = json.dumps(head, indent=1)[:-2]  # drop the closing "\n}"
    cases = ",\n".join("  " + json.dumps(c) for c in data.get("cases", []))
    return text + ',\n "cases": [\n' + cases + "\n ]\n}\n"


# ----------------------------------------------------------------------------------------------------
# Comparing deciders at equal offload ratio (docs/decider.md, the comparison table)
# ----------------------------------------------------------------------------------------------------

#: Feature names only the comparison knows (no runtime/MCU form): whole vectors, class identity, logs,
#: and features of a second view of the sample (``aux``: another exit of an EE model, or the model on the
#: mirrored image).
COMPARE_FEATURES = {
    "sorted": "all softmax probabilities, sorted descending",
    "probs": "all softmax probabilities in class order",
    "class": "one-hot of the predicted class",
    "logsorted": "log of the sorted probabilities (clipped at half a quantization step)",
    "aux_p1": "the second view's highest probability",
    "aux_own": "the second view's probability of the first view's predicted class",
    "agree": "1 if both views predict the same class",
}
TARGETS = {"correct": "1 = the local answer is right (the paper's target)",
           "helps": "1 = offloading does not help (0 = local wrong and server right): offload where it pays"}
COMPARE_KINDS = ("logistic", "max_softmax", "gbt", "mlp")


@dataclass
class DeciderVariant:
    """One decider to compare: what it is fitted on, for what target, and how."""

    kind: str = "logistic"
    features: tuple[str, ...] = PAPER_FEATURES
    target: str = "correct"
    temperature: str | None = None  # None, "fit" or a number: temperature scaling before the features
    C: float = 1.0
    aux: str | None = None  # description of the second view, when aux features are used

    @property
    def name(self) -> str:
        s = f"{self.kind} [{','.join(self.features)}]" if self.kind != "max_softmax" else "max-softmax threshold"
        if self.target != "correct":
            s += f" target={self.target}"
        if self.temperature:
            s += f" T={self.temperature}"
        if self.aux:
            s += f" aux={self.aux}"
        return s

    @property
    def mcu_form(self) -> bool:
        """Whether an exact integer C form exists (logistic on linear features of one view, no scaling)."""
        return (self.kind == "max_softmax" or (self.kind == "logistic" and all(f in LINEAR_FEATURES
                                                                                for f in self.features))) \
            and not self.temperature and not self.aux

    def check(self) -> None:
        if self.kind not in COMPARE_KINDS:
            raise DeciderTrainingError(f"unknown decider kind {self.kind!r}; choose {', '.join(COMPARE_KINDS)}")
        if self.target not in TARGETS:
            raise DeciderTrainingError(f"unknown target {self.target!r}; choose {', '.join(TARGETS)}")
        from hi_runtime.decider import FEATURE_DEFINITIONS

        bad = [f for f in self.features if f not in FEATURE_DEFINITIONS and f not in COMPARE_FEATURES]
        if bad:
            raise DeciderTrainingError(f"unknown feature(s) {bad}; choose from "
                                       f"{', '.join([*FEATURE_DEFINITIONS, *COMPARE_FEATURES])}")
        if any(f.startswith("aux_") or f == "agree" for f in self.features) and not self.aux:
            raise DeciderTrainingError("features aux_p1, aux_own and agree need a second view: --aux-output NAME "
                                       "(another exit) or --aux-flip (the mirrored image)")


def fit_temperature(probs: np.ndarray, labels: np.ndarray, floor: float) -> float:
    """The temperature T minimizing the negative log-likelihood of softmax(log p / T) (Guo et al. 2017);
    ``floor`` clips zero probabilities (int8 scores) before the log."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(probs, floor, 1.0))
    idx = np.arange(len(labels))

    def nll(t: float) -> float:
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[idx, labels] - np.log(np.exp(z).sum(axis=1))).mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def temper(probs: np.ndarray, t: float, floor: float) -> np.ndarray:
    z = np.log(np.clip(probs, floor, 1.0)) / t
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compare_features(probs: np.ndarray, names: Sequence[str], aux: np.ndarray | None = None,
                     floor: float = 1 / 512) -> np.ndarray:
    """Feature matrix for the comparison: runtime features (``compute_features``) and ``COMPARE_FEATURES``."""
    probs = np.asarray(probs, dtype=np.float64)
    cols = []
    pred = probs.argmax(axis=1)
    for n in names:
        if n == "sorted":
            cols.append(-np.sort(-probs, axis=1))
        elif n == "probs":
            cols.append(probs)
        elif n == "class":
            cols.append(np.eye(probs.shape[1])[pred])
        elif n == "logsorted":
            cols.append(np.log(np.clip(-np.sort(-probs, axis=1), floor, 1.0)))
        elif n == "aux_p1":
            cols.append(aux.max(axis=1, keepdims=True))
        elif n == "aux_own":
            cols.append(aux[np.arange(len(pred)), pred][:, None])
        elif n == "agree":
            cols.append((aux.argmax(axis=1) == pred).astype(np.float64)[:, None])
        else:
            cols.append(compute_features(probs, (n,)))
    return np.concatenate(cols, axis=1)


def _estimator(v: DeciderVariant):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if v.kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=v.C, max_iter=5000))
    if v.kind == "gbt":
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                              l2_regularization=1.0, random_state=0)
    return make_pipeline(StandardScaler(), MLPClassifier((32,), alpha=1e-2, max_iter=2000, early_stopping=True,
                                                         random_state=0))


def variant_target(v: DeciderVariant, local_ok: np.ndarray, server_ok: np.ndarray) -> np.ndarray:
    """1 = keep the local answer. ``helps``: 0 only where offloading gains (local wrong, server right)."""
    return local_ok if v.target == "correct" else ~(~local_ok & server_ok)


@dataclass
class VariantScores:
    """Acceptance scores (higher = keep the local answer) of one variant on val (in-sample and out of
    fold) and on test."""

    val: np.ndarray
    val_cv: np.ndarray
    test: np.ndarray
    temperature: float | None = None


def score_variant(v: DeciderVariant, pv: np.ndarray, pt: np.ndarray, yv: np.ndarray, sv_ok: np.ndarray,
                  aux_v: np.ndarray | None = None, aux_t: np.ndarray | None = None, *, floor: float = 1 / 512,
                  folds: int = 5) -> VariantScores:
    """Fit on the validation split (and ``folds``-fold out-of-fold on it, for choosing among variants on
    validation only); score the test split."""
    from sklearn.model_selection import StratifiedKFold

    v.check()
    t = None
    if v.temperature:
        t = fit_temperature(pv, yv, floor) if v.temperature == "fit" else float(v.temperature)
        pv, pt = temper(pv, t, floor), temper(pt, t, floor)
        if aux_v is not None:
            aux_v, aux_t = temper(aux_v, t, floor), temper(aux_t, t, floor)
    if v.kind == "max_softmax":
        return VariantScores(pv.max(axis=1), pv.max(axis=1), pt.max(axis=1), t)
    y = variant_target(v, pv.argmax(axis=1) == yv, sv_ok).astype(int)
    if y.min() == y.max():
        raise DeciderTrainingError("the target is constant on the validation split; nothing to learn")
    xv, xt = compare_features(pv, v.features, aux_v, floor), compare_features(pt, v.features, aux_t, floor)

    def score(model, x):
        return model.decision_function(x) if hasattr(model, "decision_function") else model.predict_proba(x)[:, 1]

    from threadpoolctl import threadpool_limits

    _estimator(v)  # imports the estimator's libraries, so that the thread limit below reaches them
    cv = np.zeros(len(y))
    # one thread: these fits are small, and OpenMP threads on a shared machine cost far more than they give
    with threadpool_limits(limits=1):
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(xv, y):
            cv[te] = score(_estimator(v).fit(xv[tr], y[tr]), xv[te])
        model = _estimator(v).fit(xv, y)
    return VariantScores(score(model, xv), cv, score(model, xt), t)


def hi_at_offloads(score: np.ndarray, local_ok: np.ndarray, server_ok: np.ndarray, k: int) -> float:
    """HI accuracy when the ``k`` lowest-scored samples are offloaded (ties broken by index)."""
    off = np.zeros(len(score), dtype=bool)
    off[np.argsort(score, kind="stable")[:k]] = True
    return float(np.where(off, server_ok, local_ok).mean())


def hi_curve(score: np.ndarray, local_ok: np.ndarray, server_ok: np.ndarray,
             ratios: np.ndarray) -> np.ndarray:
    """HI accuracy at each offload ratio (offloading the lowest-scored samples)."""
    order = np.argsort(score, kind="stable")
    gain = np.concatenate([[0], np.cumsum((server_ok.astype(int) - local_ok.astype(int))[order])])
    ks = np.round(ratios * len(score)).astype(int)
    return (local_ok.sum() + gain[ks]) / len(score)


def oracle_scores(local_ok: np.ndarray, server_ok: np.ndarray, *, knows_server: bool,
                  seed: int = 0) -> np.ndarray:
    """Acceptance scores of oracles. ``knows_server`` False: knows which local answers are wrong and
    offloads those first (then arbitrary ones); True: also knows the server's answer, so offloads first
    where that helps, and never where it hurts while anything else is left: the ceiling at any ratio."""
    rng = np.random.default_rng(seed)
    if knows_server:
        tier = np.select([~local_ok & server_ok, ~local_ok & ~server_ok, local_ok & server_ok], [0, 1, 2], 3)
    else:
        tier = np.where(local_ok, 1, 0)
    return tier + 0.5 * rng.random(len(local_ok))


def compare_row(v: DeciderVariant, s: VariantScores, local_v: np.ndarray, local_t: np.ndarray,
                server_v: np.ndarray, server_t: np.ndarray, max_offload: float,
                ratios: np.ndarray) -> dict[str, Any]:
    """One row of the comparison: the threshold is chosen on validation like the shipped decider's
    (the highest validation HI accuracy offloading at most ``max_offload``), then applied to test; also the
    test HI accuracy at exactly ``max_offload`` offloaded (equal offload ratio for every decider), the
    out-of-fold validation HI accuracy (what the choice among variants uses) and the curve for the plot."""
    n_v = len(local_v)
    curve = score_curve(s.val, local_v, server_v)
    best, _ = pick_point(curve, max_offload=max_offload)  # the shipped decider's procedure
    accept_t = s.test >= curve["z_threshold"][best]
    # evaluate() takes predictions and labels; correctness is all it needs: "class 0" = right
    rep = evaluate(accept_t, np.where(local_t, 0, 1), np.zeros(len(local_t), dtype=int),
                   np.where(server_t, 0, 1))
    kt = round(max_offload * len(local_t))
    kv = round(max_offload * n_v)
    return {"name": v.name, "kind": v.kind, "features": list(v.features), "target": v.target,
            "temperature": s.temperature, "aux": v.aux, "mcu_form": v.mcu_form,
            "val_offload_ratio": float(curve["offload_ratio"][best]),
            "val_hi_accuracy": float(curve["hi_accuracy"][best]),
            "val_cv_hi_accuracy_at_ratio": hi_at_offloads(s.val_cv, local_v, server_v, kv),
            "test_offload_ratio": rep.offload_ratio, "test_hi_accuracy": rep.hi_accuracy, "test_f1": rep.f1,
            "test_hi_accuracy_at_ratio": hi_at_offloads(s.test, local_t, server_t, kt),
            "ratio": max_offload,
            "curve": {"offload_ratio": [round(float(r), 4) for r in ratios],
                      "hi_accuracy": [round(float(a), 6) for a in hi_curve(s.test, local_t, server_t, ratios)]}}
