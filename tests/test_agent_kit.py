"""Tiny models and data for the agent, backend, offloader, demo and BLE tests (no tests in this file).

Everything is built from generated data: class k is colour k of a palette under heavy pixel noise, a few
samples are blends of two colours (hard for the tiny local model). Built once and cached in pytest's cache
directory (``.pytest_cache/d/hi_agent_models``), so only the first run pays TensorFlow's start-up.

* ``local_int8.tflite``: training.models tiny_cnn, one short epoch, full-integer INT8 (int8 in/out);
* ``server.onnx``: an exact "mean colour -> nearest palette colour" classifier written with onnx.helper
  (float32 [N,32,32,3] raw pixels in, softmax out, like the shipped server model);
* ``decider.json``: logistic regression on (p1, p2) of the local model, with its int8 form;
* ``ee.json`` + ``ee_seg{1,2}_int8.tflite`` + ``ee_decider.json``: a two-exit tiny BranchyNet made by the
  project's own exporter (training.early_exit), in the runtime's chain format.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from support.cached_build import cached_build

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KIT_VERSION = "5"
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [0, 0, 128]], np.float32)
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def color_images(n: int, seed: int = 0, blend: float = 0.25, noise: float = 70.0):
    """uint8 NHWC images and labels; a ``blend`` fraction mixes the class colour 60/40 with another."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    base = PALETTE[labels].copy()
    hard = rng.random(n) < blend
    other = (labels + rng.integers(1, 10, n)) % 10
    base[hard] = 0.6 * PALETTE[labels[hard]] + 0.4 * PALETTE[other[hard]]
    imgs = base[:, None, None, :] + rng.normal(0, noise, (n, 32, 32, 3))
    return np.clip(imgs, 0, 255).astype(np.uint8), labels.astype(np.int64)


def build_server_onnx(path: Path) -> Path:
    """Mean colour, then softmax over -||m - palette_k||^2 / T (expanded to a MatMul + bias)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    temp = 200.0
    w = (2.0 * PALETTE.T / temp).astype(np.float32)  # [3, 10]
    b = (-(PALETTE ** 2).sum(1) / temp).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["mw"]),
        helper.make_node("Add", ["mw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "mean_colour_server",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
                     numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _train_local(images, labels):
    import keras

    from training.models import build_model

    model = build_model("tiny_cnn")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images.astype(np.float32), labels, batch_size=16, epochs=1, verbose=0)
    return model


def _build_chain(train_x, train_y, val_x, out: Path) -> Path:
    """A two-exit tiny_cnn BranchyNet trained and exported by the project's own early-exit code
    (training.early_exit), so the agent is tested on the real chain format; the exit threshold is the
    median exit-1 confidence on validation data, so both exits are taken."""
    from hi_runtime.backends import open_backend
    from hi_runtime.decider import Decider
    from hi_runtime.early_exit import ExitPolicy, SegmentChain
    from hi_runtime.datasets import Dataset
    from training.early_exit import EETrainConfig, export_early_exit, train_early_exit

    train = Dataset(train_x[:2400], train_y[:2400], CLASS_NAMES)
    val = Dataset(val_x[:200], np.zeros(200, np.int64), CLASS_NAMES)
    cfg = EETrainConfig(arch="tiny_cnn", branch_width=16, epochs_branch=0, epochs_joint=2, lr_joint=0.05,
                        batch_size=16, augment=False, loss_weights=[0.5, 1.0])
    model, _ = train_early_exit(cfg, train, val, verbose=0, log=lambda *_: None)
    Decider.max_softmax(0.5).save(out / "ee_decider.json")
    exp = export_early_exit(model, train_x[:200], out / "ee", class_names=CLASS_NAMES,
                            decider_file="ee_decider.json", check_images=val_x[:1])
    chain = SegmentChain.load(exp.chain.path)
    seg0 = open_backend(chain.segments[0].file)
    spec = seg0.output(chain.segments[0].scores)
    conf = spec.dequantize(np.concatenate([seg0.run(seg0.input.quantize(val_x[i:i + 1]))[spec.name]
                                           for i in range(len(val_x))])).max(1)
    threshold = float(np.median(conf))
    late = conf < threshold  # samples that reach the final exit: offload the less confident half of them
    seg1 = open_backend(chain.segments[1].file)
    spec1 = seg1.output(chain.segments[1].scores)
    feats = chain.segments[0].features
    final_conf = [spec1.dequantize(seg1.run(seg0.run(seg0.input.quantize(val_x[i:i + 1]))[seg0.output(feats).name])
                                   [spec1.name]).max() for i in np.flatnonzero(late)]
    Decider.max_softmax(float(np.median(final_conf))).save(out / "ee_decider.json")
    chain = SegmentChain.load(exp.chain.path)  # reload: picks up the final decider's threshold
    chain.policy = ExitPolicy([threshold], chain.policy.decider)
    chain.save()
    return chain.path


def build_kit(out: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    from hi_runtime.backends import Classifier, open_backend
    from hi_runtime.decider import Decider, compute_features
    from training.export import export_int8_tflite

    out.mkdir(parents=True, exist_ok=True)
    train_x, train_y = color_images(6000, seed=0)
    val_x, val_y = color_images(600, seed=1)
    model = _train_local(train_x, train_y)
    export_int8_tflite(model, train_x[:300], out / "local_int8.tflite")
    build_server_onnx(out / "server.onnx")

    clf = Classifier(open_backend(out / "local_int8.tflite"))
    pred = clf.predict(val_x)
    correct = (pred.classes == val_y).astype(int)
    if correct.min() == correct.max():
        raise RuntimeError("tiny local model is all-right or all-wrong on validation data; cannot fit a decider")
    feats = compute_features(pred.probs, ("p1", "p2"))
    lr = LogisticRegression().fit(feats, correct)
    dec = Decider(features=("p1", "p2"), coefficients=lr.coef_[0], intercept=float(lr.intercept_[0]),
                  threshold=0.5, meta={"note": "tiny test decider"})
    # operating point: offload the 30% least trusted validation samples (so tests see both paths)
    dec = dec.with_threshold(float(np.quantile(dec.score(pred.probs), 0.3)))
    dec = dec.with_int8(*clf.output_spec.quant)
    dec.save(out / "decider.json")

    _build_chain(train_x, train_y, val_x, out)
    np.savez_compressed(out / "samples.npz", images=val_x[:200], labels=val_y[:200],
                        class_names=np.array(CLASS_NAMES))
    (out / "VERSION").write_text(KIT_VERSION)
    return out


@pytest.fixture(scope="session", name="tiny_kit")
def tiny_kit_fixture(request) -> Path:
    """Directory with the tiny models (built once, cached across runs)."""
    return cached_build(request, "hi_agent_models", KIT_VERSION, build_kit)


tiny_kit = tiny_kit_fixture  # the fixture under its own name too (tests/test_server_backends.py imports it)


def server_config(model_path: Path, model_id: str = "cifar10", **kwargs):
    """A loopback ServerConfig serving ``model_path`` (ephemeral port)."""
    from offload_server.config import ModelConfig, ServerConfig

    model = ModelConfig(id=model_id, path=str(model_path), backend="auto")
    return ServerConfig(host="127.0.0.1", port=0, models=[model], **kwargs)
