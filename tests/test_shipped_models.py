"""The shipped CIFAR-10 models, checked independently of how they were trained.

These run the committed files with the inference engines a user has (ai-edge-litert, TFLite Micro,
ONNX Runtime) on the JPEG CIFAR-10 test split, and hold them to the floors the project promises.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[1] / "models" / "cifar10"
RESNET8 = MODELS / "resnet8_int8.tflite"
SERVER = MODELS / "server.onnx"


@pytest.fixture(scope="module")
def test_split(cifar10_jpeg_dir):
    from hi_runtime.datasets import load_dataset

    return load_dataset("cifar10", cifar10_jpeg_dir, "test", progress=False)


def test_resnet8_int8_contract():
    """int8 in (pixel - 128) and int8 softmax out, 32x32x3 NHWC, only operators the firmware compiles."""
    from hi_runtime.backends import TFLiteBackend

    tm = TFLiteBackend(RESNET8)
    assert tm.input.dtype == np.int8 and list(tm.input.shape) == [1, 32, 32, 3]
    assert tm.input.quant == (1.0, -128)
    assert tm.outputs[0].dtype == np.int8 and tm.output().quant == (1 / 256, -128)
    assert set(tm.op_names()) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
                                  "MAX_POOL_2D", "MEAN", "PAD", "RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE"}


def test_tflite_micro_and_litert_reference_kernels_agree(test_split):
    """TFLite Micro (the microcontroller reference the firmware matches byte for byte) and LiteRT's
    reference kernels (BUILTIN_REF) give identical outputs for the shipped INT8 ResNet-8. This holds
    because its classifier is exported as a 1x1 CONV_2D: on a FULLY_CONNECTED the two engines' rounding
    differs by one step on about one image in seven (training.models.dense_head_as_conv)."""
    from hi_runtime.backends import TFLiteBackend, TflmBackend


    model_bytes = RESNET8.read_bytes()
    # the issue asks for 20 images; 200 make the check sharp (the FULLY_CONNECTED form differed in the
    # final output on about 3% of images, so 20 would often have passed it too)
    x = TFLiteBackend(RESNET8).input.quantize(test_split.images[::50][:200])
    assert len(x) == 200
    tflm, ref = TflmBackend(model_bytes), TFLiteBackend(model_bytes, "litert", reference=True)
    for img in x:
        np.testing.assert_array_equal(tflm.run_many(img[None])[0], ref.run_many(img[None])[0])


def test_resnet8_int8_meets_its_floor(test_split):
    from hi_runtime.backends import TFLiteBackend

    probs = TFLiteBackend(RESNET8).predict(test_split.images, batch=500)
    acc = float((probs.argmax(1) == test_split.labels).mean())
    assert acc >= 0.80, f"INT8 ResNet-8 scores {acc:.4f} on the JPEG CIFAR-10 test split (floor 0.80)"
    card = json.loads((MODELS / "resnet8.json").read_text())
    shipped = {a["file"]: a for a in card["artifacts"]}["resnet8_int8.tflite"]["test_accuracy"]
    assert abs(shipped - acc) < 1e-9, "the card's accuracy must be what the shipped file scores"


def test_server_onnx_meets_its_floor(test_split):
    from hi_runtime.backends import OnnxBackend

    model = OnnxBackend(SERVER)
    inp = model.session.get_inputs()[0]
    assert inp.type == "tensor(float)" and list(inp.shape[1:]) == [32, 32, 3]
    probs = model.predict(test_split.images.astype(np.float32))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)  # softmax inside the model
    acc = float((probs.argmax(1) == test_split.labels).mean())
    assert acc >= 0.88, f"server.onnx scores {acc:.4f} on the JPEG CIFAR-10 test split (floor 0.88)"
