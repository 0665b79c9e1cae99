"""The firmware's early-exit policy over chained segments (hi_exit_policy.c) against the ONE Python
implementation (hi_runtime.early_exit.run_chain): the same segment outputs must give the same exit, class,
offload decision and number of segments run, including feature requantization between segments."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from core_host import CoreLib, PyPipeline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hi_runtime.decider import Decider
from hi_runtime.early_exit import (
    ExitPolicy,
    Quant,
    SegmentChain,
    SegmentSpec,
    exit_threshold_int8,
    requantize,
    run_chain,
)


@pytest.fixture(scope="module")
def core() -> CoreLib:
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    return CoreLib()


def _segment_fn(k: int, n_feat: int, classes: int, sharp: float):
    """A deterministic stand-in for segment k: scores and features are a hash of its input."""

    def fn(x: np.ndarray):
        h = np.frombuffer(hashlib.sha256(bytes([k]) + x.tobytes()).digest() * 8, dtype=np.uint8)
        scores = (h[:classes].astype(np.int16) - 128).astype(np.int8)
        if h[40] < sharp * 255:  # sometimes one confident class
            scores[h[41] % classes] = 127 - (h[42] % 40)
        feats = (h[64:64 + n_feat].astype(np.int16) - 128).astype(np.int8) if n_feat else None
        return feats, scores

    return fn


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_seg=st.integers(1, 4), classes=st.integers(2, 12), seed=st.integers(0, 2**31 - 1),
       thresholds=st.lists(st.one_of(st.floats(0.05, 1.0), st.just(float("inf"))), min_size=3, max_size=3),
       requant=st.booleans(), scores_first=st.booleans(), with_decider=st.booleans(),
       offloads=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=3, max_size=3))
def test_chain_policy_matches_python(core, n_seg, classes, seed, thresholds, requant, scores_first, with_decider,
                                     offloads):
    rng = np.random.default_rng(seed)
    n_in, feats = 12, [int(rng.integers(4, 20)) for _ in range(n_seg - 1)]
    sq = [Quant(float(np.float32(rng.choice([1 / 256, 1 / 255, 0.01]))), int(rng.integers(-128, -100))) for _ in range(n_seg)]
    fq = [Quant(float(np.float32(rng.uniform(0.01, 0.2))), int(rng.integers(-20, 20))) for _ in range(n_seg - 1)]
    iq = [Quant(float(np.float32(rng.uniform(0.01, 0.2))), int(rng.integers(-20, 20))) if requant else f for f in fq]
    fns = [_segment_fn(k, feats[k] if k < n_seg - 1 else 0, classes, 0.5) for k in range(n_seg)]
    decider = None
    cdec = None
    if with_decider:
        decider = Decider(features=("p1", "p2"), coefficients=np.array([6.0, -4.0]), intercept=-2.5, threshold=0.5)
        form = decider.compile_int8(sq[-1].scale, sq[-1].zero_point)
        cdec = core.decider(form.coef, form.bias, form.zero_point)
    policy = ExitPolicy(thresholds[: n_seg - 1], decider, offloads[: n_seg - 1])  # three-way when any is set
    specs = [SegmentSpec(file=Path(f"s{k}.tflite"), input="in", scores="scores",
                         features="feat" if k < n_seg - 1 else None,
                         input_quant=iq[k - 1] if k else Quant(1.0, -128), scores_quant=sq[k],
                         features_quant=fq[k] if k < n_seg - 1 else None) for k in range(n_seg)]
    chain = SegmentChain(specs, policy)
    bounds = policy.exit_bounds_int8(sq[:-1])
    pipe = PyPipeline(core, fns, input_shape=(1, 1, n_in), input_bytes=n_in, feature_bytes=feats, num_classes=classes,
                      bounds=bounds, scores_quants=[(q.scale, q.zero_point) for q in sq],
                      feature_quants=[((f.scale, f.zero_point), (i.scale, i.zero_point)) for f, i in zip(fq, iq)],
                      decider=cdec, scores_first=scores_first,
                      offload_bounds=policy.offload_bounds_int8(sq[:-1]))
    for _ in range(25):
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        py_inputs: list[np.ndarray] = []

        def run_segment(k, inp, py_inputs=py_inputs):
            py_inputs.append(np.asarray(inp, dtype=np.int8).copy())
            return fns[k](np.asarray(inp, dtype=np.int8))

        want = run_chain(chain, run_segment, x)
        got = pipe.run(x)
        assert got.status == 0
        assert (got.exit_index, got.class_id, bool(got.offload), got.segments_run) == \
            (want.exit_index, want.predicted_class, want.offload, want.segments_run)
        np.testing.assert_array_equal(np.frombuffer(bytes(pipe.scores), dtype=np.int8), want.scores.astype(np.int8))
        assert len(pipe.seen_inputs) == len(py_inputs)
        for a, b in zip(pipe.seen_inputs, py_inputs):  # requantized features identical
            np.testing.assert_array_equal(a, b)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), s_src=st.floats(1e-3, 1.0), s_dst=st.floats(1e-3, 1.0),
       zp_src=st.integers(-128, 127), zp_dst=st.integers(-128, 127))
def test_requantize_matches_python(core, seed, s_src, s_dst, zp_src, zp_dst):
    q = np.random.default_rng(seed).integers(-128, 128, 300).astype(np.int8)
    q[:256] = np.arange(-128, 128)
    want = requantize(q, Quant(s_src, zp_src), Quant(s_dst, zp_dst))
    np.testing.assert_array_equal(core.requantize(q, (s_src, zp_src), (s_dst, zp_dst)), want)


@pytest.mark.parametrize("name", ["ee_vectors.json", "ee56_vectors.json"])
def test_shipped_ee_vectors(core, repo_root, name):
    """tests/vectors/ee_vectors.json and ee56_vectors.json (the shipped ResNet-8 chain's two-way policy and
    the ResNet-56 chain's three-way one, on real and on-the-bound exit scores): the C pipeline, fed each
    case's recorded scores as its segments' outputs, takes the recorded exit, class and offload decision
    and runs exactly the segments up to that exit."""
    import json

    path = repo_root / "tests" / "vectors" / name
    if not path.exists():
        pytest.skip(f"tests/vectors/{name} not written yet (hi-train thresholds --vectors)")
    _check_vectors(core, json.loads(path.read_text()))


def test_three_way_vectors_writer_and_c_agree(core, tmp_path):
    """write_ee_vectors on a three-way policy (offload rules at both early exits) adds cases on and one step
    below every offload bound; the C pipeline decides all of them as recorded."""
    import json

    from training.thresholds import write_ee_vectors

    rng = np.random.default_rng(4)
    q = Quant(1 / 256, -128)
    specs = [SegmentSpec(file=Path(f"s{k}.tflite"), input="in", scores="scores", features="f" if k < 2 else None,
                         input_quant=q, scores_quant=q, features_quant=q if k < 2 else None) for k in range(3)]
    dec = Decider(features=("p1", "p2"), coefficients=np.array([6.0, -4.0]), intercept=-2.5, threshold=0.6)
    chain = SegmentChain(specs, ExitPolicy([0.9, 0.8], dec.with_int8(1 / 256, -128), [0.4, 0.3]))
    raws = [rng.integers(-128, 100, (60, 10)) for _ in range(3)]
    for r in raws:
        r[rng.random(60) < 0.5, 2] = rng.integers(0, 127)
    data = json.loads(write_ee_vectors(chain, raws, tmp_path / "v.json").read_text())
    assert data["offload_bounds_int8"] == chain.policy.offload_bounds_int8([q, q]) == [103, 77]
    tops = {(k, max(c["scores"][k])) for c in data["cases"] for k in range(2)}
    for k, b in enumerate(data["offload_bounds_int8"]):  # on and one step below each offload bound
        assert (k, b - 128) in tops and (k, b - 129) in tops
    outcomes = {(c["exit"], c["offload"]) for c in data["cases"]}
    assert {(0, True), (1, True), (0, False), (2, False)} <= outcomes
    _check_vectors(core, data)


def _check_vectors(core, data: dict) -> None:
    dec = Decider.from_dict(data["final_decider"]) if data.get("final_decider") else None
    cdec = core.decider(dec.int8.coef, dec.int8.bias, dec.int8.zero_point) if dec is not None else None
    quants = [(q["scale"], q["zero_point"]) for q in data["scores_quant"]]
    n_seg = len(quants)
    classes = len(data["cases"][0]["scores"][0])
    current: list[np.ndarray] = []
    fns = [(lambda x, k=k: (np.zeros(4, np.int8) if k < n_seg - 1 else None, current[k])) for k in range(n_seg)]
    pipe = PyPipeline(core, fns, input_shape=(1, 1, 4), input_bytes=4, feature_bytes=[4] * (n_seg - 1),
                      num_classes=classes, bounds=data["exit_bounds_int8"], scores_quants=quants, decider=cdec,
                      offload_bounds=data.get("offload_bounds_int8") or ())
    for case in data["cases"]:
        current[:] = [np.asarray(s, dtype=np.int8) for s in case["scores"]]
        got = pipe.run(np.zeros(4, np.int8))
        assert got.status == 0
        assert (got.exit_index, got.class_id, bool(got.offload)) == (case["exit"], case["class"], case["offload"])
        assert got.segments_run == case["exit"] + 1


def test_exit_bound_edges(core):
    """exit iff max(q) - zp >= M: the C rule agrees with the float rule at the boundary values."""
    pipe_quant = (1 / 256, -128)
    for t in (0.0, 0.5, 0.75, 0.999, 1.0, float("inf")):
        bound = exit_threshold_int8(t, *pipe_quant)
        fns = [lambda x: (np.zeros(4, np.int8), x[:10]), lambda x: (None, np.zeros(10, np.int8))]
        pipe = PyPipeline(core, fns, input_shape=(1, 1, 10), input_bytes=10, feature_bytes=[4], num_classes=10,
                          bounds=[bound], scores_quants=[pipe_quant, pipe_quant])
        for top in range(-128, 128):
            x = np.full(10, -128, np.int8)
            x[3] = top
            out = pipe.run(x)
            assert (out.exit_index == 0) == (((top + 128) / 256) >= t), (t, top)


def test_input_quantization_matches_agent_rounding(core):
    """uint8 pixels -> model input exactly as hi_runtime.backends quantizes (np.round, half to even)."""
    px = np.arange(256, dtype=np.uint8)
    for scale, zp in ((1.0, -128), (2.0, 0), (0.5, -128), (1 / 0.7, -3), (1e-9, 0), (1e-7, -128)):
        fns = [lambda x: (None, x[:2])]
        pipe = PyPipeline(core, fns, input_shape=(1, 16, 16), input_bytes=256, feature_bytes=[], num_classes=2,
                          bounds=[], scores_quants=[(1 / 256, -128)], input_quant=(scale, zp))
        want = np.clip(np.round(px.astype(np.float32) / np.float32(scale)) + zp, -128, 127).astype(np.int8)
        np.testing.assert_array_equal(pipe.quantize_input(px), want)
