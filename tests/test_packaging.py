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


def test_the_extras_that_run_hi_bench_standins_install_onnx(repo_root: Path):
    """hi-bench fleet/server --standin build an ONNX model with the onnx package: every extra the stand-in's
    error names (hi-bench's, the Ray fleet's, training's) must install it."""
    from offload_server.standin import ONNX_EXTRAS

    extras = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ONNX_EXTRAS:
        names = {req.split(">")[0].split("=")[0].split(";")[0].split("[")[0].strip() for req in extras[extra]}
        assert "onnx" in names, f"the {extra} extra does not install onnx"


def test_a_standin_without_onnx_is_one_line_naming_the_extra(monkeypatch, tmp_path: Path, capsys):
    import sys

    from measurements.cli import main

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    rc = main(["fleet", "--local", "inprocess", "--standin", "cnn", "--duration", "0.1", "--plot",
               str(tmp_path / "fleet.png")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "hi-runtime[measure]" in lines[0] and "onnx" in lines[0], err


def test_the_core_stays_light(repo_root: Path):
    """The core's own dependencies: numpy, PyYAML and pydantic (the device profiles' schema); everything
    else is a role extra."""
    deps = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in deps}
    assert names == {"numpy", "pyyaml", "pydantic"}
    assert "pydantic>=2" in deps
