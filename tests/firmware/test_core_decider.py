"""The firmware's integer decider (hi_decider.c) against the ONE Python implementation (hi_runtime.decider):
random deciders and random int8 scores, the exported C header's reference function, and the shipped
decider's vectors when they exist."""
from __future__ import annotations

import ctypes
import json
import shutil
import subprocess

import numpy as np
import pytest
from core_host import CoreLib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hi_runtime.decider import Decider


@pytest.fixture(scope="module")
def core() -> CoreLib:
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    return CoreLib()


def _c_accept(core: CoreLib, dec: Decider, scale: float, zp: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    form = dec.int8 if dec.int8 is not None and dec.int8.matches(scale, zp) else dec.compile_int8(scale, zp)
    cd = core.decider(form.coef, form.bias, form.zero_point)
    acc = np.array([core.decider_accept(cd, row) for row in q])
    val = np.array([core.decider_value(cd, row) for row in q])
    return acc, val


FEATURES = st.sampled_from([("p1", "p2"), ("p1",), ("margin",), ("p1", "p2", "p3"), ("p2", "margin")])


@pytest.fixture(autouse=True)
def _skip_export_grid_check(monkeypatch):
    """The export's float-vs-int grid census (a Python-side diagnostic over up to 2.8 M points) is not what
    these tests check and costs seconds per decider; the C is compared with the Python int8 form directly."""
    import hi_runtime.decider as d

    monkeypatch.setattr(d, "GRID_CHECK_MAX_K", 0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(features=FEATURES, seed=st.integers(0, 2**31 - 1), threshold=st.floats(0.02, 0.98),
       quant=st.sampled_from([(1 / 256, -128), (1 / 255, -128), (0.00390625, -127), (0.0125, -20)]),
       classes=st.integers(1, 12))
def test_random_deciders_match_python_int8_form(core, features, seed, threshold, quant, classes):
    """Also rows with fewer classes than the decider's ranks (1 or 2 classes under a top-3 form): both sides
    use the ranks the row has; the per-sample paths (accept_row, row_decider) decide the same."""
    rng = np.random.default_rng(seed)
    dec = Decider(features=features, coefficients=rng.normal(0, 4, len(features)), intercept=float(rng.normal(0, 2)),
                  threshold=threshold, mean=rng.uniform(0, 0.5, len(features)), scale=rng.uniform(0.1, 1, len(features)))
    q = rng.integers(-128, 128, size=(200, classes)).astype(np.int8)
    # also near-decision rows: one dominant score
    q[:50, 0] = rng.integers(60, 128, 50)
    scale, zp = quant
    dec = dec.with_int8(scale, zp)  # the export step: integers computed once
    form = dec.int8
    acc, val = _c_accept(core, dec, scale, zp, q)
    np.testing.assert_array_equal(acc, dec.accept_int8(q, scale, zp))
    np.testing.assert_array_equal(val, np.clip(form.accumulate(q), -(2**31), 2**31 - 1))
    row = form.row_decider()
    assert [row(r) for r in q.tolist()] == [form.accept_row(r) for r in q.tolist()] == acc.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(threshold=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_max_softmax_threshold_matches(core, threshold, seed):
    dec = Decider.max_softmax(threshold)
    q = np.random.default_rng(seed).integers(-128, 128, size=(256, 10)).astype(np.int8)
    q[:, 0] = np.arange(-128, 128)  # every possible top value
    acc, _ = _c_accept(core, dec, 1 / 256, -128, q)
    np.testing.assert_array_equal(acc, dec.accept_int8(q, 1 / 256, -128))
    np.testing.assert_array_equal(acc, dec.accept((q.astype(np.float64) + 128) / 256))


def test_c_decider_equals_the_exported_header_function(core, tmp_path):
    """The header `hi-train decider` exports carries a reference C function; hi_decider.c must agree with it."""
    rng = np.random.default_rng(3)
    dec = Decider(features=("p1", "p2"), coefficients=np.array([7.5, -3.25]), intercept=-2.0, threshold=0.6)
    dec = dec.with_int8(1 / 256, -128)
    (tmp_path / "dec.h").write_text(dec.to_c_header(prefix="HI_T"))
    (tmp_path / "shim.c").write_text('#include "dec.h"\nint shim_accept(const int8_t *s, int n) { return hi_t_accept(s, n); }\n')
    lib_path = tmp_path / "libshim.so"
    subprocess.run([shutil.which("gcc") or "cc", "-std=c99", "-O2", "-fPIC", "-shared", "-I", str(tmp_path),
                    str(tmp_path / "shim.c"), "-o", str(lib_path)], check=True)
    shim = ctypes.CDLL(str(lib_path))
    q = rng.integers(-128, 128, size=(500, 10)).astype(np.int8)
    ref = np.array([shim.shim_accept(row.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), 10) for row in q], dtype=bool)
    acc, _ = _c_accept(core, dec, 1 / 256, -128, q)
    np.testing.assert_array_equal(acc, ref)
    assert 0 < acc.sum() < len(acc)  # the case exercises both decisions


def test_shipped_decider_vectors(core, repo_root):
    """tests/vectors/decider_vectors.json (the shipped decider's integers and real ResNet-8 outputs): the C
    decision value and decision equal the recorded ones, and hi_app's header route gives the same integers."""
    path = repo_root / "tests" / "vectors" / "decider_vectors.json"
    if not path.exists():
        pytest.skip("tests/vectors/decider_vectors.json not written yet (decider helper)")
    data = json.loads(path.read_text())
    form = Decider.from_dict(data["decider"]).int8
    assert form is not None, "the vectors' decider carries no int8 form"
    cd = core.decider(form.coef, form.bias, form.zero_point)
    cases = data["cases"]
    assert len(cases) >= 100
    for case in cases:
        q = np.asarray(case["q"], dtype=np.int8)
        assert core.decider_value(cd, q) == case["acc"]
        assert core.decider_accept(cd, q) == case["accept"]
    accepted = sum(c["accept"] for c in cases)
    assert 0 < accepted < len(cases)
