"""Other people's models in the agent: the input spec (normalization outside the model), the chance and
logits warnings, Edge TPU files; and the same input spec in the edge server (issue 18, items 1 and 6)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from foreign_kit import MEAN, STD, foreign, samples  # noqa: F401 - fixture

from hi_runtime.backends import BackendError, Classifier, open_backend
from hi_runtime.tensor_spec import TensorSpec
from hi_runtime.input_spec import IDENTITY, InputSpec, InputSpecError, find_for_model, sidecar_path

pytestmark = pytest.mark.timeout(300)

NORMALIZE = ["--input-scale", "1/255", "--input-mean", ",".join(map(str, MEAN)), "--input-std", ",".join(map(str, STD))]
SPEC = InputSpec(pixel_scale=1 / 255, mean=MEAN, std=STD)


def _direct(model: Path, images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Classes from LiteRT directly, normalizing and quantizing by hand (the reference)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    classes = []
    for img in images:
        x = ((img.astype(np.float32) * np.float32(spec.pixel_scale) - np.float32(spec.mean or 0.0))
             / np.float32(spec.std or 1.0))
        q = np.clip(np.round(x / np.float32(scale)) + zp, info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        classes.append(int(interp.get_tensor(out["index"])[0].argmax()))
    return np.array(classes)


def _run(argv: list[str], capsys, caplog) -> tuple[int, str, list[str]]:
    from hi_runtime.agent.cli import main

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hi_runtime.agent.strategies"):
        rc = main(argv)
    err = capsys.readouterr().err
    return rc, err, [r.getMessage() for r in caplog.records if r.name == "hi_runtime.agent.strategies"]


def _accuracy(log: Path) -> float:
    from measurements.logs import read_run_log

    recs = read_run_log(log).records
    return float(np.mean([r.final_class == r.label for r in recs]))


# ---- the input spec itself ---------------------------------------------------------------------------

def test_input_spec_apply_composes_with_the_tensors_own_quantization() -> None:
    px = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    tensor = TensorSpec("x", 0, (1, 3, 4, 5), np.dtype(np.int8), 0.02, 3)
    spec = InputSpec(pixel_scale=1 / 255, mean=MEAN, std=STD, layout="nchw")
    assert spec.layout == "NCHW" and spec.image_shape((3, 4, 5)) == (4, 5, 3)
    x = spec.apply(px, tensor)
    real = (px.astype(np.float32) * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
    want = np.clip(np.round(real / np.float32(0.02)) + 3, -128, 127).astype(np.int8).transpose(0, 3, 1, 2)
    assert x.dtype == np.int8 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, want)
    # a float tensor gets the real values; a uint8 tensor without quantization is rounded and saturated
    np.testing.assert_allclose(InputSpec(pixel_scale=2.0).apply(px, TensorSpec("f", 0, (1, 4, 5, 3), np.dtype(np.float32))),
                               px * 2.0)
    np.testing.assert_array_equal(InputSpec(pixel_scale=2.0).apply(px, TensorSpec("u", 0, (1, 4, 5, 3), np.dtype(np.uint8))),
                                  np.clip(px.astype(np.int32) * 2, 0, 255))


def test_input_spec_dict_form_and_its_errors(tmp_path: Path) -> None:
    assert InputSpec.from_dict(SPEC.to_dict()) == SPEC
    assert IDENTITY.is_identity and not SPEC.is_identity and not InputSpec(layout="NCHW").is_identity
    with pytest.raises(InputSpecError, match=r"unknown key\(s\) \['scale'\]"):
        InputSpec.from_dict({"scale": 0.5})  # a sidecar's typo is an error, not silently ignored
    with pytest.raises(InputSpecError, match="std must not contain 0"):
        InputSpec(std=(0.2, 0.0, 0.2))
    with pytest.raises(InputSpecError, match="NHWC"):
        InputSpec(layout="HWC")
    side = tmp_path / "m.input.json"
    side.write_text("not json")
    from hi_runtime import input_spec

    with pytest.raises(InputSpecError, match="not a JSON object"):
        input_spec.load(side)
    # 2 mean values for 3 channels does not fit the model
    with pytest.raises(InputSpecError, match="2 values but m takes 3 channels"):
        InputSpec(mean=(0.1, 0.2)).check(TensorSpec("x", 0, (1, 8, 8, 3), np.dtype(np.float32)), "m")


def test_the_shipped_resnet8_keeps_its_fast_path(repo_root: Path) -> None:
    """Its card's input entry (int8, NHWC, quantization scale 1 / zp -128) is the identity spec, and its
    input stays q = pixel ^ 0x80."""
    model = repo_root / "models" / "cifar10" / "resnet8_int8.tflite"
    spec, source = find_for_model(model)
    assert spec.is_identity and source.endswith("resnet8.json")  # the card's "scale" is quantization, not pixels
    clf = Classifier(open_backend(model), input_format=spec)
    assert clf._raw_pixels
    px = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(clf.preprocess(px), (px ^ 0x80).view(np.int8))


def test_sidecar_then_card_are_read_next_to_the_model(foreign: Path, tmp_path: Path) -> None:  # noqa: F811
    import shutil

    model = tmp_path / "resnet56_like.tflite"
    shutil.copy(foreign / "normalized_int8.tflite", model)
    assert find_for_model(model) is None
    card = {"card_version": 1, "name": "x", "artifacts": [
        {"file": model.name, "input": {"dtype": "int8", "layout": "NHWC", "scale": 0.016, "zero_point": -5,
                                       "pixel_scale": 1 / 255, "mean": list(MEAN), "std": list(STD)}}]}
    (tmp_path / "x.json").write_text(json.dumps(card))
    spec, source = find_for_model(model)
    assert spec == InputSpec(pixel_scale=1 / 255, mean=MEAN, std=STD, dtype="int8") and source.endswith("x.json")
    sidecar_path(model).write_text(json.dumps({"pixel_scale": 0.5}))
    assert find_for_model(model) == (InputSpec(pixel_scale=0.5), str(sidecar_path(model)))  # the sidecar wins


# ---- a model whose normalization layer was removed -----------------------------------------------------

def test_normalized_model_is_right_with_the_spec_and_at_chance_without(foreign: Path, tmp_path: Path, capsys,  # noqa: F811
                                                                       caplog) -> None:
    model = foreign / "normalized_int8.tflite"
    images, labels = samples(foreign)
    want = _direct(model, images, SPEC)
    assert (want == labels).mean() > 0.8  # the model is good when fed what it was trained on
    base = ["run", "--strategy", "local", "--model", str(model), "--input", f"npz:{foreign / 'samples.npz'}",
            "--decider", "", "--no-progress"]

    rc, err, warnings = _run(base + NORMALIZE + ["--log", str(tmp_path / "spec.jsonl")], capsys, caplog)
    assert rc == 0, err
    assert "local model input: pixel * 0.00392157 - mean" in err and "(from flags)" in err
    from measurements.logs import read_run_log

    recs = read_run_log(tmp_path / "spec.jsonl").records
    got = {int(r.sample_id): r.local_class for r in recs}
    assert [got[i] for i in range(len(images))] == list(want)  # exactly the hand-normalized answers
    assert _accuracy(tmp_path / "spec.jsonl") == pytest.approx((want == labels).mean())
    assert not warnings

    # the same spec from a sidecar next to the model
    import shutil

    copy = tmp_path / "sidecar" / model.name
    copy.parent.mkdir()
    shutil.copy(model, copy)
    sidecar_path(copy).write_text(json.dumps(SPEC.to_dict()))
    rc, err, warnings = _run(["run", "--strategy", "local", "--model", str(copy), "--input",
                              f"npz:{foreign / 'samples.npz'}", "--decider", "", "--no-progress", "--log",
                              str(tmp_path / "side.jsonl")], capsys, caplog)
    assert rc == 0 and "normalized_int8.input.json" in err and not warnings
    assert _accuracy(tmp_path / "side.jsonl") == pytest.approx((want == labels).mean())

    # without it: near chance, and ONE loud warning naming the causes
    rc, err, warnings = _run(base + ["--log", str(tmp_path / "raw.jsonl")], capsys, caplog)
    assert rc == 0, err
    assert _accuracy(tmp_path / "raw.jsonl") < 0.2
    chance = [w for w in warnings if "NEAR CHANCE" in w]
    assert len(chance) == 1 and len(warnings) == 1, warnings
    assert "--input-mean" in chance[0] and "class order" in chance[0]


def test_agent_and_server_normalize_with_the_same_spec(foreign: Path) -> None:  # noqa: F811
    """ModelConfig's pixel_scale/mean/std/input_layout build the core InputSpec, and the server's
    preprocessor gives the model exactly what the agent's Classifier gives it."""
    from offload_server.backends import InputSpec as ServerTensor
    from offload_server.config import ModelConfig
    from offload_server.preprocess import Preprocessor

    model = foreign / "normalized_int8.tflite"
    cfg = ModelConfig(id="m", path=str(model), pixel_scale=1 / 255, mean=list(MEAN), std=list(STD))
    assert cfg.input_spec() == InputSpec(pixel_scale=1 / 255, mean=MEAN, std=STD)
    backend = open_backend(model)
    pre = Preprocessor.build(cfg, ServerTensor(tuple(backend.input.shape[1:]), backend.input.dtype, backend.input.quant))
    assert isinstance(pre.normalization, InputSpec)
    images, _ = samples(foreign)
    clf = Classifier(backend, input_format=cfg.input_spec())
    np.testing.assert_array_equal(pre.to_model_input(images[:16].astype(np.float32)), clf.preprocess(images[:16]))


# ---- a uint8-I/O logits model ----------------------------------------------------------------------------

def test_uint8_logits_model_runs_and_gets_the_logits_hint(foreign: Path, tmp_path: Path, capsys, caplog) -> None:  # noqa: F811
    model = foreign / "logits_uint8.tflite"
    b = open_backend(model)
    assert b.input.dtype == np.uint8 and b.output().dtype == np.uint8
    images, labels = samples(foreign)
    rc, err, warnings = _run(["run", "--strategy", "local", "--model", str(model), "--input",
                              f"npz:{foreign / 'samples.npz'}", "--decider", "", "--no-progress", "--log",
                              str(tmp_path / "l.jsonl")], capsys, caplog)
    assert rc == 0, err
    assert _accuracy(tmp_path / "l.jsonl") == pytest.approx((_direct(model, images, IDENTITY) == labels).mean())
    assert _accuracy(tmp_path / "l.jsonl") > 0.8
    logits = [w for w in warnings if "logits" in w]
    assert len(logits) == 1 and "not probabilities" in logits[0] and not any("CHANCE" in w for w in warnings)


def test_chance_warning_mentions_logits_and_fires_once() -> None:
    from hi_runtime.agent.strategies import LocalSanity
    from hi_runtime.records import SampleRecord

    sanity = LocalSanity(10)
    for i in range(1000):
        rec = SampleRecord(i, "local", i % 10, 3.5, None, None, False, None, i % 10, False, (i * 7 + 1) % 10)
        sanity.count(rec)
        if i % 64 == 0:
            sanity.check()
    sanity.check()
    assert len(sanity.warnings) == 2  # logits once, chance once, however often it is checked
    assert "confidence reached 3.5" in sanity.warnings[0] and "logits" in sanity.warnings[1]
    few = LocalSanity(10)
    for i in range(299):  # too few labeled samples to say
        few.count(SampleRecord(i, "local", 0, 0.9, None, None, False, None, 0, False, 5))
    few.check()
    assert not few.warnings
    good = LocalSanity(2)
    for i in range(400):  # a two-class model at 75%: not near chance
        good.count(SampleRecord(i, "local", 0, 0.9, None, None, False, None, 0, False, 0 if i % 4 else 1))
    good.check()
    assert not good.warnings


# ---- Edge TPU files --------------------------------------------------------------------------------------

def edge_tpu_copy(model: Path, out: Path) -> Path:
    """The model with its first operator turned into the Edge TPU compiler's custom operator."""
    from hi_runtime.tflite_schema import read_model, schema, write_model

    fb = schema()
    m = read_model(model.read_bytes())
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
    code.customCode = "edgetpu-custom-op"
    code.version = 1
    m.operatorCodes.append(code)
    op = m.subgraphs[0].operators[0]
    op.opcodeIndex = len(m.operatorCodes) - 1
    op.builtinOptions, op.builtinOptionsType, op.customOptions = None, 0, [0, 0, 0, 0]
    out.write_bytes(write_model(m))
    return out


def test_edge_tpu_model_is_a_one_line_error_naming_the_cpu_file(foreign: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    from hi_runtime.agent.cli import main

    tpu = edge_tpu_copy(foreign / "normalized_int8.tflite", tmp_path / "model_edgetpu.tflite")
    with pytest.raises(BackendError) as err:
        open_backend(tpu)
    msg = str(err.value)
    assert "\n" not in msg and "Edge TPU" in msg and "CPU-compiled .tflite" in msg
    rc = main(["run", "--strategy", "local", "--model", str(tpu), "--input", f"npz:{foreign / 'samples.npz'}",
               "--decider", "", "--no-progress"])
    err_text = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err_text.splitlines() if ln.startswith("hi-agent run: error:")]
    assert len(lines) == 1 and "CPU-compiled .tflite" in lines[0] and "Traceback" not in err_text
