"""End to end on tiny models: `hi-train decider`, `hi-train early-exit`, `hi-train thresholds`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_early_exit import colored_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A CIFAR-10-style image-folder dataset of synthetic images, a tiny INT8 local model and a tiny
    float server model."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from PIL import Image

    from hi_runtime.datasets import CIFAR10_CLASSES
    from training.export import export_float_tflite, export_int8_tflite
    from training.models import build_model

    root = tmp_path_factory.mktemp("hi")
    for split, n, seed in (("train", 1500, 1), ("test", 300, 3)):
        ds = colored_images(n, seed)
        for i, (img, y) in enumerate(zip(ds.images, ds.labels)):
            d = root / "data" / split / CIFAR10_CLASSES[y]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:05d}.png")
    tr = colored_images(1500, 1)
    for name, epochs in (("local", 2), ("server", 4)):
        keras.utils.set_random_seed(0)
        m = build_model("tiny_cnn")
        m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
        m.fit(tr.images.astype("float32"), tr.labels, batch_size=16, epochs=epochs, verbose=0)
        if name == "local":
            export_int8_tflite(m, tr.images[:200], root / "local_int8.tflite")
        else:
            export_float_tflite(m, root / "server.tflite")
    return root


def hi_train(root: Path, monkeypatch, *argv: str) -> int:
    from training.cli import main

    monkeypatch.chdir(root)
    monkeypatch.setenv("HI_CACHE_DIR", str(root / "cache"))
    return main(list(argv))


DATA = ("--data", "data", "--val-size", "300")


def test_pipeline(workspace, monkeypatch, capsys):
    from hi_runtime.decider import Decider
    from hi_runtime.early_exit import NEVER, SegmentChain
    from training.decider import local_outputs
    from training.early_exit import exit_probabilities

    root = workspace
    # 1. the decider of the plain local model
    assert hi_train(root, monkeypatch, "decider", "--model", "local_int8.tflite", "--server", "server.tflite", *DATA,
                    "--out", "out/decider_local", "--vectors", "out/vec.json") == 0
    out = capsys.readouterr().out
    assert "agrees with the float form on all 300 test rows: True" in out
    card = json.loads((root / "out/decider_local.card.json").read_text())
    assert card["card_version"] == 1 and 0 < card["test"]["f1"] <= 1
    assert card["test"]["hi_accuracy"] == pytest.approx(card["test"]["hi_accuracy_eq2"])
    assert "JPEG" in card["dataset"]["note"]
    dec = Decider.load(root / "out/decider_local.json")
    assert dec.int8 is not None and (root / "out/decider_local.h").read_text().count("HI_DECIDER_LOCAL_A") >= 2
    from hi_runtime.datasets import load_dataset

    test = load_dataset("cifar10", root / "data", "test", use_cache=False, progress=False)
    lo = local_outputs(root / "local_int8.tflite", test.images, use_cache=False)
    r = dec.accept(lo.probs)
    assert 1 - r.mean() == pytest.approx(card["test"]["offload_ratio"])
    assert np.array_equal(r, dec.accept_int8(lo.raw, lo.scale, lo.zero_point))
    # bound to the model it was fitted for (issue 18): hash, output kind and quantization
    from hi_runtime.decider import DeciderModelMismatch, OutputSpec, file_sha256

    spec = OutputSpec("int8_scores", lo.scale, lo.zero_point)
    assert dec.model.sha256 == file_sha256(root / "local_int8.tflite") and dec.model.file == "local_int8.tflite"
    assert dec.check_model(root / "local_int8.tflite", spec) == []
    with pytest.raises(DeciderModelMismatch):
        dec.check_model(root / "server.tflite", spec)
    # published weights bound to the same model take its output quantization
    assert hi_train(root, monkeypatch, "decider", "--coefficients", "2,-1", "--intercept", "-100", "--int8-scores",
                    "--model", "local_int8.tflite", "--out", "out/pub") == 0
    pub = Decider.load(root / "out/pub.json")
    assert pub.model == dec.model and pub.int8.matches(lo.scale, lo.zero_point)
    top = -np.sort(-lo.raw.astype(np.int64), axis=1)
    assert np.array_equal(pub.accept_int8(lo.raw, lo.scale, lo.zero_point), 2 * top[:, 0] - top[:, 1] - 100 >= 0)
    capsys.readouterr()

    # 2. an early-exit tiny CNN, trained from scratch briefly, exported as a chain
    assert hi_train(root, monkeypatch, "early-exit", "--arch", "tiny_cnn", *DATA, "--epochs-branch", "0",
                    "--epochs-joint", "3", "--lr-joint", "0.05", "--batch-size", "16", "--no-augment",
                    "--branch-width", "16", "--no-arena", "--out", "out/ee_tiny") == 0
    out = capsys.readouterr().out
    assert "identical scores at every exit on 200/200" in out
    chain = SegmentChain.load(root / "out/ee_tiny.json")
    assert [s.file.name for s in chain.segments] == ["ee_tiny_seg1_int8.tflite", "ee_tiny_seg2_int8.tflite"]
    ee_card = json.loads((root / "out/ee_tiny.card.json").read_text())
    assert ee_card["macs"] == sum(ee_card["macs_per_segment"]) and ee_card["thresholds"] is None

    # 3. the final exit's decider, then the threshold search writing the policy
    assert hi_train(root, monkeypatch, "decider", "--model", "out/ee_tiny_int8.tflite", "--output", "final_scores",
                    "--server", "server.tflite", *DATA, "--out", "out/decider_ee_tiny", "--no-compare") == 0
    capsys.readouterr()
    assert hi_train(root, monkeypatch, "thresholds", "--chain", "out/ee_tiny.json", "--decider",
                    "out/decider_ee_tiny.json", "--server", "server.tflite", "--baseline-model", "local_int8.tflite",
                    "--baseline-decider", "out/decider_local.json", *DATA, "--qos", "hi,0.5",
                    "--out", "out/ee_tiny_thresholds", "--write-policy", "0.5", "--vectors", "out/ee_vec.json") == 0
    out = capsys.readouterr().out
    assert "QoS 0.5: EE-HI" in out
    vec = json.loads((root / "out/ee_vec.json").read_text())
    assert len(vec["cases"]) >= 100 and vec["exit_bounds_int8"] == SegmentChain.load(
        root / "out/ee_tiny.json").policy.exit_bounds_int8(SegmentChain.load(root / "out/ee_tiny.json").scores_quants()[:1])
    summary = json.loads((root / "out/ee_tiny_thresholds.json").read_text())
    row = next(r for r in summary["rows"] if r["qos"] == "0.5" and r["policy"] == "ee-hi")
    assert row["val"]["accuracy"] >= 0.5
    assert (root / "out/ee_tiny_thresholds.csv").read_text().startswith("policy,")
    assert (root / "out/ee_tiny_thresholds.png").stat().st_size > 1000
    chain = SegmentChain.load(root / "out/ee_tiny.json")
    assert chain.policy.thresholds == [NEVER if t is None else t for t in row["exit_thresholds"]]
    assert chain.decider_file == "decider_ee_tiny.json"
    assert chain.policy.decider.threshold == pytest.approx(row["decider_threshold"])
    ee_card = json.loads((root / "out/ee_tiny.card.json").read_text())
    assert ee_card["thresholds"]["test"]["accuracy"] == pytest.approx(row["test"]["accuracy"])
    # the runtime policy loaded from disk reproduces the reported test numbers
    names = [s.scores for s in chain.segments]
    raws, _ = exit_probabilities(chain.path.parent / chain.single_model["file"], test.images, names)
    o = chain.policy.decide(raws, chain.scores_quants())
    assert float(o.offload.mean()) == pytest.approx(row["test"]["offload_ratio"])
    assert [float(np.mean(o.exit_index == k)) for k in range(2)] == pytest.approx(row["test"]["exit_fractions"])
    assert summary["rows"][0]["policy"] == "ee" and {r["policy"] for r in summary["rows"]} >= {"ee-hi-3way", "hi"}

    # 4. the three-way policy's point written into the chain (hi-ee-chain/2 when it offloads early)
    assert hi_train(root, monkeypatch, "thresholds", "--chain", "out/ee_tiny.json", "--server", "server.tflite",
                    "--baseline-model", "local_int8.tflite", "--baseline-decider", "out/decider_local.json", *DATA,
                    "--qos", "hi", "--offload-step", "0.1", "--out", "out/ee_tiny_thresholds3", "--decider-ms", "0.25",
                    "--write-policy", "hi", "--write-from", "ee-hi-3way", "--vectors", "out/ee_vec3.json") == 0
    capsys.readouterr()
    summary = json.loads((root / "out/ee_tiny_thresholds3.json").read_text())
    # HI at its own threshold is searched as well, and costed like every other row (decider time included)
    own = next(r for r in summary["rows"] if r["policy"] == "hi (decider's own threshold)")
    hi_own = [r for r in summary["rows"] if r["policy"] == "hi" and r["decider_threshold"] == own["decider_threshold"]]
    assert hi_own and hi_own[0]["test"]["cost_ms"] == pytest.approx(own["test"]["cost_ms"])
    r3 = next(r for r in summary["rows"] if r["qos"] == "hi" and r["policy"] == "ee-hi-3way")
    r2 = next(r for r in summary["rows"] if r["qos"] == "hi" and r["policy"] == "ee-hi")
    assert r3["val"]["cost_ms"] <= r2["val"]["cost_ms"] + 1e-9  # the larger space is never worse on validation
    chain = SegmentChain.load(root / "out/ee_tiny.json")
    assert chain.policy.offload_thresholds == r3["offload_thresholds"]
    d = json.loads((root / "out/ee_tiny.json").read_text())
    assert d["format"] == ("hi-ee-chain/2" if chain.policy.three_way else "hi-ee-chain/1")
    o = chain.policy.decide(raws, chain.scores_quants())
    assert float(o.offload.mean()) == pytest.approx(r3["test"]["offload_ratio"])
    vec = json.loads((root / "out/ee_vec3.json").read_text())
    assert ("offload_bounds_int8" in vec) == chain.policy.three_way
    assert summary["ee_hi_vs_hi"] and {c["policy"] for c in summary["ee_hi_vs_hi"]} == {"ee-hi", "ee-hi-3way"}
    # the second search replaced the first one's point: the provenance is still the decider's own fit
    op = json.loads((root / "out/decider_ee_tiny.json").read_text())["operating_point"]
    assert op["goal"].endswith("QoS hi") and op["fitted_at"].get("by") != "hi-train thresholds"
    assert "fitted_at" not in op["fitted_at"]
    fit = op["fitted_at"]["threshold"]
    assert str(fit) in json.loads((root / "out/decider_ee_tiny.card.json").read_text())["threshold_search"]["note"]


def test_cli_errors_name_the_fix(workspace, monkeypatch, capsys):
    root = workspace
    assert hi_train(root, monkeypatch, "decider", "--model", "local_int8.tflite", *DATA, "--features", "rich",
                    "--out", "out/bad") == 2
    assert "entropy" in capsys.readouterr().err
    assert hi_train(root, monkeypatch, "decider", "--model", "missing.tflite", *DATA, "--out", "out/bad") == 2
    assert "does not exist" in capsys.readouterr().err
    assert hi_train(root, monkeypatch, "decider", "--model", "local_int8.tflite", "--output", "nope", *DATA,
                    "--out", "out/bad") == 2
    assert "no output 'nope'" in capsys.readouterr().err
    assert hi_train(root, monkeypatch, "thresholds", "--chain", "out/none.json", "--server", "server.tflite", *DATA,
                    "--out", "out/t") == 2
    assert "does not exist" in capsys.readouterr().err


def test_qos_entries_read_the_shared_grammar():
    """hi-train thresholds --qos reads an accuracy as hi-agent and hi-bench do (0.9, 90%, accuracy=0.9)."""
    from hi_runtime.qos import QoSError
    from training.thresholds_cli import _accuracy

    assert _accuracy("0.9") == _accuracy("90%") == _accuracy("accuracy=0.9") == _accuracy("acc=90%") == 0.9
    assert _accuracy("hi") is None and _accuracy("local+2") is None
    for bad, says in (("1.5", "did you mean 1.5%"), ("accuracy=0.9;latency=5", "minimum accuracies"),
                      ("latency=5", "minimum accuracies"), ("speed=3", "unknown QoS key")):
        with pytest.raises(QoSError, match=says):
            _accuracy(bad)
