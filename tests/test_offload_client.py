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
def fake_server(script: Callable[[socket.socket], None], max_frame: int = p.DEFAULT_MAX_FRAME) -> Iterator[int]:
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
            p.send_frame(conn, p.Welcome(version=1, server_nonce=p.new_nonce(), max_inflight=4, max_frame=max_frame))
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


def test_a_frame_over_the_servers_max_frame_is_refused_before_sending_and_the_connection_lives() -> None:
    """A request larger than the max_frame the server's WELCOME announced would make the server drop the
    connection (and every request in flight on it); both clients refuse it locally instead, and the
    connection goes on answering requests that fit."""
    from hi_runtime.offload_client import AsyncOffloadClient, OffloadRequestError

    small = np.zeros((8, 8, 3), np.uint8)

    def script(conn: socket.socket) -> None:
        req = p.recv_frame(conn)
        p.send_frame(conn, p.Result(request_id=req.request_id, class_id=3))

    with fake_server(script, max_frame=1024) as port, OffloadClient("127.0.0.1", port) as client:
        assert client.server_max_frame == 1024
        with pytest.raises(OffloadRequestError, match="at most 1024 bytes .its max_frame"):
            client.submit(IMG, "m")
        assert client.infer(small, "m", timeout=5).class_id == 3

    listener = socket.create_server(("127.0.0.1", 0))
    received: list[int] = []
    threading.Thread(target=_slow_server, args=(listener, 4, received, 0.0, 1024), daemon=True).start()

    async def scenario():
        client = AsyncOffloadClient("127.0.0.1", listener.getsockname()[1], max_inflight=4)
        await client.connect()
        with pytest.raises(OffloadRequestError, match="max_frame"):
            await client.infer(IMG, "m", timeout=5)
        assert client.free_slots == 4  # the refused request holds no slot
        assert (await client.infer(small, "m", timeout=5)).class_id == 7
        await client.close()

    _async(scenario())
    listener.close()
    assert received == [2]  # request 1 was never sent


# ---- the asyncio client under cancellation and a slow server (an outside review, 2026-12-07) ---------------

def _slow_server(listener: socket.socket, max_inflight: int, received: list, answer_after: float | None,
                 max_frame: int = p.DEFAULT_MAX_FRAME):
    """WELCOME with ``max_inflight``; records each INFER's id; answers after ``answer_after`` s (None: never)."""
    conn, _ = listener.accept()
    with conn:
        p.recv_frame(conn)
        p.send_frame(conn, p.Welcome(version=1, server_nonce=p.new_nonce(), max_inflight=max_inflight,
                                     max_frame=max_frame))
        conn.settimeout(5)
        try:
            while (req := p.recv_frame(conn)) is not None:
                received.append(req.request_id)
                if answer_after is not None:
                    time.sleep(answer_after)
                    p.send_frame(conn, p.Result(request_id=req.request_id, class_id=7))
        except OSError:
            pass


def _async(coro):
    import asyncio

    return asyncio.run(asyncio.wait_for(coro, 30))


def test_given_up_requests_keep_their_slot_so_the_server_never_holds_more_than_it_allows() -> None:
    from hi_runtime.offload_client import AsyncOffloadClient

    listener = socket.create_server(("127.0.0.1", 0))
    received: list[int] = []
    threading.Thread(target=_slow_server, args=(listener, 2, received, None), daemon=True).start()

    async def scenario():
        client = AsyncOffloadClient("127.0.0.1", listener.getsockname()[1], max_inflight=8)
        await client.connect()
        for _ in range(10):
            with pytest.raises(OffloadTimeout):
                await client.infer(IMG, "m", timeout=0.02)
        assert client.free_slots == 0  # the offloader then picks another connection or server
        await client.close()

    _async(scenario())
    listener.close()
    assert len(received) == 2  # the server said 2: the other 8 attempts found no free slot


def test_a_request_cancelled_while_it_waits_for_a_slot_is_never_sent() -> None:
    import asyncio

    from hi_runtime.offload_client import AsyncOffloadClient

    listener = socket.create_server(("127.0.0.1", 0))
    received: list[int] = []
    threading.Thread(target=_slow_server, args=(listener, 1, received, 0.2), daemon=True).start()

    async def scenario():
        client = AsyncOffloadClient("127.0.0.1", listener.getsockname()[1], max_inflight=4)
        await client.connect()
        first = asyncio.ensure_future(client.infer(IMG, "m", timeout=5))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(client.infer(IMG, "m", timeout=5))  # waits for the one slot
        await asyncio.sleep(0.05)
        await asyncio.wait([first])  # the offloader's pattern: the winner's answer frees the slot ...
        second.cancel()  # ... and the loser is cancelled in the same loop step
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0.3)
        await client.close()

    _async(scenario())
    listener.close()
    assert received == [1]


def test_a_connect_cancelled_mid_handshake_leaves_no_half_open_client() -> None:
    import asyncio

    from hi_runtime.offload_client import AsyncOffloadClient

    listener = socket.create_server(("127.0.0.1", 0))
    seen: list = []

    def late_welcome():
        conn, _ = listener.accept()
        with conn:
            p.recv_frame(conn)
            conn.settimeout(3)
            try:
                seen.append(conn.recv(1))  # b"" once the client closes
            except OSError as exc:
                seen.append(exc)

    thread = threading.Thread(target=late_welcome, daemon=True)
    thread.start()

    async def scenario():
        client = AsyncOffloadClient("127.0.0.1", listener.getsockname()[1], connect_timeout=2.0)
        task = asyncio.ensure_future(client.connect())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return client.connected

    assert _async(scenario()) is False
    thread.join(5)
    listener.close()
    assert seen == [b""]  # the socket was closed, not leaked
