"""Early exits: the runtime policy (exact int8 form), the chain JSON, and tiny BranchyNet models exported
as INT8 segment chains that reproduce the single-model form exactly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hi_runtime.decider import Decider
from hi_runtime.early_exit import (
    NEVER,
    EarlyExitError,
    ExitPolicy,
    Quant,
    SegmentChain,
    SegmentSpec,
    exit_threshold_int8,
    requantize,
    run_chain,
)

VECTORS = Path(__file__).parent / "vectors" / "ee_vectors.json"


# ----------------------------------------------------------------------------------------------------
# Runtime policy (numpy only)
# ----------------------------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(t=st.one_of(st.floats(0.0, 1.1), st.just(NEVER)), scale=st.floats(0.001, 0.02), zp=st.integers(-128, 10))
def test_exit_threshold_int8_is_exact(t, scale, zp):
    bound = exit_threshold_int8(t, scale, zp)
    q = np.arange(-128, 128)
    assert np.array_equal(q - zp >= bound, (q - zp) * scale >= t)


def _fake_chain(tmp_path: Path, thresholds, decider=None) -> SegmentChain:
    q = Quant(1 / 256, -128)
    segs = [SegmentSpec(tmp_path / f"s{k}.tflite", "image" if k == 0 else f"features{k}",
                        "final_scores" if k == len(thresholds) else f"exit{k + 1}_scores",
                        None if k == len(thresholds) else f"features{k + 1}", q, q, q, macs=100)
            for k in range(len(thresholds) + 1)]
    return SegmentChain(segs, ExitPolicy(thresholds, decider), path=tmp_path / "c.json")


def test_run_chain_matches_vectorized_policy(tmp_path):
    """run_chain (one sample, segment by segment) and ExitPolicy.decide (all exits at once) agree, in
    int8 and in float, and stop running segments after the exit."""
    rng = np.random.default_rng(0)
    n, c = 300, 10
    scores = [rng.integers(-128, 60, (n, c)).astype(np.int8) for _ in range(3)]
    for s in scores:  # make some rows confident
        s[rng.random(n) < 0.4, rng.integers(0, c)] = 120
    dec = Decider(features=("p1", "p2"), coefficients=[6.0, -4.0], intercept=-1.0, threshold=0.7)
    chain = _fake_chain(tmp_path, [0.8, 0.6], dec)
    q = chain.scores_quants()
    vec = chain.policy.decide(scores, q)
    vec_f = chain.policy.decide([qq.dequantize(s) for qq, s in zip(q, scores)])
    for i in range(n):
        calls = []

        def run_segment(k, x, i=i, calls=calls):
            calls.append(k)
            return (np.full((1, 4), k, dtype=np.int8) if k < 2 else None), scores[k][i:i + 1]

        r = run_chain(chain, run_segment, np.zeros((1, 4), dtype=np.int8))
        assert (r.exit_index, r.predicted_class, r.offload) == (vec.exit_index[i], vec.predicted[i], vec.offload[i])
        assert calls == list(range(r.exit_index + 1)) and r.segments_run == r.exit_index + 1
    assert np.array_equal(vec.exit_index, vec_f.exit_index) and np.array_equal(vec.offload, vec_f.offload)
    assert set(np.unique(vec.exit_index)) == {0, 1, 2} and vec.offload.any() and not vec.offload.all()


def test_offload_only_at_final_exit_and_never_threshold(tmp_path):
    chain = _fake_chain(tmp_path, [NEVER], Decider.max_softmax(0.99))
    s = [np.full((1, 10), 127, dtype=np.int8), np.full((1, 10), -100, dtype=np.int8)]
    out = chain.policy.decide(s, chain.scores_quants())
    assert out.exit_index[0] == 1 and out.offload[0]
    chain.policy.thresholds = [0.0]
    out = chain.policy.decide(s, chain.scores_quants())
    assert out.exit_index[0] == 0 and not out.offload[0]


def test_chain_json_round_trip_and_errors(tmp_path):
    dec = Decider.max_softmax(0.7)
    dec.save(tmp_path / "dec.json")
    chain = _fake_chain(tmp_path, [0.85])
    chain.decider_file = "dec.json"
    chain.save()
    loaded = SegmentChain.load(tmp_path / "c.json")
    assert loaded.policy.thresholds == [0.85]
    assert loaded.policy.decider.threshold == 0.7
    assert loaded.segments[1].input == "features1" and loaded.segments[0].features == "features1"
    assert loaded.segments[0].file == tmp_path / "s0.tflite"
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["segments"][0]["file"] == "s0.tflite"  # relative to the JSON
    assert d["policy"]["exit_bounds_int8"] == [exit_threshold_int8(0.85, 1 / 256, -128)]
    bad = dict(d, segments=[{"file": "x"}])
    with pytest.raises(EarlyExitError, match="missing"):
        SegmentChain.from_dict(bad, tmp_path / "c.json")
    with pytest.raises(EarlyExitError, match="need 1 exit thresholds"):
        SegmentChain.from_dict(dict(d, policy={"exit_thresholds": []}), tmp_path / "c.json")
    with pytest.raises(EarlyExitError, match="does not exist"):
        SegmentChain.load(tmp_path / "missing.json")
    (tmp_path / "dec.json").unlink()
    with pytest.raises(EarlyExitError, match="final decider"):
        SegmentChain.load(tmp_path / "c.json")


@settings(max_examples=80, deadline=None)
@given(o=st.one_of(st.floats(0.0, 1.1), st.none()), scale=st.floats(0.001, 0.02), zp=st.integers(-128, 10))
def test_offload_bound_int8_is_exact(o, scale, zp):
    from hi_runtime.early_exit import offload_bound_int8

    bound = offload_bound_int8(o, scale, zp)
    q = np.arange(-128, 128)
    if o is None:
        assert bound is None
        return
    assert np.array_equal(q - zp < bound, (q - zp) * scale < o)


def _three_way_scores(rng, n=400, c=10, exits=3):
    scores = [rng.integers(-128, 60, (n, c)).astype(np.int8) for _ in range(exits)]
    for s in scores:  # some confident rows, some in between
        s[rng.random(n) < 0.35, rng.integers(0, c)] = 120
        s[rng.random(n) < 0.3, rng.integers(0, c)] = 40
    return scores


def test_three_way_run_chain_matches_vectorized_policy(tmp_path):
    """With offload rules at the early exits, run_chain and ExitPolicy.decide agree (int8 and float): a
    sample is offloaded at an early exit when it neither exits nor passes that exit's offload threshold,
    and no later segment runs."""
    rng = np.random.default_rng(1)
    scores = _three_way_scores(rng)
    dec = Decider(features=("p1", "p2"), coefficients=[6.0, -4.0], intercept=-1.0, threshold=0.7)
    chain = _fake_chain(tmp_path, [0.8, 0.6], dec)
    chain.policy = ExitPolicy([0.8, 0.6], dec, [0.5, None])
    q = chain.scores_quants()
    vec = chain.policy.decide(scores, q)
    vec_f = chain.policy.decide([qq.dequantize(s) for qq, s in zip(q, scores)])
    conf0 = q[0].dequantize(scores[0]).max(axis=1)
    early = (vec.exit_index == 0) & vec.offload
    assert early.any() and np.all(conf0[early] < 0.5) and np.all(conf0[vec.exit_index > 0] >= 0.5)
    assert not ((vec.exit_index == 1) & vec.offload).any()  # no rule at exit 2
    assert ((vec.exit_index == 2) & vec.offload).any()  # the final decider still offloads
    for i in range(len(scores[0])):
        calls = []

        def run_segment(k, x, i=i, calls=calls):
            calls.append(k)
            return (np.full((1, 4), k, dtype=np.int8) if k < 2 else None), scores[k][i:i + 1]

        r = run_chain(chain, run_segment, np.zeros((1, 4), dtype=np.int8))
        assert (r.exit_index, r.predicted_class, r.offload) == (vec.exit_index[i], vec.predicted[i], vec.offload[i])
        assert calls == list(range(r.exit_index + 1)) and r.segments_run == r.exit_index + 1
    assert np.array_equal(vec.exit_index, vec_f.exit_index) and np.array_equal(vec.offload, vec_f.offload)
    # the two-way policy is the special case "never offload early"
    two = ExitPolicy([0.8, 0.6], dec).decide(scores, q)
    same = ExitPolicy([0.8, 0.6], dec, [None, None]).decide(scores, q)
    assert np.array_equal(two.exit_index, same.exit_index) and np.array_equal(two.offload, same.offload)
    # the exit rule comes first: a threshold above the exit's makes every non-exiting sample offload there
    allout = ExitPolicy([0.8, 0.6], dec, [0.9, None]).decide(scores, q)
    assert np.all(allout.offload[allout.exit_index == 0] == (conf0[allout.exit_index == 0] < 0.8))
    assert not (allout.exit_index > 0).any()


def test_chain_json_versions_the_three_way_policy(tmp_path):
    from hi_runtime.early_exit import FORMAT, FORMAT_THREE_WAY, offload_bound_int8

    chain = _fake_chain(tmp_path, [0.85])
    chain.save()
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["format"] == FORMAT == "hi-ee-chain/1"
    assert "offload_thresholds" not in d["policy"] and "offload_bounds_int8" not in d["policy"]
    chain.policy = ExitPolicy([0.85], None, [0.4])
    chain.save()
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["format"] == FORMAT_THREE_WAY == "hi-ee-chain/2"
    assert d["policy"]["offload_thresholds"] == [0.4]
    assert d["policy"]["offload_bounds_int8"] == [offload_bound_int8(0.4, 1 / 256, -128)] == [103]
    loaded = SegmentChain.load(tmp_path / "c.json")
    assert loaded.policy.offload_thresholds == [0.4] and loaded.policy.three_way
    with pytest.raises(EarlyExitError, match="offload rules need 'hi-ee-chain/2'"):
        SegmentChain.from_dict(dict(d, format=FORMAT), tmp_path / "c.json")
    with pytest.raises(EarlyExitError, match="hi-ee-chain/1 and hi-ee-chain/2"):
        SegmentChain.from_dict(dict(d, format="hi-ee-chain/9"), tmp_path / "c.json")
    with pytest.raises(EarlyExitError, match="one per early exit"):
        ExitPolicy([0.85], None, [0.4, 0.2])
    with pytest.raises(EarlyExitError, match="number or null"):
        ExitPolicy([0.85], None, [float("nan")])


def test_requantize():
    a, b = Quant(0.1, -10), Quant(0.2, 0)
    q = np.array([-10, -9, -8, 0, 127], dtype=np.int8)
    assert np.array_equal(requantize(q, a, a), q)
    assert requantize(q, a, b).tolist() == [0, 1, 1, 5, 69]


@pytest.mark.parametrize("name", ["ee_vectors.json", "ee56_vectors.json"])
def test_shipped_ee_vectors_match_runtime(name):
    """tests/vectors/ee_vectors.json and ee56_vectors.json (for the C firmware) agree with this runtime."""
    path = VECTORS.with_name(name)
    if not path.exists():
        pytest.skip(f"{path} not generated yet")
    data = json.loads(path.read_text())
    quants = [Quant(q["scale"], q["zero_point"]) for q in data["scores_quant"]]
    dec = Decider.from_dict(data["final_decider"]) if data.get("final_decider") else None
    pol = ExitPolicy([NEVER if t is None else t for t in data["exit_thresholds"]], dec, data.get("offload_thresholds"))
    assert pol.exit_bounds_int8(quants[:-1]) == data["exit_bounds_int8"]
    if "offload_bounds_int8" in data:
        assert pol.offload_bounds_int8(quants[:-1]) == data["offload_bounds_int8"]
    for case in data["cases"]:
        scores = [np.array([s], dtype=np.int8) for s in case["scores"]]
        out = pol.decide(scores, quants)
        assert (int(out.exit_index[0]), int(out.predicted[0]), bool(out.offload[0])) == \
            (case["exit"], case["class"], case["offload"])


# ----------------------------------------------------------------------------------------------------
# Tiny BranchyNet models (TensorFlow)
# ----------------------------------------------------------------------------------------------------

def colored_images(n: int, seed: int):
    """Images whose class is their dominant color plus noise: learnable in one epoch by a tiny CNN."""
    from hi_runtime.datasets import Dataset

    rng = np.random.default_rng(seed)
    base = np.random.default_rng(99).integers(30, 226, (10, 3))
    labels = rng.integers(0, 10, n)
    noise = rng.normal(0, 45, (n, 32, 32, 3))
    imgs = np.clip(base[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return Dataset(imgs, labels, [str(i) for i in range(10)], "synthetic")


@pytest.fixture(scope="module")
def tiny_chain(tmp_path_factory):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.early_exit import EETrainConfig, export_early_exit, train_early_exit

    train, val = colored_images(2400, 1), colored_images(200, 2)
    # ~300 steps, so BatchNorm's moving statistics settle (inference mode uses them)
    cfg = EETrainConfig(arch="tiny_cnn", branch_width=16, epochs_branch=0, epochs_joint=2, lr_joint=0.05,
                        batch_size=16, augment=False, loss_weights=[0.5, 1.0])
    model, history = train_early_exit(cfg, train, val, verbose=0, log=lambda *_: None)
    out = tmp_path_factory.mktemp("ee") / "ee_tiny"
    exp = export_early_exit(model, train.images[:200], out, class_names=train.class_names,
                            check_images=val.images[:1])
    return model, exp, history, colored_images(150, 3)


@pytest.mark.slow
def test_tiny_chain_segments_equal_single_model(tiny_chain):
    from hi_runtime.backends import ChainRunner
    from training.early_exit import FIRMWARE_OPS, exit_probabilities, tflite_ops_and_macs
    from training.models import count_params_and_macs

    model, exp, history, test = tiny_chain
    assert [h["phase"] for h in history] == ["joint", "joint"]
    chain = SegmentChain.load(exp.chain.path)
    assert chain.num_exits == 2 and chain.segments[1].input == "features1"
    assert chain.check_feature_quantization() == []
    assert set(exp.ops) <= FIRMWARE_OPS
    assert sum(exp.macs_per_segment) == count_params_and_macs(model).macs
    for f in exp.segment_files:
        ops, _ = tflite_ops_and_macs(f.read_bytes())
        assert set(ops) <= FIRMWARE_OPS, ops
    names = [s.scores for s in chain.segments]
    raw, probs = exit_probabilities(exp.single_model, test.images, names, reference=True)
    # both exits learned something
    assert all((p.argmax(1) == test.labels).mean() > 0.3 for p in probs)
    conf1 = probs[0].max(1)
    chain.policy = ExitPolicy([float(np.median(conf1))], Decider.max_softmax(float(np.median(probs[1].max(1)))))
    vec = chain.policy.decide(raw, chain.scores_quants())
    assert 0 < (vec.exit_index == 0).sum() < len(test.labels)
    runner = ChainRunner(chain, "litert", reference=True)
    s_in = chain.segments[0].input_quant
    for i in range(len(test.labels)):
        x = np.clip(test.images[i:i + 1].astype(np.int32) + s_in.zero_point, -128, 127).astype(np.int8)
        r = run_chain(chain, runner, x)
        assert (r.exit_index, r.predicted_class, r.offload) == (vec.exit_index[i], vec.predicted[i], vec.offload[i])
        np.testing.assert_array_equal(r.scores, raw[r.exit_index][i])


@pytest.mark.slow
def test_tiny_chain_segments_run_on_tflite_micro(tiny_chain):
    """The segments load and run in the TFLite Micro interpreter (what the firmware embeds)."""
    from tflite_micro import runtime

    _, exp, _, test = tiny_chain
    chain = SegmentChain.load(exp.chain.path)
    x = np.clip(test.images[:1].astype(np.int32) - 128, -128, 127).astype(np.int8)
    raw, _ = __import__("training.early_exit", fromlist=["x"]).exit_probabilities(
        exp.single_model, test.images[:1], [s.scores for s in chain.segments], reference=True)
    feats = None
    for k, f in enumerate(exp.segment_files):
        interp = runtime.Interpreter.from_bytes(f.read_bytes(), arena_size=200_000)
        interp.set_input(x if k == 0 else feats, 0)
        interp.invoke()
        n_out = 2 if k < chain.num_exits - 1 else 1
        outs = [interp.get_output(i) for i in range(n_out)]  # TFLM reports no names: tell them by rank
        scores = next(o for o in outs if o.ndim == 2)
        np.testing.assert_array_equal(scores[0], raw[k][0])
        feats = next((o for o in outs if o.ndim == 4), None)


def test_branch_presets_and_cut_points():
    pytest.importorskip("keras")
    from training.early_exit import EXIT_PRESETS, build_early_exit_model

    assert EXIT_PRESETS["resnet8"] == ("s2_out",)
    assert EXIT_PRESETS["resnet56"] == ("s1b2_out", "s3b1_out")
    m = build_early_exit_model("resnet8")
    assert [o.name for o in m.outputs] != [] and len(m.outputs) == 2
    m56 = build_early_exit_model("resnet56")
    assert len(m56.outputs) == 3
    with pytest.raises(ValueError, match="no layer"):
        build_early_exit_model("tiny_cnn", exits=["nope"])


@pytest.mark.slow
def test_exit_inside_a_residual_block_is_refused(tmp_path):
    """A tap whose tensor does not cut the graph (a skip connection crosses it) cannot be a segment
    boundary; the exporter says so instead of writing a broken chain."""
    from training.early_exit import EarlyExitExportError, build_early_exit_model, export_early_exit

    m = build_early_exit_model("tiny_cnn", exits=["conv1"], branch_width=8)  # the add also reads relu0
    imgs = colored_images(16, 0).images
    with pytest.raises(EarlyExitExportError, match="cut point"):
        export_early_exit(m, imgs, tmp_path / "ee_bad")


@pytest.mark.slow
def test_three_segment_chain_equals_single_model(tmp_path):
    """Two early exits (the ResNet-56 layout, here on tiny_cnn, the first with two leading 3x3 convs as
    `--branch-convs 2,0` gives it): three segments, two cuts, every exit's scores identical to the single
    model's; a reloaded model still finds its taps."""
    import keras

    from hi_runtime.backends import ChainRunner
    from training.early_exit import build_early_exit_model, exit_probabilities, exit_taps, export_early_exit

    m = build_early_exit_model("tiny_cnn", exits=["relu0", "add"], branch_width=8, branch_convs=[2, 0])
    convs = [l for l in m.layers if l.name.startswith("exit1_c") and l.name[-1].isdigit()]
    # relu0 is 16x16x8: the first conv halves it to 8x8, the second keeps 8x8; channels double each time
    assert [(l.name, l.strides, l.filters) for l in convs] == [("exit1_c1", (2, 2), 16), ("exit1_c2", (1, 1), 32)]
    assert not any(l.name.startswith("exit2_c") for l in m.layers)
    m.save(tmp_path / "ee3.keras")
    assert exit_taps(keras.models.load_model(tmp_path / "ee3.keras", compile=False)) == ("relu0", "add")
    with pytest.raises(ValueError, match="conv counts"):
        build_early_exit_model("tiny_cnn", exits=["relu0", "add"], branch_convs=[2])
    imgs = colored_images(40, 5).images
    exp = export_early_exit(m, imgs, tmp_path / "ee3", check_images=imgs[:1])
    chain = SegmentChain.load(exp.chain.path)
    assert [s.input for s in chain.segments] == ["image", "features1", "features2"]
    assert [s.scores for s in chain.segments] == ["exit1_scores", "exit2_scores", "final_scores"]
    assert chain.check_feature_quantization() == []
    raw, _ = exit_probabilities(exp.single_model, imgs, [s.scores for s in chain.segments], reference=True)
    runner = ChainRunner(chain, "litert", reference=True)
    for i in range(len(imgs)):
        x = (imgs[i:i + 1].astype(np.int32) - 128).astype(np.int8)
        for k in range(3):
            x, scores = runner(k, x)
            np.testing.assert_array_equal(scores[0], raw[k][i])


@pytest.mark.parametrize("name,n_images", [("ee_resnet8", 12), ("ee_resnet56", 6)])
def test_shipped_ee_chain(repo_root, name, n_images):
    """models/cifar10/ee_resnet{8,56}.json: segments load, use only firmware operators, and reproduce the
    single-model form (exits, classes, offloads) on random images; the ResNet-56 chain carries the
    three-way point (offload straight from exit 1) that docs/decider.md reports."""
    path = repo_root / "models" / "cifar10" / f"{name}.json"
    if not path.exists():
        pytest.skip("shipped early-exit chain not generated yet (hi-train early-exit)")
    pytest.importorskip("ai_edge_litert")
    from hi_runtime.backends import ChainRunner
    from training.early_exit import FIRMWARE_OPS, exit_probabilities, tflite_ops_and_macs

    chain = SegmentChain.load(path)
    assert chain.check_feature_quantization() == []
    assert chain.policy.decider is not None and chain.policy.decider.int8 is not None
    for s in chain.segments:
        ops, macs = tflite_ops_and_macs(s.file.read_bytes())
        assert set(ops) <= FIRMWARE_OPS and macs == s.macs
    if name == "ee_resnet56":
        assert chain.policy.offload_thresholds[0] is not None
    imgs = np.random.default_rng(0).integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    single = chain.path.parent / chain.single_model["file"]
    raw, _ = exit_probabilities(single, imgs, [s.scores for s in chain.segments], reference=True)
    vec = chain.policy.decide(raw, chain.scores_quants())
    runner = ChainRunner(chain, "litert", reference=True)
    for i in range(len(imgs)):
        r = run_chain(chain, runner, (imgs[i:i + 1].astype(np.int32) - 128).astype(np.int8))
        assert (r.exit_index, r.predicted_class, r.offload) == (vec.exit_index[i], vec.predicted[i], vec.offload[i])


# ----------------------------------------------------------------------------------------------------
# Joint training from scratch: the loss against its formula, and exits that learn
# ----------------------------------------------------------------------------------------------------

def _np_softened_kl(t, s, temp):
    def soft(p):
        z = np.log(np.clip(p, 1e-7, 1.0)) / temp
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    pt, ps = soft(t), soft(s)
    return (pt * (np.log(pt) - np.log(ps))).sum(axis=1)


@pytest.mark.parametrize("with_teacher,teach_exits", [(False, False), (True, False), (True, True)])
def test_early_exit_loss_matches_its_formula(with_teacher, teach_exits):
    from training.early_exit import early_exit_loss_fn

    rng = np.random.default_rng(3)
    n, c, e, temp, a, b = 6, 4, 3, 3.0, 0.4, 0.7
    w = [0.5, 1.0, 2.0]
    probs = rng.dirichlet(np.ones(c), size=(n, e)).astype(np.float32)  # [n, exit, class]
    labels = rng.integers(0, c, n)
    teacher = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    y_true = np.concatenate([labels[:, None], teacher], 1) if with_teacher else labels[:, None].astype(np.float32)
    loss = early_exit_loss_fn(e, c, w, self_distill=a, distill_weight=b if with_teacher else 0.0,
                              temperature=temp, teach_exits=teach_exits)
    got = np.asarray(loss(y_true.astype(np.float32), probs.reshape(n, e * c)))
    ce = -np.log(np.clip(probs[np.arange(n), :, labels], 1e-7, 1.0))  # [n, exit]
    want = np.zeros(n)
    for k in range(e):
        if k == e - 1 or teach_exits:  # teach_exits: the teacher, not the final exit, teaches every exit
            term = (1 - b) * ce[:, k] + b * temp ** 2 * _np_softened_kl(teacher, probs[:, k], temp) \
                if with_teacher else ce[:, k]
        else:
            term = (1 - a) * ce[:, k] + a * temp ** 2 * _np_softened_kl(probs[:, -1], probs[:, k], temp)
        want += w[k] * term
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # a = b = 0 is BranchyNet's weighted sum of cross-entropies
    plain = early_exit_loss_fn(e, c, w)(labels[:, None].astype(np.float32), probs.reshape(n, e * c))
    np.testing.assert_allclose(np.asarray(plain), (ce * np.asarray(w)).sum(1), rtol=1e-4)


def test_self_distillation_stops_the_gradient_at_the_final_exit():
    import tensorflow as tf

    from training.early_exit import early_exit_loss_fn

    c = 3
    logits = tf.Variable([[0.2, -0.1, 0.5, 1.0, 0.0, -1.0]])  # exit 1 then final
    loss = early_exit_loss_fn(2, c, [1.0, 0.0], self_distill=1.0)  # only exit 1's term, only the KL part
    with tf.GradientTape() as tape:
        p = tf.concat([tf.nn.softmax(logits[:, :c]), tf.nn.softmax(logits[:, c:])], axis=1)
        value = loss(tf.constant([[0.0]]), p)
    grad = tape.gradient(value, logits).numpy()
    assert np.abs(grad[0, :c]).sum() > 0 and np.allclose(grad[0, c:], 0.0)


@pytest.mark.slow
def test_frozen_trunk_branch_learns_from_a_teacher_even_with_useless_labels(tmp_path, monkeypatch):
    """--init with --teacher: the branch trained on the frozen trunk learns the teacher's function from
    shuffled labels (high accuracy on the true labels), the same phase without the teacher stays near
    chance, and the frozen final exit stays the init model."""
    import dataclasses

    from hi_runtime.datasets import Dataset
    from test_training import color_dataset
    from training.early_exit import EETrainConfig, train_early_exit
    from training.export import export_onnx
    from training.train import TrainConfig, train_model

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    clean, val = color_dataset(6000, 0), color_dataset(300, 1)
    plain = train_model(TrainConfig(arch="tiny_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0), clean,
                        val, verbose=0)
    plain.save(tmp_path / "plain.keras")
    teacher = export_onnx(plain, tmp_path / "teacher.onnx")
    shuffled = Dataset(clean.images[:3000], np.random.default_rng(0).permutation(clean.labels[:3000]),
                       clean.class_names)
    cfg = EETrainConfig(arch="tiny_cnn", init=str(tmp_path / "plain.keras"), epochs_branch=2, epochs_joint=0,
                        lr_branch=0.05, batch_size=16, augment=False, teacher=str(teacher), distill_weight=1.0,
                        temperature=1.0)
    taught, history = train_early_exit(cfg, shuffled, val, verbose=0, log=lambda *_: None)
    alone, _ = train_early_exit(dataclasses.replace(cfg, teacher=""), shuffled, val, verbose=0, log=lambda *_: None)
    x = val.images.astype(np.float32)
    exit1_taught, final_taught = taught.predict(x, verbose=0)
    exit1_alone = alone.predict(x, verbose=0)[0]
    assert [h["phase"] for h in history] == ["branches", "branches"]
    assert (exit1_alone.argmax(1) == val.labels).mean() < 0.3
    assert (exit1_taught.argmax(1) == val.labels).mean() > 0.6
    np.testing.assert_allclose(final_taught, plain.predict(x, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_joint_training_from_scratch_exits_learn_and_resume(tmp_path):
    """Both exits of the tiny model learn a learnable toy task (well above chance), and a stopped run
    resumes from its checkpoint instead of starting over."""
    from test_training import color_dataset
    from training.early_exit import EEJointConfig, train_early_exit_joint
    from training.train import TrainConfig, TrainingError

    train, val = color_dataset(3000, 0), color_dataset(300, 1)
    ck = tmp_path / "ck"
    tc = TrainConfig(arch="tiny_cnn", epochs=3, batch_size=32, lr=0.05, warmup_epochs=0, ckpt_dir=str(ck))
    model = train_early_exit_joint(EEJointConfig(train=tc, self_distill=0.5), train, val, verbose=0)
    probs = model.predict(val.images.astype(np.float32), verbose=0)
    accs = [float((p.argmax(1) == val.labels).mean()) for p in probs]
    assert len(accs) == 2 and min(accs) > 0.2, accs  # 10 classes: chance is 0.1
    lines = (ck / "history.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "val_acc_exit1" in lines[-1]
    with pytest.raises(TrainingError, match="--resume"):
        train_early_exit_joint(EEJointConfig(train=tc), train, val, verbose=0)
    tc5 = TrainConfig(**{**tc.to_dict(), "epochs": 4})
    train_early_exit_joint(EEJointConfig(train=tc5), train, val, resume=True, verbose=0)
    assert len((ck / "history.jsonl").read_text().splitlines()) == 4  # one more epoch, not four


@pytest.mark.slow
def test_warm_restart_starts_from_the_trained_model_not_from_scratch(tmp_path):
    """--restart-from: the run starts from the trained early-exit model's weights (with a learning rate too
    small to move them, the result keeps its accuracy, where a run from scratch stays near chance); a model
    built differently (another branch width) is refused with the difference named, not half copied."""
    from test_training import color_dataset
    from training.early_exit import EEJointConfig, RestartMismatch, train_early_exit_joint
    from training.train import TrainConfig

    train, val = color_dataset(3000, 0), color_dataset(300, 1)
    x = val.images.astype(np.float32)

    def run(name: str, epochs: int, lr: float, **kw):
        tc = TrainConfig(arch="tiny_cnn", epochs=epochs, batch_size=32, lr=lr, warmup_epochs=0, augment=False,
                         ckpt_dir=str(tmp_path / name))
        model = train_early_exit_joint(EEJointConfig(train=tc, **kw), train, val, verbose=0, log=lambda *_: None)
        return model, [float((p.argmax(1) == val.labels).mean()) for p in model.predict(x, verbose=0)]

    trained, acc = run("first", 3, 0.05)
    assert min(acc) > 0.4, acc
    trained.save(tmp_path / "ee.keras")
    _, restarted = run("restart", 1, 1e-7, restart_from=str(tmp_path / "ee.keras"))
    _, scratch = run("scratch", 1, 1e-7)
    assert restarted == pytest.approx(acc, abs=0.02), (restarted, acc)
    assert max(scratch) < 0.3, scratch
    with pytest.raises(RestartMismatch, match="same --arch, --exits, --branch-width"):
        run("other", 1, 1e-7, restart_from=str(tmp_path / "ee.keras"), branch_width=16)


@pytest.mark.slow
def test_output_map_check_runs_the_core_runner_and_catches_a_swap(repo_root):
    """verify_output_map (run at export) compares the converted file, run through hi_runtime.backends, with
    the Keras model on one image: the shipped chain's single model and its Keras source agree under the
    right map (on the image where the exits disagree most, where INT8 drifts furthest from float), exchanging
    the exit and the final scores is refused, and so is an output far from every reference."""
    pytest.importorskip("keras")
    import keras

    from hi_runtime.agent.inputs import load_npz
    from hi_runtime.backends import TFLiteBackend
    from training.early_exit import EarlyExitExportError, export_model, verify_output_map
    from training.models import fold_input_scaling

    shipped = repo_root / "models" / "cifar10"
    full = (shipped / "ee_resnet8_int8.tflite").read_bytes()
    backend = TFLiteBackend(full)
    mapping = {o.name: o.index for o in backend.outputs}
    assert set(mapping) == {"exit1_scores", "final_scores"}
    images = load_npz(shipped / "demo_samples.npz").images[:50]
    raw = backend.predict_raw(images)
    exit1, final = (backend.output(n).dequantize(raw[n]) for n in ("exit1_scores", "final_scores"))
    i = int(np.argmax(np.abs(exit1 - final).max(axis=1)))  # an image on which the two exits disagree
    assert np.abs(exit1[i] - final[i]).max() > 0.3
    check = fold_input_scaling(export_model(keras.models.load_model(shipped / "ee_resnet8.keras", compile=False)))
    verify_output_map(full, mapping, check, images[i:i + 1])
    swapped = {"exit1_scores": mapping["final_scores"], "final_scores": mapping["exit1_scores"]}
    with pytest.raises(EarlyExitExportError, match="misordered"):
        verify_output_map(full, swapped, check, images[i:i + 1])

    def shifted(x, training=False):  # every reference moved by half a probability: no output matches any
        return {k: np.asarray(v) + 0.5 for k, v in check(x, training=training).items()}

    with pytest.raises(EarlyExitExportError, match="far from its own"):
        verify_output_map(full, mapping, shifted, images[i:i + 1])
