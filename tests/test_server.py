"""hi-server end to end on loopback: concurrency, batching, limits, shutdown, compat port, metrics, TLS.

Every server binds 127.0.0.1 on an ephemeral port and serves a stand-in ONNX model built in a temp dir.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from support.tls import self_signed_cert

from hi_runtime import protocol as p
from hi_runtime.offload_client import (
    OffloadAuthError,
    OffloadClient,
    OffloadConnectionError,
    OffloadServerError,
)
from offload_server.config import ConfigError, ModelConfig, ServerConfig
from offload_server.server import OffloadServer, run_server_in_thread
from offload_server.standin import build_standin_onnx

pytestmark = pytest.mark.timeout(120)
KEY = b"test-pre-shared-key-0123456789"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx", kind="linear")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def direct_classes(model_path: Path, images: np.ndarray) -> np.ndarray:
    """Classes by running the model file directly (one image at a time), the reference for the server."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return np.array([int(np.argmax(sess.run(None, {"image": img[None].astype(np.float32)})[0]))
                     for img in images])


def make_config(model_path: Path, **kw) -> ServerConfig:
    model_kw = {k: kw.pop(k) for k in ("max_batch_size", "max_queue_delay_us") if k in kw}
    return ServerConfig(models=[ModelConfig(id="tiny", path=str(model_path), **model_kw)], host="127.0.0.1",
                        port=0, **kw)


# ---- an asyncio client for the load test -----------------------------------------------------------------


async def _async_session(port: int, images: np.ndarray, order: np.ndarray, pipeline: int) -> list[tuple[int, int]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await p.write_frame(writer, p.Hello(client_nonce=p.new_nonce(), client_name="load"))
        welcome = await p.read_frame(reader)
        assert isinstance(welcome, p.Welcome) and not welcome.auth_required
        answers: list[tuple[int, int]] = []
        sent = 0
        while len(answers) < len(order):
            while sent < len(order) and sent - len(answers) < pipeline:
                idx = int(order[sent])
                await p.write_frame(writer, p.Infer.from_array(images[idx], "tiny", request_id=sent + 1))
                sent += 1
            msg = await p.read_frame(reader)
            assert isinstance(msg, p.Result), msg
            answers.append((int(order[msg.request_id - 1]), msg.class_id))
        return answers
    finally:
        writer.close()


def test_200_clients_x_50_requests_match_direct_inference(model_path, images, direct_classes) -> None:
    config = make_config(model_path, max_batch_size=64, max_queue_delay_us=2000, max_connections=512)
    rng = np.random.default_rng(0)
    orders = [rng.integers(0, len(images), 50) for _ in range(200)]

    async def load(port: int) -> list[list[tuple[int, int]]]:
        return await asyncio.gather(*[_async_session(port, images, o, pipeline=1 + i % 3)
                                      for i, o in enumerate(orders)])

    with run_server_in_thread(config) as handle:
        start = time.perf_counter()
        results = asyncio.run(load(handle.port))
        elapsed = time.perf_counter() - start
        batch_hist = handle.server.metrics.registry.get_sample_value("hi_server_batch_size_sum", {"model": "tiny"})
        batches = handle.server.metrics.registry.get_sample_value("hi_server_batch_size_count", {"model": "tiny"})
    answers = [a for session in results for a in session]
    assert len(answers) == 200 * 50
    for idx, cls in answers:
        assert cls == direct_classes[idx]
    # requests really were batched (10,000 requests in far fewer model calls)
    assert batch_hist == 10_000 and batches < 5_000, (batch_hist, batches)
    assert elapsed < 90


def test_pipelined_client_and_server_timings(model_path, images, direct_classes) -> None:
    config = make_config(model_path, max_batch_size=8, max_queue_delay_us=50_000)
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as client:
        ids = [client.submit(images[i], "tiny") for i in range(8)]
        got = {}
        for _ in ids:
            r = client.receive(timeout=10)
            got[r.request_id] = r
        assert sorted(got) == sorted(ids)
        for i, rid in enumerate(ids):
            assert got[rid].class_id == direct_classes[i]
        # all 8 arrived within the 50 ms window, so they ran as one batch of 8
        assert max(r.server_timings["batch_size"] for r in got.values()) == 8
        r = client.infer(images[3], "tiny", top_k=3, timeout=10)
        assert r.class_id == direct_classes[3] == r.top_k[0][0]
        assert len(r.top_k) == 3 and r.top_k[0][1] >= r.top_k[1][1] >= r.top_k[2][1]
        assert r.server_timings["total_us"] >= r.server_timings["infer_us"] > 0
        assert client.ping(timeout=5) < 1.0


def test_layouts_dtypes_and_request_errors(model_path, images, direct_classes) -> None:
    config = make_config(model_path, max_queue_delay_us=0)
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as client:
        img = images[5]
        want = direct_classes[5]
        assert client.infer(img.transpose(2, 0, 1), "tiny", layout="NCHW", timeout=10).class_id == want
        q = (img.astype(np.int16) - 128).astype(np.int8)  # the INT8 device model's input tensor
        assert client.infer(q, "tiny", quant=(1.0, -128), timeout=10).class_id == want
        assert client.infer(img.astype(np.float32), "tiny", timeout=10).class_id == want
        assert client.infer(img, "", timeout=10).class_id == want  # empty id = default model
        with pytest.raises(OffloadServerError) as exc:
            client.infer(img, "nope", timeout=10)
        assert exc.value.code == p.ErrorCode.UNKNOWN_MODEL and "tiny" in exc.value.message
        with pytest.raises(OffloadServerError) as exc:
            client.infer(q, "tiny", timeout=10)  # int8 without quant params
        assert exc.value.code == p.ErrorCode.BAD_TENSOR
        with pytest.raises(OffloadServerError) as exc:
            client.infer(np.zeros((32, 32, 4), np.uint8), "tiny", timeout=10)
        assert exc.value.code == p.ErrorCode.BAD_TENSOR and "channels" in exc.value.message
        # a 16x16 image is resized (bilinear) to the model's 32x32; the connection is still fine afterwards
        small = client.infer(img[::2, ::2], "tiny", timeout=10)
        assert 0 <= small.class_id < 10
        assert client.infer(img, "tiny", timeout=10).class_id == want


def test_authentication(model_path, images) -> None:
    config = make_config(model_path, auth_key=KEY.decode())
    with run_server_in_thread(config) as handle:
        with OffloadClient("127.0.0.1", handle.port, key=KEY) as client:
            assert 0 <= client.infer(images[0], "tiny", timeout=10).class_id < 10
        with pytest.raises(OffloadAuthError, match="wrong pre-shared key"):
            OffloadClient("127.0.0.1", handle.port, key=b"wrong-key-wrong-key-wrong").connect()
        with pytest.raises(OffloadAuthError, match="requires a pre-shared key"):
            OffloadClient("127.0.0.1", handle.port).connect()
        # a raw client skipping AUTH gets AUTH_REQUIRED and is disconnected
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
            p.send_frame(sock, p.Hello(client_nonce=p.new_nonce()))
            assert p.recv_frame(sock).auth_required
            p.send_frame(sock, p.Infer.from_array(images[0], "tiny", 1))
            err = p.recv_frame(sock)
            assert isinstance(err, p.Error) and err.code == p.ErrorCode.AUTH_REQUIRED
            assert p.recv_frame(sock) is None
        assert handle.server.metrics.registry.get_sample_value("hi_server_auth_failures_total") == 1
    # a client with a key refuses a server that does not authenticate itself
    with run_server_in_thread(make_config(model_path)) as handle:
        with pytest.raises(OffloadAuthError, match="does not require authentication"):
            OffloadClient("127.0.0.1", handle.port, key=KEY).connect()


def test_oversized_frame_closes_only_that_connection(model_path, images, direct_classes) -> None:
    config = make_config(model_path, max_frame=8192)
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as good:
        assert good.infer(images[1], "tiny", timeout=10).class_id == direct_classes[1]
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
            p.send_frame(sock, p.Hello(client_nonce=p.new_nonce()))
            assert p.recv_frame(sock).max_frame == 8192
            # a float32 64x64x3 image is 49 KB: over the limit; the server refuses it from the header
            p.send_frame(sock, p.Infer.from_array(np.zeros((64, 64, 3), np.float32), "tiny", 1))
            err = p.recv_frame(sock)
            assert isinstance(err, p.Error) and err.code == p.ErrorCode.FRAME_TOO_LARGE
            assert err.request_id == 0
            sock.settimeout(5)
            try:
                tail = sock.recv(1 << 16)
            except ConnectionResetError:  # a reset also means the server closed the connection
                tail = b""
            assert tail == b""  # closed
        assert good.infer(images[2], "tiny", timeout=10).class_id == direct_classes[2]
        assert handle.server.metrics.registry.get_sample_value(
            "hi_server_errors_total", {"code": "FRAME_TOO_LARGE"}) == 1


def test_garbage_and_unexpected_messages_get_errors(model_path, images) -> None:
    with run_server_in_thread(make_config(model_path)) as handle:
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            err = p.recv_frame(sock)
            assert isinstance(err, p.Error) and err.code == p.ErrorCode.BAD_FRAME and "magic" in err.message
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
            p.send_frame(sock, p.Hello(client_nonce=p.new_nonce(), min_version=2, max_version=3))
            err = p.recv_frame(sock)
            assert err.code == p.ErrorCode.UNSUPPORTED_VERSION
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
            p.send_frame(sock, p.Hello(client_nonce=p.new_nonce()))
            p.recv_frame(sock)
            p.send_frame(sock, p.Ping(token=77))
            assert p.recv_frame(sock) == p.Pong(token=77)
            p.send_frame(sock, p.Result(request_id=1, class_id=0))
            assert p.recv_frame(sock).code == p.ErrorCode.UNEXPECTED_MESSAGE
        with OffloadClient("127.0.0.1", handle.port) as client:  # the server is unharmed
            assert 0 <= client.infer(images[0], "tiny", timeout=10).class_id < 10


def test_idle_and_slow_clients_are_dropped(model_path, images) -> None:
    config = make_config(model_path, idle_timeout_s=0.3, handshake_timeout_s=0.3, frame_timeout_s=0.3)
    with run_server_in_thread(config) as handle:
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as silent:
            err = p.recv_frame(silent)  # never sends HELLO
            assert err.code == p.ErrorCode.TIMEOUT
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as slow:
            p.send_frame(slow, p.Hello(client_nonce=p.new_nonce()))
            p.recv_frame(slow)
            frame = p.encode(p.Infer.from_array(images[0], "tiny", 1))
            slow.sendall(frame[:100])  # header and a little body, then stall (slowloris)
            err = p.recv_frame(slow)
            assert err.code == p.ErrorCode.TIMEOUT and "body" in err.message
        with OffloadClient("127.0.0.1", handle.port) as client:
            time.sleep(0.6)
            with pytest.raises((OffloadServerError, OffloadConnectionError)):
                client.infer(images[0], "tiny", timeout=5)


def test_max_inflight_applies_backpressure_without_losing_requests(model_path, images, direct_classes) -> None:
    config = make_config(model_path, max_inflight=2, max_batch_size=64, max_queue_delay_us=20_000)
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as client:
        assert client.server_max_inflight == 2
        ids = [client.submit(images[i], "tiny") for i in range(20)]
        results = [client.receive(timeout=10) for _ in ids]
        assert sorted(r.request_id for r in results) == sorted(ids)
        assert max(r.server_timings["batch_size"] for r in results) <= 2  # never more than 2 in the server
        by_id = {r.request_id: r.class_id for r in results}
        assert [by_id[i] for i in ids] == list(direct_classes[:20])


def test_graceful_shutdown_answers_accepted_requests(model_path, images, direct_classes) -> None:
    # a long queue delay keeps the requests waiting in the batcher when stop() begins
    config = make_config(model_path, max_batch_size=64, max_queue_delay_us=400_000, max_inflight=64)
    with run_server_in_thread(config) as handle:
        client = OffloadClient("127.0.0.1", handle.port)
        client.connect()
        ids = [client.submit(images[i], "tiny") for i in range(30)]
        inflight = handle.server.metrics.inflight
        deadline = time.monotonic() + 5
        while inflight._value.get() < 30 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert inflight._value.get() == 30  # all accepted, none answered yet
        stopper = threading.Thread(target=handle.stop)
        stopper.start()
        results = [client.receive(timeout=10) for _ in ids]
        with pytest.raises(OffloadServerError) as exc:  # then the server says goodbye
            client.ping(timeout=10)
        assert exc.value.code == p.ErrorCode.SHUTTING_DOWN
        stopper.join(10)
        client.close()
        assert not stopper.is_alive()
    assert sorted(r.request_id for r in results) == sorted(ids)
    assert {r.request_id: r.class_id for r in results} == {i: direct_classes[k] for k, i in enumerate(ids)}
    with pytest.raises(OffloadConnectionError):
        OffloadClient("127.0.0.1", handle.port, connect_timeout=1).connect()


def test_compat_port_speaks_the_papers_raw_protocol(model_path, images, direct_classes) -> None:
    config = make_config(model_path, compat_port=0)
    with run_server_in_thread(config) as handle:
        assert handle.compat_port and handle.compat_port != handle.port
        with socket.create_connection(("127.0.0.1", handle.compat_port), timeout=10) as sock:
            for i in range(10):  # repeated on one connection
                sock.sendall(images[i].transpose(2, 0, 1).tobytes())  # R plane, G plane, B plane
                answer = sock.recv(1)
                assert answer == bytes([direct_classes[i]])
    assert make_config(model_path).compat_port is None  # off by default


def test_metrics_and_health_endpoints(model_path, images) -> None:
    config = make_config(model_path, metrics_port=0)
    with run_server_in_thread(config) as handle:
        base = f"http://127.0.0.1:{handle.metrics_port}"
        health = urllib.request.urlopen(base + "/healthz", timeout=5)
        assert health.status == 200 and b'"ok"' in health.read()
        with OffloadClient("127.0.0.1", handle.port) as client:
            for i in range(7):
                client.infer(images[i], "tiny", timeout=10)
            with pytest.raises(OffloadServerError):
                client.infer(images[0], "missing", timeout=10)
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert 'hi_server_requests_total{model="tiny",outcome="ok"} 7.0' in text
    assert 'hi_server_errors_total{code="UNKNOWN_MODEL"} 1.0' in text
    assert 'hi_server_batch_size_count{model="tiny"} 7.0' in text
    assert 'hi_server_inference_seconds_count{model="tiny"}' in text
    assert 'hi_server_queue_seconds_count{model="tiny"} 7.0' in text


def test_tls_with_python_client(model_path, images, direct_classes, tmp_path) -> None:
    cert, key = self_signed_cert(tmp_path)
    config = make_config(model_path, tls_cert=str(cert), tls_key=str(key), auth_key=KEY.decode())
    with run_server_in_thread(config) as handle:
        ctx = ssl.create_default_context(cafile=str(cert))
        with OffloadClient("127.0.0.1", handle.port, key=KEY, ssl_context=ctx) as client:
            assert client.infer(images[4], "tiny", timeout=10).class_id == direct_classes[4]
        # a plain-TCP client cannot talk to the TLS port
        with pytest.raises(OffloadConnectionError):
            OffloadClient("127.0.0.1", handle.port, key=KEY, connect_timeout=2).connect()
        # and a client that does not trust the certificate refuses it
        with pytest.raises(OffloadConnectionError, match="TLS"):
            OffloadClient("127.0.0.1", handle.port, key=KEY, ssl_context=ssl.create_default_context()).connect()


def test_security_checks_at_start(model_path, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HI_SERVER_KEY", raising=False)
    with pytest.raises(ConfigError, match="non-loopback.*without a pre-shared key"):
        OffloadServer(ServerConfig(models=[ModelConfig("tiny", str(model_path))], host="0.0.0.0", port=0))
    with pytest.raises(ConfigError, match="at least 16"):
        OffloadServer(ServerConfig(models=[ModelConfig("tiny", str(model_path))], auth_key="short"))
    with pytest.raises(ConfigError, match="compat_allow_unauthenticated"):
        OffloadServer(ServerConfig(models=[ModelConfig("tiny", str(model_path))], host="0.0.0.0",
                                   auth_key=KEY.decode(), compat_port=0))
    key_file = tmp_path / "key"
    key_file.write_text(KEY.decode() + "\n")
    cfg = ServerConfig(models=[ModelConfig("tiny", str(model_path))], host="0.0.0.0", auth_key_file=str(key_file))
    cfg.validate()
    assert cfg.load_key() == KEY
    monkeypatch.setenv("HI_SERVER_KEY", KEY.decode())
    ServerConfig(models=[ModelConfig("tiny", str(model_path))], host="0.0.0.0").validate()


def test_config_errors_name_the_problem(model_path, tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ServerConfig(models=[ModelConfig("m", str(tmp_path / "missing.onnx"))]).validate()
    with pytest.raises(ConfigError, match="unknown setting.*max_batch"):
        ServerConfig.from_dict({"models": [{"id": "m", "path": str(model_path), "max_batch": 3}]})
    with pytest.raises(ConfigError, match="no 'models'"):
        ServerConfig.from_dict({"port": 1})
    with pytest.raises(ConfigError, match="input_layout"):
        ServerConfig(models=[ModelConfig("m", str(model_path), input_layout="HWC")]).validate()
    with pytest.raises(ConfigError, match="input_dtype"):
        with run_server_in_thread(ServerConfig(models=[ModelConfig("m", str(model_path), input_dtype="uint8")],
                                               port=0)):
            pass
    yaml_path = tmp_path / "sub" / "server.yaml"
    yaml_path.parent.mkdir()
    yaml_path.write_text(f"port: 0\nmodels:\n  - id: m\n    path: ../{model_path.name}\n"
                         "    max_batch_size: 4\n    input_size: [32, 32]\n")
    (tmp_path / model_path.name).write_bytes(model_path.read_bytes())
    cfg = ServerConfig.from_yaml(yaml_path)
    cfg.validate()
    assert cfg.models[0].max_batch_size == 4 and Path(cfg.models[0].path) == (tmp_path / model_path.name).resolve()


def test_several_models_and_model_layouts(tmp_path, images) -> None:
    """NCHW and uint8-input models, served side by side, answer like the files run directly."""
    import onnxruntime as ort

    nchw = build_standin_onnx(tmp_path / "nchw.onnx", kind="cnn", layout="NCHW", width=8, seed=3)
    u8 = build_standin_onnx(tmp_path / "u8.onnx", kind="linear", input_dtype="uint8", seed=4)
    config = ServerConfig(port=0, models=[ModelConfig("planar", str(nchw), input_layout="NCHW"),
                                          ModelConfig("bytes", str(u8), max_queue_delay_us=0)])
    want_nchw = ort.InferenceSession(str(nchw)).run(None, {"image": images[:8].transpose(0, 3, 1, 2)
                                                          .astype(np.float32)})[0].argmax(1)
    want_u8 = ort.InferenceSession(str(u8)).run(None, {"image": images[:8]})[0].argmax(1)
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as client:
        assert [client.infer(images[i], "planar", timeout=10).class_id for i in range(8)] == list(want_nchw)
        assert [client.infer(images[i], "bytes", timeout=10).class_id for i in range(8)] == list(want_u8)


# ---- spec conformance and hardening (issue 19) -------------------------------------------------------------


def _handshake(sock: socket.socket) -> p.Welcome:
    p.send_frame(sock, p.Hello(client_nonce=p.new_nonce()))
    welcome = p.recv_frame(sock)
    assert isinstance(welcome, p.Welcome)
    return welcome


def _frames_until_closed(sock: socket.socket, timeout: float = 10.0) -> list[p.Message]:
    """Every frame the server sends until it closes the connection."""
    sock.settimeout(timeout)
    decoder = p.FrameDecoder()
    frames: list[p.Message] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        frames.extend(decoder.feed(chunk))
    return frames


def test_connection_error_is_the_last_frame(model_path, images, direct_classes) -> None:
    """After a connection-level ERROR nothing follows (spec: the sender closes): the requests accepted
    before the bad frame are answered first, then the ERROR, then the connection closes."""
    config = make_config(model_path, max_batch_size=64, max_queue_delay_us=300_000)
    with run_server_in_thread(config) as handle, socket.create_connection(("127.0.0.1", handle.port)) as sock:
        _handshake(sock)
        for i in range(5):  # they wait ~300 ms in the batcher: still in flight when the garbage arrives
            p.send_frame(sock, p.Infer.from_array(images[i], "tiny", request_id=i + 1))
        time.sleep(0.05)
        sock.sendall(b"NOT A FRAME!")
        frames = _frames_until_closed(sock)
    assert isinstance(frames[-1], p.Error) and frames[-1].request_id == 0
    assert frames[-1].code == p.ErrorCode.BAD_FRAME
    results = frames[:-1]
    assert all(isinstance(f, p.Result) for f in results), frames
    assert {r.request_id: r.class_id for r in results} == {i + 1: direct_classes[i] for i in range(5)}


def test_request_id_zero_is_refused(model_path, images) -> None:
    with run_server_in_thread(make_config(model_path)) as handle:
        with socket.create_connection(("127.0.0.1", handle.port)) as sock:
            _handshake(sock)
            p.send_frame(sock, p.Infer.from_array(images[0], "tiny", request_id=0))
            frames = _frames_until_closed(sock)
        assert len(frames) == 1 and isinstance(frames[0], p.Error), frames  # no RESULT for id 0
        assert frames[0].code == p.ErrorCode.BAD_FRAME and frames[0].request_id == 0
        assert "request_id 0" in frames[0].message
        with OffloadClient("127.0.0.1", handle.port) as client:  # others are unaffected
            assert 0 <= client.infer(images[0], "tiny", timeout=10).class_id < 10


def test_payload_size_mismatch_is_bad_frame(model_path, images) -> None:
    frame = bytearray(p.encode(p.Infer.from_array(images[0], "tiny", request_id=1)))
    del frame[-10:]  # 10 payload bytes short of what the shape needs; the header length still matches
    frame[8:12] = (len(frame) - p.HEADER_SIZE).to_bytes(4, "little")
    with pytest.raises(p.PayloadMismatchError):
        p.decode(bytes(frame))
    with run_server_in_thread(make_config(model_path)) as handle, \
            socket.create_connection(("127.0.0.1", handle.port)) as sock:
        _handshake(sock)
        sock.sendall(bytes(frame))
        frames = _frames_until_closed(sock)
    assert len(frames) == 1 and isinstance(frames[0], p.Error)
    assert frames[0].code == p.ErrorCode.BAD_FRAME and frames[0].request_id == 0  # not BAD_TENSOR


def test_frame_deadline_runs_from_its_first_byte(model_path, images) -> None:
    """The idle timeout only covers waiting for a frame's first byte; the rest of the frame (header and
    body) must follow within frame_timeout_s, so a peer cannot dribble a frame in over a minute."""
    config = make_config(model_path, idle_timeout_s=30.0, frame_timeout_s=0.5)
    frame = p.encode(p.Infer.from_array(images[0], "tiny", request_id=1))
    with run_server_in_thread(config) as handle:
        with socket.create_connection(("127.0.0.1", handle.port)) as sock:
            _handshake(sock)
            start = time.monotonic()
            sock.sendall(frame[:5])  # part of a header, then silence
            err = p.recv_frame(sock)
            assert err.code == p.ErrorCode.TIMEOUT and "header" in err.message
            assert time.monotonic() - start < 5  # not the 30 s idle timeout
        with socket.create_connection(("127.0.0.1", handle.port)) as sock:
            _handshake(sock)
            start = time.monotonic()
            try:
                for i in range(40):  # one byte every 0.1 s: each byte "in time", the frame never
                    sock.sendall(frame[i : i + 1])
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
            frames = _frames_until_closed(sock)
            assert frames and frames[-1].code == p.ErrorCode.TIMEOUT
            assert time.monotonic() - start < 6
        with OffloadClient("127.0.0.1", handle.port) as client:  # a normal client is unaffected
            assert 0 <= client.infer(images[0], "tiny", timeout=10).class_id < 10


def test_per_peer_connection_cap_keeps_others_served(model_path, images, direct_classes) -> None:
    """One address holding many idle connections gets BUSY past max_connections_per_peer; another address
    still connects (127.0.0.2 is a second loopback peer)."""
    config = make_config(model_path, max_connections=12, max_connections_per_peer=4, handshake_timeout_s=30)
    with run_server_in_thread(config) as handle:
        hogs = [socket.create_connection(("127.0.0.1", handle.port), timeout=10) for _ in range(4)]
        refused: list[socket.socket] = []
        try:
            for sock in hogs:
                _handshake(sock)
            for _ in range(3):
                extra = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
                refused.append(extra)
                err = p.recv_frame(extra)
                assert isinstance(err, p.Error) and err.code == p.ErrorCode.BUSY
                assert "max_connections_per_peer" in err.message
            # the hogs are still open: another address is served all the same
            with socket.create_connection(("127.0.0.1", handle.port), timeout=10,
                                          source_address=("127.0.0.2", 0)) as sock:
                _handshake(sock)
                p.send_frame(sock, p.Infer.from_array(images[3], "tiny", request_id=1))
                assert p.recv_frame(sock).class_id == direct_classes[3]
        finally:
            for sock in hogs + refused:
                sock.close()
        assert handle.server.metrics.registry.get_sample_value(
            "hi_server_connections_refused_total", {"reason": "max_connections_per_peer"}) == 3


def test_compat_port_two_byte_reply(model_path, images, direct_classes) -> None:
    """compat_reply_bytes: 2 answers each image with the class as a uint16 little-endian, as published C++
    clients that read two bytes expect."""
    config = make_config(model_path, compat_port=0, compat_reply_bytes=2)
    with run_server_in_thread(config) as handle, \
            socket.create_connection(("127.0.0.1", handle.compat_port), timeout=10) as sock:
        for i in range(5):
            sock.sendall(images[i].transpose(2, 0, 1).tobytes())
            reply = b""
            while len(reply) < 2:
                chunk = sock.recv(2 - len(reply))
                assert chunk, "connection closed before the 2-byte reply"
                reply += chunk
            assert int.from_bytes(reply, "little") == direct_classes[i] and reply[1] == 0
    with pytest.raises(Exception, match="compat_reply_bytes"):
        ServerConfig.from_dict({"models": [{"id": "m", "path": str(model_path)}], "compat_reply_bytes": 3})


def test_request_timeout_answers_busy_and_drops_the_work(model_path, images) -> None:
    """An INFER not answered within request_timeout_s gets BUSY (the device answers locally) and leaves the
    queue, so an overloaded server does not keep computing answers nobody waits for."""
    config = make_config(model_path, max_batch_size=64, max_queue_delay_us=1_500_000, request_timeout_s=0.3)
    with run_server_in_thread(config) as handle, OffloadClient("127.0.0.1", handle.port) as client:
        start = time.monotonic()
        with pytest.raises(OffloadServerError) as exc:
            client.infer(images[0], "tiny", timeout=10)
        assert exc.value.code == p.ErrorCode.BUSY and "request_timeout_s" in exc.value.message
        assert time.monotonic() - start < 1.2
        time.sleep(1.6)  # past the batch deadline: the timed-out request was never run
        assert handle.server.metrics.registry.get_sample_value("hi_server_batch_size_count", {"model": "tiny"}) in (None, 0)


# ---- what an outside review found (2026-12-07): limits a client could slip past, settings that broke serving

def test_settings_that_would_break_every_handshake_or_timeout_are_refused(model_path) -> None:
    model = {"id": "tiny", "path": str(model_path)}
    with pytest.raises(ConfigError, match="printable ASCII without spaces"):
        ServerConfig.from_dict({"models": [model], "server_name": "edge box 1"}).validate()
    with pytest.raises(ConfigError, match="is 40 bytes"):
        ServerConfig.from_dict({"models": [model], "server_name": "x" * 40}).validate()
    for name in ("idle_timeout_s", "frame_timeout_s", "handshake_timeout_s", "request_timeout_s"):
        with pytest.raises(ConfigError, match=f"{name} = nan is invalid: use a finite number"):
            ServerConfig.from_dict({"models": [model], name: float("nan")})


def test_model_settings_that_contradict_the_model_file_are_refused_at_start(model_path, tmp_path) -> None:
    gray = build_standin_onnx(tmp_path / "gray.onnx", size=28, channels=1)
    for path, settings, message in (
            (model_path, {"input_size": [28, 28]}, "takes 32x32 images"),
            (gray, {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}, "mean has 3 values but model 'tiny' takes 1")):
        config = ServerConfig(models=[ModelConfig(id="tiny", path=str(path), **settings)], port=0)
        with pytest.raises(ConfigError, match=message):
            with run_server_in_thread(config):
                pass


def test_a_one_byte_compat_reply_for_more_than_256_classes_is_refused(tmp_path) -> None:
    wide = build_standin_onnx(tmp_path / "wide.onnx", size=8, num_classes=300)
    config = ServerConfig(models=[ModelConfig(id="wide", path=str(wide))], port=0, compat_port=0)
    with pytest.raises(ConfigError, match="300 classes.*compat_reply_bytes: 2"):
        with run_server_in_thread(config):
            pass
    config.compat_reply_bytes = 2
    with run_server_in_thread(config):
        pass


def test_the_queued_requests_of_a_client_that_left_are_not_run(model_path, images, monkeypatch) -> None:
    import offload_server.batcher as batcher

    runs: list[int] = []
    real = batcher.infer_batch

    def slow(*args):
        time.sleep(0.1)
        runs.append(1)
        return real(*args)

    monkeypatch.setattr(batcher, "infer_batch", slow)
    with run_server_in_thread(make_config(model_path, max_batch_size=1)) as handle:
        s = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
        p.send_frame(s, p.Hello(client_nonce=p.new_nonce(), client_name="leaver"))
        assert isinstance(p.recv_frame(s), p.Welcome)
        for i in range(12):
            s.sendall(p.encode(p.Infer.from_array(images[i], "tiny", request_id=i + 1)))
        time.sleep(0.15)
        s.close()  # gives up with about ten requests still queued
        time.sleep(1.5)  # all twelve would have run by now
    assert len(runs) <= 4, runs  # the one running, and the few whose answer failed before the cancel


class _StuckWriter:
    """A transport whose peer reads nothing: every drain waits forever; records the frames and an abort."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.aborted = False
        self.transport = self

    def get_extra_info(self, _name):
        return ("127.0.0.1", 1)

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    async def drain(self) -> None:
        await asyncio.sleep(3600)

    def abort(self) -> None:
        self.aborted = True


def _connection(writer, **server_kw):
    from types import SimpleNamespace

    from offload_server.connection import HiConnection
    from offload_server.metrics import ServerMetrics

    config = SimpleNamespace(max_frame=1 << 20, max_inflight=4, idle_timeout_s=0.1, default_model_id="m",
                             **server_kw)
    host = SimpleNamespace(config=config, key=None, metrics=ServerMetrics(), models={}, compat_model_id="m")
    return HiConnection(host, asyncio.StreamReader(), writer)


def test_a_client_that_reads_nothing_is_cut_off_after_the_idle_timeout() -> None:
    async def scenario():
        conn = _connection(_StuckWriter())
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="read nothing"):
            await conn.send(p.Pong(token=1, request_id=0))
        assert conn.writer.aborted and time.monotonic() - started < 2.0
        with pytest.raises(ConnectionError):  # and nothing more is written to it
            await conn.send(p.Pong(token=2, request_id=0))
        assert len(conn.writer.frames) == 1

    asyncio.run(scenario())


def test_an_answer_the_protocol_cannot_carry_is_an_internal_error_not_silence() -> None:
    """A model with more than 65,535 classes: its RESULT cannot be encoded; the request gets INTERNAL."""
    from types import SimpleNamespace

    from offload_server.batcher import BatchOutcome

    class Runner:
        async def submit(self, pixels):
            probs = np.zeros(70_000, np.float32)
            probs[68_872] = 1.0
            return BatchOutcome(probs, 1, 0.0, 0.0)

    class Writer(_StuckWriter):
        async def drain(self) -> None:
            return None

    async def scenario():
        conn = _connection(Writer())
        model = SimpleNamespace(preprocessor=SimpleNamespace(to_pixels=lambda msg: np.zeros((32, 32, 3))),
                                request_timeout_s=5.0, runner=Runner(), config=SimpleNamespace(id="m"))
        conn.server.models["m"] = model
        await conn._answer(p.Infer.from_array(np.zeros((32, 32, 3), np.uint8), "m", request_id=7), time.perf_counter())
        return conn.writer.frames

    frames = asyncio.run(scenario())
    reply = p.decode(frames[-1])
    assert isinstance(reply, p.Error) and reply.code == p.ErrorCode.INTERNAL and reply.request_id == 7
    assert "68872" in reply.message


def test_tls_connections_that_never_finish_the_tls_handshake_are_closed(model_path, tmp_path) -> None:
    cert, key = self_signed_cert(tmp_path)
    config = make_config(model_path, tls_cert=str(cert), tls_key=str(key), handshake_timeout_s=0.5)
    with run_server_in_thread(config) as handle:
        silent = [socket.create_connection(("127.0.0.1", handle.port), timeout=5) for _ in range(3)]
        time.sleep(1.5)
        for s in silent:  # the server has closed each: EOF (or a reset) instead of a blocked read
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
            s.close()
