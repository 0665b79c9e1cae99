"""The distribution lists its packages by hand (two live away from their names): every package folder of
the source tree must be in that list, or a wheel would silently lack it."""
from __future__ import annotations

import tomllib
from pathlib import Path


def test_every_package_folder_is_listed(repo_root: Path):
    cfg = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    dirs = {name: Path(path) for name, path in cfg["package-dir"].items() if name}
    found = set()
    for top in ("hi_runtime", "training", "offload_server", "measurements"):
        for init in (repo_root / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(repo_root).parts))
    data_only = {"hi_firmware_sources"}  # the firmware's C sources: files, no Python
    found |= data_only
    for name, rel in dirs.items():
        if name in data_only:
            continue
        for init in (repo_root / rel).rglob("__init__.py"):
            found.add(".".join((name, *init.parent.relative_to(repo_root / rel).parts)))
    # the shipped models: every dataset folder is a data package of hi_models
    found |= {f"hi_models.{d.name}" for d in (repo_root / "models").iterdir() if d.is_dir() and
              not d.name.startswith((".", "__"))}
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no folder"
