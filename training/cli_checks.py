"""What hi-train checks about the values and files a user gives it, beyond the shared argparse types of
``hi_runtime.cli_support``: output prefixes, and one loader per kind of user-named model file.

The libraries report a file of the wrong kind in their own words, often misleading on a command line
(Keras says "File not found" for a JPEG named .keras, onnx a protobuf DecodeError, the runtimes a
BackendError naming no flag), so every place that opens a model file the user named goes through these
helpers, which turn exactly those errors into one line naming the flag and the fix (a UsageError).
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hi_runtime.cli_support import UsageError

KERAS_FIX = "give the .keras file hi-train wrote"
LOCAL_MODEL_FIX = "give the local INT8 .tflite model, e.g. models/cifar10/resnet8_int8.tflite"
SERVER_MODEL_FIX = "give the server model as .onnx or .tflite, e.g. models/cifar10/server_cpu.onnx"
TEACHER_FIX = "give an exported .onnx or .tflite model, e.g. models/cifar10/server.onnx"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # a legacy Keras .h5 file starts with it


def check_out_prefix(out: str | Path, example: str) -> Path:
    """``--out`` is a prefix the command adds suffixes to (PREFIX.json, PREFIX.keras, ...); a folder there
    would put the files beside it under the folder's name, so it is refused with a prefix inside it."""
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"--out {out} is a folder; give an output prefix inside it, e.g. {path / example}")
    return path


def check_keras_file(path: str | Path, flag: str, fix: str = KERAS_FIX) -> Path:
    """Before TensorFlow starts: ``path`` is a saved Keras model (a .keras zip with its config.json, or a
    legacy HDF5 .h5), else a UsageError naming ``flag``."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag} {path} does not exist; {fix}")
    if not _is_keras_file(p):
        raise UsageError(f"{flag} {path} is not a saved Keras model (.keras zip); {fix}")
    return p


def _is_keras_file(p: Path) -> bool:
    if not p.is_file():
        return False
    if p.suffix.lower() in (".h5", ".hdf5"):
        with open(p, "rb") as fh:
            return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    if p.suffix.lower() != ".keras" or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as z:
            return "config.json" in z.namelist()
    except zipfile.BadZipFile:
        return False


def load_keras(path: str | Path, flag: str, fix: str = KERAS_FIX):
    """The saved Keras model the user named with ``flag``, without its optimizer (export, trunk copy);
    a file Keras cannot read (a truncated zip, another format) is a UsageError naming the flag."""
    check_keras_file(path, flag, fix)
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{flag} {path} is not a saved Keras model (.keras zip) Keras can load "
                         f"({_one_line(exc)}); {fix}") from None


@contextmanager
def user_model(flag: str, path: str | Path, fix: str) -> Iterator[None]:
    """Around code that opens the .tflite/.onnx model the user named with ``flag``: the runtime refusing
    the file (hi_runtime.backends.BackendError: not a model, an unknown format) is a UsageError in one line
    naming the flag and the file. Not hi-train's ``user_errors``: a BackendError on a file hi-train has
    just written is a bug, which keeps its traceback."""
    from hi_runtime.backends import BackendError

    try:
        yield
    except BackendError as exc:
        raise UsageError(f"{flag} {path} cannot be loaded ({_one_line(exc)}); {fix}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
