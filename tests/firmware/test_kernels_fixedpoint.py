"""hi_nn's fixed-point primitives against an independent big-integer model of gemmlowp/TFLite arithmetic.

The C functions are inline in hi_nn_common.h; hi_nn_common_test.c exports wrappers. The kernels' own C
tests (one *_test.c beside each kernel) run here under ASan/UBSan through firmware/lib/hi_nn/Makefile."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hi_firmware.compiler import kernel_dir
from hi_firmware.compiler.hostbuild import kernel_sources
from hi_firmware.compiler.quant import quantize_multiplier
from hi_firmware.toolchain import build_shared
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.firmware

I32 = st.integers(-(2**31), 2**31 - 1)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = build_shared([*kernel_sources(), kernel_dir() / "hi_nn_common_test.c"], [kernel_dir()],
                       tmp_path_factory.mktemp("fp"), "libhi_nn_fp")
    lib = ctypes.CDLL(str(out))
    for fn in ("hi_nn_test_srdhm", "hi_nn_test_rdbpot", "hi_nn_test_mbqm", "hi_nn_test_mbqm_rs"):
        getattr(lib, fn).restype = ctypes.c_int32
    lib.hi_nn_test_srdhm.argtypes = [ctypes.c_int32, ctypes.c_int32]
    lib.hi_nn_test_rdbpot.argtypes = [ctypes.c_int32, ctypes.c_int32]
    lib.hi_nn_test_mbqm.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
    lib.hi_nn_test_mbqm_rs.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
    lib.hi_nn_test_dot.restype = ctypes.c_int32
    return lib


def _wrap(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def py_srdhm(a: int, b: int) -> int:
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)  # C division truncates toward zero
    return q if ab + nudge >= 0 else -q


def py_rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    rem = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > threshold else 0)


def py_mbqm(x: int, m: int, s: int) -> int:
    left = max(0, s)
    right = -s if s < 0 else 0
    return py_rdbpot(py_srdhm(_wrap(x << left), m), right)


def test_kernel_c_tests_pass_under_sanitizers(tmp_path: Path) -> None:
    """The C test beside every hi_nn kernel (firmware/lib/hi_nn/*_test.c: TFLM's reference arithmetic written
    out literally, hand-computed values, tflite-micro golden vectors), built with ASan + UBSan."""
    if not shutil.which("make"):
        pytest.skip("make not installed")
    proc = subprocess.run(["make", "-s", "-C", str(kernel_dir()), f"BUILD={tmp_path}", "test"], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from hi_firmware.sources import lists

    for test in lists()["HI_NN_TESTS"]:
        name = Path(test).stem
        assert f"{name}: ok" in proc.stdout or (name == "hi_nn_common_test" and "hi_nn_common: all checks passed"
                                                 in proc.stdout), name


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm") and shutil.which("make")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed (make firmware-deps)")
def test_kernel_c_tests_pass_on_emulated_cortex_m4(tmp_path: Path) -> None:
    """The same C tests built for Cortex-M4F, where the DSP paths (the assembly tiles and output stages) run,
    on QEMU mps2-an386 through semihosting (make -C firmware/lib/hi_nn qemu-test)."""
    proc = subprocess.run(["make", "-s", "-C", str(kernel_dir()), f"BUILD={tmp_path}", "qemu-test"],
                          capture_output=True, text=True, check=False, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count(": ok") + out.count("all checks passed") == len(__import__("hi_firmware.sources",
                                                                                 fromlist=["lists"]).lists()["HI_NN_TESTS"])


@settings(max_examples=400, deadline=None)
@given(I32, I32)
def test_srdhm(lib: ctypes.CDLL, a: int, b: int) -> None:
    assert lib.hi_nn_test_srdhm(a, b) == py_srdhm(a, b)


@settings(max_examples=400, deadline=None)
@given(I32, st.integers(0, 31))
def test_rounding_divide_by_pot(lib: ctypes.CDLL, x: int, e: int) -> None:
    assert lib.hi_nn_test_rdbpot(x, e) == py_rdbpot(x, e)


@settings(max_examples=400, deadline=None)
@given(st.integers(-(2**24), 2**24), st.floats(1e-6, 8.0, allow_nan=False))
def test_multiply_by_quantized_multiplier(lib: ctypes.CDLL, x: int, real: float) -> None:
    m, s = quantize_multiplier(real)
    got = lib.hi_nn_test_mbqm(x, m, s)
    assert got == py_mbqm(x, m, s)
    assert abs(got - x * real) <= 1 + abs(x * real) * 2**-29  # and it approximates x * real


@settings(max_examples=600, deadline=None)
@given(st.one_of(I32, st.integers(-(2**20), 2**20)), st.integers(2**30, 2**31 - 1), st.integers(1, 22),
       st.integers(-128, 127))
def test_right_shift_requantize_shortcut(lib: ctypes.CDLL, x: int, m: int, e: int, zp: int) -> None:
    """hi_nn_mbqm_rs (the output stage's fast form, also written in assembly for Cortex-M4) equals
    MultiplyByQuantizedMultiplier exactly unless its saturating add clips, and after adding an int8 zero point
    and clamping to int8 it always does (the only thing the kernels use)."""
    got, want = lib.hi_nn_test_mbqm_rs(x, m, e), py_mbqm(x, m, -e)
    if py_srdhm(x, m) + (1 << (e - 1)) < 2**31:
        assert got == want
    assert min(max(got + zp, -128), 127) == min(max(want + zp, -128), 127)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-128, 127), st.integers(-128, 127), st.integers(-128, 127)), min_size=0, max_size=70),
       st.integers(-(2**20), 2**20))
def test_dot_products(lib: ctypes.CDLL, rows: list[tuple[int, int, int]], acc: int) -> None:
    x = np.array([r[0] for r in rows], np.int8)
    w0 = np.array([r[1] for r in rows], np.int8)
    w1 = np.array([r[2] for r in rows], np.int8)
    p = ctypes.POINTER(ctypes.c_int8)
    n = len(rows)
    want0 = acc + int(np.dot(x.astype(int), w0.astype(int))) if n else acc
    assert lib.hi_nn_test_dot(x.ctypes.data_as(p), w0.ctypes.data_as(p), n, acc) == want0
    a0, a1 = ctypes.c_int32(acc), ctypes.c_int32(0)
    lib.hi_nn_test_dot2(x.ctypes.data_as(p), w0.ctypes.data_as(p), w1.ctypes.data_as(p), n, ctypes.byref(a0), ctypes.byref(a1))
    assert a0.value == want0
    assert a1.value == (int(np.dot(x.astype(int), w1.astype(int))) if n else 0)


def test_quantize_multiplier_matches_tflite_definition() -> None:
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    m, s = quantize_multiplier(0.1)
    assert abs(m * 2.0 ** (s - 31) - 0.1) < 1e-9 and (1 << 30) <= m < (1 << 31)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # flushed like TFLite (shift < -31)
