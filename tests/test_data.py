"""Dataset loaders: every format, the cache, the validation split, and clear errors for bad input."""
from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hi_runtime.datasets import (CIFAR10_CLASSES, Dataset, DatasetError, load_cifar10_batches, load_dataset,
                           load_image_folder, load_mnist, nhwc_to_planar, planar_to_nhwc, read_idx,
                           split_train_val)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _write_folder(root: Path, split: str, classes, per_class: int, size: int = 8, fmt: str = "PNG"):
    imgs = {}
    for ci, cls in enumerate(classes):
        d = root / split / cls
        d.mkdir(parents=True)
        for i, img in enumerate(_images(per_class, size, seed=ci)):
            ext = "png" if fmt == "PNG" else "jpg"
            Image.fromarray(img).save(d / f"{i:04d}.{ext}", format=fmt)
            imgs[(cls, i)] = img
    return imgs


def test_image_folder_directory_is_lossless_and_ordered(tmp_path):
    imgs = _write_folder(tmp_path, "train", ["cat", "ant", "bee"], 4)
    ds = load_image_folder(tmp_path, "train", progress=False)
    assert ds.class_names == ["ant", "bee", "cat"]  # sorted folder names, ImageFolder convention
    assert ds.images.shape == (12, 8, 8, 3) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [4, 4, 4]
    first_cat = ds.images[ds.labels == 2][0]
    np.testing.assert_array_equal(first_cat, imgs[("cat", 0)])


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tar", "w")])
def test_image_folder_archive_matches_directory(tmp_path, suffix, mode):
    src = tmp_path / "src"
    _write_folder(src, "test", list(CIFAR10_CLASSES[:3]), 3)
    arch = tmp_path / f"test{suffix}"
    with tarfile.open(arch, mode) as tf:
        tf.add(src / "test", arcname="test")
    from_dir = load_image_folder(src, "test", progress=False, use_cache=False)
    from_tar = load_image_folder(tmp_path, "test", progress=False, use_cache=False)
    np.testing.assert_array_equal(np.sort(from_dir.images.reshape(9, -1), 0), np.sort(from_tar.images.reshape(9, -1), 0))
    assert sorted(from_dir.labels.tolist()) == sorted(from_tar.labels.tolist())


def test_cifar10_class_order_is_fixed_even_with_missing_classes(tmp_path):
    _write_folder(tmp_path, "test", ["truck", "airplane"], 2)
    ds = load_dataset("cifar10", tmp_path, "test", progress=False)
    assert ds.class_names == list(CIFAR10_CLASSES)
    assert sorted(set(ds.labels.tolist())) == [0, 9]


def test_cache_makes_second_load_fast_and_identical(tmp_path):
    _write_folder(tmp_path / "d", "train", ["a", "b"], 30, size=16)
    t0 = time.perf_counter()
    first = load_image_folder(tmp_path / "d", "train", progress=False)
    t1 = time.perf_counter()
    second = load_image_folder(tmp_path / "d", "train", progress=False)
    t2 = time.perf_counter()
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert any((tmp_path / "cache" / "datasets").iterdir())
    assert t2 - t1 < max(0.5, t1 - t0)


def test_the_cache_notices_images_added_to_a_class_folder(tmp_path):
    """A class folder's new image changes neither the split folder's size nor its mtime: the cache must
    still see it (it is keyed by every image file)."""
    _write_folder(tmp_path / "d", "train", ["a", "b"], 5)
    assert len(load_image_folder(tmp_path / "d", "train", progress=False)) == 10
    Image.fromarray(_images(1, seed=9)[0]).save(tmp_path / "d" / "train" / "b" / "0099.png")
    assert len(load_image_folder(tmp_path / "d", "train", progress=False)) == 11


def test_an_archive_of_class_folders_alone_serves_only_the_split_it_is_named_after(tmp_path):
    """Read for every split, it would hand the test split the training images."""
    src = tmp_path / "src"
    _write_folder(src, "x", ["a", "b"], 3)
    for name in ("test.tar", "all.tar"):
        with tarfile.open(tmp_path / name, "w") as tf:
            for cls in ("a", "b"):
                tf.add(src / "x" / cls, arcname=cls)
    assert len(load_image_folder(tmp_path / "test.tar", "test", progress=False)) == 6
    with pytest.raises(DatasetError, match="named after its split"):
        load_image_folder(tmp_path / "all.tar", "train", progress=False)


def test_imagenet_style_resize_and_center_crop(tmp_path):
    d = tmp_path / "train" / "n01440764"
    d.mkdir(parents=True)
    Image.fromarray(_images(1, 300)[0]).save(d / "a.png")
    Image.fromarray(np.zeros((260, 400, 3), np.uint8)).save(d / "b.png")
    ds = load_dataset("imagenet", tmp_path, "trainval", progress=False)
    assert ds.images.shape == (2, 224, 224, 3)


def test_mixed_sizes_without_image_size_is_an_error(tmp_path):
    d = tmp_path / "train" / "x"
    d.mkdir(parents=True)
    Image.fromarray(_images(1, 8)[0]).save(d / "a.png")
    Image.fromarray(_images(1, 9)[0]).save(d / "b.png")
    with pytest.raises(DatasetError, match="different sizes"):
        load_image_folder(tmp_path, "train", progress=False)


def test_missing_path_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", tmp_path / "nope", "test", progress=False)
    assert "nope" in str(e.value) and "<split>/<class>/<image>" in str(e.value)


def test_a_file_that_is_no_archive_is_one_line_naming_it(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0 not a tar")
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", fake, "test", progress=False)
    assert "\n" not in str(e.value) and "photo.jpg: it is not a tar archive" in str(e.value)


def test_a_validation_split_larger_than_the_data_names_the_flag(tmp_path):
    _write_folder(tmp_path, "train", ["a", "b"], 3)
    with pytest.raises(DatasetError, match="pass --val-size between 1 and 5"):
        load_dataset("folder", tmp_path, "val", val_size=5000, progress=False)


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        load_image_folder(tmp_path, "test", progress=False)


def test_missing_split_is_an_error(tmp_path):
    _write_folder(tmp_path, "train", ["a"], 1)
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_image_folder(tmp_path, "test", progress=False)


def test_corrupt_image_is_reported_by_name(tmp_path):
    _write_folder(tmp_path, "train", ["a", "b"], 2)
    bad = tmp_path / "train" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        load_image_folder(tmp_path, "train", progress=False)
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = load_image_folder(tmp_path, "train", progress=False, on_corrupt="skip")
    assert len(ds) == 4 and any("broken.jpg" in n for n in ds.notes)


def test_truncated_archive_is_an_error(tmp_path):
    src = tmp_path / "src"
    _write_folder(src, "test", ["a"], 20, size=32)
    arch = tmp_path / "test.tar.gz"
    with tarfile.open(arch, "w:gz") as tf:
        tf.add(src / "test", arcname="test")
    data = arch.read_bytes()
    arch.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="test.tar.gz"):
        load_image_folder(tmp_path, "test", progress=False)


def _cifar_records(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    return imgs, labels


def test_cifar10_python_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    all_imgs = []
    for i in range(1, 6):
        imgs, labels = _cifar_records(4, seed=i)
        all_imgs.append(imgs)
        with open(root / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": nhwc_to_planar(imgs), b"labels": labels.tolist()}, f)
    imgs, labels = _cifar_records(5, seed=9)
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": nhwc_to_planar(imgs), b"labels": labels.tolist()}, f)
    test = load_dataset("cifar10", tmp_path, "test")
    np.testing.assert_array_equal(test.images, imgs)
    np.testing.assert_array_equal(test.labels, labels)
    train = load_cifar10_batches(tmp_path, "train")
    np.testing.assert_array_equal(train.images, np.concatenate(all_imgs))


def test_cifar10_binary_batches(tmp_path):
    imgs, labels = _cifar_records(6)
    rec = np.concatenate([labels[:, None].astype(np.uint8), nhwc_to_planar(imgs)], axis=1)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec.tofile(tmp_path / name)
    test = load_cifar10_batches(tmp_path, "test")
    np.testing.assert_array_equal(test.images, imgs)
    assert test.labels.tolist() == labels.tolist()
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="3073"):
        load_cifar10_batches(tmp_path, "test")


def test_planar_roundtrip():
    imgs = _images(3, 32)
    np.testing.assert_array_equal(planar_to_nhwc(nhwc_to_planar(imgs)), imgs)
    # channel-planar: the first 1024 bytes are the red plane
    np.testing.assert_array_equal(nhwc_to_planar(imgs)[0, :1024], imgs[0, :, :, 0].ravel())


def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    for name, arr in (("t10k-images-idx3-ubyte", imgs), ("t10k-labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gz:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (tmp_path / name).write_bytes(data)
    ds = load_mnist(tmp_path, "test")
    assert ds.images.shape == (7, 28, 28, 1)
    np.testing.assert_array_equal(ds.images[..., 0], imgs)
    assert ds.labels.tolist() == list(range(7))


def test_idx_truncated_and_bad_magic(tmp_path):
    arr = np.zeros((4, 28, 28), np.uint8)
    (tmp_path / "a").write_bytes(_idx_bytes(arr)[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "b")
    with pytest.raises(DatasetError, match="missing MNIST"):
        load_mnist(tmp_path, "train")


def test_val_split_is_deterministic_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 100)
    ds = Dataset(np.zeros((1000, 2, 2, 3), np.uint8), labels, [str(i) for i in range(10)])
    ds.images[:, 0, 0, 0] = np.arange(1000) % 256
    ds.images[:, 0, 0, 1] = np.arange(1000) // 256
    tr1, va1 = split_train_val(ds, 150, seed=3)
    tr2, va2 = split_train_val(ds, 150, seed=3)
    np.testing.assert_array_equal(va1.images, va2.images)
    assert len(va1) == 150 and len(tr1) == 850
    assert np.bincount(va1.labels).min() >= 14 and np.bincount(va1.labels).max() <= 16
    ids = lambda d: set((d.images[:, 0, 0, 0].astype(int) + 256 * d.images[:, 0, 0, 1].astype(int)).tolist())
    assert not ids(tr1) & ids(va1)
    _, va3 = split_train_val(ds, 150, seed=4)
    assert ids(va3) != ids(va1)


@pytest.mark.needs_data
def test_shared_cifar10_jpeg_test_split(cifar10_jpeg_dir):
    ds = load_dataset("cifar10", cifar10_jpeg_dir, "test", progress=False)
    assert ds.images.shape == (10000, 32, 32, 3)
    assert np.bincount(ds.labels).tolist() == [1000] * 10


@pytest.mark.needs_data
def test_shared_mnist(mnist_dir):
    ds = load_dataset("mnist", mnist_dir, "test")
    assert ds.images.shape == (10000, 28, 28, 1)
