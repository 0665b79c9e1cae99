"""Where the agent's samples come from: datasets, image folders, the shipped demo sample, a camera.

Every source yields :class:`Sample` (uint8 HWC RGB image, optional label) and is opened from one
``--input`` spec (see :func:`open_input`). Heavy or optional imports (the training loaders with Pillow,
OpenCV) happen only when that source is used: a Pi that reads a camera never imports Pillow, and one that
reads a folder never needs OpenCV. A microcontroller's sample stream is the serial bridge's job
(``hi-agent serial``), not a source here.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INPUT_FORMS = (
    "demo                   the shipped sample of 500 CIFAR-10 JPEG test images (needs nothing else)",
    ("cifar10:PATH[:SPLIT]   a dataset the training loaders read (also mnist:, folder:, imagenet:; split "
     "test by default; shuffled with seed 0 unless --order stored)"),
    "images:DIR             every image under DIR (recursively); labels from class-named folders",
    "npz:FILE               arrays 'images' (uint8 NHWC) and optional 'labels'/'class_names'",
    "camera[:INDEX]         frames from an OpenCV camera (pip install 'hi-runtime[camera]')",
)
DATASET_NAMES = ("cifar10", "mnist", "folder", "imagenet")
DATASET_ORDERS = ("shuffled", "stored")
DATASET_SPLITS = ("train", "val", "test", "trainval")  # what hi_runtime.datasets.load_dataset reads
DATASET_SHUFFLE_SEED = 0
DEFAULT_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class InputError(ValueError):
    """An input spec is malformed, or its source is missing or unreadable."""


@dataclass
class Sample:
    sample_id: int | str
    image: np.ndarray  # uint8 HWC RGB
    label: int | None = None


class InputSource:
    """Iterable of samples with a name; ``total`` is known for finite sources (for the progress bar)."""

    name: str = "?"
    class_names: list[str] | None = None
    total: int | None = None
    live: bool = False  # samples arrive on their own clock (a camera): the arrival process does not pace them

    def __iter__(self) -> Iterator[Sample]:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_to(self, size: tuple[int, int]) -> None:
        """Resize what is read to ``size`` (H, W) from now on, for a consumer that learns its input size only
        after the source is opened (a board over serial). Sources of stored arrays keep their size."""
        if hasattr(self, "size"):
            self.size = size

    def close(self) -> None:
        pass


class ArraySource(InputSource):
    """In-memory images (and labels); what datasets, npz files and tests become."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, *, name: str = "arrays",
                 class_names: Sequence[str] | None = None, ids: Sequence | None = None) -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise InputError(f"{name}: images must be uint8 NHWC, got {images.dtype} {images.shape}")
        if labels is not None and len(labels) != len(images):
            raise InputError(f"{name}: {len(images)} images but {len(labels)} labels")
        if ids is not None and len(ids) != len(images):  # samples would be dropped, or the run fail midway
            raise InputError(f"{name}: {len(images)} images but {len(ids)} ids; give one id per image")
        self.images = images
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64)
        self.ids = list(ids) if ids is not None else None
        self.name = name
        self.class_names = list(class_names) if class_names is not None else None
        self.total = len(images)

    def limit(self, count: int | None, offset: int = 0) -> ArraySource:
        _check_offset(self.name, len(self.images), offset)
        end = None if count is None else offset + count
        ids = list(range(len(self.images)))[offset:end] if self.ids is None else self.ids[offset:end]
        return ArraySource(self.images[offset:end], None if self.labels is None else self.labels[offset:end],
                           name=self.name, class_names=self.class_names, ids=ids)  # ids stay the stored indices

    def __iter__(self) -> Iterator[Sample]:
        n = len(self.images)
        labels = [None] * n if self.labels is None else self.labels.tolist()
        ids = self.ids if self.ids is not None else range(n)
        images = self.images
        for i in range(n):
            yield Sample(ids[i], images[i], labels[i])


def _check_offset(name: str, total: int, offset: int) -> None:
    """An empty input, or an offset past its end, would be a silent run of no samples: say so instead."""
    if total == 0:
        raise InputError(f"{name} holds no samples")
    if offset >= total:
        raise InputError(f"--offset {offset} is past the end of {name} ({total} samples); give an offset below "
                         f"{total}")


def load_npz(path: str | Path) -> ArraySource:
    """An ``.npz`` with ``images`` (uint8 NHWC) and optional ``labels``, ``class_names`` and ``ids``
    (:func:`hi_runtime.datasets.load_npz_arrays`: a file that is not one is one :class:`InputError`)."""
    from hi_runtime.datasets import DatasetError, load_npz_arrays

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an .npz file; give an .npz file (or images:{path} for a "
                         "folder of images)")
    try:
        arrays = load_npz_arrays(path)
    except DatasetError as exc:
        raise InputError(str(exc)) from None
    return ArraySource(arrays.images, arrays.labels, name=path.name, class_names=arrays.class_names,
                       ids=arrays.ids)


def load_dataset_source(name: str, path: str | Path, split: str = "test", order: str = "shuffled") -> ArraySource:
    """A split of a dataset through the training loaders (imported here: they need numpy and Pillow).

    Image-folder datasets are stored class by class, so the first N samples of the stored order are all
    airplanes and cars: ``--limit 1000`` would measure two easy classes. ``order="shuffled"`` (the
    default) walks the split in a fixed permutation (seed ``DATASET_SHUFFLE_SEED``), so any prefix is a
    fair sample and two runs see the same samples; sample ids stay the stored indices, so logs of either
    order join on ``sample_id``."""
    if order not in DATASET_ORDERS:
        raise InputError(f"unknown dataset order {order!r}; use one of {', '.join(DATASET_ORDERS)}")
    try:
        from hi_runtime.datasets import DatasetError, load_dataset
    except ImportError as exc:
        raise InputError(f"reading dataset {name!r} needs Pillow ({exc}): pip install pillow; or use npz: "
                         "inputs") from exc
    try:
        ds = load_dataset(name, path, split, progress=False)
    except (DatasetError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from exc
    ids = np.arange(len(ds.images))
    if order == "shuffled":
        ids = np.random.default_rng(DATASET_SHUFFLE_SEED).permutation(len(ds.images))
    return ArraySource(ds.images[ids], ds.labels[ids], name=f"{name}:{split}", class_names=ds.class_names,
                       ids=ids.tolist())


class ImageFolderSource(InputSource):
    """Every image file under a directory, sorted by path, decoded with Pillow and resized to the model's
    input (shorter side, then center crop). A parent folder named like a class gives the label."""

    SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif")

    def __init__(self, root: str | Path, size: tuple[int, int] = (32, 32),
                 class_names: Sequence[str] | None = DEFAULT_CLASS_NAMES) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder {self.root} does not exist or is not a directory")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in self.SUFFIXES)
        if not self.files:
            hint = ""
            idx = any(self.root.glob("*-ubyte*"))  # a dataset directory as the loaders read it: IDX files
            if idx or any(self.root.glob("*.tar.gz")):  # ... or archives
                hint = f"; for a dataset directory use --input {'mnist' if idx else 'cifar10'}:{self.root}"
            raise InputError(f"no images ({', '.join(self.SUFFIXES)}) under {self.root}{hint}")
        self.size = size
        self.class_names = list(class_names) if class_names else None
        self.name = f"images:{self.root}"
        self.total = len(self.files)
        self.skipped: list[str] = []  # files that could not be decoded (skipped, named in the run's report)

    def _label(self, path: Path) -> int | None:
        if self.class_names and path.parent.name in self.class_names:
            return self.class_names.index(path.parent.name)
        return None

    def __iter__(self) -> Iterator[Sample]:
        try:
            from PIL import Image
        except ImportError as exc:
            raise InputError("reading an image folder needs Pillow: pip install pillow") from exc
        for path in self.files:
            try:
                with Image.open(path) as img:
                    rgb = fit_image(np.asarray(img.convert("RGB")), self.size)
            except (OSError, ValueError) as exc:  # one bad file must not end a run over a whole folder
                if not self.skipped:
                    log.warning("skipping %s: not a readable image (%s); further ones are counted at the end",
                                path, exc)
                self.skipped.append(str(path))
                continue
            yield Sample(str(path.relative_to(self.root)), rgb, self._label(path))


def fit_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Center-crop to the target aspect ratio, then resize (Pillow, bilinear) to ``size`` = (H, W)."""
    h, w = rgb.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    scale = min(h / th, w / tw)
    ch, cw = round(th * scale), round(tw * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = rgb[top:top + ch, left:left + cw]
    from PIL import Image

    return np.asarray(Image.fromarray(crop).resize((tw, th), Image.BILINEAR), dtype=np.uint8)


class CameraSource(InputSource):
    """Frames from an OpenCV camera (BGR converted to RGB), center-cropped and resized with OpenCV.
    ``max_frames`` bounds the run (None: until interrupted)."""

    def __init__(self, index: int = 0, size: tuple[int, int] = (32, 32), max_frames: int | None = None):
        try:
            import cv2
        except ImportError as exc:
            raise InputError("camera input needs OpenCV: pip install 'hi-runtime[camera]' "
                             "(opencv-python-headless)") from exc
        self.cv2 = cv2
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            raise InputError(f"camera {index} could not be opened (is it connected, and is this user allowed "
                             "to read /dev/video*?)")
        self.size = size
        self.name = f"camera:{index}"
        self.total = max_frames
        self.live = True

    def __iter__(self) -> Iterator[Sample]:
        i = 0
        while self.total is None or i < self.total:
            ok, frame = self.cap.read()
            if not ok:
                return
            h, w = frame.shape[:2]
            side = min(h, w)
            crop = frame[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
            small = self.cv2.resize(crop, (self.size[1], self.size[0]), interpolation=self.cv2.INTER_AREA)
            yield Sample(i, np.ascontiguousarray(small[:, :, ::-1]), None)
            i += 1

    def close(self) -> None:
        self.cap.release()


def open_input(spec: str, *, size: tuple[int, int] = (32, 32), limit: int | None = None,
               offset: int = 0, order: str = "shuffled") -> InputSource:
    """Open one ``--input`` spec (forms in ``INPUT_FORMS``). A bare path is a ``.npz`` file or an image
    folder. ``limit``/``offset`` select a slice of finite array sources (camera: ``limit`` frames), taken
    after ``order`` is applied to dataset splits (see :func:`load_dataset_source`)."""
    kind, _, rest = spec.partition(":")
    if spec == "demo":
        from hi_runtime.artifacts import ArtifactError, shipped

        try:
            return load_npz(shipped("demo_samples.npz")).limit(limit, offset)
        except ArtifactError as exc:
            raise InputError(str(exc)) from None
    if kind in DATASET_NAMES and rest:
        path, split = rest, "test"
        head, _, tail = rest.rpartition(":")
        if head and tail in DATASET_SPLITS:
            path, split = head, tail
        elif head and not Path(rest).exists() and Path(head).exists():  # a mistyped split, not a path with ':'
            raise InputError(f"unknown split {tail!r} in {spec}; use one of {', '.join(DATASET_SPLITS)} "
                             f"(e.g. {kind}:{head}:test)")
        return load_dataset_source(kind, path, split, order).limit(limit, offset)
    if kind == "npz" and rest:
        return load_npz(rest).limit(limit, offset)
    if kind == "images" and rest:
        src = ImageFolderSource(rest, size)
        _check_offset(src.name, len(src.files), offset)
        src.files = src.files[offset:None if limit is None else offset + limit]
        src.total = len(src.files)
        return src
    if kind == "camera":
        try:
            index = int(rest) if rest else 0
        except ValueError:
            raise InputError(f"camera index must be an integer, got {rest!r}") from None
        return CameraSource(index, size, max_frames=limit)
    path = Path(spec)
    if path.suffix.lower() == ".npz":
        return load_npz(path).limit(limit, offset)
    if path.is_dir():
        return open_input(f"images:{spec}", size=size, limit=limit, offset=offset)
    forms = ", ".join(f.split()[0] for f in INPUT_FORMS)
    raise InputError(f"cannot read input {spec!r}: give one of {forms} (hi-agent run --help explains each)")
