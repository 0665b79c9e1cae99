"""The offload decider: fitting, JSON round trip, exact int8 form, metrics (Eq. 1 = Eq. 2), goals."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hi_runtime.decider import (
    Decider,
    DeciderError,
    Int8UnsupportedError,
    compute_features,
    logit,
    round_half_away,
)
from training.decider import (
    DeciderTrainingError,
    choose_operating_point,
    evaluate,
    export_decider,
    fit_decider,
    operating_curve,
    sklearn_reference,
    write_decider_vectors,
)

VECTORS = Path(__file__).parent / "vectors" / "decider_vectors.json"


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic_local(n: int = 3000, c: int = 10, seed: int = 0):
    """Probabilities of a fake local model that is right more often when confident, with labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    strength = rng.gamma(2.0, 1.5, n)
    right = rng.random(n) < 0.3 + 0.6 * (strength / (strength + 2))
    target = np.where(right, labels, (labels + rng.integers(1, c, n)) % c)
    logits[np.arange(n), target] += strength
    return softmax(logits), labels


def quantize_probs(p: np.ndarray, scale: float = 1 / 256, zp: int = -128) -> np.ndarray:
    return np.clip(np.round(p / scale) + zp, -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def fitted():
    probs, labels = synthetic_local()
    return probs, labels, fit_decider(probs[:2000], labels[:2000])


def test_json_round_trip_matches_sklearn(fitted, tmp_path):
    probs, labels, dec = fitted
    ref = sklearn_reference(probs[:2000], labels[:2000], ("p1", "p2"))
    path = dec.save(tmp_path / "d.json")
    loaded = Decider.load(path)
    test = probs[2000:]
    x = compute_features(test, ("p1", "p2"))
    np.testing.assert_allclose(loaded.score(test), ref.predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12)
    assert np.array_equal(loaded.accept(test), ref.predict(x) == 1)
    assert Decider.from_dict(json.loads(loaded.to_json())).to_dict() == loaded.to_dict()


def test_int8_form_agrees_with_float_form(fitted):
    probs, _, dec = fitted
    q = quantize_probs(probs)
    d8 = dec.with_int8(1 / 256, -128)
    deq = (q.astype(np.float64) + 128) / 256
    assert np.array_equal(d8.accept_int8(q, 1 / 256, -128), d8.accept(deq))
    assert d8.int8.grid_disagreements == 0
    # the accumulator can never overflow int32
    assert sum(abs(a) for a in d8.int8.coef) * 255 + abs(d8.int8.bias) < 2**31
    # without a stored form, accept_int8 compiles one for the given quantization
    assert np.array_equal(dec.accept_int8(q, 1 / 256, -128), d8.accept(deq))


@settings(max_examples=40, deadline=None)
@given(w1=st.floats(0.1, 30), w2=st.floats(-30, 30), b=st.floats(-20, 20), t=st.floats(0.02, 0.98),
       scale=st.sampled_from([1 / 256, 0.0039, 0.00412, 1 / 255]), zp=st.integers(-128, -100))
def test_int8_form_property(w1, w2, b, t, scale, zp):
    """For any coefficients, the integer form matches the float form on every int8 grid point except
    (rarely) where the float decision value is within rounding distance of the threshold."""
    dec = Decider(features=("p1", "p2"), coefficients=[w1, w2], intercept=b, threshold=t)
    form = dec.compile_int8(scale, zp)
    assert form.grid_disagreements is not None
    rng = np.random.default_rng(0)
    q = rng.integers(-128, 128, (500, 10))
    deq = (q.astype(np.float64) - zp) * scale
    mismatch = dec.accept(deq) != form.accept(q)
    if mismatch.any():  # only allowed right at the boundary
        z = dec.decision_value(deq[mismatch]) - dec.z_threshold
        assert np.all(np.abs(z) < 1e-5)
    assert sum(abs(a) for a in form.coef) * max(abs(-128 - zp), abs(127 - zp)) + abs(form.bias) <= 2**31 - 1


@settings(max_examples=20, deadline=None)
@given(w1=st.floats(0.1, 30), w2=st.floats(-30, 30), b=st.floats(-20, 20), t=st.floats(0.02, 0.98),
       zp=st.integers(-128, 0), rows=st.lists(st.lists(st.integers(-128, 127), min_size=10, max_size=10),
                                              min_size=1, max_size=30))
def test_row_decider_is_accept_row(w1, w2, b, t, zp, rows):
    """The agent's per-sample callable (zero point folded into the bias for the top-2 form) decides every
    row exactly as accept_row and the array form do; other forms fall back to accept_row."""
    for dec in (Decider(features=("p1", "p2"), coefficients=[w1, w2], intercept=b, threshold=t),
                Decider(features=("p1", "p2", "p3"), coefficients=[w1, w2, -w1], intercept=b, threshold=t)):
        form = dec.compile_int8(1 / 256, zp)
        fast = form.row_decider()
        assert [fast(r) for r in rows] == [form.accept_row(r) for r in rows] == form.accept(np.array(rows)).tolist()
        assert (fast == form.accept_row) == (form.top_k != 2)


@settings(max_examples=60, deadline=None)
@given(t=st.floats(0.0, 1.2), scale=st.floats(0.001, 0.01), zp=st.integers(-128, 0))
def test_max_softmax_int8_is_exact(t, scale, zp):
    dec = Decider.max_softmax(t)
    form = dec.compile_int8(scale, zp)
    assert form.exact and form.grid_disagreements == 0
    q = np.arange(-128, 128).reshape(-1, 1)
    assert np.array_equal(form.accept(q), dec.accept((q - zp) * scale))


def test_thresholds_zero_and_one_accept_all_or_none(fitted):
    probs, _, dec = fitted
    q = quantize_probs(probs)
    assert dec.with_threshold(0.0).accept(probs).all()
    assert not dec.with_threshold(1.0).accept(probs).any()
    assert dec.with_threshold(0.0).accept_int8(q, 1 / 256, -128).all()
    assert not dec.with_threshold(1.0).accept_int8(q, 1 / 256, -128).any()


def test_entropy_refused_for_int8_and_c(fitted, tmp_path):
    probs, labels, _ = fitted
    dec = fit_decider(probs, labels, ("p1", "p2", "margin", "entropy"))
    assert dec.accept(probs).dtype == bool  # the float form works
    with pytest.raises(Int8UnsupportedError, match="entropy"):
        dec.compile_int8(1 / 256, -128)
    with pytest.raises(DeciderError, match="entropy"):
        export_decider(dec, tmp_path / "d", scale=1 / 256, zero_point=-128, header=True)
    # JSON alone is fine
    _, files = export_decider(dec, tmp_path / "d", scale=1 / 256, zero_point=-128, header=False)
    assert Decider.load(files[0]).int8 is None


def test_richer_features_and_margin():
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    f = compute_features(p, ("p1", "p2", "p3", "margin", "entropy"))
    np.testing.assert_allclose(f[:, 3], [0.5, 0.05])
    np.testing.assert_allclose(f[0, 4], -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)))
    with pytest.raises(DeciderError, match="unknown decider feature"):
        compute_features(p, ("p9",))


def test_eq1_equals_eq2_and_hand_counts():
    labels = np.array([0, 1, 2, 3, 4, 5])
    local = np.array([0, 1, 9, 9, 4, 9])  # right on 0,1,4
    server = np.array([0, 9, 2, 3, 9, 9])  # right on 0,2,3
    accept = np.array([True, True, True, False, False, False])
    r = evaluate(accept, local, labels, server)
    assert (r.tp, r.fp, r.fn, r.tn) == (2, 1, 1, 2)
    # Eq. 1: accepted&local right (0,1) + offloaded&server right (3) = 3 of 6
    assert r.hi_accuracy == pytest.approx(3 / 6)
    assert r.hi_accuracy_eq2 == pytest.approx(r.hi_accuracy)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.offload_ratio == pytest.approx(0.5) and r.false_negative_ratio == pytest.approx(1 / 6)
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = 200
        y = rng.integers(0, 10, n)
        rr = evaluate(rng.random(n) < 0.7, np.where(rng.random(n) < 0.8, y, 0), y, np.where(rng.random(n) < 0.9, y, 1))
        assert rr.hi_accuracy == pytest.approx(rr.hi_accuracy_eq2, abs=1e-12)


def test_operating_point_goals(fitted):
    probs, labels, dec = fitted
    rng = np.random.default_rng(1)
    server_ok = rng.random(len(labels)) < 0.95
    op = choose_operating_point(dec, probs, labels, server_ok, max_offload=0.2)
    d = dec.with_threshold(op.threshold)
    off = 1 - d.accept(probs).mean()
    assert off <= 0.2 + 1e-12 and off == pytest.approx(op.offload_ratio)
    # no point with at most 20% offload does better on this data
    curve = operating_curve(dec, probs, labels, server_ok)
    feasible = curve["offload_ratio"] <= 0.2
    assert op.hi_accuracy == pytest.approx(curve["hi_accuracy"][feasible].max())
    local_ok = probs.argmax(1) == labels
    hi = np.where(d.accept(probs), local_ok, server_ok).mean()
    assert hi == pytest.approx(op.hi_accuracy)
    op2 = choose_operating_point(dec, probs, labels, server_ok, min_hi_accuracy=op.hi_accuracy)
    assert op2.offload_ratio <= op.offload_ratio
    d2 = dec.with_threshold(op2.threshold)
    assert np.where(d2.accept(probs), local_ok, server_ok).mean() >= op.hi_accuracy - 1e-12
    with pytest.raises(DeciderTrainingError, match="lower the target"):
        choose_operating_point(dec, probs, labels, server_ok, min_hi_accuracy=1.01)
    with pytest.raises(DeciderTrainingError, match="server"):
        choose_operating_point(dec, probs, labels, None, min_hi_accuracy=0.9)


def test_fit_refuses_degenerate_targets():
    p = np.tile(np.array([[0.9, 0.1]]), (10, 1))
    with pytest.raises(DeciderTrainingError, match="always"):
        fit_decider(p, np.zeros(10, dtype=int))


@pytest.mark.parametrize("bad,match", [
    ({"format": "other/9", "features": ["p1"], "coefficients": [1], "threshold": 0.5}, "unsupported"),
    ({"features": ["p1", "p2"], "coefficients": [1], "threshold": 0.5}, "coefficients has 1"),
    ({"features": ["p1"], "coefficients": [1]}, "threshold"),
    ({"features": ["p1"], "coefficients": [1], "threshold": 1.5}, "threshold must be in"),
    ({"features": ["x"], "coefficients": [1], "threshold": 0.5}, "unknown decider feature"),
    ({"features": ["p1"], "coefficients": [1], "threshold": 0.5, "int8": {"A": [1]}}, "int8 block"),
])
def test_invalid_json_is_rejected_with_a_reason(bad, match):
    with pytest.raises(DeciderError, match=match):
        Decider.from_dict(bad)


def test_load_missing_file_names_the_fix(tmp_path):
    with pytest.raises(DeciderError, match="hi-train decider"):
        Decider.load(tmp_path / "nope.json")


def test_round_half_away_from_zero():
    assert [round_half_away(v) for v in (0.5, 1.5, -0.5, -1.5, 2.4999, -2.5)] == [1, 2, -1, -2, 2, -3]
    assert logit(0.5) == 0.0 and logit(0.0) == -math.inf and logit(1.0) == math.inf


def _compile_and_run(header: Path, rows: np.ndarray, tmp_path: Path, prefix: str) -> np.ndarray:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler on PATH")
    src = tmp_path / "main.c"
    src.write_text(f"""#include <stdio.h>
#include "{header.name}"
int main(void) {{
    int n, c; if (scanf("%d %d", &n, &c) != 2) return 2;
    for (int i = 0; i < n; ++i) {{
        int8_t q[64]; for (int j = 0; j < c; ++j) {{ int v; if (scanf("%d", &v) != 1) return 3; q[j] = (int8_t)v; }}
        printf("%d\\n", {prefix.lower()}_accept(q, c));
    }}
    return 0;
}}
""")
    exe = tmp_path / "dec"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-O2", "-I", str(header.parent), str(src), "-o", str(exe)],
                   check=True)
    inp = f"{len(rows)} {rows.shape[1]}\n" + "\n".join(" ".join(str(int(v)) for v in r) for r in rows) + "\n"
    out = subprocess.run([str(exe)], input=inp, capture_output=True, text=True, check=True).stdout.split()
    return np.array([int(v) for v in out], dtype=bool)


def test_c_header_matches_python_bit_for_bit(fitted, tmp_path):
    probs, _labels, dec = fitted
    d8, files = export_decider(dec, tmp_path / "decider_tiny", scale=1 / 256, zero_point=-128, header=True)
    header = next(f for f in files if f.suffix == ".h")
    vec = write_decider_vectors(d8, quantize_probs(probs[:300]), tmp_path / "v.json")
    cases = json.loads(vec.read_text())["cases"]
    rows = np.array([c["q"] for c in cases])
    got = _compile_and_run(header, rows, tmp_path, "HI_DECIDER_TINY")
    expected = np.array([c["accept"] for c in cases])
    assert np.array_equal(got, expected)
    assert np.array_equal(d8.accept_int8(rows, 1 / 256, -128), expected)
    accs = np.array([c["acc"] for c in cases])
    assert (accs == 0).any() or ((accs >= -d8.int8.coef[0]) & (accs < 0)).any()  # boundary rows present


def test_shipped_vectors_match_runtime():
    """tests/vectors/decider_vectors.json (for the C firmware) agrees with this runtime."""
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} not generated yet")
    data = json.loads(VECTORS.read_text())
    dec = Decider.from_dict(data["decider"])
    rows = np.array([c["q"] for c in data["cases"]])
    f = dec.int8
    assert np.array_equal(f.accumulate(rows), np.array([c["acc"] for c in data["cases"]]))
    assert np.array_equal(dec.accept_int8(rows, f.scale, f.zero_point), np.array([c["accept"] for c in data["cases"]]))
    deq = (rows.astype(np.float64) - f.zero_point) * f.scale
    assert np.array_equal(dec.accept(deq), dec.accept_int8(rows, f.scale, f.zero_point))


@pytest.mark.parametrize("command,option", [("decider", "--max-offload"), ("early-exit", "--loss-weights"),
                                            ("thresholds", "--write-policy")])
def test_subcommands_are_registered_with_help(command, option, capsys):
    from training.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert option in capsys.readouterr().out


def test_shipped_header_matches_shipped_vectors(repo_root, tmp_path):
    """models/cifar10/decider_resnet8.h, compiled, decides every vector as the runtime does."""
    header = repo_root / "models" / "cifar10" / "decider_resnet8.h"
    if not header.exists() or not VECTORS.exists():
        pytest.skip("shipped decider header or vectors not generated yet (hi-train decider)")
    data = json.loads(VECTORS.read_text())
    shipped = Decider.load(header.with_suffix(".json"))
    if shipped.int8 != Decider.from_dict(data["decider"]).int8:
        pytest.skip("the vectors were made for another decider than the shipped one")
    local = tmp_path / header.name
    local.write_text(header.read_text())
    rows = np.array([c["q"] for c in data["cases"]])
    got = _compile_and_run(local, rows, tmp_path, "HI_DECIDER_RESNET8")
    assert np.array_equal(got, np.array([c["accept"] for c in data["cases"]]))


# ----------------------------------------------------------------------------------------------------
# Binding to a model (issue 18)
# ----------------------------------------------------------------------------------------------------

def _bound(tmp_path, content: bytes = b"model A"):
    from hi_runtime.decider import ModelBinding, OutputSpec, file_sha256

    model = tmp_path / "a.tflite"
    model.write_bytes(content)
    spec = OutputSpec("int8_scores", 1 / 256, -128, "Identity")
    dec = Decider(features=("p1", "p2"), coefficients=[2.0, -1.0], intercept=0.1,
                  model=ModelBinding(spec, file="a.tflite", sha256=file_sha256(model)))
    return dec, model, spec


def test_check_model_accepts_its_model_and_refuses_others(tmp_path):
    from hi_runtime.decider import DeciderModelMismatch, OutputSpec

    dec, model, spec = _bound(tmp_path)
    assert dec.check_model(model, spec) == []
    assert dec.check_model(model, OutputSpec("int8_scores", float(np.float32(1 / 256)), -128)) == []
    other = tmp_path / "b.tflite"
    other.write_bytes(b"model B")
    with pytest.raises(DeciderModelMismatch) as exc:
        dec.check_model(other, spec, name="decider_a.json")
    msg = str(exc.value)
    assert "\n" not in msg and "decider_a.json" in msg and "a.tflite" in msg and "b.tflite" in msg
    assert "hi-train decider --model" in msg and "--force-decider" in msg
    for wrong, words in ((OutputSpec("logits"), "logits"), (OutputSpec("probabilities"), "probabilities"),
                         (OutputSpec("int8_scores", 1 / 255, -128), "scale 0.00392157"),
                         (OutputSpec("int8_scores", 1 / 256, 0), "zero point 0")):
        with pytest.raises(DeciderModelMismatch, match=words):
            dec.check_model(model, wrong)
    problems = dec.check_model(other, OutputSpec("logits"), force=True)
    assert len(problems) == 2  # forced: returned for a warning instead of raised
    unbound = Decider(features=("p1",), coefficients=[1.0])
    with pytest.raises(DeciderModelMismatch, match="records no model"):
        unbound.check_model(model, spec)


def test_binding_round_trips_and_reads_the_older_source_model_block(tmp_path):
    from hi_runtime.decider import OutputSpec

    dec, model, spec = _bound(tmp_path)
    loaded = Decider.from_dict(json.loads(dec.to_json()))
    assert loaded.model == dec.model and loaded.with_threshold(0.7).model == dec.model
    assert "source_model" not in json.loads(dec.to_json())
    old = {k: v for k, v in dec.to_dict().items() if k != "model"}
    old["source_model"] = {"file": "a.tflite", "output": "Identity", "output_scale": 1 / 256, "output_zero_point": -128}
    legacy = Decider.from_dict(old)
    assert legacy.model.sha256 is None and legacy.model.output.same_as(spec)
    assert legacy.check_model(model, spec) == []  # no hash recorded: only the output is compared
    with pytest.raises(DeciderError, match="int8_scores needs"):
        OutputSpec("int8_scores")
    with pytest.raises(DeciderError, match="unknown output kind"):
        OutputSpec("softmax")


# ----------------------------------------------------------------------------------------------------
# Published weights (issue 18)
# ----------------------------------------------------------------------------------------------------

def _formula_probs(coef, intercept, probs):
    top = -np.sort(-probs, axis=1)
    return coef[0] * top[:, 0] + coef[1] * top[:, 1] + intercept >= 0


def _formula_int8(coef, intercept, q):
    top = -np.sort(-q.astype(np.int64), axis=1)
    return coef[0] * top[:, 0] + coef[1] * top[:, 1] + intercept >= 0


@settings(max_examples=40, deadline=None)
@given(a=st.floats(-20, 20), b=st.floats(-20, 20), c=st.floats(-10, 10))
def test_published_weights_on_probabilities_decide_by_the_formula(a, b, c):
    from hypothesis import assume

    from training.decider import published_decider

    assume(abs(a) + abs(b) > 1e-3)  # all-zero weights are refused (they decide nothing)
    probs, _ = synthetic_local(400, seed=1)
    dec = published_decider([a, b], c, ("p1", "p2"))
    assert np.array_equal(dec.accept(probs), _formula_probs([a, b], c, probs))
    # its int8 form decides like the formula on the dequantized int8 grid points the export counted
    q = quantize_probs(probs)
    deq = (q.astype(np.float64) + 128) / 256
    agree = dec.accept_int8(q, 1 / 256, -128) == _formula_probs([a, b], c, deq)
    assert agree.all() or dec.int8.grid_disagreements > 0


@settings(max_examples=40, deadline=None)
@given(a=st.integers(-300, 300), b=st.integers(-300, 300), c=st.integers(-50000, 50000),
       quant=st.sampled_from([(1 / 256, -128), (1 / 255, -128), (0.01, -20)]))
def test_published_integer_weights_on_raw_scores_are_the_formula(a, b, c, quant):
    from hypothesis import assume

    from training.decider import published_decider

    assume(a != 0 or b != 0)
    dec = published_decider([a, b], c, ("p1", "p2"), int8_scores=True, scale=quant[0], zero_point=quant[1])
    assert dec.int8.exact and dec.int8.shift == 0
    vals = np.arange(-128, 128)
    i, j = np.triu_indices(256)
    q = np.zeros((len(i), 10), dtype=np.int64) - 128
    q[:, 3], q[:, 7] = vals[j], vals[i]  # every descending pair, at arbitrary positions
    assert np.array_equal(dec.accept_int8(q, *quant), _formula_int8([a, b], c, q))
    if quant[0] == 1 / 256:  # power-of-two scale: the float form is exact too
        assert np.array_equal(dec.accept((q - quant[1]) * quant[0]), _formula_int8([a, b], c, q))


def test_published_float_weights_on_raw_scores(tmp_path):
    from training.decider import published_decider

    rng = np.random.default_rng(5)
    for _ in range(10):
        a, b, c = rng.normal(0, 3), rng.normal(0, 3), rng.normal(0, 100)
        dec = published_decider([a, b], c, ("p1", "p2"), int8_scores=True)
        q = rng.integers(-128, 128, (3000, 10))
        assert np.array_equal(dec.accept_int8(q, 1 / 256, -128), _formula_int8([a, b], c, q))
        assert dec.int8.grid_disagreements == 0


def test_published_weights_cli_writes_json_and_header(tmp_path, capsys):
    from training.cli import main

    out = tmp_path / "pub"
    assert main(["decider", "--coefficients", "3,-2", "--intercept", "-250", "--features", "top2",
                 "--int8-scores", "--out", str(out)]) == 0
    dec = Decider.load(out.with_suffix(".json"))
    assert dec.meta["published"]["coefficients"] == [3.0, -2.0] and "hi-train decider" in dec.meta["published"]["command"]
    assert dec.model.output.kind == "int8_scores" and dec.model.sha256 is None
    rows = np.random.default_rng(0).integers(-128, 128, (400, 10))
    rows[:100, 0] = 127
    got = _compile_and_run(out.with_suffix(".h"), rows, tmp_path, "HI_PUB")
    assert np.array_equal(got, _formula_int8([3, -2], -250, rows)) and 0 < got.sum() < len(got)
    # the float form: on probabilities, with the default TFLite output quantization for the header
    assert main(["decider", "--coefficients", "8,-4", "--intercept", "-3", "--features", "top2",
                 "--out", str(tmp_path / "pubf")]) == 0
    decf = Decider.load(tmp_path / "pubf.json")
    probs, _ = synthetic_local(500, seed=2)
    assert np.array_equal(decf.accept(probs), _formula_probs([8, -4], -3, probs))
    assert decf.model.output.kind == "probabilities"
    capsys.readouterr()
    for argv, words in ((["--coefficients", "1,2,3", "--features", "top2"], "3 coefficient(s) for 2"),
                        (["--coefficients", "1,x"], "comma list of numbers"),
                        (["--coefficients", "1,2", "--max-offload", "0.3"], "drop --max-offload"),
                        (["--intercept", "1", "--model", "m.tflite", "--data", "d"], "belong(s) to published"),
                        ([], "fitting a decider needs --model")):
        assert main(["decider", "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err


# ----------------------------------------------------------------------------------------------------
# Targets, cost-sensitive operating points, and the comparison at equal offload ratio (issue 21)
# ----------------------------------------------------------------------------------------------------

def _two_kinds_of_errors(n_each: int = 200, seed: int = 0):
    """Right samples (confident, no runner-up), and two kinds of wrong ones with the same top probability:
    A (a flat tail: the server gets them right) and B (a close runner-up, which makes them look the least
    sure: the server is wrong on them too). "Local answer wrong" cannot tell A from B better than the
    runner-up does, and ranks B first; "offloading helps" learns that B does not pay."""
    rng = np.random.default_rng(seed)
    rows, labels, server_ok = [], [], []
    for kind, n in (("right", 3 * n_each), ("A", n_each), ("B", n_each)):
        for _ in range(n):
            p = np.full(10, 0.0)
            if kind == "right":
                p[0], p[1] = rng.uniform(0.6, 1.0), 0.0
            elif kind == "A":
                p[0], p[1] = rng.uniform(0.40, 0.45), rng.uniform(0.05, 0.07)
            else:
                p[0], p[1] = rng.uniform(0.40, 0.45), rng.uniform(0.35, 0.40)
            rest = (1 - p[:2].sum()) / 8
            p[2:] = rest
            rows.append(p)
            labels.append(0 if kind == "right" else 1)
            server_ok.append(kind != "B")
    return np.array(rows), np.array(labels), np.array(server_ok)


def test_target_helps_offloads_where_the_server_gains():
    probs, labels, server_ok = _two_kinds_of_errors()
    local_ok = probs.argmax(1) == labels
    correct = fit_decider(probs, labels, ("p1", "p2"))
    helps = fit_decider(probs, labels, ("p1", "p2"), target="helps", server_correct=server_ok)
    assert "offloading does not help" in helps.meta["fit"]["target"]
    from training.decider import hi_at_offloads

    k = int((~local_ok & server_ok).sum())  # budget: exactly the samples where offloading helps
    hi_c = hi_at_offloads(correct.decision_value(probs), local_ok, server_ok, k)
    hi_h = hi_at_offloads(helps.decision_value(probs), local_ok, server_ok, k)
    assert hi_h == pytest.approx(1 - (~local_ok & ~server_ok).mean())  # it finds exactly those
    assert hi_c == pytest.approx(local_ok.mean())  # it spends the budget on B, where the server is wrong
    assert hi_h > hi_c + 0.15
    with pytest.raises(DeciderTrainingError, match="needs the server"):
        fit_decider(probs, labels, ("p1", "p2"), target="helps")


def test_cost_sensitive_operating_point(fitted):
    probs, labels, dec = fitted
    server_ok = np.random.default_rng(1).random(len(labels)) < 0.9
    curve = operating_curve(dec, probs, labels, server_ok)
    for penalty in (0.0, 0.05, 0.2, 1.0):
        op = choose_operating_point(dec, probs, labels, server_ok, offload_penalty=penalty)
        value = curve["hi_accuracy"] - penalty * curve["offload_ratio"]
        assert op.hi_accuracy - penalty * op.offload_ratio == pytest.approx(value.max())
    # a heavier penalty never offloads more
    ratios = [choose_operating_point(dec, probs, labels, server_ok, offload_penalty=p).offload_ratio
              for p in (0.0, 0.1, 0.3, 2.0)]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] == 0.0
    with pytest.raises(DeciderTrainingError, match="exactly one goal"):
        choose_operating_point(dec, probs, labels, server_ok, max_offload=0.2, offload_penalty=0.1)


def test_comparison_row_matches_the_shipped_procedure(fitted):
    """compare_row chooses the threshold exactly as `hi-train decider --max-offload` does and reports the
    same test numbers; the curve, the equal-ratio number and the oracles are consistent."""
    from training.decider import (
        DeciderVariant,
        compare_row,
        hi_at_offloads,
        hi_curve,
        oracle_scores,
        score_variant,
    )

    probs, labels, _ = fitted
    rng = np.random.default_rng(2)
    server_ok = rng.random(len(labels)) < 0.9
    pv, pt, yv, yt, sv, st = probs[:2000], probs[2000:], labels[:2000], labels[2000:], server_ok[:2000], server_ok[2000:]
    v = DeciderVariant()
    s = score_variant(v, pv, pt, yv, sv)
    ratios = np.round(np.arange(0, 0.5001, 0.01), 4)
    row = compare_row(v, s, pv.argmax(1) == yv, pt.argmax(1) == yt, sv, st, 0.25, ratios)
    dec = fit_decider(pv, yv, ("p1", "p2"))
    op = choose_operating_point(dec, pv, yv, sv, max_offload=0.25)
    d = dec.with_threshold(op.threshold)
    rep = evaluate(d.accept(pt), pt.argmax(1), yt, np.where(st, yt, (yt + 1) % 10))
    assert row["val_offload_ratio"] == pytest.approx(op.offload_ratio) and row["val_hi_accuracy"] == pytest.approx(op.hi_accuracy)
    assert row["test_hi_accuracy"] == pytest.approx(rep.hi_accuracy) and row["test_offload_ratio"] == pytest.approx(rep.offload_ratio)
    assert row["mcu_form"] and 0.0 < row["val_cv_hi_accuracy_at_ratio"] <= 1.0
    lt = pt.argmax(1) == yt
    curve = dict(zip(row["curve"]["offload_ratio"], row["curve"]["hi_accuracy"]))
    assert curve[0.25] == pytest.approx(row["test_hi_accuracy_at_ratio"], abs=1e-6)
    assert curve[0.0] == pytest.approx(lt.mean())
    assert hi_curve(s.test, lt, st, np.array([0.25]))[0] == pytest.approx(hi_at_offloads(s.test, lt, st, 250))
    ceiling = hi_at_offloads(oracle_scores(lt, st, knows_server=True), lt, st, 250)
    wrong = hi_at_offloads(oracle_scores(lt, st, knows_server=False), lt, st, 250)
    assert ceiling >= wrong >= row["test_hi_accuracy_at_ratio"] - 1e-12
    assert ceiling == pytest.approx(lt.mean() + min(0.25, (~lt & st).mean()))  # every offload gains while it can


def test_comparison_variants_fit_and_refuse_what_they_cannot_do():
    from training.decider import DeciderVariant, score_variant

    probs, labels = synthetic_local(1500, seed=4)
    server_ok = np.random.default_rng(0).random(1500) < 0.9
    pv, pt, yv = probs[:1000], probs[1000:], labels[:1000]
    aux_v, aux_t = np.roll(pv, 1, axis=0), np.roll(pt, 1, axis=0)
    for v in (DeciderVariant("gbt", ("sorted", "class")), DeciderVariant("mlp", ("sorted",), target="helps"),
              DeciderVariant("logistic", ("p1", "p2"), temperature="fit"),
              DeciderVariant("logistic", ("p1", "aux_p1", "aux_own", "agree"), aux="rolled"),
              DeciderVariant("max_softmax", ("p1",))):
        s = score_variant(v, pv, pt, yv, server_ok[:1000], aux_v, aux_t)
        assert s.val.shape == (1000,) and s.test.shape == (500,) and np.all(np.isfinite(s.val_cv))
        assert v.mcu_form == (v.kind == "max_softmax")
    s = score_variant(DeciderVariant(temperature="fit"), pv, pt, yv, server_ok[:1000])
    assert 0.05 < s.temperature < 20
    with pytest.raises(DeciderTrainingError, match="second view"):
        DeciderVariant(features=("agree",)).check()
    with pytest.raises(DeciderTrainingError, match="unknown feature"):
        DeciderVariant(features=("p9",)).check()


def test_a_threshold_on_an_int8_boundary_is_settled_inside_its_gap():
    """A threshold half-way between two validation scores can fall exactly on another grid point's score,
    where the integer and float forms round differently; settling moves it inside the same gap (every
    validation decision unchanged) to a point where the two forms agree on the whole int8 grid."""
    from training.decider import _z_to_threshold, settle_off_int8_boundaries

    rng = np.random.default_rng(0)
    settled_cases = 0
    for _ in range(200):
        w1, w2, b = rng.uniform(0.5, 30), rng.uniform(-30, 30), rng.uniform(-20, 20)
        dec = Decider(features=("p1", "p2"), coefficients=[w1, w2], intercept=b, threshold=0.5)
        q1 = int(rng.integers(-60, 100))
        q2 = int(rng.integers(-128, q1 - 2))

        def grid_probs(pairs):
            p = np.zeros((len(pairs), 10))
            for i, (a, c) in enumerate(pairs):
                p[i, 0], p[i, 1] = (a + 128) / 256, (c + 128) / 256
            return p

        val = grid_probs([(q1, q2), (q1 + 2, q2)])  # two validation samples; (q1 + 1, q2) lies half-way
        zt = 0.5 * float(dec.decision_value(val).sum())
        on_boundary = dec.with_threshold(_z_to_threshold(dec, zt))
        if not on_boundary.compile_int8(1 / 256, -128).grid_disagreements:
            continue
        settled = settle_off_int8_boundaries(on_boundary, val, 1 / 256, -128)
        assert settled.compile_int8(1 / 256, -128).grid_disagreements == 0
        assert np.array_equal(settled.accept(val), on_boundary.accept(val))
        settled_cases += 1
        if settled_cases >= 3:
            break
    assert settled_cases >= 3  # such thresholds exist (they broke a real fit) and each one was settled
