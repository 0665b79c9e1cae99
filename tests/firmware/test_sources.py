"""firmware/sources.mk is the one source list: every build description is generated from it or agrees with it.

Checked here: each listed file exists and every C/C++ source of the firmware is listed (a new file cannot be
forgotten by one build); the Makefiles include the list; PlatformIO's library.json filters and
platformio.ini's board folders match it; the Coral CMake app reads it (run through cmake when installed);
the Python builds (hi_firmware.sources) read the same lists.
"""
from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hi_firmware.sources import lists, paths

FW = Path(__file__).resolve().parents[2] / "firmware"
NOT_SOURCES = ("generated/", "build/", "hi_firmware/", "test/host_stubs/", ".pio/")


def _all_sources() -> set[str]:
    found = set()
    for ext in ("*.c", "*.cc", "*.cpp"):
        for p in FW.rglob(ext):
            rel = p.relative_to(FW).as_posix()
            if not rel.startswith(NOT_SOURCES):
                found.add(rel)
    return found


def test_every_listed_file_exists_and_every_source_is_listed() -> None:
    listed = {f for name, items in lists(FW).items() if name.endswith(("_SRCS", "_TESTS"))
              for f in items}
    for name, items in lists(FW).items():
        for item in items:
            assert (FW / item).exists(), f"sources.mk {name} lists {item}, which does not exist"
    missing = _all_sources() - listed
    assert not missing, f"not in firmware/sources.mk (add them to the right list): {sorted(missing)}"
    # each module has its C test beside it, and the tests are not built into the libraries
    for lib, srcs, tests in (("hi_core", "HI_CORE_SRCS", "HI_CORE_TESTS"), ("hi_nn", "HI_NN_SRCS", "HI_NN_TESTS")):
        modules = {Path(p).stem for p in lists(FW)[srcs]}
        tested = {Path(p).stem[: -len("_test")] for p in lists(FW)[tests]}
        assert not {Path(p).name for p in lists(FW)[srcs]} & {Path(p).name for p in lists(FW)[tests]}
        if lib == "hi_nn":
            assert modules <= tested, f"kernels without a C test beside them: {sorted(modules - tested)}"


@pytest.mark.parametrize("makefile", ["qemu/Makefile", "lib/hi_core/Makefile", "lib/hi_nn/Makefile", "host/Makefile",
                                      "fuzz/Makefile"])
def test_makefiles_include_the_list_and_do_not_glob_sources(makefile: str) -> None:
    text = (FW / makefile).read_text()
    assert re.search(r"^include \.\./(\.\./)?sources\.mk$", text, re.MULTILINE), makefile
    globs = [g for g in re.findall(r"\$\(wildcard ([^)]*)\)", text) if re.search(r"\.(c|cc|cpp)\b", g)]
    own = [g for g in globs if not all(w.startswith(("$(APP_DIR)", "$(BENCH_DIR)")) for w in g.split())]
    assert not own, f"{makefile} globs firmware sources instead of using sources.mk: {own}"


@pytest.mark.parametrize("lib,name", [("hi_core", "HI_CORE_SRCS"), ("hi_nn", "HI_NN_SRCS")])
def test_platformio_library_filters_match_the_list(lib: str, name: str) -> None:
    manifest = json.loads((FW / "lib" / lib / "library.json").read_text())
    flt = manifest["build"]["srcFilter"]
    assert flt[0] == "-<*>"
    assert sorted(f[2:-1] for f in flt[1:]) == sorted(Path(p).name for p in lists(FW)[name])


def test_platformio_board_folders_match_the_list() -> None:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(FW / "platformio.ini")
    board_lists = {"nano33ble": "HI_NANO33BLE_SRCS", "esp32dev": "HI_ESP32_SRCS"}
    for env, name in board_lists.items():
        folders = {Path(p).parent.name for p in lists(FW)[name]}
        flt = cp[f"env:{env}"]["build_src_filter"]
        assert {f"+<{d}/>" for d in folders} <= set(flt.split()), (env, flt)
    common = {Path(p).parent.name for p in lists(FW)["HI_BOARD_MAIN_SRCS"]}
    assert {f"+<{d}/>" for d in common} <= set(cp["env"]["build_src_filter"].split())
    tflm = Path(lists(FW)["HI_TFLM_SRCS"][0])
    assert f"-<{tflm.parent.name}/{tflm.name}>" in cp["env"]["build_src_filter"]
    assert f"+<{tflm.parent.name}/{tflm.name}>" in cp["env:nano33ble_tflm"]["build_src_filter"]


def test_coral_cmake_reads_the_list() -> None:
    text = (FW / "coralmicro" / "CMakeLists.txt").read_text()
    assert "hi_sources.cmake" in text and "file(GLOB HI_CORE" not in text and "file(GLOB HI_NN" not in text
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed: the CMake parser itself was not run")
    for name in ("HI_CORE_SRCS", "HI_NN_SRCS", "HI_BOARD_MAIN_SRCS"):
        proc = subprocess.run([cmake, f"-DHI_FIRMWARE={FW}", f"-DHI_PRINT_LIST={name}", "-P",
                               str(FW / "coralmicro" / "hi_sources.cmake")], capture_output=True, text=True, check=True)
        got = [line.split("-- ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("-- ")]
        assert [Path(g).resolve() for g in got] == [p.resolve() for p in paths(name, FW)], name


def test_python_builds_use_the_list() -> None:
    from hi_firmware.compiler.hostbuild import kernel_sources

    assert [p.resolve() for p in kernel_sources()] == [p.resolve() for p in paths("HI_NN_SRCS", FW)]
