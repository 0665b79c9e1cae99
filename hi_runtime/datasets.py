"""Dataset loaders that every part of the project shares.

Every loader returns a :class:`Dataset` of uint8 NHWC images and int64 labels with the class names, so
that the trainer, the decider fitting, the agent and the firmware tests all see the same bytes. Formats:

* an image-folder tree ``<split>/<class>/<image>``, as a directory or a ``.tar``/``.tar.gz`` archive
  (how ``../shared/datasets/cifar10-jpeg`` is stored; ImageNet-style folders use the same layout);
* the official CIFAR-10 python batches (``data_batch_1`` ... ``test_batch``) and binary batches
  (``data_batch_1.bin`` ...);
* MNIST IDX files, gzipped or not.

Decoding 50,000 JPEGs takes a while, so decoded arrays are cached (``.npy`` files keyed by the source's
path, size and modification time); the second load of CIFAR-10 only maps those files.

Validation data is carved deterministically from the training split (:func:`split_train_val`), so that
deciders and exit thresholds are fitted on data the test split never sees.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif")
CACHE_VERSION = 1

IMAGE_FOLDER_LAYOUT = (
    "an image-folder tree <split>/<class>/<image> (e.g. test/cat/0001.jpg), as a directory or as "
    "<split>.tar / <split>.tar.gz holding that tree"
)


class DatasetError(Exception):
    """A dataset is missing, empty, corrupt or laid out differently from what the loader expects."""


@dataclass
class Dataset:
    """Images and labels of one split; images are uint8 NHWC, labels int64."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    name: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: np.ndarray | Sequence[int], name: str | None = None) -> "Dataset":
        idx = np.asarray(indices)
        return Dataset(self.images[idx], self.labels[idx], list(self.class_names),
                       name or self.name, self.source, list(self.notes))

    def take(self, n: int) -> "Dataset":
        return self.subset(np.arange(min(n, len(self))))


# ----------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """Where decoded datasets are cached: $HI_CACHE_DIR, else $XDG_CACHE_HOME/hi-runtime, else ~/.cache."""
    env = os.environ.get("HI_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hi-runtime"


def _source_key(paths: Iterable[Path], extra: str) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{extra}".encode())
    for p in sorted(Path(x).resolve() for x in paths):
        st = p.stat()
        h.update(f"|{p}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:24]


def _cached(key: str, build: Callable[[], Dataset], use_cache: bool) -> Dataset:
    if not use_cache:
        return build()
    root = cache_dir() / "datasets"
    img_f, lab_f, meta_f = root / f"{key}.images.npy", root / f"{key}.labels.npy", root / f"{key}.json"
    if img_f.exists() and lab_f.exists() and meta_f.exists():
        try:
            meta = json.loads(meta_f.read_text())
            images = np.load(img_f, mmap_mode="r")
            return Dataset(np.asarray(images), np.load(lab_f), meta["class_names"], meta.get("name", ""),
                           meta.get("source", ""), meta.get("notes", []))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    ds = build()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{key}.{os.getpid()}"
        np.save(f"{tmp}.images.npy", ds.images)
        np.save(f"{tmp}.labels.npy", ds.labels)
        os.replace(f"{tmp}.images.npy", img_f)
        os.replace(f"{tmp}.labels.npy", lab_f)
        meta_f.write_text(json.dumps({"class_names": ds.class_names, "name": ds.name,
                                      "source": ds.source, "notes": ds.notes}))
    except OSError:
        pass  # caching is an optimization; a read-only home must not break loading
    return ds


# ----------------------------------------------------------------------------------------------------
# Image decoding
# ----------------------------------------------------------------------------------------------------

def resize_center_crop(img: "object", size: int, resize_shorter: int | None = None) -> np.ndarray:
    """ImageNet-style preprocessing: resize the shorter side to ``resize_shorter`` (default size*256/224),
    then center-crop ``size`` x ``size``. Takes and returns images as PIL/array; output uint8 HWC."""
    from PIL import Image

    if not isinstance(img, Image.Image):
        img = Image.fromarray(np.asarray(img))
    shorter = resize_shorter or int(round(size * 256 / 224))
    w, h = img.size
    scale = shorter / min(w, h)
    nw, nh = max(size, int(round(w * scale))), max(size, int(round(h * scale)))
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def decode_image(data: bytes, name: str, channels: int = 3, image_size: int | None = None) -> np.ndarray:
    """Decode one encoded image to uint8 HWC; a corrupt file raises DatasetError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            if image_size is not None and im.size != (image_size, image_size):
                arr = resize_center_crop(im, image_size)
            else:
                im.load()
                arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"corrupt or unreadable image {name}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


# ----------------------------------------------------------------------------------------------------
# Image folders (directory or tar archive)
# ----------------------------------------------------------------------------------------------------

def _image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (the cache key of a folder dataset)."""
    out = []
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir():
                    stack.append(Path(e.path))
                elif e.name.lower().endswith(IMAGE_SUFFIXES):
                    out.append(Path(e.path))
    return out or [root]


def _iter_folder_members(root: Path, split: str) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """Yield (class_name, member_name, read) for a directory tree."""
    split_dir = root / split if (root / split).is_dir() else root
    for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for f in sorted(cls_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                yield cls_dir.name, str(f), f.read_bytes


def _iter_tar_members(archive: Path, split: str) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        # tarfile lists every compression it tried, one line each: the user needs only the gist
        why = ("it is not a tar archive (plain, .gz, .bz2 or .xz)" if isinstance(exc, tarfile.ReadError)
               else " ".join(str(exc).split()))
        raise DatasetError(f"cannot open archive {archive}: {why}; expected {IMAGE_FOLDER_LAYOUT}") from exc
    # an archive of class folders alone holds one split: the one it is named after (test.tar.gz); read for
    # any other split it would hand the same images to training and test
    flat_ok = archive.name.split(".")[0] == split
    with tf:
        try:
            for m in tf:
                if not m.isfile() or not m.name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                parts = Path(m.name).parts
                parts = parts[1:] if parts and parts[0] == "." else parts
                if len(parts) >= 3 and parts[-3] == split:
                    cls = parts[-2]
                elif len(parts) == 2 and flat_ok:
                    cls = parts[0]
                else:
                    continue
                fobj = tf.extractfile(m)
                if fobj is None:
                    continue
                data = fobj.read()
                yield cls, f"{archive}:{m.name}", (lambda d=data: d)
        except (tarfile.TarError, OSError, EOFError, zlibError) as exc:
            raise DatasetError(f"archive {archive} is truncated or corrupt: {exc}") from exc


try:  # zlib errors surface from gzip-compressed tars
    from zlib import error as zlibError
except ImportError:  # pragma: no cover
    zlibError = OSError  # type: ignore[misc,assignment]


def find_split_source(root: Path, split: str) -> Path:
    """Locate ``split`` under ``root``: a directory ``root/split``, an archive ``root/split.tar[.gz]``,
    or ``root`` itself when it is an archive or a class-folder tree."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset path {root} does not exist; expected {IMAGE_FOLDER_LAYOUT}")
    if root.is_file():
        return root
    for cand in (root / split, root / f"{split}.tar.gz", root / f"{split}.tgz", root / f"{split}.tar"):
        if cand.exists():
            return cand
    raise DatasetError(
        f"no '{split}' split under {root} (looked for {split}/, {split}.tar.gz, {split}.tar); "
        f"expected {IMAGE_FOLDER_LAYOUT}")


def load_image_folder(path: str | Path, split: str = "train", *, image_size: int | None = None,
                      channels: int = 3, class_names: Sequence[str] | None = None,
                      on_corrupt: str = "error", use_cache: bool = True, progress: bool = True,
                      name: str = "") -> Dataset:
    """Load ``<split>/<class>/<image>`` from a directory or tar archive.

    Classes are the sorted folder names unless ``class_names`` fixes the order (CIFAR-10's label order).
    ``image_size`` resizes/center-crops images that are not already that size (ImageNet-style); without
    it all images must share one size. ``on_corrupt="error"`` stops at the first corrupt image, naming it;
    ``"skip"`` leaves corrupt images out but records every skipped name in ``Dataset.notes`` and warns.
    """
    if on_corrupt not in ("error", "skip"):
        raise ValueError("on_corrupt must be 'error' or 'skip'")
    source = find_split_source(Path(path), split)
    # a folder is keyed by every image in it (its own mtime does not change when a class folder's files do)
    key = _source_key([source] if source.is_file() else _image_files(source),
                      f"folder|{split}|{image_size}|{channels}|{class_names}|{on_corrupt}")

    def build() -> Dataset:
        members = (_iter_tar_members(source, split) if source.is_file()
                   else _iter_folder_members(source, split))
        images: list[np.ndarray] = []
        cls_of: list[str] = []
        skipped: list[str] = []
        it: Iterable = members
        if progress:
            from tqdm import tqdm
            it = tqdm(members, desc=f"decoding {source.name}", unit="img", mininterval=1.0, leave=False)
        for cls, member, read in it:
            try:
                img = decode_image(read(), member, channels, image_size)
            except DatasetError as exc:
                if on_corrupt == "error":
                    raise DatasetError(f"{exc} (pass on_corrupt='skip' to leave corrupt images out)") from exc
                skipped.append(member)
                continue
            images.append(img)
            cls_of.append(cls)
        if not images:
            flat = "; an archive of class folders alone must be named after its split (e.g. test.tar.gz)" \
                if source.is_file() else ""
            raise DatasetError(f"no images found for split '{split}' in {source}; expected {IMAGE_FOLDER_LAYOUT}{flat}")
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise DatasetError(f"images in {source} have different sizes {sorted(shapes)[:4]}...; "
                               "pass image_size=N to resize and center-crop them")
        found = sorted(set(cls_of))
        names = list(class_names) if class_names is not None else found
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise DatasetError(f"class folders {unknown} in {source} are not among the expected classes {names}")
        index = {n: i for i, n in enumerate(names)}
        labels = np.fromiter((index[c] for c in cls_of), dtype=np.int64, count=len(cls_of))
        notes = [f"skipped corrupt image {s}" for s in skipped]
        if skipped:
            import warnings
            warnings.warn(f"{len(skipped)} corrupt images skipped in {source}: {skipped[:5]}", stacklevel=2)
        return Dataset(np.stack(images), labels, names, name or split, str(source), notes)

    return _cached(key, build, use_cache)


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 batches
# ----------------------------------------------------------------------------------------------------

def planar_to_nhwc(flat: np.ndarray, size: int = 32) -> np.ndarray:
    """CIFAR's channel-planar rows (R plane, G plane, B plane) -> NHWC uint8."""
    return flat.reshape(-1, 3, size, size).transpose(0, 2, 3, 1).astype(np.uint8, copy=False)


def nhwc_to_planar(images: np.ndarray) -> np.ndarray:
    """NHWC -> CIFAR's channel-planar byte order, one row of 3*H*W bytes per image."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


def _cifar_batch_files(root: Path, split: str, binary: bool) -> list[Path]:
    names = ([f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"])
    if binary:
        names = [n + ".bin" for n in names]
    return [root / n for n in names]


def load_cifar10_batches(path: str | Path, split: str = "train") -> Dataset:
    """The official CIFAR-10 python (pickled) or binary batches in ``path``."""
    root = Path(path)
    for sub in ("", "cifar-10-batches-py", "cifar-10-batches-bin"):
        r = root / sub if sub else root
        for binary in (False, True):
            files = _cifar_batch_files(r, split, binary)
            if all(f.exists() for f in files):
                return _read_cifar_batches(files, binary, split)
    raise DatasetError(
        f"no CIFAR-10 {split} batches in {root}: expected data_batch_1..5/test_batch (python) or "
        "data_batch_1.bin..5.bin/test_batch.bin (binary), possibly inside cifar-10-batches-py/-bin")


def _read_cifar_batches(files: list[Path], binary: bool, split: str) -> Dataset:
    xs, ys = [], []
    for f in files:
        if binary:
            raw = np.fromfile(f, dtype=np.uint8)
            if raw.size % 3073:
                raise DatasetError(f"{f} has {raw.size} bytes, not a multiple of 3073 (1 label + 3072 pixels)")
            rec = raw.reshape(-1, 3073)
            ys.append(rec[:, 0].astype(np.int64))
            xs.append(planar_to_nhwc(rec[:, 1:]))
        else:
            try:
                with open(f, "rb") as fh:
                    d = pickle.load(fh, encoding="bytes")
                xs.append(planar_to_nhwc(np.asarray(d[b"data"], dtype=np.uint8)))
                ys.append(np.asarray(d[b"labels"], dtype=np.int64))
            except (pickle.UnpicklingError, KeyError, EOFError, ValueError) as exc:
                raise DatasetError(f"{f} is not a CIFAR-10 python batch: {exc}") from exc
    return Dataset(np.concatenate(xs), np.concatenate(ys), list(CIFAR10_CLASSES), split, str(files[0].parent))


# ----------------------------------------------------------------------------------------------------
# MNIST IDX
# ----------------------------------------------------------------------------------------------------

def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array of its declared shape."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"IDX file {p} does not exist")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file {p}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{p} is not an IDX file (bad magic)")
    dtype_code, ndim = data[2], data[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise DatasetError(f"{p}: unknown IDX data type 0x{dtype_code:02x}")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DatasetError(f"{p}: header declares shape {dims} but holds {arr.size} values (truncated?)")
    return arr.reshape(dims)


def load_mnist(path: str | Path, split: str = "train") -> Dataset:
    root = Path(path)
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        for cand in (root / f"{prefix}-{kind}.gz", root / f"{prefix}-{kind}",
                     root / f"{prefix}-{kind.replace('-idx', '.idx')}.gz"):
            if cand.exists():
                found[kind] = cand
                break
        else:
            raise DatasetError(f"missing MNIST file {prefix}-{kind}[.gz] in {root}")
    images = read_idx(found["images-idx3-ubyte"])
    labels = read_idx(found["labels-idx1-ubyte"])
    if images.ndim != 3 or len(images) != len(labels):
        raise DatasetError(f"MNIST files in {root} disagree: images {images.shape}, labels {labels.shape}")
    return Dataset(images[..., None].astype(np.uint8), labels.astype(np.int64), list(MNIST_CLASSES),
                   split, str(root))


class NpzArrays(NamedTuple):
    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    ids: list[int] | None


def load_npz_arrays(path: str | Path) -> NpzArrays:
    """An ``.npz`` with ``images`` (uint8 NHWC) and optional ``labels``, ``class_names`` and ``ids`` (the
    demo samples, a board's test set, any saved batch).

    A file that is not an archive of plain arrays (text, a JPEG, a single ``.npy``, pickled objects) is one
    :class:`DatasetError` saying so; numpy's own message would suggest ``allow_pickle``, which is never the
    fix (and would run code from the file)."""
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path} is a folder, not an .npz file; give an .npz file")
    if not path.exists():
        raise DatasetError(f"npz file {path} does not exist")
    not_npz = (f"{path} is not an .npz archive of arrays; give a file written by numpy.savez with an 'images' "
               "array (uint8 NHWC)")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile):  # not a zip or .npy file (numpy then tries pickle)
        raise DatasetError(not_npz) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path} is a single .npy array, not an .npz archive; save it with "
                           "numpy.savez(FILE, images=...)")
    with data:
        if "images" not in data:
            raise DatasetError(f"{path} has no 'images' array (it has {sorted(data.files)})")
        try:
            images = data["images"]
            labels = data["labels"] if "labels" in data else None
            names = [str(c) for c in data["class_names"]] if "class_names" in data else None
            ids = [int(i) for i in data["ids"]] if "ids" in data else None
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error):  # pickled objects or a damaged member
            raise DatasetError(not_npz) from None
    return NpzArrays(images, labels, names, ids)


# ----------------------------------------------------------------------------------------------------
# Splits and the front door
# ----------------------------------------------------------------------------------------------------

def split_train_val(ds: Dataset, val_size: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Deterministic, class-stratified validation split carved from a training split.

    The same (dataset, val_size, seed) always gives the same indices, so deciders fitted on the
    validation split in one run are evaluated on the same images in another.
    """
    n = len(ds)
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1}, got {val_size}")
    rng = np.random.default_rng(seed)
    val_idx: list[np.ndarray] = []
    classes = np.unique(ds.labels)
    # allocate per class proportionally, then fix rounding so the total is exactly val_size
    counts = np.array([(ds.labels == c).sum() for c in classes])
    alloc = np.floor(counts / n * val_size).astype(int)
    for i in np.argsort(-(counts / n * val_size - alloc))[: val_size - alloc.sum()]:
        alloc[i] += 1
    for c, k in zip(classes, alloc):
        idx = np.flatnonzero(ds.labels == c)
        val_idx.append(rng.permutation(idx)[:k])
    val = np.sort(np.concatenate(val_idx))
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return ds.subset(np.flatnonzero(mask), "train"), ds.subset(val, "val")


DEFAULT_VAL_SIZE = {"cifar10": 5000, "mnist": 5000}


def load_dataset(name: str, path: str | Path, split: str, *, val_size: int | None = None, seed: int = 0,
                 image_size: int | None = None, use_cache: bool = True, progress: bool = True) -> Dataset:
    """Load a named dataset's split: ``train`` (training minus validation), ``val``, ``test`` or
    ``trainval`` (the full training split).

    ``name`` is ``cifar10``, ``mnist`` or ``folder`` (any image-folder tree, e.g. ImageNet-style, with
    ``image_size`` for resize and center crop). For cifar10 the path may hold the JPEG image-folder
    archives, image-folder directories, or the official python/binary batches.
    """
    if split not in ("train", "val", "test", "trainval"):
        raise ValueError(f"split must be train, val, test or trainval, got {split!r}")
    base_split = "test" if split == "test" else "train"
    root = Path(path)
    if name == "cifar10":
        base = _load_cifar10_any(root, base_split, use_cache, progress)
    elif name == "mnist":
        base = load_mnist(root, base_split)
    elif name in ("folder", "imagenet"):
        base = load_image_folder(root, base_split, image_size=image_size or (224 if name == "imagenet" else None),
                                 use_cache=use_cache, progress=progress, name=name)
    else:
        raise DatasetError(f"unknown dataset {name!r}: choose cifar10, mnist, folder or imagenet")
    base.name = name
    if split in ("test", "trainval"):
        return base
    vs = val_size if val_size is not None else DEFAULT_VAL_SIZE.get(name, max(1, len(base) // 10))
    if not 0 < vs < len(base):  # a user's --val-size (or the default on a small dataset): say which and why
        raise DatasetError(f"a validation split of {vs} images cannot be carved from the {len(base)} training images "
                           f"under {path}; pass --val-size between 1 and {len(base) - 1}")
    train, val = split_train_val(base, vs, seed)
    return train if split == "train" else val


def _load_cifar10_any(root: Path, split: str, use_cache: bool, progress: bool) -> Dataset:
    if not root.exists():
        raise DatasetError(f"CIFAR-10 path {root} does not exist; expected {IMAGE_FOLDER_LAYOUT}, or the "
                           "official python/binary batches")
    try:
        return load_cifar10_batches(root, split)
    except DatasetError as batch_err:
        try:
            return load_image_folder(root, split, class_names=CIFAR10_CLASSES, use_cache=use_cache,
                                     progress=progress, name="cifar10")
        except DatasetError as folder_err:
            if "no '" in str(folder_err) and "split under" in str(folder_err):
                raise DatasetError(f"{folder_err}; nor {batch_err}") from folder_err
            raise
