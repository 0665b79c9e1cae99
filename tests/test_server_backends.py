"""The LiteRT (TFLite) backend: a full-integer INT8 model served with batching, answering like LiteRT run
directly one image at a time; and the preprocessing arithmetic on its own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_agent_kit import color_images, tiny_kit  # noqa: F401 - fixture

from hi_runtime import protocol as p
from hi_runtime.offload_client import OffloadClient
from offload_server.backends import InputSpec
from offload_server.config import ModelConfig, ServerConfig
from offload_server.preprocess import BadTensor, Preprocessor
from offload_server.server import run_server_in_thread

pytestmark = pytest.mark.timeout(300)


def _direct_litert(path: Path, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    classes = []
    for img in images:
        q = np.clip(np.rint(img.astype(np.float32) / scale + zp), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        classes.append(int(interp.get_tensor(out["index"])[0].argmax()))
    return np.array(classes)


def test_litert_int8_model_batched_matches_direct(tiny_kit: Path) -> None:  # noqa: F811 - fixture
    model = tiny_kit / "local_int8.tflite"
    images, _ = color_images(24, seed=5)
    want = _direct_litert(model, images)
    config = ServerConfig(port=0, models=[ModelConfig("int8", str(model), backend="auto",
                                                      max_batch_size=8, max_queue_delay_us=100_000)])
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as client:
        assert "litert" in handle.server.models["int8"].backend.description
        ids = [client.submit(img, "int8") for img in images[:5]]  # one batch of 5 (padded to 8 inside)
        got = {r.request_id: r for r in (client.receive(timeout=30) for _ in ids)}
        assert [got[i].class_id for i in ids] == list(want[:5])
        assert max(r.server_timings["batch_size"] for r in got.values()) == 5
        # the device's own INT8 input tensor (q = pixel - 128) with its quant params, one at a time
        for img, w in zip(images[5:], want[5:]):
            q = (img.astype(np.int16) - 128).astype(np.int8)
            r = client.infer(q, "int8", quant=(1.0, -128), top_k=2, timeout=30)
            assert r.class_id == w and r.top_k[0][0] == w
            assert 0.0 <= r.top_k[1][1] <= r.top_k[0][1] <= 1.0


def _pre(**kw) -> Preprocessor:
    cfg = ModelConfig(id="m", path="unused", **{k: v for k, v in kw.items() if k != "spec"})
    return Preprocessor.build(cfg, kw.get("spec", InputSpec((32, 32, 3), np.dtype(np.float32), None)))


def test_preprocessing_arithmetic() -> None:
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pre = _pre()
    msg = p.Infer.from_array(img, "m", 1)
    np.testing.assert_array_equal(pre.to_pixels(msg), img.astype(np.float32))
    nchw = p.Infer.from_array(img.transpose(2, 0, 1), "m", 1, layout="NCHW")
    np.testing.assert_array_equal(pre.to_pixels(nchw), img.astype(np.float32))
    quant = p.Infer.from_array((img // 2).astype(np.int8), "m", 1, quant=(2.0, 0))
    np.testing.assert_array_equal(pre.to_pixels(quant), (img // 2 * 2).astype(np.float32))
    # normalization and an NCHW float model
    norm = _pre(pixel_scale=1 / 255, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], input_layout="NCHW",
                spec=InputSpec((3, 32, 32), np.dtype(np.float32), None))
    x = norm.to_model_input(pre.to_pixels(msg)[None])
    assert x.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(x[0, 1], (img[:, :, 1] / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    # int8 model input: quantized with the model's own parameters, clipped
    int8 = _pre(spec=InputSpec((32, 32, 3), np.dtype(np.int8), (1.0, -128)))
    np.testing.assert_array_equal(int8.to_model_input(pre.to_pixels(msg)[None])[0],
                                  (img.astype(np.int16) - 128).astype(np.int8))
    # resizing: a constant image stays constant; refusing to resize names the sizes
    small = p.Infer.from_array(np.full((8, 8, 3), 77, np.uint8), "m", 1)
    np.testing.assert_allclose(pre.to_pixels(small), 77.0, atol=1e-3)
    with pytest.raises(BadTensor, match="8x8"):
        _pre(resize="none").to_pixels(small)
    with pytest.raises(BadTensor, match="one image per request"):
        pre.to_pixels(p.Infer.from_array(np.zeros((2, 32, 32, 3), np.uint8), "m", 1))
