"""Where the firmware's C sources and the shipped models are, wherever hi_firmware is installed.

The firmware sources (firmware/lib, src, include, qemu, ...) install with the package as the data package
``hi_firmware_sources`` (pyproject: package-dir), so a wheel can build boards. Resolution order, first hit
wins (:func:`firmware_dir`):

1. an explicit directory (``hi-firmware --firmware-dir DIR``),
2. the environment variable ``HI_FIRMWARE_DIR``,
3. the installed ``hi_firmware_sources`` package (the wheel's copy, or the checkout in an editable install),
4. the checkout this package was imported from (``firmware/hi_firmware`` beside ``firmware/lib``).

A directory is accepted only if it holds ``sources.mk`` (the one source list); anything else is reported
with the order above, so a wrong setting is one line to fix. This module is the only place that looks at
where hi_firmware itself lives.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import UsageError

FIRMWARE_ENV = "HI_FIRMWARE_DIR"
MARKER = "sources.mk"
_override: Path | None = None


def set_firmware_dir(path: str | os.PathLike | None) -> None:
    """The CLI's ``--firmware-dir``: used by every later :func:`firmware_dir` call of this process."""
    global _override
    _override = Path(path).resolve() if path else None
    if _override is not None and not (_override / MARKER).is_file():
        raise UsageError(f"--firmware-dir {path} holds no {MARKER}; pass the firmware/ directory of a checkout "
                         "or of an installed hi_firmware_sources package")


def _installed() -> Path | None:
    try:
        spec = importlib.util.find_spec("hi_firmware_sources")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / MARKER).is_file():
            return Path(loc)
    return None


def _checkout() -> Path | None:
    here = Path(__file__).resolve().parent.parent  # firmware/ when imported from a checkout
    return here if (here / MARKER).is_file() else None


def firmware_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The firmware/ directory (holds sources.mk, lib/, src/, include/, qemu/ ...); see the module docstring."""
    if explicit:
        p = Path(explicit).resolve()
        if not (p / MARKER).is_file():
            raise UsageError(f"{explicit} holds no {MARKER}; pass the firmware/ directory of a checkout")
        return p
    if _override is not None:
        return _override
    env = os.environ.get(FIRMWARE_ENV)
    if env:
        p = Path(env).resolve()
        if not (p / MARKER).is_file():
            raise UsageError(f"{FIRMWARE_ENV}={env} holds no {MARKER}; point it at a firmware/ directory or unset it")
        return p
    for found in (_installed(), _checkout()):
        if found is not None:
            return found
    raise UsageError(f"the firmware sources were not found: pass --firmware-dir DIR, set {FIRMWARE_ENV}, or "
                     "install hi-runtime[firmware] (it carries them as hi_firmware_sources)")


def build_dir() -> Path:
    """Default output directory of board builds: ./build/hi-firmware under the current directory (never inside
    an installed package)."""
    return Path.cwd() / "build" / "hi-firmware"


def shipped_model(name: str) -> Path | None:
    """A shipped artifact (models/cifar10/NAME) as a default, or None when it is not installed: the core's
    resolver (``hi_runtime.artifacts``: --models-dir, HI_MODELS_DIR, the installed hi_models package)."""
    from hi_runtime import artifacts

    found = artifacts.default_path(name)
    return Path(found) if found else None
