"""Third-party-style models for tests/test_foreign_models.py and tests/test_single_file_ee.py (no tests here).

Models "made elsewhere", the way users arrive with them, trained in seconds on the agent kit's colour data
(tests/test_agent_kit.py: class k is colour k of a palette under pixel noise), in video range (16..239):

* ``normalized_int8.tflite``: a Keras model trained with a Rescaling(1/255) + Normalization(mean, std)
  front end, exported WITHOUT it (full-integer INT8, int8 I/O), so its input must be normalized outside,
  like CIFAR-10 ResNet-56 variants that expect per-channel mean/std input;
* ``logits_uint8.tflite``: no softmax at the end (logits), full-integer INT8 with uint8 input and output;
* ``ee_if.tflite``: a two-exit early-exit model made the paper's way, with ``tf.cond``: the IF returns the
  first confident exit's probabilities and the exit index (float, the converter's default);
  ``ee_if_int8main.tflite``: the same function converted to INT8 with int8 I/O (the converter quantizes
  the main graph only; the IF branches stay float);
* ``samples.npz``: labeled validation images.

Built once and cached in pytest's cache directory (``.pytest_cache/d/hi_foreign_models``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from support.cached_build import cached_build
from test_agent_kit import color_images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FOREIGN_VERSION = "3"
MEAN = (0.4914, 0.4822, 0.4465)  # the usual CIFAR-10 statistics of 0..1 pixels
STD = (0.2470, 0.2435, 0.2616)


def _fit(model, x, y, *, logits: bool = False, epochs: int = 3) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits), metrics=["accuracy"])
    model.fit(x.astype(np.float32), y, batch_size=32, epochs=epochs, verbose=0)


def _core(logits: bool = False):
    import keras

    L = keras.layers
    return keras.Sequential([L.Conv2D(8, 3, strides=2, activation="relu"), L.GlobalAveragePooling2D(),
                             L.Dense(10, activation=None if logits else "softmax")], name="core")


def build_normalized(out: Path, x, y) -> dict:
    import keras
    import tensorflow as tf

    from training.export import convert_full_int8

    L = keras.layers
    core = _core()
    full = keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255, name="scale"),
                             L.Normalization(mean=list(MEAN), variance=[s * s for s in STD], name="normalize"),
                             core])
    _fit(full, x, y)
    # the exported model is the trained network without its normalization front end
    inner = keras.Sequential([keras.Input((32, 32, 3)), core])
    normalized = ((x[:300].astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32))
    data = convert_full_int8(tf.lite.TFLiteConverter.from_keras_model(inner), normalized)
    (out / "normalized_int8.tflite").write_bytes(data)
    return {"normalized_keras_accuracy_on_train": float(full.evaluate(x, y, verbose=0)[1])}


def build_logits(out: Path, x, y) -> None:
    import keras
    import tensorflow as tf

    L = keras.layers
    model = keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255), _core(logits=True)])
    _fit(model, x, y, logits=True)

    def rep():
        for i in range(200):
            yield [x[i:i + 1].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    (out / "logits_uint8.tflite").write_bytes(conv.convert())


def build_if_early_exit(out: Path, x, y, val_x) -> dict:
    """Trunk -> exit 1; tf.cond(max(p1) >= t, (p1, 0), (rest of the network, 1)); t = the median exit-1
    confidence on validation images, so both exits are taken."""
    import keras
    import tensorflow as tf

    L = keras.layers
    inp = keras.Input((32, 32, 3))
    trunk = keras.Sequential([L.Rescaling(1 / 255), L.Conv2D(8, 3, strides=2, activation="relu")], name="trunk")
    head1 = keras.Sequential([L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")], name="exit1")
    rest = keras.Sequential([L.Conv2D(16, 3, strides=2, activation="relu"), L.GlobalAveragePooling2D(),
                             L.Dense(10, activation="softmax")], name="final")
    f = trunk(inp)
    joint = keras.Model(inp, [head1(f), rest(f)])
    joint.compile(optimizer=keras.optimizers.Adam(0.01), loss=["sparse_categorical_crossentropy"] * 2)
    joint.fit(x.astype(np.float32), [y, y], batch_size=32, epochs=2, verbose=0)
    conf = head1(trunk(val_x.astype(np.float32))).numpy().max(1)
    threshold = float(np.float32(np.median(conf)))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")])
    def early_exit(image):
        feats = trunk(image)
        p1 = head1(feats)
        return tf.cond(tf.reduce_max(p1) >= threshold, lambda: (p1, tf.constant(0)),
                       lambda: (rest(feats), tf.constant(1)))

    holder = tf.Module()
    holder.fn = early_exit
    conv = tf.lite.TFLiteConverter.from_concrete_functions([early_exit.get_concrete_function()], holder)
    (out / "ee_if.tflite").write_bytes(conv.convert())

    def rep():
        for i in range(100):
            yield [x[i:i + 1].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([early_exit.get_concrete_function()], holder)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    (out / "ee_if_int8main.tflite").write_bytes(conv.convert())
    return {"ee_threshold": threshold}


def video_range(images: np.ndarray) -> np.ndarray:
    """Pixels in 16..239, like a camera's video-range output. The palette data holds many exact zeros
    (dark channels under clipped noise), which survive the saturation a wrongly normalized int8 input
    suffers and would leave a few classes recognizable; photos rarely do."""
    return (16 + images.astype(np.uint16) * 224 // 256).astype(np.uint8)


def build_foreign(out: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    x, y = color_images(3000, seed=20)
    val_x, val_y = color_images(500, seed=21)
    x, val_x = video_range(x), video_range(val_x)
    info = build_normalized(out, x, y)
    build_logits(out, x, y)
    info.update(build_if_early_exit(out, x, y, val_x))
    np.savez_compressed(out / "samples.npz", images=val_x, labels=val_y)
    (out / "info.json").write_text(json.dumps(info))
    (out / "VERSION").write_text(FOREIGN_VERSION)
    return out


@pytest.fixture(scope="session")
def foreign(request) -> Path:
    """Directory with the foreign models (built once, cached across runs)."""
    return cached_build(request, "hi_foreign_models", FOREIGN_VERSION, build_foreign)


def samples(foreign_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(foreign_dir / "samples.npz") as z:
        return z["images"], z["labels"]
