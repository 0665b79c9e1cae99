"""The PlatformIO project and the board glue, checked offline.

The boards' toolchains (nordicnrf52, espressif32) and the coralmicro SDK cannot be downloaded here, so
this checks what can be checked: platformio.ini is well formed (and PlatformIO itself parses it when
installed); the board-independent sources (core, shared main, kernels, a generated application) compile
with the host compiler and with arm-none-eabi-gcc for the Cortex-M4F (Nano 33 BLE) and Cortex-M7 (Coral);
the board glue is syntax-checked against declarations of the Arduino/ArduinoBLE/WiFi API subset it uses
(firmware/test/host_stubs: not the real cores); the PlatformIO unit tests build and pass on the host; the
TFLite Micro engine option embeds the model bytes unchanged; secrets stay out of git.
"""
from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from core_host import make_tiny_models
from hi_firmware.app_config import generate_app
from hi_firmware.errors import UsageError

FW = Path(__file__).resolve().parents[2] / "firmware"
ARM_FLAGS = {"cortex-m4f (nano33ble)": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
             "cortex-m7 (coralmicro)": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"]}


@pytest.fixture(scope="module")
def ini() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(FW / "platformio.ini")
    return cp


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    model = make_tiny_models(tmp_path_factory.getbasetemp() / "tiny_models_pio")[0]
    out = tmp_path_factory.mktemp("pio_app") / "app"
    dec = out.parent / "decider.json"
    from hi_runtime.decider import Decider

    Decider.max_softmax(0.5).save(dec)
    generate_app(out, model=model, decider=dec)
    return out


def test_platformio_ini_defines_the_boards_and_engines(ini):
    envs = {s.split(":", 1)[1] for s in ini.sections() if s.startswith("env:")}
    assert {"nano33ble", "nano33ble_tflm", "esp32dev", "esp32dev_tflm", "native"} <= envs
    assert ini["env:nano33ble"]["platform"] == "nordicnrf52" and ini["env:nano33ble"]["board"] == "nano33ble"
    assert ini["env:esp32dev"]["platform"] == "espressif32" and ini["env:esp32dev"]["board"] == "esp32dev"
    assert ini["env"]["framework"] == "arduino"
    assert "ArduinoBLE" in ini["env:nano33ble"]["lib_deps"]
    for env in ("nano33ble_tflm", "esp32dev_tflm"):
        sec = ini[f"env:{env}"]
        assert sec["extends"] == f"env:{env.rsplit('_', 1)[0]}"
        assert "HI_ENGINE_TFLM=1" in sec["build_flags"] and "+<common/hi_engine_tflm.cpp>" in sec["build_src_filter"]
        assert "hi_nn" not in sec["lib_deps"]  # the interpreter replaces the compiled model
    for env in ("nano33ble", "esp32dev"):
        assert "HI_ENGINE_TFLM" not in ini[f"env:{env}"]["build_flags"]
    assert ini["env"]["lib_extra_dirs"].strip() == "build/pio_app/${PIOENV}"
    # every folder a source filter names exists
    for sec in ini.sections():
        for folder in re.findall(r"[+-]<([^>*]+)/>", ini[sec].get("build_src_filter", "")):
            assert (FW / "src" / folder).is_dir(), (sec, folder)
    for lib in ("hi_core", "hi_nn"):
        assert (FW / "lib" / lib).is_dir()
    manifest = json.loads((FW / "lib" / "hi_core" / "library.json").read_text())
    assert not any("_test.c" in f and f.startswith("+") for f in manifest["build"]["srcFilter"])  # tests stay home


def test_platformio_parses_the_project_when_installed():
    beside_python = Path(sys.executable).parent / "pio"  # the venv's pio, even when its bin/ is not on PATH
    pio = str(beside_python) if beside_python.exists() else (shutil.which("pio") or shutil.which("platformio"))
    if not pio:
        pytest.skip("PlatformIO not installed (pip install platformio); the ini is still parsed by configparser")
    proc = subprocess.run([pio, "project", "config", "-d", str(FW), "--json-output"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    envs = {name for name, _ in json.loads(proc.stdout)}
    assert {"env:nano33ble", "env:esp32dev", "env:native"} <= envs


def _compile(cc: str, flags: list[str], sources: list[Path], includes: list[Path], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for src in sources:
        cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *flags, *[f"-I{i}" for i in includes], "-c",
               str(src), "-o", str(out / (src.stem + ".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"


def _board_independent(app: Path) -> tuple[list[Path], list[Path]]:
    core = sorted(p for p in (FW / "lib" / "hi_core").glob("*.c") if not p.name.endswith("_test.c"))
    models = sorted((app / "models").glob("*"))
    sources = [*core, FW / "src" / "common" / "hi_board_main.c", app / "hi_app_config.c",
               *[c for m in models for c in m.glob("*.c")]]
    includes = [FW / "include", FW / "lib" / "hi_core", FW / "lib" / "hi_nn", app, *models]
    return sources, includes


def test_board_independent_sources_compile_for_host_and_arm(app, tmp_path):
    sources, includes = _board_independent(app)
    _compile(shutil.which("gcc") or "cc", ["-pedantic"], sources, includes, tmp_path / "host")
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed; host build checked only")
    for name, flags in ARM_FLAGS.items():
        _compile("arm-none-eabi-gcc", flags, sources, includes, tmp_path / name.split()[0])


@pytest.mark.parametrize("board", ["nano33ble", "esp32"])
def test_board_glue_syntax_against_api_declarations(board, tmp_path):
    gxx = shutil.which("g++") or shutil.which("clang++")
    if not gxx:
        pytest.skip("no host C++ compiler")
    secrets = tmp_path / "hi_board_secrets.h"
    shutil.copyfile(FW / "include" / "hi_board_secrets.example.h", secrets)
    cmd = [gxx, "-std=gnu++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{FW / 'test' / 'host_stubs'}",
           f"-I{FW / 'include'}", f"-I{FW / 'lib' / 'hi_core'}", f"-I{tmp_path}", str(FW / "src" / board / "main.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    if board == "esp32":  # without the secrets header the build stops with instructions
        cmd.remove(f"-I{tmp_path}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode != 0 and "hi_board_secrets.example.h" in proc.stderr


def test_platformio_unit_tests_pass_on_host(tmp_path):
    core = sorted(p for p in (FW / "lib" / "hi_core").glob("*.c") if not p.name.endswith("_test.c"))
    exe = tmp_path / "test_core"
    subprocess.run([shutil.which("gcc") or "cc", "-std=gnu99", "-Wall", "-Wextra", f"-I{FW / 'test' / 'host_stubs'}",
                    f"-I{FW / 'lib' / 'hi_core'}", str(FW / "test" / "test_core" / "test_main.c"), *map(str, core),
                    "-o", str(exe)], check=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "4 Tests 0 Failures" in proc.stdout, proc.stdout


def test_tflm_engine_embeds_the_model_unchanged(tmp_path_factory, tmp_path):
    model = make_tiny_models(tmp_path_factory.getbasetemp() / "tiny_models_pio")[0]
    generate_app(tmp_path / "app", model=model, no_decider=True, engine="tflm")
    src = (tmp_path / "app" / "hi_app_tflm_model.c").read_text()
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", src))
    assert data == model.read_bytes()
    cfg = (tmp_path / "app" / "hi_app_config.c").read_text()
    assert "hi_tflm_invoke_generic" in cfg and "hi_model_" not in cfg
    assert not (tmp_path / "app" / "models").exists()
    with pytest.raises(UsageError, match="single models only"):
        generate_app(tmp_path / "app2", chain=tmp_path / "x.json", engine="tflm")


def test_coralmicro_app_is_complete_and_refuses_without_sdk(tmp_path):
    cml = (FW / "coralmicro" / "CMakeLists.txt").read_text()
    assert "add_executable_m7(hi-coralmicro" in cml and "libs_base-m7_wifi" in cml
    assert (FW / "coralmicro" / "main.cc").exists() and "HI_BOARD_MAIN_SRCS" in cml
    if not shutil.which("cmake"):
        pytest.skip("cmake not installed")
    proc = subprocess.run(["cmake", "-S", str(FW / "coralmicro"), "-B", str(tmp_path / "b")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "coralmicro SDK not found" in proc.stdout + proc.stderr


def test_secrets_are_gitignored_and_the_template_is_complete():
    root = FW.parent
    assert "firmware/include/hi_board_secrets.h" in (root / ".gitignore").read_text().split()
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", "firmware/include"], capture_output=True,
                             text=True, check=False).stdout.split()
    assert "firmware/include/hi_board_secrets.h" not in tracked
    template = (FW / "include" / "hi_board_secrets.example.h").read_text()
    used = set()
    for glue in ("src/esp32/main.cpp", "coralmicro/main.cc"):
        used |= set(re.findall(r"\b(HI_(?:WIFI|SERVER)_[A-Z_]+)\b", (FW / glue).read_text()))
    assert used and all(f"#define {m} " in template for m in used), used


def test_uint8_scores_are_refused_not_misread(tmp_path):
    """The TFLite converter allows uint8 outputs; the generated app holds scores in int8_t, so 255 read as -1
    gave the device the wrong class (outside review, 2026-12-08). Such a model is one usage line now."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    inp = tf.keras.Input((4, 4, 3), batch_size=1)
    x = tf.keras.layers.Flatten()(tf.keras.layers.Conv2D(4, 3, padding="same")(inp))
    model = tf.keras.Model(inp, tf.keras.layers.Softmax()(tf.keras.layers.Dense(10)(x)))
    rep = np.random.default_rng(0).uniform(0, 255, (16, 4, 4, 3)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[k:k + 1]] for k in range(16))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type, conv.inference_output_type = tf.int8, tf.uint8
    path = tmp_path / "u8out.tflite"
    path.write_bytes(conv.convert())
    with pytest.raises(UsageError, match="the scores output .* is uint8; the firmware pipeline reads int8"):
        generate_app(tmp_path / "app", model=path, no_decider=True)
