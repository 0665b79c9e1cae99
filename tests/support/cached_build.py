"""Test models built once per machine and kept in pytest's cache, rebuilt when their version changes."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def cached_build(request, name: str, version: str, build: Callable[[Path], None]) -> Path:
    """The directory ``name`` in pytest's cache, built by ``build(dir)`` (which must write ``VERSION`` =
    ``version`` last) unless a build of this version is already there. Building needs TensorFlow; the
    build goes to a temporary sibling renamed into place, so concurrent sessions never see half a kit."""
    base = Path(request.config.cache.mkdir(name))
    if (base / "VERSION").exists() and (base / "VERSION").read_text() == version:
        return base
    pytest.importorskip("tensorflow", reason=f"building the test models in {name} needs TensorFlow")
    shutil.rmtree(base, ignore_errors=True)
    tmp = base.with_name(base.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    try:
        tmp.rename(base)
    except OSError:  # another session built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return base
