"""OffloadClient against scripted fake servers: timeouts, late answers, pipelining order, broken peers.

The fake servers are plain threads on 127.0.0.1 speaking the protocol through hi_runtime.protocol, so each
test controls exactly what the "server" does wrong.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import numpy as np
import pytest

from hi_runtime import protocol as p
from hi_runtime.offload_client import (
    OffloadAuthError,
    OffloadClient,
    OffloadConnectionError,
    OffloadError,
    OffloadServerError,
    OffloadTimeout,
)

pytestmark = pytest.mark.timeout(60)
IMG = np.zeros((32, 32, 3), np.uint8)


@contextmanager
def fake_server(script: Callable[[socket.socket], None]) -> Iterator[int]:
    """Accept one connection on an ephemeral loopback port, answer the handshake, then run ``script``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            hello = p.recv_frame(conn)
            assert isinstance(hello, p.Hello)
            p.send_frame(conn, p.Welcome(version=1, server_nonce=p.new_nonce(), max_inflight=4))
            try:
                script(conn)
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(10)


def test_out_of_order_answers_go_to_the_right_caller() -> None:
    def script(conn: socket.socket) -> None:
        reqs = [p.recv_frame(conn) for _ in range(3)]
        for req in reversed(reqs):  # answer last first
            p.send_frame(conn, p.Result(request_id=req.request_id, class_id=req.request_id % 10))
        req = p.recv_frame(conn)
        p.send_frame(conn, p.Result(request_id=req.request_id, class_id=9, top_k=((9, 0.5), (1, 0.25))))

    with fake_server(script) as port, OffloadClient("127.0.0.1", port) as client:
        ids = [client.submit(IMG, "m") for _ in range(3)]
        assert ids == [1, 2, 3]
        got = [client.receive(timeout=5) for _ in ids]
        assert [r.request_id for r in got] == [3, 2, 1]
        assert all(r.class_id == r.request_id % 10 and r.round_trip_s > 0 for r in got)
        r = client.infer(IMG, "m", timeout=5)
        assert r.top_k == [(9, 0.5), (1, 0.25)]
        with pytest.raises(OffloadError, match="no request in flight"):
            client.receive(timeout=0.1)


def test_timeout_keeps_connection_and_drops_the_late_answer() -> None:
    release = threading.Event()

    def script(conn: socket.socket) -> None:
        slow = p.recv_frame(conn)
        release.wait(5)
        frame = p.encode(p.Result(request_id=slow.request_id, class_id=1))
        conn.sendall(frame[:7])  # a late answer arriving in pieces
        time.sleep(0.05)
        conn.sendall(frame[7:])
        nxt = p.recv_frame(conn)
        p.send_frame(conn, p.Result(request_id=nxt.request_id, class_id=2))

    with fake_server(script) as port, OffloadClient("127.0.0.1", port) as client:
        with pytest.raises(OffloadTimeout):
            client.infer(IMG, "m", timeout=0.2)
        release.set()
        r = client.infer(IMG, "m", timeout=5)  # the late answer to the first request is ignored
        assert r.class_id == 2 and r.request_id == 2


def test_errors_per_request_and_per_connection() -> None:
    def script(conn: socket.socket) -> None:
        a = p.recv_frame(conn)
        p.send_frame(conn, p.Error(code=p.ErrorCode.UNKNOWN_MODEL, message="no such model", request_id=a.request_id))
        b = p.recv_frame(conn)
        p.send_frame(conn, p.Result(request_id=b.request_id, class_id=4))
        p.send_frame(conn, p.Error(code=p.ErrorCode.SHUTTING_DOWN, message="bye"))

    with fake_server(script) as port, OffloadClient("127.0.0.1", port) as client:
        with pytest.raises(OffloadServerError) as exc:
            client.infer(IMG, "x", timeout=5)
        assert exc.value.code == p.ErrorCode.UNKNOWN_MODEL and exc.value.message == "no such model"
        assert client.infer(IMG, "m", timeout=5).class_id == 4
        with pytest.raises(OffloadServerError, match="SHUTTING_DOWN"):
            client.ping(timeout=5)
        assert not client.connected


def test_garbage_from_server_is_a_connection_error() -> None:
    def script(conn: socket.socket) -> None:
        p.recv_frame(conn)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with fake_server(script) as port, OffloadClient("127.0.0.1", port) as client:
        with pytest.raises(OffloadConnectionError, match="invalid frame"):
            client.infer(IMG, "m", timeout=5)
        assert not client.connected


def test_server_closing_mid_request() -> None:
    def script(conn: socket.socket) -> None:
        p.recv_frame(conn)
        conn.sendall(p.encode(p.Result(request_id=1, class_id=0))[:5])

    with fake_server(script) as port, OffloadClient("127.0.0.1", port) as client:
        with pytest.raises(OffloadConnectionError, match="closed"):
            client.infer(IMG, "m", timeout=5)


def test_server_answers_ping_and_client_answers_server_ping() -> None:
    seen = []

    def script(conn: socket.socket) -> None:
        p.send_frame(conn, p.Ping(token=1234))
        ping = p.recv_frame(conn)  # the client's own PING
        seen.append(p.recv_frame(conn))  # its answer to ours
        p.send_frame(conn, p.Pong(token=ping.token))

    with fake_server(script) as port, OffloadClient("127.0.0.1", port) as client:
        assert 0 <= client.ping(timeout=5) < 5
    assert seen == [p.Pong(token=1234)]


def test_connect_failures_are_clear() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(OffloadConnectionError, match=f"127.0.0.1:{port}"):
        OffloadClient("127.0.0.1", port, connect_timeout=1).connect()
    with pytest.raises(OffloadConnectionError, match="not connected"):
        OffloadClient("127.0.0.1", port).infer(IMG, "m")

    def mute(conn: socket.socket) -> None:  # handshake then nothing
        time.sleep(0.5)

    # a server that never answers HELLO: the handshake times out
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(OffloadTimeout, match="WELCOME"):
            OffloadClient("127.0.0.1", listener.getsockname()[1], connect_timeout=0.3).connect()
    finally:
        listener.close()
    with fake_server(mute) as port2, pytest.raises(OffloadAuthError, match="does not require"):
        OffloadClient("127.0.0.1", port2, key=b"k" * 16).connect()


def test_invalid_tensor_is_a_value_error_before_sending() -> None:
    with fake_server(lambda conn: None) as port, OffloadClient("127.0.0.1", port) as client:
        with pytest.raises(ValueError, match="dtype"):
            client.submit(np.zeros((32, 32, 3), np.float64), "m")
        with pytest.raises(ValueError, match="model_id"):
            client.submit(IMG, "x" * 40)
