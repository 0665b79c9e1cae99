"""Shared pytest fixtures: where the repository and the shared datasets are."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("HI_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
MODELS_DIR = REPO_ROOT / "models"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def cifar10_jpeg_dir() -> Path:
    """The JPEG CIFAR-10 archives; tests that need them skip with a reason when they are absent."""
    path = SHARED_DATASETS / "cifar10-jpeg"
    if not (path / "test.tar.gz").exists():
        pytest.skip(f"CIFAR-10 JPEG archives not found at {path} (set HI_SHARED_DATASETS)")
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = SHARED_DATASETS / "mnist"
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST IDX files not found at {path} (set HI_SHARED_DATASETS)")
    return path


@pytest.fixture(autouse=True)
def _restore_cli_logging():
    """A CLI run in-process (hi-server's main) routes the project's loggers to the sys.stderr of that moment,
    a test's capture stream, which is closed when the test ends: later tests' log lines would then fail
    with "--- Logging error ---". Each test gets the loggers back as it found them."""
    import logging

    saved = {name: (lg.handlers[:], lg.level, lg.propagate)
             for name in ("offload_server", "hi_runtime") for lg in [logging.getLogger(name)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
