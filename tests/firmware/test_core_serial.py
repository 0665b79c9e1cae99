"""The firmware's serial command interface (hi_serial.c), driven from Python with the C core built for the
host: MLPerf Tiny runner conventions, the HI commands with frames checked by the Python protocol, and
hostile input (random bytes, over-long commands, bad numbers) that must never break the line discipline."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from core_host import CoreLib, PyPipeline, SerialSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hi_runtime import protocol as p

H, W, C, CLASSES = 4, 4, 3, 10
N_IN = H * W * C


@pytest.fixture(scope="module")
def core() -> CoreLib:
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    return CoreLib()


def _model(x: np.ndarray):
    """Class = mean pixel bucket; confident (offload-free) iff the first pixel is bright."""
    px = x.astype(np.int16) + 128
    scores = np.full(CLASSES, -128, np.int8)
    scores[int(px.mean()) * CLASSES // 256] = 127 if px[0] >= 128 else -60
    scores[(int(px.mean()) * CLASSES // 256 + 1) % CLASSES] = -70
    return None, scores


def _session(core: CoreLib, model_id: str = "resnet8", offload=None) -> SerialSession:
    cdec = core.decider([1], -200, -128)  # accept iff max(q) + 128 >= 200
    pipe = PyPipeline(core, [_model], input_shape=(H, W, C), input_bytes=N_IN, feature_bytes=[], num_classes=CLASSES,
                      bounds=[], scores_quants=[(1 / 256, -128)], decider=cdec)
    return SerialSession(core, pipe, model_id=model_id, offload=offload)


def _load(s: SerialSession, img: np.ndarray, chunk: int = 20) -> str:
    out = s.feed(f"db load {img.size}%".encode()).decode()
    data = img.astype(np.uint8).tobytes()
    for i in range(0, len(data), chunk):
        out += s.feed(f"db {data[i:i + chunk].hex()}%".encode()).decode()
    return out


def test_runner_commands_follow_mlperf_tiny_conventions(core):
    s = _session(core)
    s.core.lib.hi_serial_banner(s.ctx)
    assert s.out.decode().startswith("m-timestamp-mode-performance\r\nm-lap-us-")
    assert s.feed(b"name%") == b"m-name-dut-[py-dut]\r\nm-ready\r\n"
    prof = s.feed(b"profile%").decode()
    assert "m-profile-[test-fw]\r\n" in prof and "m-model-[ic01]\r\n" in prof and prof.endswith("m-ready\r\n")
    assert re.fullmatch(r"m-lap-us-\d+\r\nm-ready\r\n", s.feed(b"timestamp%").decode())
    img = np.arange(N_IN, dtype=np.uint8) * 5
    out = _load(s, img)
    assert "m-[Expecting 48 bytes]" in out and out.count("m-load-done") == 1
    out = s.feed(b"infer 3 2%").decode()
    lines = out.split("\r\n")
    assert lines[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"]
    assert re.fullmatch(r"m-lap-us-\d+", lines[3]) and re.fullmatch(r"m-lap-us-\d+", lines[4])
    assert lines[5] == "m-infer-done"
    vals = [float(v) for v in re.fullmatch(r"m-results-\[(.*)\]", lines[6]).group(1).split(",")]
    _, scores = _model((img.astype(np.int16) - 128).astype(np.int8))
    np.testing.assert_allclose(vals, np.round((scores.astype(np.float64) + 128) / 256, 3), atol=1e-9)
    assert lines[7] == "m-ready"
    assert s.feed(b"results%").decode() == lines[6] + "\r\nm-ready\r\n"
    # db print: 8 bytes per line in the runner's format
    out = s.feed(b"db print 10 2%").decode()
    assert out.startswith("m-buffer-0a-0f-14-19-1e-23-28-2d\r\nm-buffer-32-37\r\n")


def test_hi_offload_frame_is_a_protocol_infer_and_answers_are_taken(core):
    s = _session(core, model_id="resnet56")
    img = np.full(N_IN, 60, np.uint8)  # dark first pixel -> unconfident -> offload
    _load(s, img)
    out = s.feed(b"hi run 42%").decode()
    local = re.search(r"m-hi-local-\[(.*?)\]", out).group(1)
    fields = dict(kv.split("=") for kv in local.split(","))
    _, scores = _model((img.astype(np.int16) - 128).astype(np.int8))
    assert fields["id"] == "42" and fields["offload"] == "1" and fields["class"] == str(int(np.argmax(scores)))
    assert bytes.fromhex(fields["scores"]) == scores.tobytes()
    m = re.search(r"m-hi-offload-\[id=42,bytes=(\d+),frame=([0-9a-f]+)\]", out)
    frame = bytes.fromhex(m.group(2))
    assert len(frame) == int(m.group(1))
    msg = p.decode(frame)
    want = p.Infer.from_array((img.astype(np.int16) - 128).astype(np.int8).reshape(1, H, W, C), "resnet56", 42,
                              quant=(1.0, -128))
    assert msg == want and p.encode(want) == frame
    assert "m-hi-final" not in out
    answer = p.encode(p.Result(request_id=42, class_id=7, batch_size=3, queue_us=5, infer_us=6, total_us=20))
    out = s.feed(f"hi result {answer.hex()}%".encode()).decode()
    assert out == "m-hi-final-[id=42,class=7,source=server]\r\nm-ready\r\n"
    # an ERROR frame, and a confident sample that stays local
    s.feed(b"hi run 43%")
    err = p.encode(p.Error(code=int(p.ErrorCode.BUSY), message="busy", request_id=43))
    assert "m-hi-final-[id=43,class=" in s.feed(f"hi result {err.hex()}%".encode()).decode()
    img[0] = 255
    _load(s, img)
    out = s.feed(b"hi run%").decode()
    assert "offload=0" in out and "m-hi-offload" not in out and re.search(r"m-hi-final-\[id=\d+,class=\d,source=local\]", out)
    status = s.feed(b"hi status%").decode()
    assert "offloads=2,answers=1,degraded=1" in status


# ---- hostile input --------------------------------------------------------------------------------

COMMANDS = ["name", "profile", "help", "timestamp", "results", "db", "db load", "db print", "infer", "hi", "hi run",
            "hi result", "hi degraded", "hi config", "hi status", "db load 48", "infer 1 0", "hi run 1", "x" * 300]
token = st.one_of(st.sampled_from(COMMANDS), st.text(alphabet="0123456789abcdefABCDEFxyz -%", max_size=40),
                  st.integers(-5, 2**33).map(str), st.binary(max_size=30).map(lambda b: b.decode("latin-1")))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.tuples(token, token), max_size=12), tail=st.binary(max_size=64))
def test_hostile_input_keeps_the_line_discipline(core, parts, tail):
    s = _session(core)
    text = "".join(a + " " + b + "%" for a, b in parts).encode("latin-1") + tail
    terminators = text.count(b"%")
    out = s.feed(text)
    assert out.count(b"m-ready\r\n") == terminators  # exactly one m-ready per command, whatever it was
    for line in out.split(b"\r\n")[:-1]:
        assert line.startswith((b"m-", b"e-[")), line
        assert all(0x20 <= c <= 0x7E for c in line), line  # nothing unprintable is echoed back
    # the interface still works afterwards
    assert s.feed(b"%name%").endswith(b"m-name-dut-[py-dut]\r\nm-ready\r\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 2000), byte=st.integers(0x20, 0x7E).filter(lambda b: b != ord("%")))
def test_over_long_commands_are_discarded_whole(core, n, byte):
    s = _session(core)
    out = s.feed(bytes([byte]) * n + b"%").decode()
    assert out.endswith("m-ready\r\n") and out.count("m-ready") == 1
    if n > 256:
        assert out.startswith("e-[Command longer than 256 characters was discarded]")


def test_db_never_writes_past_the_announced_length(core):
    s = _session(core)
    assert "e-[db load: 49 bytes exceed the buffer of 48 bytes]" in s.feed(b"db load 49%").decode()
    assert "e-[db: send 'db load N' before data]" in s.feed(b"db 00%").decode()
    s.feed(b"db load 4%")
    assert "e-[db: 5 bytes but only 4 more expected]" in s.feed(b"db 0102030405%").decode()
    assert "m-load-done" in s.feed(b"db 01020304%").decode()
    assert "e-[db: 1 bytes but only 0 more expected]" in s.feed(b"db 05%").decode()
    assert "e-[infer: load a 48-byte sample" in s.feed(b"infer%").decode()
    assert "e-[infer: at most 100000 runs" in s.feed(b"infer 100001 0%").decode()
    for bad in (b"db load -1%", b"db load 0%", b"db load 4294967296%", b"db load 1x%", b"infer 1 -1%",
                b"hi run 0%", b"hi result zz%", b"hi degraded%"):
        out = s.feed(bad).decode()
        assert out.startswith("e-[") and out.endswith("m-ready\r\n"), bad


def test_on_device_offload_callback(core):
    """Boards that reach the server themselves (BLE, WiFi) plug an offload function into `hi run`."""
    calls = []

    def offload(request_id, q):
        calls.append((request_id, q))
        return (0, 8) if request_id != 6 else -3  # request 6: the transport failed

    s = _session(core, offload=offload)
    img = np.full(N_IN, 60, np.uint8)
    _load(s, img)
    out = s.feed(b"hi run 5%").decode()
    assert "offload=1" in out and "m-hi-offload" not in out
    assert "m-hi-final-[id=5,class=8,source=server]" in out
    rid, q = calls[-1]
    assert rid == 5 and np.array_equal(q, (img.astype(np.int16) - 128).astype(np.int8))
    out = s.feed(b"hi run 6%").decode()
    assert re.search(r"m-hi-final-\[id=6,class=\d,source=degraded,error=3\]", out)
    assert "pending=0" in s.feed(b"hi status%").decode()
