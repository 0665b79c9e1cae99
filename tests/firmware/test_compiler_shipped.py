"""Every shipped INT8 model (models/**/*_int8*.tflite), compiled to C, against tflite-micro and LiteRT.

Image-input models get 100 CIFAR-10 test images (10 per class, from the JPEG archive: a few accuracy points
below pristine CIFAR-10, irrelevant here since only byte equality is checked); models with other inputs
(early-exit segments taking trunk features) get 100 seeded random int8 tensors.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.firmware

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "models").glob("**/*_int8*.tflite"))
N_IMAGES = 100


def _cifar_images(archive: Path, per_class: int = N_IMAGES // 10) -> np.ndarray:
    """The first `per_class` images of each class from test.tar.gz, decoded without loading the whole set."""
    from PIL import Image

    counts: dict[str, int] = {}
    picked: list[tuple[str, np.ndarray]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith(".jpg"):
                continue
            cls = Path(member.name).parent.name
            if counts.get(cls, 0) >= per_class:
                continue
            data = tar.extractfile(member)
            assert data is not None
            img = np.asarray(Image.open(io.BytesIO(data.read())).convert("RGB"), dtype=np.uint8)
            picked.append((member.name, img))
            counts[cls] = counts.get(cls, 0) + 1
            if len(counts) == 10 and all(v >= per_class for v in counts.values()):
                break
    picked.sort(key=lambda t: t[0])
    return np.stack([img for _, img in picked])


def _quantize_images(images: np.ndarray, spec: Any, scale: float, zero_point: int) -> list[np.ndarray]:
    info = np.iinfo(np.int8 if spec.dtype == "int8" else np.uint8)
    q = np.clip(np.round(images.astype(np.float64) / scale) + zero_point, info.min, info.max)
    return [q[i: i + 1].astype(info.dtype).reshape(spec.shape) for i in range(len(q))]


def test_shipped_models_are_found_or_reported() -> None:
    if not SHIPPED:
        pytest.skip("no shipped INT8 models under models/ yet (models/**/*_int8*.tflite)")
    assert all(p.stat().st_size > 0 for p in SHIPPED)


@pytest.mark.slow
@pytest.mark.parametrize("model_path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_shipped_model_is_bit_exact(model_path: Path, request: pytest.FixtureRequest,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    from hi_firmware.compiler.emitter import c_identifier
    from hi_firmware.compiler.hostbuild import build_host_model
    from hi_runtime.backends import TFLiteBackend, TflmBackend
    from hi_firmware.compiler.testing import litert_agreeing_prefix

    mb = model_path.read_bytes()
    name = c_identifier(model_path.stem)
    work = tmp_path_factory.mktemp("shipped")
    hm, (_gen, graph, _plan) = build_host_model(mb, name, work, source_label=model_path.name)
    spec = hm.inputs[0]
    tin = graph.tensors[graph.inputs[0]]
    if len(hm.inputs) == 1 and tuple(spec.shape[1:]) == (32, 32, 3) and spec.dtype in ("int8", "uint8"):
        archive = request.getfixturevalue("cifar10_jpeg_dir") / "test.tar.gz"
        samples = [[x] for x in _quantize_images(_cifar_images(archive), spec, tin.scale, tin.zero_point)]
    else:
        rng = np.random.default_rng(0)
        samples = [[rng.integers(-128, 128, s.shape).astype(np.int8 if s.dtype == "int8" else np.uint8)
                    for s in hm.inputs] for _ in range(N_IMAGES)]
    assert len(samples) == N_IMAGES

    tflm = TflmBackend(mb)
    litert = TFLiteBackend(mb, "litert", reference=True)
    prefix = litert_agreeing_prefix(mb)
    if prefix is not None:
        hm_prefix, _ = build_host_model(prefix, name + "_prefix", work)
        litert_prefix = TFLiteBackend(prefix, "litert", reference=True)
    max_litert_diff = 0
    for i, xs in enumerate(samples):
        ours = hm.run(*xs)
        for o, t, s in zip(ours, tflm.run_many(*xs), hm.outputs):
            assert np.array_equal(o, np.asarray(t).reshape(o.shape)), f"{model_path.name} sample {i} output {s.name}"
        for o, t in zip(ours, litert.run_many(*xs)):
            max_litert_diff = max(max_litert_diff, int(np.abs(o.astype(int) - np.asarray(t).astype(int).reshape(o.shape)).max()))
        if prefix is not None:
            a = hm_prefix.run(*xs)[0]
            assert np.array_equal(a, litert_prefix.run_many(*xs)[0].reshape(a.shape)), f"{model_path.name} sample {i} (prefix)"
        else:
            assert max_litert_diff == 0
    # LiteRT's reference FULLY_CONNECTED and int8 SOFTMAX round differently from TFLite Micro (which the
    # firmware matches byte for byte above): on the shipped ResNet-8 the logits differ by one step on about
    # a fifth of the images and the softmax output by up to ~10 steps where it is steep.
    assert max_litert_diff <= 16


@pytest.mark.parametrize("model_path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_committed_generated_code_is_current(model_path: Path) -> None:
    """firmware/generated/<stem>/ (when committed) must equal a fresh compile: generation is deterministic."""
    from hi_firmware.compiler import compile_bytes
    from hi_firmware.compiler.emitter import c_identifier

    name = c_identifier(model_path.stem)
    out = REPO / "firmware" / "generated" / name
    if not out.exists():
        pytest.skip(f"no committed generated code for {model_path.name} (run: hi-firmware compile {model_path.relative_to(REPO)} --out firmware/generated/{name})")
    gen = compile_bytes(model_path.read_bytes(), name, model_path.name)[0]
    assert (out / f"hi_model_{name}.h").read_text() == gen.header, "regenerate: header is stale"
    assert (out / f"hi_model_{name}.c").read_text() == gen.source, "regenerate: source is stale"
