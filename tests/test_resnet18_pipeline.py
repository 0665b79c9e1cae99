"""ResNet-18 for ImageNet without ImageNet (measurements/bench_resnet18.py): the architecture, and the
whole user path (train, INT8 export and card, hi-firmware compile, memory against the Coral Dev Board
Micro, host latency) on a tiny generated image-folder set."""
from __future__ import annotations

import json

import pytest

from measurements.bench_resnet18 import main, make_image_folder, memory_report


def test_the_architecture_is_resnet18():
    from training.models import build_model, count_params_and_macs

    model = build_model("resnet18", num_classes=1000, input_shape=(224, 224, 3))
    trainable = int(sum(w.numpy().size for w in model.trainable_weights))
    assert trainable == 11_689_512  # torchvision's resnet18: 11,689,512 parameters
    assert count_params_and_macs(model).macs == pytest.approx(1.814e9, rel=0.01)


def test_generated_image_folder_is_an_imagenet_style_tree(tmp_path):
    from hi_runtime.datasets import load_dataset

    root = make_image_folder(tmp_path / "gen", classes=3, per_class=2, size=40)
    ds = load_dataset("imagenet", root, "test", image_size=32, use_cache=False, progress=False)
    assert ds.images.shape == (6, 32, 32, 3) and sorted(set(ds.labels.tolist())) == [0, 1, 2]
    assert ds.images.std() > 10  # not a flat image


def test_memory_report_against_the_coral():
    fits = memory_report(1_000_000, 12_000_000, 150_000)
    assert fits["fits"] and fits["ram_bytes"] == 64 * 2**20 and fits["flash_bytes"] == 128 * 2**20
    assert not memory_report(70 * 2**20, 1, 0)["fits"]


def test_the_pipeline_on_a_tiny_generated_set(tmp_path, capsys):
    result = tmp_path / "r.json"
    rc = main(["--work", str(tmp_path / "w"), "--classes", "4", "--per-class", "2", "--image-size", "32",
               "--steps", "1", "--batch-size", "4", "--timing-runs", "4", "--json", str(result)])
    assert rc == 0
    r = json.loads(result.read_text())
    assert set(r["int8_ops"]) <= {"ADD", "CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "SOFTMAX", "RESHAPE"}
    assert r["memory"]["fits"] and r["memory"]["arena_bytes"] > 0 and r["memory"]["constants_bytes"] > 11e6
    assert r["memory"]["io_bytes"] == 32 * 32 * 3 + 4
    assert all(t["p50"] > 0 for t in r["host_latency_ms"].values())
    assert "Coral Dev Board Micro" in capsys.readouterr().out
    assert main(["--work", str(tmp_path / "x"), "--classes", "1"]) == 2
