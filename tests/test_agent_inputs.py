"""Input sources: npz, image folders (labels from class folders, resize), datasets through the training
loaders, the camera's clear error without OpenCV, and spec parsing."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from hi_runtime.agent.inputs import InputError, fit_image, load_npz, open_input


def test_npz_with_labels_ids_and_slicing(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", images=imgs, labels=np.arange(10) % 3, ids=np.arange(100, 110),
             class_names=np.array(["a", "b", "c"]))
    src = open_input(f"npz:{tmp_path / 's.npz'}", limit=4, offset=2)
    got = list(src)
    assert src.total == 4 and [s.sample_id for s in got] == [102, 103, 104, 105]
    assert [s.label for s in got] == [2, 0, 1, 2] and np.array_equal(got[0].image, imgs[2])
    assert src.class_names == ["a", "b", "c"]
    assert open_input(str(tmp_path / "s.npz")).total == 10  # bare path
    np.savez(tmp_path / "plain.npz", images=imgs)  # no ids: a sample's id is its stored index, offset or not
    assert [s.sample_id for s in open_input(f"npz:{tmp_path / 'plain.npz'}", limit=3, offset=5)] == [5, 6, 7]
    np.savez(tmp_path / "bad.npz", pixels=imgs)
    with pytest.raises(InputError, match="no 'images'"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "f.npz", images=imgs.astype(np.float32))
    with pytest.raises(InputError, match="uint8 NHWC"):
        load_npz(tmp_path / "f.npz")


def test_npz_with_fewer_ids_than_images_is_refused(tmp_path):
    """Not 6 samples of 10 without a word, nor an IndexError halfway through a run."""
    path = tmp_path / "short_ids.npz"
    np.savez(path, images=np.zeros((10, 8, 8, 3), np.uint8), ids=np.arange(6))
    with pytest.raises(InputError, match="10 images but 6 ids"):
        load_npz(path)


def test_image_folder_labels_resizes_and_orders(tmp_path):
    root = tmp_path / "imgs"
    for cls, color in (("cat", (200, 0, 0)), ("ship", (0, 0, 200))):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (64, 48), color).save(root / cls / "a.png")
    (root / "other").mkdir()
    Image.new("L", (32, 32), 128).save(root / "other" / "g.jpg")
    src = open_input(str(root))
    got = list(src)
    assert src.total == 3 and [s.sample_id for s in got] == ["cat/a.png", "other/g.jpg", "ship/a.png"]
    assert [s.label for s in got] == [3, None, 8]
    assert all(s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8 for s in got)
    assert tuple(got[0].image[16, 16]) == (200, 0, 0) and tuple(got[1].image[0, 0]) == (128, 128, 128)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images") as err:
        open_input(f"images:{tmp_path / 'empty'}")
    assert "--input" not in str(err.value)
    # a dataset directory given as a folder of images: the error names the dataset form to use
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "test.tar.gz").write_bytes(b"")
    with pytest.raises(InputError, match=f"use --input cifar10:{tmp_path / 'cifar'}"):
        open_input(str(tmp_path / "cifar"))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(InputError, match=f"use --input mnist:{tmp_path / 'mnist'}"):
        open_input(str(tmp_path / "mnist"))
    with pytest.raises(InputError, match="does not exist"):
        open_input(f"images:{tmp_path / 'nowhere'}")


def test_fit_image_center_crops_to_aspect():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the centre square is white
    out = fit_image(img, (32, 32))
    assert out.shape == (32, 32, 3) and out.min() == 255


def test_dataset_source_reads_cifar10_test(cifar10_jpeg_dir):
    src = open_input(f"cifar10:{cifar10_jpeg_dir}:test", limit=5, offset=10)
    got = list(src)
    assert len(got) == 5 and got[0].image.shape == (32, 32, 3) and got[0].label is not None
    assert src.name == "cifar10:test" and src.class_names[0] == "airplane"


def test_dataset_prefix_is_a_fair_sample_and_ids_are_stored_indices(cifar10_jpeg_dir):
    """The stored split is class by class; the default order must not make --limit measure two classes."""
    stored = open_input(f"cifar10:{cifar10_jpeg_dir}:test", order="stored")
    shuffled = open_input(f"cifar10:{cifar10_jpeg_dir}:test", limit=200)
    first = list(open_input(f"cifar10:{cifar10_jpeg_dir}:test", limit=200, order="stored"))
    assert len({s.label for s in first}) <= 2  # why the default is shuffled
    got = list(shuffled)
    assert len({s.label for s in got}) == 10
    assert [s.sample_id for s in got] == [s.sample_id for s in open_input(f"cifar10:{cifar10_jpeg_dir}", limit=200)]
    for s in got[:20]:  # an id names the stored sample, so logs of either order join on it
        assert np.array_equal(s.image, stored.images[s.sample_id]) and s.label == stored.labels[s.sample_id]
    with pytest.raises(InputError, match="unknown dataset order"):
        open_input(f"cifar10:{cifar10_jpeg_dir}", order="random")


def test_missing_dataset_and_unknown_spec_are_clear(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_input(f"cifar10:{tmp_path / 'nope'}")
    with pytest.raises(InputError, match="give one of"):
        open_input("ftp://x")


def test_camera_without_opencv_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(InputError, match="hi-runtime\\[camera\\]"):
        open_input("camera:0")
    with pytest.raises(InputError, match="integer"):
        open_input("camera:front")


def test_the_demo_report_states_the_budgets_the_runs_used(tmp_path):
    from types import SimpleNamespace

    from hi_runtime.agent.demo import write_report

    clf = SimpleNamespace(backend=SimpleNamespace(describe=lambda: "litert"))
    report = write_report(tmp_path, [], {}, 0, tmp_path / "s.npz", clf, [], 1.0, budget_ms=5, rate_budget_ms=40)
    text = report.read_text()
    assert "budget 5 ms" in text and "40 ms budget" in text and "1000 ms" not in text
