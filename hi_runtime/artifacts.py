"""Where the shipped models are, wherever the package is installed.

The models live in the repository's top-level ``models/`` folder; the distribution installs that folder as
the data package ``hi_models`` (pyproject: package-dir), so a wheel carries them and an editable install
maps the same name onto the checkout. Resolution order, first hit wins:

1. an explicit directory (a command's ``--models-dir``),
2. the environment variable ``HI_MODELS_DIR``,
3. the installed ``hi_models`` package (the wheel's copy, or the checkout in an editable install).

Nothing here walks up from ``__file__`` to guess a repository root.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MODELS_ENV = "HI_MODELS_DIR"
DEFAULT_DATASET = "cifar10"


class ArtifactError(FileNotFoundError):
    """A shipped artifact is not where the resolver looked."""


def models_root(explicit: str | os.PathLike | None = None) -> Path:
    """The directory holding ``<dataset>/`` folders of shipped models (see the module docstring)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    try:
        import hi_models
    except ImportError as exc:  # pragma: no cover - only a broken install lacks it
        raise ArtifactError(f"the shipped models package (hi_models) is not installed ({exc}); set "
                            f"{MODELS_ENV}=DIR or pass --models-dir") from exc
    return Path(next(iter(hi_models.__path__)))


def models_dir(dataset: str = DEFAULT_DATASET, explicit: str | os.PathLike | None = None) -> Path:
    """``<root>/<dataset>``; an explicit directory that already holds models (no ``<dataset>/`` below
    it) is taken as is, so ``--models-dir models/cifar10`` and ``--models-dir models`` both work."""
    root = models_root(explicit)
    sub = root / dataset
    return sub if sub.is_dir() or not explicit else root


def shipped(name: str, dataset: str = DEFAULT_DATASET, explicit: str | os.PathLike | None = None) -> Path:
    """Path of one shipped artifact (it may not exist; see :func:`require`)."""
    return models_dir(dataset, explicit) / name


def require(name: str, dataset: str = DEFAULT_DATASET, *, flag: str = "--model", also: str = "") -> Path:
    """The shipped artifact a command falls back to when ``flag`` is not given; a missing one is one line
    naming the flag and $HI_MODELS_DIR (``also``: a further way out, e.g. a stand-in)."""
    path = shipped(name, dataset)
    if not path.is_file():
        raise ArtifactError(f"no {flag} given and the shipped {name} is not at {path}; pass {flag} FILE, or set "
                            f"{MODELS_ENV} to a folder holding {dataset}/{name}" + (f", {also}" if also else ""))
    return path


def default_path(name: str, dataset: str = DEFAULT_DATASET) -> str | None:
    """The shipped artifact as a CLI default: its path when it exists, else None."""
    try:
        path = shipped(name, dataset)
    except ArtifactError:
        return None
    return str(path) if path.exists() else None


def find_model(path: str, dataset: str = DEFAULT_DATASET, base: str | os.PathLike | None = None) -> str:
    """A model file a user named: the path as given when it exists; else, for a bare file name (no folder,
    e.g. ``server_cpu.onnx``), the shipped artifact of that name when there is one, so an installed wheel
    serves and compiles its shipped models without the checkout. Anything else comes back unchanged, for
    the caller's own "does not exist" line. ``base`` (a config file's folder) anchors a relative path: it
    is looked for there first, and comes back absolute."""
    given = Path(path)
    if base is not None and not given.is_absolute():
        given = (Path(base) / given).resolve()
    found = str(given) if base is not None else path
    if given.exists() or Path(path).name != str(path):
        return found
    try:
        candidate = shipped(given.name, dataset)
    except ArtifactError:
        return found
    return str(candidate) if candidate.is_file() else found


def read_json(path: str | os.PathLike, what: str, made_by: str, error: type[Exception]) -> Any:
    """The JSON held in ``path``, a file one of the tools writes (``what``: "decider", "chain"); a missing
    file, one that is not text or not JSON is ``error`` with one line naming the file and ``made_by``, the
    command that writes such a file. One place, so every loader says it the same way."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise error(f"{what} file {path} does not exist; make one with {made_by}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{what} file {path} is not text, so not a {what} JSON; give the .json that {made_by} "
                    "writes") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{what} file {path} is not valid JSON: {exc}") from exc
