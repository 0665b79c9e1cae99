"""Models, training, export and the hi-train CLI, on tiny models and generated data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [0, 0, 128]], np.float32)


def color_dataset(n: int, seed: int = 0, size: int = 32):
    """A learnable generated dataset: class k is colour k of a palette under heavy pixel noise."""
    from hi_runtime.datasets import Dataset

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    imgs = PALETTE[labels][:, None, None, :] + rng.normal(0, 60, (n, size, size, 3))
    return Dataset(np.clip(imgs, 0, 255).astype(np.uint8), labels, [f"c{i}" for i in range(10)])


@pytest.fixture(scope="module")
def trained_tiny():
    from training.train import TrainConfig, train_model

    # 375 steps: enough for BatchNorm's moving averages (momentum 0.99) to forget their initial values
    train, val = color_dataset(6000, 0), color_dataset(300, 1)
    model = train_model(TrainConfig(arch="tiny_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0),
                        train, val, verbose=0)
    return model, train


def test_resnet8_matches_mlperf_tiny_reference_counts():
    from training.models import build_model, count_params_and_macs

    stats = count_params_and_macs(build_model("resnet8"))
    # MLPerf Tiny's reference ResNet-8: 78,666 parameters (BN statistics included), 12.5 M MACs
    assert abs(stats.params - 78_666) / 78_666 < 0.01
    assert abs(stats.macs - 12.5e6) / 12.5e6 < 0.01


def test_other_architectures_have_expected_sizes():
    from training.models import build_model, count_params_and_macs

    r56 = count_params_and_macs(build_model("resnet56"))
    assert 0.84e6 < r56.params < 0.87e6  # He et al.: 0.85 M
    assert 120e6 < r56.macs < 130e6
    r18 = count_params_and_macs(build_model("resnet18", 1000, (224, 224, 3)))
    assert abs(r18.params - 11.69e6) / 11.69e6 < 0.01  # torchvision's ResNet-18: 11.69 M
    assert abs(r18.macs - 1.82e9) / 1.82e9 < 0.02


def test_unknown_architecture_is_a_clear_error():
    from training.models import build_model

    with pytest.raises(ValueError, match="unknown architecture 'resnet7'"):
        build_model("resnet7")


def test_fold_input_scaling_is_exact_and_removes_rescaling():
    import keras

    from training.models import build_model, fold_input_scaling

    model = build_model("resnet8")
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    folded = fold_input_scaling(model)
    assert not any(isinstance(l, keras.layers.Rescaling) for l in folded.layers)
    np.testing.assert_allclose(model.predict(x, verbose=0), folded.predict(x, verbose=0), atol=1e-5)


def test_augmentation_keeps_content_and_shape():
    import tensorflow as tf

    from training.train import augment_batch

    imgs = np.random.default_rng(0).integers(1, 256, (16, 32, 32, 3), dtype=np.uint8)
    out = augment_batch(tf.constant(imgs)).numpy()
    assert out.shape == imgs.shape and out.dtype == np.uint8
    # every output is a shifted (and maybe flipped) crop of its input: padding zeros plus original pixels
    for a, b in zip(imgs, out):
        assert set(np.unique(b)) <= set(np.unique(a)) | {0}
    assert not np.array_equal(out, imgs)


def test_tiny_model_learns_and_int8_export_agrees_with_keras(trained_tiny, tmp_path):
    from hi_runtime.backends import TFLiteBackend
    from training.export import export_int8_tflite

    model, train = trained_tiny
    test = color_dataset(200, 2)
    keras_probs = model.predict(test.images.astype(np.float32), verbose=0)
    assert (keras_probs.argmax(1) == test.labels).mean() > 0.5  # it did learn something in one epoch
    path = export_int8_tflite(model, train.images[:300], tmp_path / "tiny_int8.tflite")
    tm = TFLiteBackend(path)
    assert tm.input.dtype == np.int8 and tm.outputs[0].dtype == np.int8
    assert tm.input.quant == (1.0, -128)  # pixel - 128, as MLPerf Tiny feeds its models
    assert tm.output().quant == (1 / 256, -128)
    assert "MUL" not in tm.op_names()  # the input scaling was folded, not exported as an operator
    agree = (tm.predict(test.images).argmax(1) == keras_probs.argmax(1)).mean()
    assert agree >= 0.95

    # TFLite Micro (what the firmware matches) and LiteRT's reference kernels give identical bytes up to
    # the classifier (their FULLY_CONNECTED/SOFTMAX kernels round differently on some samples)
    from hi_runtime.backends import TFLiteBackend, TflmBackend
    from hi_firmware.compiler.testing import litert_agreeing_prefix

    prefix = litert_agreeing_prefix(path.read_bytes())
    tflm, ref = TflmBackend(prefix), TFLiteBackend(prefix, "litert", reference=True)
    for q in tm.input.quantize(test.images[:50]):
        np.testing.assert_array_equal(tflm.run_many(q[None])[0], ref.run_many(q[None])[0])


def test_float_tflite_and_onnx_match_keras(trained_tiny, tmp_path):
    from hi_runtime.backends import OnnxBackend, TFLiteBackend
    from training.export import export_float_tflite, export_onnx

    model, _ = trained_tiny
    x = color_dataset(64, 3).images
    ref = model.predict(x.astype(np.float32), verbose=0)
    np.testing.assert_allclose(TFLiteBackend(export_float_tflite(model, tmp_path / "f.tflite")).predict(x),
                               ref, atol=1e-4)
    onnx_path = export_onnx(model, tmp_path / "m.onnx", validate_images=x)
    got = OnnxBackend(onnx_path).predict(x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_dense_classifier_exports_as_1x1_conv_bit_exact_in_tflm_and_litert_reference(tmp_path):
    """ResNet-8's dense head is exported as a 1x1 CONV_2D: same function, no FULLY_CONNECTED left, and
    TFLite Micro and LiteRT's reference kernels then agree on every output byte (batch resizing still
    works for desktop evaluation)."""
    from hi_runtime.backends import TFLiteBackend, TflmBackend

    from training.export import export_int8_tflite
    from training.models import build_model, dense_head_as_conv

    model = build_model("resnet8")
    x = color_dataset(48, 6).images
    conv_head = dense_head_as_conv(model)
    assert conv_head is not model and conv_head.output_names == model.output_names
    np.testing.assert_allclose(conv_head.predict(x.astype(np.float32), verbose=0),
                               model.predict(x.astype(np.float32), verbose=0), atol=1e-6)
    tm = TFLiteBackend(export_int8_tflite(model, x, tmp_path / "r8.tflite"))
    assert "FULLY_CONNECTED" not in tm.op_names() and "RESHAPE" in tm.op_names()
    assert tm.predict(x, batch=16).shape == (48, 10)
    data = (tmp_path / "r8.tflite").read_bytes()
    tflm, ref = TflmBackend(data), TFLiteBackend(data, "litert", reference=True)
    for q in tm.input.quantize(x[:12]):
        np.testing.assert_array_equal(tflm.run_many(q[None])[0], ref.run_many(q[None])[0])


def test_dense_head_as_conv_leaves_other_heads_alone(trained_tiny):
    from training.models import dense_head_as_conv

    model, _ = trained_tiny  # global average pool + dense: MEAN, not a flattened 1x1 map
    assert dense_head_as_conv(model) is model


def test_mixed_bfloat16_training_returns_a_float32_model_that_learned():
    """bfloat16 compute with float32 weights: the returned model is plain float32 (what export and
    saving expect), its softmax sums to one in float32, and it learned the generated task."""
    from training.train import TrainConfig, TrainingError, evaluate_keras, train_model

    train, val = color_dataset(6000, 0), color_dataset(300, 1)  # as trained_tiny: BN statistics settle
    cfg = TrainConfig(arch="tiny_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0, precision="mixed_bfloat16")
    model = train_model(cfg, train, val, verbose=0)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    probs = model.predict(val.images[:32].astype(np.float32), verbose=0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert evaluate_keras(model, val) > 0.5  # ten classes: chance is 0.1
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # the global policy is restored
    with pytest.raises(TrainingError, match="precision"):
        train_model(TrainConfig(arch="tiny_cnn", epochs=1, precision="float16"), train, val, verbose=0)


def test_distillation_loss_matches_its_formula():
    """(1 - w) CE(label) + w T^2 KL(softmax(log t / T) || softmax(log s / T)), checked against numpy on
    random rows; zero KL when the student equals the teacher."""
    from training.train import distillation_loss_fn

    rng = np.random.default_rng(0)
    n, w, temp = 10, 0.3, 4.0
    s = rng.dirichlet(np.ones(n), 16).astype(np.float32)
    t = rng.dirichlet(np.ones(n), 16).astype(np.float32)
    labels = rng.integers(0, n, 16)
    y_true = np.concatenate([labels[:, None], t], axis=1).astype(np.float32)

    def soft(p):
        z = np.log(p) / temp
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    kl = (soft(t) * (np.log(soft(t)) - np.log(soft(s)))).sum(1)
    want = (1 - w) * -np.log(s[np.arange(16), labels]) + w * temp ** 2 * kl
    got = np.asarray(distillation_loss_fn(n, w, temp)(y_true, s))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    same = np.concatenate([labels[:, None], s], axis=1).astype(np.float32)
    np.testing.assert_allclose(np.asarray(distillation_loss_fn(n, 1.0, temp)(same, s)), 0.0, atol=1e-5)


def test_distillation_teaches_the_teachers_function_even_with_useless_labels(trained_tiny, tmp_path, monkeypatch):
    """With distill weight 1 the labels do not matter: a student trained on shuffled labels learns the
    teacher's function (high accuracy on the true validation labels), while the same run without the
    teacher stays near chance."""
    from hi_runtime.datasets import Dataset
    from training.export import export_onnx
    from training.train import TrainConfig, TrainingError, evaluate_keras, train_model

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    teacher_model, _ = trained_tiny
    teacher = export_onnx(teacher_model, tmp_path / "teacher.onnx")
    clean, val = color_dataset(6000, 7), color_dataset(300, 1)
    shuffled = Dataset(clean.images, np.random.default_rng(0).permutation(clean.labels), clean.class_names)
    base = dict(arch="tiny_cnn", epochs=1, batch_size=16, lr=0.05, warmup_epochs=0)
    # Chance is 0.1 and the student without the teacher stays there (0.11 measured). Alone on this machine
    # the student reaches 1.00 within two epochs (every seed tried), but inside the full suite on a loaded
    # machine it sometimes learns slowly from the start (CI runs measured 0.29 after one epoch, 0.54 after
    # two, and 0.31 / 0.43 / 0.58 / 0.46 over four), so the bar is 0.35, still 3.5 times chance and far
    # above the run without the teacher.
    student = train_model(TrainConfig(**{**base, "epochs": 4}, teacher=str(teacher), distill_weight=1.0,
                                      temperature=1.0), shuffled, val, verbose=0)
    alone = train_model(TrainConfig(**base), shuffled, val, verbose=0)
    alone_acc, student_acc = evaluate_keras(alone, val), evaluate_keras(student, val)
    assert alone_acc < 0.2
    assert student_acc > 0.35 and student_acc > alone_acc + 0.15
    with pytest.raises(TrainingError, match="teacher"):
        train_model(TrainConfig(**base, distill_weight=0.5), shuffled, val, verbose=0)
    with pytest.raises(TrainingError, match="does not exist"):
        train_model(TrainConfig(**base, teacher=str(tmp_path / "none.onnx"), distill_weight=0.5), shuffled, val,
                    verbose=0)


def test_flip_tta_onnx_is_the_mean_over_the_mirror_and_mirror_invariant(trained_tiny, tmp_path):
    from hi_runtime.backends import OnnxBackend
    from training.export import export_onnx
    from training.models import with_flip_tta

    model, _ = trained_tiny
    x = color_dataset(64, 4).images.astype(np.float32)
    x[:, :, :16] *= 0.5  # left and right halves differ, so the mirror is a different image
    mirrored = x[:, :, ::-1].copy()
    want = (model.predict(x, verbose=0) + model.predict(mirrored, verbose=0)) / 2
    assert np.abs(model.predict(x, verbose=0) - want).max() > 1e-3  # the wrapper changes something
    onnx = OnnxBackend(export_onnx(with_flip_tta(model), tmp_path / "tta.onnx", validate_images=x))
    np.testing.assert_allclose(onnx.predict(x), want, atol=1e-5)
    np.testing.assert_allclose(onnx.predict(mirrored), onnx.predict(x), atol=1e-5)
    np.testing.assert_allclose(onnx.predict(x).sum(1), 1.0, atol=1e-5)
    import onnx as onnx_lib  # the mirrors ride in the batch: the network appears once in the graph

    def convs(path):
        return sum(n.op_type == "Conv" for n in onnx_lib.load(str(path)).graph.node)

    assert convs(tmp_path / "tta.onnx") == convs(export_onnx(model, tmp_path / "plain.onnx")) > 0


def test_ensemble_is_the_mean_of_its_members_counts_their_macs_and_exports(trained_tiny, tmp_path):
    import keras

    from hi_runtime.backends import OnnxBackend
    from training.export import export_onnx
    from training.models import build_model, count_params_and_macs, ensemble, with_flip_tta

    trained, _ = trained_tiny
    a = keras.models.clone_model(trained)  # a copy: ensemble() renames members whose names clash
    a.set_weights(trained.get_weights())
    b = build_model("tiny_cnn")  # untrained: a member that disagrees with the first
    x = color_dataset(32, 6).images.astype(np.float32)
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    assert np.abs(pa - pb).max() > 1e-2
    ens = ensemble([a, b])
    np.testing.assert_allclose(ens.predict(x, verbose=0), (pa + pb) / 2, atol=1e-6)
    one = count_params_and_macs(a)
    assert count_params_and_macs(ens).macs == 2 * one.macs and count_params_and_macs(ens).params == 2 * one.params
    ens.save(tmp_path / "ens.keras")  # a plain Average layer: saves and loads without custom objects
    again = keras.models.load_model(tmp_path / "ens.keras", compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), (pa + pb) / 2, atol=1e-6)
    onnx = OnnxBackend(export_onnx(with_flip_tta(ens), tmp_path / "ens.onnx", validate_images=x))
    mirrored = x[:, :, ::-1].copy()
    want = (pa + pb + a.predict(mirrored, verbose=0) + b.predict(mirrored, verbose=0)) / 4
    np.testing.assert_allclose(onnx.predict(x), want, atol=1e-5)
    # one member cut out of the ensemble's ONNX (hi-train member) is exactly that member, without the flip
    from training.member_cli import MemberError, extract_member

    for member, probs in ((a.name, pa), (b.name, pb)):
        cut = extract_member(tmp_path / "ens.onnx", member, tmp_path / f"{member}.onnx")
        assert cut["member"] == member and cut["test_time_augmentation_dropped"]
        np.testing.assert_allclose(OnnxBackend(tmp_path / f"{member}.onnx").predict(x), probs, atol=1e-5)
    with pytest.raises(MemberError, match="members are"):
        extract_member(tmp_path / "ens.onnx", "no_such_net", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="at least two members"):
        ensemble([a])
    with pytest.raises(ValueError, match="number of classes"):
        ensemble([a, build_model("tiny_cnn", num_classes=3)])


def test_cli_exports_an_ensemble_with_every_member_on_its_card(trained_tiny, tmp_path, monkeypatch, capsys):
    from training.cli import main
    from hi_runtime.backends import OnnxBackend
    from training.models import build_model

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_color_folder(data, 20, "train", 0)
    _write_color_folder(data, 10, "test", 1)
    models = tmp_path / "models"
    models.mkdir()
    trained, _ = trained_tiny
    trained.save(models / "srv_a.keras")
    build_model("tiny_cnn").save(models / "srv_b.keras")
    out = models / "srv"
    common = ["--data", str(data), "--val-size", "50", "--out", str(out), "--export", "onnx"]
    # one checkpoint directory for two models is ambiguous: refused before anything is written
    assert main(["export", "--keras", str(models / "srv_a.keras"), str(models / "srv_b.keras"),
                 "--ckpt-dir", str(tmp_path / "ckpt"), *common]) == 2
    assert "one checkpoint directory per model" in capsys.readouterr().err
    assert main(["export", "--keras", str(models / "srv_a.keras"), str(models / "missing.keras"), *common]) == 2
    assert "missing.keras" in capsys.readouterr().err and not out.with_suffix(".onnx").exists()

    assert main(["export", "--keras", str(models / "srv_a.keras"), str(models / "srv_b.keras"), "--tta", "flip",
                 *common]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    members = card["ensemble"]["members"]
    assert [Path(m["keras"]).name for m in members] == ["srv_a.keras", "srv_b.keras"]
    assert card["macs"] == sum(m["macs"] for m in members) and card["params"] == sum(m["params"] for m in members)
    art = {a["file"]: a for a in card["artifacts"]}
    assert set(art) == {"srv_a.keras", "srv_b.keras", "srv.onnx"}
    assert art["srv.onnx"]["test_time_augmentation"]["macs_per_image"] == 2 * card["macs"]
    assert art["srv_a.keras"]["test_accuracy"] == members[0]["test_accuracy"] > 0.5  # the trained member
    assert art["srv_b.keras"]["macs"] == members[1]["macs"]
    table = (models / "README.md").read_text()
    assert "ensemble member 1" in table and "srv.onnx" in table
    x = color_dataset(8, 5).images.astype(np.float32)
    probs = OnnxBackend(out.with_suffix(".onnx")).predict(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def _write_color_folder(root: Path, n_per_class: int, split: str, seed: int):
    ds = color_dataset(n_per_class * 10, seed)
    from hi_runtime.datasets import CIFAR10_CLASSES

    for i, (img, lab) in enumerate(zip(ds.images, ds.labels)):
        d = root / split / CIFAR10_CLASSES[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def test_cli_trains_checkpoints_resumes_exports_and_writes_card(tmp_path, monkeypatch):
    from training.cli import main

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_color_folder(data, 40, "train", 0)
    _write_color_folder(data, 10, "test", 1)
    out = tmp_path / "models" / "cifar10" / "tiny"
    ckpt = tmp_path / "ckpt"
    base = ["model", "--arch", "tiny_cnn", "--data", str(data), "--val-size", "50", "--batch-size", "32",
            "--out", str(out), "--ckpt-dir", str(ckpt), "--export", "int8", "--label-smoothing", "0.1"]
    assert main(base + ["--epochs", "1"]) == 0
    history = [json.loads(l) for l in (ckpt / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1]
    # a leftover checkpoint without --resume is refused rather than silently overwritten
    assert main(base + ["--epochs", "2"]) == 2
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    history = [json.loads(l) for l in (ckpt / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]  # continued at epoch 2, did not restart

    card = json.loads(out.with_suffix(".json").read_text())
    assert card["architecture"] == "tiny_cnn" and card["dataset"]["train_images"] == 350
    assert card["dataset"]["val_images"] == 50 and card["dataset"]["test_images"] == 100
    art = {a["file"]: a for a in card["artifacts"]}
    int8 = art["tiny_int8.tflite"]
    assert int8["input"]["zero_point"] == -128 and int8["tflm_arena_bytes"] > 1000
    assert set(int8["ops"]) >= {"CONV_2D", "SOFTMAX"}
    assert 0 <= int8["test_accuracy"] <= 1 and "--resume" in card["training"]["command"]
    runs = card["training"]["runs"]  # the refused start in between is not a run
    assert [r["started_at_epoch"] for r in runs] == [1, 2] and "--resume" not in runs[0]["command"]
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]
    # the training time is the run's, over both sessions, not the last session's alone
    assert card["training"]["seconds"] == round(sum(h["seconds"] for h in card["training"]["history"]))
    table = (tmp_path / "models" / "README.md").read_text()
    assert "tiny_int8.tflite" in table
    # re-export from the saved .keras (its training loss, a label-smoothing closure, is not needed to load)
    assert main(["export", "--keras", str(out.with_suffix(".keras")), "--data", str(data), "--val-size", "50",
                 "--out", str(out), "--export", "float", "--ckpt-dir", str(ckpt)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert [a["file"] for a in card["artifacts"]] == ["tiny.keras", "tiny_float.tflite"]
    assert card["training"]["config"]["label_smoothing"] == 0.1
    assert card["export_command"].startswith("hi-train export --keras ")


def test_a_resumed_run_keeps_its_best_and_survives_a_backup_cut_by_a_kill(tmp_path):
    """A kill while the epoch's backup is written leaves half a file: the previous epoch's copy takes over.
    The best weights are those of the best epoch over every session, not the first one after a restart."""
    from dataclasses import replace

    from training.train import TrainConfig, best_in_history, restored_epoch, train_model

    train, val = color_dataset(256, 0), color_dataset(64, 1)
    ck = tmp_path / "ck"
    cfg = TrainConfig(arch="tiny_cnn", epochs=2, batch_size=32, lr=0.05, warmup_epochs=0, ckpt_dir=str(ck))
    train_model(cfg, train, val, verbose=0)
    assert restored_epoch(ck / "backup") == 2
    latest = ck / "backup" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    model = train_model(replace(cfg, epochs=3), train, val, resume=True, verbose=0)
    history = [json.loads(line) for line in (ck / "history.jsonl").read_text().splitlines()]
    assert history[-1]["epoch"] == 3
    best = best_in_history(ck / "history.jsonl", "val_acc")
    acc = float((model.predict(val.images.astype(np.float32), verbose=0).argmax(1) == val.labels).mean())
    assert acc == pytest.approx(best, abs=1e-6)


def test_cli_same_command_again_starts_over_but_an_unfinished_run_is_kept(tmp_path, monkeypatch):
    """Running a finished command a second time (the README's quick lines) trains again; a checkpoint
    without the finished mark (a run that stopped) is never deleted without --resume."""
    from training.cli import main

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_color_folder(data, 40, "train", 0)
    _write_color_folder(data, 10, "test", 1)
    out, ckpt = tmp_path / "m" / "tiny", tmp_path / "ckpt"
    cmd = ["model", "--arch", "tiny_cnn", "--data", str(data), "--val-size", "50", "--batch-size", "32",
           "--out", str(out), "--ckpt-dir", str(ckpt), "--export", "float", "--epochs", "1"]
    assert main(cmd) == 0 and (ckpt / "complete.json").exists()
    first = (ckpt / "runs.jsonl").read_text()
    assert main(cmd) == 0  # the same command again: a new run, one epoch, one recorded start
    assert [json.loads(l)["epoch"] for l in (ckpt / "history.jsonl").read_text().splitlines()] == [1]
    assert (ckpt / "runs.jsonl").read_text() != first and len((ckpt / "runs.jsonl").read_text().splitlines()) == 1
    (ckpt / "complete.json").unlink()  # as if the run had stopped before exporting
    assert main(cmd) == 2 and (ckpt / "backup").exists()


def test_cli_export_bakes_flip_tta_into_the_onnx_only(trained_tiny, tmp_path, monkeypatch):
    from training.cli import main
    from hi_runtime.backends import OnnxBackend

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_color_folder(data, 20, "train", 0)
    _write_color_folder(data, 10, "test", 1)
    model, _ = trained_tiny
    keras_path = tmp_path / "models" / "srv.keras"
    keras_path.parent.mkdir()
    model.save(keras_path)
    out = tmp_path / "models" / "srv"
    assert main(["export", "--keras", str(keras_path), "--data", str(data), "--val-size", "50",
                 "--out", str(out), "--export", "onnx,float", "--tta", "flip"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    art = {a["file"]: a for a in card["artifacts"]}
    tta = art["srv.onnx"]["test_time_augmentation"]
    assert tta["kind"] == "flip" and tta["macs_per_image"] == 2 * card["macs"]
    assert "test_time_augmentation" not in art["srv_float.tflite"]
    x = color_dataset(8, 5).images.astype(np.float32)
    onnx = OnnxBackend(out.with_suffix(".onnx"))
    np.testing.assert_allclose(onnx.predict(x[:, :, ::-1].copy()), onnx.predict(x), atol=1e-5)
    # that server model can teach a device model through the CLI; the card records the teacher
    student = tmp_path / "models" / "student"
    assert main(["model", "--arch", "tiny_cnn", "--data", str(data), "--val-size", "50", "--batch-size", "32",
                 "--epochs", "1", "--out", str(student), "--export", "float", "--teacher", str(out.with_suffix(".onnx")),
                 "--distill-weight", "0.7", "--temperature", "3"]) == 0
    cfg = json.loads(student.with_suffix(".json").read_text())["training"]["config"]
    assert (cfg["teacher"], cfg["distill_weight"], cfg["temperature"]) == (str(out.with_suffix(".onnx")), 0.7, 3.0)


def test_run_seed_leaves_the_validation_split_alone(tmp_path, monkeypatch):
    """Ensemble members trained with different --seed must share the validation split the deciders are
    fitted on (a member that trained on those images would make the server look better there than it is)."""
    import argparse

    from training.cli import _load_splits, build_parser

    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data"
    _write_color_folder(data, 20, "train", 0)
    _write_color_folder(data, 2, "test", 1)

    def val_of(*extra: str):
        args = build_parser().parse_args(["model", "--data", str(data), "--val-size", "50", "--out", "x", *extra])
        assert isinstance(args, argparse.Namespace)
        return _load_splits(args)[1].images

    base = val_of()
    np.testing.assert_array_equal(val_of("--seed", "1"), base)
    assert not np.array_equal(val_of("--split-seed", "1"), base)

    # the early-exit trainer and the tools fitted on the validation split read it with the same flag;
    # an early-exit run's --seed is its own, as for hi-train model
    from training.decider_cli import load_val_test

    def ee_val_of(cmd: str, *extra: str):
        args = build_parser().parse_args([cmd, "--data", str(data), "--val-size", "50", *extra])
        return args, load_val_test(args)[0].images

    args, ee_base = ee_val_of("early-exit", "--out", "x", "--seed", "1")
    assert args.seed == 1 and args.split_seed == 0
    np.testing.assert_array_equal(ee_base, base)
    assert not np.array_equal(ee_val_of("early-exit", "--out", "x", "--split-seed", "1")[1], base)
    np.testing.assert_array_equal(ee_val_of("decider", "--out", "x", "--split-seed", "1")[1],
                                  val_of("--split-seed", "1"))
    np.testing.assert_array_equal(ee_val_of("thresholds", "--chain", "c.json", "--server", "s.onnx", "--out", "x")[1], base)


def test_epoch_line_shows_an_eta_from_recent_epochs():
    from training.train import epoch_line, format_duration

    assert [format_duration(s) for s in (0, 45.4, 750, 3600 * 6 + 59 * 60 + 40)] == ["0s", "45s", "12m30s", "6h59m"]
    rec = {"epoch": 3, "seconds": 50.04, "acc": 0.5}
    # the median of the last five epochs, so one slow epoch (a resume, a busy neighbour) does not swing it
    line = epoch_line(rec, 10, [200.0, 50.0, 50.0, 48.0])
    assert line == "epoch 3/10 seconds=50.0 eta=5m50s acc=0.5000"
    assert "eta" not in epoch_line({**rec, "epoch": 10}, 10, [50.0])


def test_cli_help_does_not_need_tensorflow(capsys):
    from training.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "model" in capsys.readouterr().out


def test_cli_reports_missing_dataset(tmp_path, capsys):
    from training.cli import main

    rc = main(["model", "--arch", "tiny_cnn", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing" in err and "does not exist" in err
