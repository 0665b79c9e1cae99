"""One device connection speaking the HI protocol (docs/protocol.md), and one on the paper's raw port.

Limits that keep one bad client from hurting the others: the handshake has a deadline, and so has every
frame from its first byte (header and body together, so a client cannot dribble a frame in over a minute);
a silent connection with nothing in flight is closed after the idle timeout, frames above max_frame are
refused from their header, and at most max_inflight requests per connection are in the server at once
(beyond that the connection is simply not read: TCP back-pressure, bounded memory). The server caps
connections in total and per client address (offload_server.server).

A connection-level ERROR (request id 0) is always the last frame the server sends on a connection: the
requests it had already accepted are answered first, then the ERROR, then it closes (docs/protocol.md).
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from hi_runtime import protocol as p
from offload_server.batcher import ModelBusy, ModelStopped
from offload_server.logs import event
from offload_server.preprocess import BadTensor, top_k

if TYPE_CHECKING:
    from offload_server.config import ServerConfig
    from offload_server.metrics import ServerMetrics
    from offload_server.served_model import ServedModel

log = logging.getLogger("offload_server.connection")

COMPAT_IMAGE_BYTES = 32 * 32 * 3


class ConnectionHost(Protocol):
    """What a connection reads from the server that accepted it (offload_server.server.OffloadServer)."""

    config: ServerConfig
    key: bytes | None
    metrics: ServerMetrics
    models: dict[str, ServedModel]
    compat_model_id: str


class CloseConnection(Exception):
    """Send a connection-level ERROR, then close."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ConnectionBase:
    def __init__(self, server: ConnectionHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 port_label: str) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) else str(peer)  # per-peer connection cap
        self.port_label = port_label
        self._reading = False
        self._stop_reading = False
        self._read_task: asyncio.Task | None = None

    def stop_reading(self) -> None:
        """Shutdown: accept no more requests; requests already read are still answered."""
        self._stop_reading = True
        if self._reading and self._read_task is not None:
            self._read_task.cancel()

    async def _close(self) -> None:
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (OSError, RuntimeError):
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass


class HiConnection(_ConnectionBase):
    def __init__(self, server: ConnectionHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(server, reader, writer, "protocol")
        cfg = server.config
        self.max_frame = cfg.max_frame
        self.version = p.PROTOCOL_VERSION
        self._write_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(cfg.max_inflight)
        self._pending: set[asyncio.Task] = set()
        self.client_name = ""

    # ---- writing ------------------------------------------------------------------------------------

    async def send(self, msg: p.Message) -> None:
        """Write one frame. A client that takes none of it for idle_timeout_s (its receive window stays
        full) is gone: the connection is aborted, so it cannot hold its slots and requests forever."""
        frame = p.encode(msg, version=self.version)
        if isinstance(msg, p.Error):
            self.server.metrics.errors.labels(_code_name(msg.code)).inc()
        async with self._write_lock:
            if self.writer.is_closing():
                raise ConnectionResetError("the connection is closed")
            self.writer.write(frame)
            try:
                await asyncio.wait_for(self.writer.drain(), self.server.config.idle_timeout_s)
            except asyncio.TimeoutError:
                self.writer.transport.abort()
                raise ConnectionResetError(f"the client read nothing for {self.server.config.idle_timeout_s} s")

    async def _send_quietly(self, msg: p.Message) -> None:
        try:
            await asyncio.wait_for(self.send(msg), 2.0)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            pass

    # ---- reading ------------------------------------------------------------------------------------

    async def _read(self, timeout: float | None, deadline: float | None = None) -> p.Message | None:
        """Next frame. Its first byte may take ``timeout`` (idle, or the handshake); from then on the whole
        frame, header and body, must arrive within frame_timeout_s (or by the absolute loop time
        ``deadline``), so a peer cannot hold the connection by sending a frame one byte at a time."""
        first = await asyncio.wait_for(self.reader.readexactly(1), timeout)
        loop = asyncio.get_running_loop()
        limit = self.server.config.frame_timeout_s
        if deadline is None:
            deadline = loop.time() + limit
        else:
            limit = max(0.0, deadline - loop.time())
        try:
            head = first + await asyncio.wait_for(self.reader.readexactly(p.HEADER_SIZE - 1),
                                                  max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise CloseConnection(p.ErrorCode.TIMEOUT, f"frame header not completed within {limit:g} s of its "
                                  "first byte") from None
        header = p.decode_header(head, self.max_frame)
        body = b""
        if header.body_length:
            try:
                body = await asyncio.wait_for(self.reader.readexactly(header.body_length),
                                              max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise CloseConnection(p.ErrorCode.TIMEOUT, f"{header.type.name} body not received within "
                                      f"{limit:g} s of the frame's first byte") from None
        return p.decode_body(header, body)

    async def run(self) -> None:
        started = time.monotonic()
        event(log, "connection_open", peer=self.peer)
        reason = "closed by peer"
        fatal: p.Error | None = None  # the connection-level ERROR to send last
        self._read_task = asyncio.current_task()
        try:
            self._reading = True  # nothing is accepted during the handshake: shutdown may interrupt it
            await self._handshake()
            await self._serve_requests()
        except CloseConnection as exc:
            reason = exc.message
            fatal = p.error_message(exc.code, exc.message)
        except p.ProtocolError as exc:
            reason = f"invalid frame: {exc}"
            fatal = p.error_message(frame_error_code(exc), str(exc))
        except asyncio.IncompleteReadError:
            reason = "closed by peer" if not self._pending else "closed by peer with requests in flight"
        except asyncio.CancelledError:
            if not self._stop_reading:
                raise
            _uncancel()
            reason = "server shutdown"
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        finally:
            self._reading = False
        # answer everything accepted (also on shutdown), then the connection-level ERROR as the last frame
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if fatal is None and self._stop_reading:
            fatal = p.Error(p.ErrorCode.SHUTTING_DOWN, "server is shutting down")
        if fatal is not None:
            await self._send_quietly(fatal)
        await self._close()
        event(log, "connection_closed", peer=self.peer, client=self.client_name, reason=reason,
              seconds=round(time.monotonic() - started, 3))

    async def _handshake(self) -> None:
        cfg = self.server.config
        timeout = cfg.handshake_timeout_s
        loop = asyncio.get_running_loop()
        try:  # the whole HELLO (and later the whole AUTH) within the handshake timeout
            hello = await self._read(timeout, loop.time() + timeout)
        except asyncio.TimeoutError:
            raise CloseConnection(p.ErrorCode.TIMEOUT, f"no HELLO within {timeout} s") from None
        if hello is None:
            raise asyncio.IncompleteReadError(b"", None)
        if not isinstance(hello, p.Hello):
            raise CloseConnection(p.ErrorCode.UNEXPECTED_MESSAGE,
                                  f"expected HELLO first, got {type(hello).__name__}")
        try:
            self.version = p.choose_version(hello.min_version, hello.max_version)
        except p.UnsupportedVersionError as exc:
            raise CloseConnection(p.ErrorCode.UNSUPPORTED_VERSION, str(exc)) from None
        self.client_name = hello.client_name
        key = self.server.key
        server_nonce = p.new_nonce()
        await self.send(p.Welcome(version=self.version, server_nonce=server_nonce, auth_required=key is not None,
                                  max_frame=self.max_frame, max_inflight=cfg.max_inflight,
                                  server_name=cfg.server_name))
        if key is None:
            return
        try:
            auth = await self._read(timeout, loop.time() + timeout)
        except asyncio.TimeoutError:
            raise CloseConnection(p.ErrorCode.TIMEOUT, f"no AUTH within {timeout} s") from None
        if not isinstance(auth, p.Auth):
            raise CloseConnection(p.ErrorCode.AUTH_REQUIRED,
                                  f"this server requires AUTH after WELCOME, got {type(auth).__name__}")
        args = (server_nonce, hello.client_nonce, self.version, hello.client_name)
        if not p.verify(p.client_proof(key, *args), auth.mac):
            self.server.metrics.auth_failures.inc()
            event(log, "auth_failed", logging.WARNING, peer=self.peer, client=self.client_name)
            raise CloseConnection(p.ErrorCode.AUTH_FAILED, "authentication failed: wrong pre-shared key")
        await self.send(p.AuthOk(mac=p.server_proof(key, *args)))

    async def _serve_requests(self) -> None:
        cfg = self.server.config
        while not self._stop_reading:
            self._reading = True
            await self._slots.acquire()  # back-pressure: no reading while max_inflight requests are open
            try:
                try:
                    msg = await self._read(cfg.idle_timeout_s)
                except asyncio.TimeoutError:
                    if self._pending:
                        self._slots.release()
                        continue  # waiting for answers is not idling
                    raise CloseConnection(p.ErrorCode.TIMEOUT,
                                          f"idle for {cfg.idle_timeout_s} s with nothing in flight") from None
            except BaseException:
                self._slots.release()
                raise
            self._reading = False
            if isinstance(msg, p.Infer) and msg.request_id == 0:
                self._slots.release()
                raise CloseConnection(p.ErrorCode.BAD_FRAME, "INFER with request_id 0: 0 is reserved for "
                                      "connection-level frames; number requests from 1")
            if isinstance(msg, p.Infer):
                # accepted from here on: no await before the task exists, so shutdown cannot lose it
                task = asyncio.get_running_loop().create_task(self._answer(msg, time.perf_counter()))
                self._pending.add(task)
                task.add_done_callback(self._request_done)
                continue
            self._slots.release()
            if isinstance(msg, p.Ping):
                await self.send(p.Pong(token=msg.token, request_id=msg.request_id))
            elif isinstance(msg, p.Pong):
                pass
            else:
                raise CloseConnection(p.ErrorCode.UNEXPECTED_MESSAGE,
                                      f"{type(msg).__name__} is not allowed after the handshake")

    def _request_done(self, task: asyncio.Task) -> None:
        self._pending.discard(task)
        self._slots.release()

    async def _answer(self, msg: p.Infer, received: float) -> None:
        server = self.server
        server.metrics.inflight.inc()
        model_id = msg.model_id or server.config.default_model_id
        try:
            model = server.models.get(model_id)
            if model is None:
                reply: p.Message = p.error_message(p.ErrorCode.UNKNOWN_MODEL,
                                                   f"unknown model {model_id!r}; served: {sorted(server.models)}",
                                                   msg.request_id)
            else:
                reply = await self._infer(model, msg, received)
            try:
                await self.send(reply)
            except p.ProtocolError as exc:  # an answer the protocol cannot carry (e.g. a class id > 65535)
                reply = p.error_message(p.ErrorCode.INTERNAL, f"the answer cannot be sent: {exc}", msg.request_id)
                await self.send(reply)
            server.metrics.requests.labels(model_id if model else "?",
                                           "ok" if isinstance(reply, p.Result) else "error").inc()
            if model is not None:
                server.metrics.request_seconds.labels(model_id).observe(time.perf_counter() - received)
        except (ConnectionError, OSError):
            # the client went away: nothing to answer to, neither here nor for its other queued requests
            # (cancelled, so the batcher skips them instead of running them for nobody)
            for task in self._pending:
                if task is not asyncio.current_task():
                    task.cancel()
        finally:
            server.metrics.inflight.dec()

    async def _infer(self, model: ServedModel, msg: p.Infer, received: float) -> p.Message:
        return await infer_request(model, msg, received, self.server.metrics)


async def infer_request(model: ServedModel, msg: p.Infer, received: float, metrics: ServerMetrics) -> p.Message:
    """Run one INFER through its model's runner; every failure becomes an ERROR for this request only.

    Failures of the model tier get codes a device retries elsewhere or answers locally (SHUTTING_DOWN,
    BUSY, INTERNAL); only the request's own faults (BAD_TENSOR) are final.
    """
    try:
        pixels = model.preprocessor.to_pixels(msg)
    except BadTensor as exc:
        return p.error_message(p.ErrorCode.BAD_TENSOR, str(exc), msg.request_id)
    timeout = model.request_timeout_s
    try:
        outcome = await asyncio.wait_for(model.runner.submit(pixels), timeout)
    except asyncio.TimeoutError:
        return p.error_message(p.ErrorCode.BUSY, f"not answered within request_timeout_s ({timeout:g} s); "
                               "the model tier is overloaded", msg.request_id)
    except ModelStopped as exc:
        return p.error_message(p.ErrorCode.SHUTTING_DOWN, str(exc), msg.request_id)
    except ModelBusy as exc:
        return p.error_message(p.ErrorCode.BUSY, str(exc), msg.request_id)
    except Exception as exc:
        return p.error_message(p.ErrorCode.INTERNAL, f"inference failed: {exc!r}", msg.request_id)
    metrics.replica_requests.labels(model.config.id, outcome.replica).inc()
    probs = outcome.probs
    total_s = time.perf_counter() - received
    return p.Result(
        request_id=msg.request_id,
        class_id=int(np.argmax(probs)),
        top_k=top_k(probs, msg.top_k),
        batch_size=min(outcome.batch_size, 0xFFFF),
        queue_us=_us(outcome.queue_s),
        infer_us=_us(outcome.infer_s),
        total_us=_us(total_s),
    )


class CompatConnection(_ConnectionBase):
    """The paper's raw protocol: 3,072 bytes (R plane, G plane, B plane, uint8) in, the class out, repeated:
    one byte, or two (uint16 little-endian) with compat_reply_bytes: 2 for clients that read a uint16.
    There is no framing to check, so a short read at the end is just a closing client."""

    def __init__(self, server: ConnectionHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(server, reader, writer, "compat")

    async def run(self) -> None:
        event(log, "compat_connection_open", peer=self.peer)
        model = self.server.models[self.server.compat_model_id]
        self._read_task = asyncio.current_task()
        served = 0
        try:
            while not self._stop_reading:
                self._reading = True
                try:
                    raw = await asyncio.wait_for(self.reader.readexactly(COMPAT_IMAGE_BYTES),
                                                 self.server.config.idle_timeout_s)
                finally:
                    self._reading = False
                received = time.perf_counter()
                # channel-planar bytes are exactly an NCHW uint8 tensor
                msg = p.Infer(0, model.config.id, p.DType.UINT8, p.Layout.NCHW, (1, 3, 32, 32), raw)
                reply = await infer_request(model, msg, received, self.server.metrics)
                ok = isinstance(reply, p.Result)
                self.server.metrics.requests.labels(model.config.id + ":compat", "ok" if ok else "error").inc()
                if not ok:
                    event(log, "compat_request_failed", logging.WARNING, peer=self.peer, error=reply.message)
                    break  # the raw protocol has no way to report an error: close
                self.writer.write(compat_reply(reply.class_id, self.server.config.compat_reply_bytes))
                await self.writer.drain()
                served += 1
        except asyncio.CancelledError:
            if not self._stop_reading:
                raise
            _uncancel()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        await self._close()
        event(log, "compat_connection_closed", peer=self.peer, requests=served)


def compat_reply(class_id: int, width: int) -> bytes:
    """The compat port's answer: the class as one byte, or as a uint16 little-endian."""
    return struct.pack("<H", class_id & 0xFFFF) if width == 2 else bytes([class_id & 0xFF])


def frame_error_code(exc: p.ProtocolError) -> int:
    """The connection-level ERROR code for an invalid frame (docs/protocol.md, decoding rules): BAD_FRAME
    unless the spec names another (FRAME_TOO_LARGE, UNSUPPORTED_VERSION). A payload whose size does not
    match its shape is an undecodable frame, so BAD_FRAME, not the per-request BAD_TENSOR."""
    if isinstance(exc, (p.FrameTooLargeError, p.UnsupportedVersionError)):
        return exc.code
    return p.ErrorCode.BAD_FRAME


def _uncancel() -> None:
    """After a shutdown cancellation was handled, let the task await normally again (Python 3.11+)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


def _us(seconds: float) -> int:
    return max(0, min(int(seconds * 1e6), 0xFFFFFFFF))


def _code_name(code: int) -> str:
    try:
        return p.ErrorCode(code).name
    except ValueError:
        return str(code)
