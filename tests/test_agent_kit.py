"""Tiny models and data for the agent, backend, offloader, demo and BLE tests (no tests in this file).

Everything is built from generated data: class k is colour k of a palette under heavy pixel noise, a few
samples are blends of two colours (hard for the tiny local model). Built once and cached in pytest's cache
directory (``.pytest_cache/d/hi_agent_models``), so only the first run pays TensorFlow's start-up.

* ``local_int8.tflite``: training.models tiny_cnn, one short epoch, full-integer INT8 (int8 in/out);
* ``server.onnx``: an exact "mean colour -> nearest palette colour" classifier written with onnx.helper
  (float32 [N,32,32,3] raw pixels in, softmax out, like the shipped server model);
* ``decider.json``: logistic regression on (p1, p2) of the local model, with its int8 form;
* ``ee.json`` + two INT8 segment files: an early-exit chain in the runtime's chain format.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KIT_VERSION = "3"
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


def _build_segments(images, labels, out: Path) -> Path:
    """A two-exit chain: segment 0 = conv stem -> (features, exit-0 scores); segment 1 = features -> scores."""
    import keras

    from training.export import export_int8_tflite

    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Rescaling(1 / 255.0)(inp)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem")(x)
    feats = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    e0 = L.Dense(10, activation="softmax", name="exit0")(L.GlobalAveragePooling2D()(feats))
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="trunk2")(feats)
    e1 = L.Dense(10, activation="softmax", name="exit1")(L.GlobalAveragePooling2D()(y))
    full = keras.Model(inp, [e0, e1])
    full.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                 loss=["sparse_categorical_crossentropy"] * 2)
    full.fit(images.astype(np.float32), [labels, labels], batch_size=32, epochs=1, verbose=0)
    seg0 = keras.Model(inp, {"features": feats, "scores": e0}, name="seg0")
    finp = keras.Input(feats.shape[1:], name="features_in")
    seg1 = keras.Model(finp, {"scores": full.get_layer("exit1")(L.GlobalAveragePooling2D()(
        full.get_layer("trunk2")(finp)))}, name="seg1")
    p0 = export_int8_tflite(seg0, images[:200], out / "ee_seg0.tflite", fold_scaling=False)
    feat_rep = seg0.predict(images[:200].astype(np.float32), verbose=0)["features"]
    seg1_path = _export_float_input_int8(seg1, feat_rep, out / "ee_seg1.tflite")
    return p0, seg1_path


def _export_float_input_int8(model, rep: np.ndarray, path: Path) -> Path:
    import tensorflow as tf

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


def _tensor_names(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return it.get_input_details(), it.get_output_details()


def _quant(detail) -> dict:
    s, z = detail["quantization"]
    return {"scale": float(s), "zero_point": int(z)}


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
    dec = dec.with_int8(*clf.output_spec.quant)
    dec.save(out / "decider.json")

    seg0, seg1 = _build_segments(train_x, train_y, out)
    in0, outs0 = _tensor_names(seg0)
    in1, outs1 = _tensor_names(seg1)
    by_shape0 = {len(o["shape"]): o for o in outs0}
    feat_d, score0_d = by_shape0[4], by_shape0[2]
    chain = {
        "format": "hi-ee-chain/1",
        "class_names": CLASS_NAMES,
        "segments": [
            {"file": seg0.name, "input": in0[0]["name"],
             "outputs": {"features": feat_d["name"], "scores": score0_d["name"]},
             "input_quant": _quant(in0[0]), "scores_quant": _quant(score0_d), "features_quant": _quant(feat_d)},
            {"file": seg1.name, "input": in1[0]["name"], "outputs": {"features": None, "scores": outs1[0]["name"]},
             "input_quant": _quant(in1[0]), "scores_quant": _quant(outs1[0])},
        ],
        "policy": {"exit_thresholds": [0.6], "final_decider": "decider.json"},
    }
    (out / "ee.json").write_text(json.dumps(chain, indent=2))
    np.savez_compressed(out / "samples.npz", images=val_x[:200], labels=val_y[:200],
                        class_names=np.array(CLASS_NAMES))
    (out / "VERSION").write_text(KIT_VERSION)
    return out


@pytest.fixture(scope="session", name="tiny_kit")
def tiny_kit_fixture(request) -> Path:
    """Directory with the tiny models (built once, cached across runs)."""
    base = Path(request.config.cache.mkdir("hi_agent_models"))
    if (base / "VERSION").exists() and (base / "VERSION").read_text() == KIT_VERSION:
        return base
    pytest.importorskip("tensorflow", reason="building the tiny test models needs TensorFlow")
    shutil.rmtree(base, ignore_errors=True)
    tmp = base.with_name(base.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build_kit(tmp)
    try:
        tmp.rename(base)
    except OSError:  # another session built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return base


tiny_kit = tiny_kit_fixture  # the fixture under its own name too (tests/test_server_backends.py imports it)


def server_config(model_path: Path, model_id: str = "cifar10", **kwargs):
    """A loopback ServerConfig serving ``model_path`` (ephemeral port)."""
    from offload_server.config import ModelConfig, ServerConfig

    model = ModelConfig(id=model_id, path=str(model_path), backend="auto")
    return ServerConfig(host="127.0.0.1", port=0, models=[model], **kwargs)
