"""The firmware's C frame codec (firmware/lib/hi_core/hi_frame.c) against the Python protocol.

Both must produce identical bytes (shared vectors + random messages) and reject the same invalid frames
with the same error class (vectors + random mutations of valid frames). Also the C HMAC-SHA256 and the
protocol's PSK proofs against Python's hmac, and the C unit-test programs under ASan/UBSan.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import shutil
import struct
import subprocess

import pytest
from core_host import FRAME_ERRORS, CoreLib, FrameCodec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hi_runtime import protocol as p

KEY = b"example-pre-shared-key-32-bytes!"


@pytest.fixture(scope="module")
def core() -> CoreLib:
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    return CoreLib()


@pytest.fixture(scope="module")
def codec(core: CoreLib) -> FrameCodec:
    return FrameCodec(core)


@pytest.fixture(scope="module")
def vectors(repo_root):
    return json.loads((repo_root / "tests" / "vectors" / "protocol_vectors.json").read_text())


def test_c_unit_programs_pass_under_sanitizers(repo_root, tmp_path):
    """Each hi_core module's C test (beside it) builds with ASan+UBSan and passes."""
    if not shutil.which("make"):
        pytest.skip("make not installed")
    proc = subprocess.run(["make", "-s", "-C", str(repo_root / "firmware" / "lib" / "hi_core"), f"BUILD={tmp_path}",
                           "test"], capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    programs = sorted(p.stem for p in (repo_root / "firmware" / "lib" / "hi_core").glob("*_test.c"))
    assert "hi_offload_client_test" in programs
    for name in programs:
        assert f"{name}: ok" in proc.stdout


def test_vectors_decode_and_encode_byte_identical(codec, vectors):
    valid = [v for v in vectors if v["valid"]]
    assert len(valid) >= 15
    for v in valid:
        frame = bytes.fromhex(v["hex"])
        want = p.decode(frame)
        assert codec.decode(frame) == want, v["name"]
        assert codec.encode(want) == frame, v["name"]


def test_invalid_vectors_rejected_with_the_same_error(codec, vectors):
    invalid = [v for v in vectors if not v["valid"]]
    assert invalid
    for v in invalid:
        st_ = codec.decode(bytes.fromhex(v["hex"]), v["max_frame"])
        assert isinstance(st_, int) and FRAME_ERRORS[st_] == v["error"], v["name"]


def test_auth_vectors_reproduced_by_c_hmac(core, vectors):
    by = {v["name"]: v for v in vectors}
    cn = bytes.fromhex(by["hello"]["fields"]["client_nonce"])
    sn = bytes.fromhex(by["welcome_auth"]["fields"]["server_nonce"])
    assert core.auth_proof(False, KEY, sn, cn, 1, "dev01").hex() == by["auth"]["fields"]["mac"]
    assert core.auth_proof(True, KEY, sn, cn, 1, "dev01").hex() == by["auth_ok"]["fields"]["mac"]
    assert core.auth_proof(False, KEY, sn, cn, 1, "dev01") == p.client_proof(KEY, sn, cn, 1, "dev01")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.binary(max_size=150), data=st.binary(max_size=300))
def test_hmac_matches_python(core, key, data):
    assert core.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


# ---- random messages ------------------------------------------------------------------------------

_name = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=32)
_u32 = st.integers(0, 2**32 - 1)
_f32 = st.floats(width=32, allow_nan=False)


@st.composite
def infer_messages(draw):
    dtype = draw(st.sampled_from(list(p.DType)))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(4))
    n = math.prod(shape) * (4 if dtype == p.DType.FLOAT32 else 1)
    quant = None
    if dtype != p.DType.FLOAT32 and draw(st.booleans()):
        scale = draw(st.floats(min_value=2.0**-20, max_value=2.0**20, width=32))
        quant = (scale, draw(st.integers(-(2**31), 2**31 - 1)))
    return p.Infer(request_id=draw(_u32), model_id=draw(_name), dtype=dtype, layout=draw(st.sampled_from(list(p.Layout))),
                   shape=shape, data=draw(st.binary(min_size=n, max_size=n)), quant=quant, top_k=draw(st.integers(0, 255)))


messages = st.one_of(
    st.builds(p.Hello, client_nonce=st.binary(min_size=16, max_size=16), client_name=_name,
              min_version=st.just(1), max_version=st.integers(1, 255), request_id=_u32),
    st.builds(p.Welcome, version=st.integers(0, 255), server_nonce=st.binary(min_size=16, max_size=16),
              auth_required=st.booleans(), max_frame=_u32, max_inflight=st.integers(0, 65535), server_name=_name,
              request_id=_u32),
    st.builds(p.Auth, mac=st.binary(min_size=32, max_size=32), request_id=_u32),
    st.builds(p.AuthOk, mac=st.binary(min_size=32, max_size=32), request_id=_u32),
    infer_messages(),
    st.builds(p.Result, request_id=_u32, class_id=st.integers(0, 65535),
              top_k=st.lists(st.tuples(st.integers(0, 65535), _f32), max_size=6).map(tuple),
              batch_size=st.integers(0, 65535), queue_us=_u32, infer_us=_u32, total_us=_u32),
    st.builds(p.Error, code=st.integers(0, 65535), message=st.text(max_size=100).filter(lambda s: len(s.encode()) <= 512),
              request_id=_u32),
    st.builds(p.Ping, token=st.integers(0, 2**64 - 1), request_id=_u32),
    st.builds(p.Pong, token=st.integers(0, 2**64 - 1), request_id=_u32),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=messages)
def test_random_messages_encode_identically_and_round_trip(codec, msg):
    frame = p.encode(msg)
    assert codec.encode(msg) == frame
    assert codec.decode(frame) == p.decode(frame)


def _python_outcome(frame: bytes, max_frame: int):
    try:
        return p.decode(frame, max_frame)
    except p.ProtocolError as exc:
        return type(exc).__name__


def _same(c_msg, py_msg) -> bool:
    if isinstance(py_msg, p.Result) and isinstance(c_msg, p.Result):  # NaN-safe: compare the float bits
        pack = lambda m: [(c, struct.pack("<f", s)) for c, s in m.top_k]
        return pack(c_msg) == pack(py_msg) and c_msg.__class__ == py_msg.__class__ and \
            (c_msg.class_id, c_msg.batch_size, c_msg.total_us) == (py_msg.class_id, py_msg.batch_size, py_msg.total_us)
    if isinstance(py_msg, p.Infer) and isinstance(c_msg, p.Infer) and py_msg.quant and c_msg.quant:
        return c_msg.data == py_msg.data and struct.pack("<f", c_msg.quant[0]) == struct.pack("<f", py_msg.quant[0])
    return c_msg == py_msg


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=messages, edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
       cut=st.integers(-8, 8), max_frame=st.sampled_from([64, 4096, 256 * 1024]))
def test_mutated_frames_get_the_same_verdict(codec, msg, edits, cut, max_frame):
    frame = bytearray(p.encode(msg))
    for pos, val in edits:
        frame[pos % len(frame)] = val
    if cut < 0:
        frame = frame[:cut]
    elif cut > 0:
        frame += bytes(cut)
    frame = bytes(frame)
    want = _python_outcome(frame, max_frame)
    got = codec.decode(frame, max_frame)
    if isinstance(want, str):
        assert isinstance(got, int) and FRAME_ERRORS[got] == want
    else:
        assert _same(got, want)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64))
def test_random_bytes_get_the_same_verdict(codec, data):
    frame = b"HI\x01" + data[:1] + data[1:] if data[:1] else data
    want = _python_outcome(frame, 4096)
    got = codec.decode(frame, 4096)
    if isinstance(want, str):
        assert isinstance(got, int) and FRAME_ERRORS[got] == want
    else:
        assert _same(got, want)


def test_encoder_refuses_what_python_refuses(codec):
    too_long_id = p.Infer(request_id=1, model_id="x" * 33, dtype=p.DType.UINT8, layout=p.Layout.NHWC,
                          shape=(1, 1, 1, 1), data=b"\0")
    assert codec.encode(too_long_id) == -6  # BadFieldError
    bad_payload = p.Infer(request_id=1, model_id="m", dtype=p.DType.UINT8, layout=p.Layout.NHWC,
                          shape=(1, 1, 1, 2), data=b"\0")
    assert codec.encode(bad_payload) == -7  # PayloadMismatchError
    frame = p.encode(p.Ping(token=5))
    assert codec.encode(p.Ping(token=5), cap=len(frame) - 1) == -8  # buffer too small: refused, not overrun
