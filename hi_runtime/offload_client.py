"""Clients of the HI offload protocol: a blocking one and an asyncio one, with the same handshake.

* :class:`OffloadClient` (blocking sockets): benchmarks, tests, simple tools. It pipelines by hand:
  :meth:`~OffloadClient.submit` sends a request without waiting and :meth:`~OffloadClient.receive` returns
  the next answer. Incoming bytes go through a FrameDecoder, so a timeout in the middle of a frame never
  desynchronizes the stream; answers to requests whose caller gave up are dropped when they arrive. Not
  thread-safe: one client per thread.
* :class:`AsyncOffloadClient` (asyncio streams): what hi-agent's offloader and the fleet simulator use. Up
  to ``max_inflight`` requests are on the wire at once (bounded by what the server's WELCOME allows); a
  reader task pairs every answer with its request id, so answers may come back in any order.

Both speak HELLO/WELCOME version negotiation and the optional HMAC handshake through the same checks
(:func:`_check_welcome`, :func:`_check_auth_ok`), and build answers with :func:`_infer_result`.
"""
from __future__ import annotations

import itertools
import logging
import socket
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from hi_runtime import protocol as p

log = logging.getLogger(__name__)
_MAX_ABANDONED = 4096  # given-up requests remembered per connection for on_late


class OffloadError(Exception):
    """Base of every failure of an offload attempt; the agent falls back to the local answer on it."""


class OffloadTimeout(OffloadError, TimeoutError):
    """No answer within the timeout (the connection stays usable)."""


class OffloadConnectionError(OffloadError, ConnectionError):
    """Could not connect, the connection broke, or the server sent an invalid frame (connection closed)."""


class OffloadAuthError(OffloadError):
    """Authentication failed: wrong or missing key, or the server could not prove it holds the key."""


class OffloadRequestError(OffloadError, ValueError):
    """This request cannot be sent at all (a tensor the protocol cannot carry, or a frame larger than the
    server's ``max_frame`` from its WELCOME); refused before sending, so the connection and every other
    request on it are unharmed. A ValueError too: it is the caller's tensor that is wrong."""


def _infer_frame(tensor: np.ndarray, model_id: str, request_id: int, *, layout: str, quant, top_k: int,
                 version: int | None, server_max_frame: int, server: str) -> bytes:
    """The encoded INFER for one tensor, refused (OffloadRequestError) when the server would not take it:
    a frame over its max_frame makes the server drop the whole connection, failing every request in flight."""
    try:
        msg = p.Infer.from_array(tensor, model_id, request_id, layout=layout, quant=quant, top_k=top_k)
    except p.ProtocolError as exc:
        raise OffloadRequestError(f"cannot offload this tensor: {exc}") from exc
    frame = p.encode(msg, version=version)
    if server_max_frame and len(frame) > server_max_frame:
        raise OffloadRequestError(f"cannot offload this tensor: its request is {len(frame)} bytes and {server} "
                                  f"accepts frames of at most {server_max_frame} bytes (its max_frame); shrink the "
                                  "input or raise the server's max_frame")
    return frame


class OffloadServerError(OffloadError):
    """The server answered a request with an ERROR frame."""

    def __init__(self, code: int, message: str, request_id: int = 0) -> None:
        try:
            name = p.ErrorCode(code).name
        except ValueError:
            name = f"code {code}"
        super().__init__(f"server error {name}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass
class InferResult:
    request_id: int
    class_id: int
    top_k: list[tuple[int, float]]
    server_timings: dict[str, float]  # queue_us, infer_us, total_us, batch_size
    round_trip_s: float = 0.0  # submit -> answer, measured by this client


@dataclass
class _Pending:
    sent_at: float
    kind: str = "infer"


@dataclass
class _Inbox:
    """Answers received but not yet handed out, in arrival order."""

    items: OrderedDict[int, InferResult | OffloadServerError] = field(default_factory=OrderedDict)


def _handshake_error(err: p.Error) -> OffloadError:
    if err.code in (p.ErrorCode.AUTH_FAILED, p.ErrorCode.AUTH_REQUIRED):
        return OffloadAuthError(f"server rejected authentication: {err.message} (check the key)")
    return OffloadServerError(err.code, err.message)


def _check_welcome(welcome: p.Message, key: bytes | None, host: str, port: int, client_nonce: bytes,
                   client_name: str) -> tuple[p.Auth, tuple] | None:
    """Check the server's WELCOME; returns the AUTH frame to send (and the proof arguments) when the server
    requires the pre-shared key, None when it does not."""
    if isinstance(welcome, p.Error):
        raise _handshake_error(welcome)
    if not isinstance(welcome, p.Welcome):
        raise OffloadConnectionError(f"expected WELCOME, server sent {type(welcome).__name__}")
    if welcome.version not in p.SUPPORTED_VERSIONS:
        raise OffloadConnectionError(f"server chose protocol version {welcome.version}, not one we speak")
    if not welcome.auth_required:
        if key is not None:
            raise OffloadAuthError(
                f"server {host}:{port} does not require authentication but a key was given: "
                "refusing an unauthenticated server (configure the server's key, or pass key=None)"
            )
        return None
    if key is None:
        raise OffloadAuthError(f"server {host}:{port} requires a pre-shared key: pass key=... (the server's auth key)")
    args = (welcome.server_nonce, client_nonce, welcome.version, client_name)
    return p.Auth(mac=p.client_proof(key, *args)), args


def _take_welcome(client: OffloadClient | AsyncOffloadClient, welcome: p.Message,
                  client_nonce: bytes) -> tuple[p.Auth, tuple] | None:
    """Check the WELCOME (:func:`_check_welcome`) and keep what the server announced on the client (version,
    name, in-flight and frame limits); one place for the sync and the async client."""
    auth = _check_welcome(welcome, client.key, client.host, client.port, client_nonce, client.client_name)
    client.version = welcome.version
    client.server_name = welcome.server_name
    client.server_max_inflight = welcome.max_inflight
    client.server_max_frame = welcome.max_frame
    return auth


def _check_auth_ok(answer: p.Message, key: bytes, args: tuple) -> None:
    if isinstance(answer, p.Error):
        raise _handshake_error(answer)
    if not isinstance(answer, p.AuthOk):
        raise OffloadConnectionError(f"expected AUTH_OK, server sent {type(answer).__name__}")
    if not p.verify(p.server_proof(key, *args), answer.mac):
        raise OffloadAuthError("the server's AUTH_OK proof is wrong: it does not hold our key (impostor?)")


def _infer_result(msg: p.Result, sent_at: float, now: float) -> InferResult:
    return InferResult(
        request_id=msg.request_id,
        class_id=msg.class_id,
        top_k=[(c, s) for c, s in msg.top_k],
        server_timings={
            "queue_us": float(msg.queue_us),
            "infer_us": float(msg.infer_us),
            "total_us": float(msg.total_us),
            "batch_size": float(msg.batch_size),
        },
        round_trip_s=now - sent_at,
    )


class OffloadClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        key: bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 2.0,
        client_name: str = "hi-agent",
        max_frame: int = p.DEFAULT_MAX_FRAME,
        send_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.key = key
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self.max_frame = max_frame
        self.send_timeout = send_timeout
        self.version: int | None = None
        self.server_name = ""
        self.server_max_inflight = 0
        self.server_max_frame = 0  # from WELCOME: the largest frame the server reads (0 before the handshake)
        self._sock: socket.socket | None = None
        self._decoder = p.FrameDecoder(max_frame)
        self._ids = itertools.count(0)
        self._pending: dict[int, _Pending] = {}
        self._abandoned: set[int] = set()
        self._inbox = _Inbox()
        self._pongs: dict[int, float] = {}
        self._frames: list[p.Message] = []
        self._fatal: OffloadError | None = None  # connection-level ERROR, raised after queued answers

    # ---- connection ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """TCP connect, HELLO/WELCOME version negotiation, then the HMAC handshake if the server wants it."""
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise OffloadConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            self._sock = sock
            self._decoder.reset()
            self._fatal = None
            self._inbox.items.clear()
            self._handshake()
        except ssl.SSLError as exc:
            self._drop()
            raise OffloadConnectionError(f"TLS handshake with {self.host}:{self.port} failed: {exc}") from exc
        except OffloadError:
            self._drop()
            raise
        except (OSError, p.ProtocolError) as exc:
            self._drop()
            raise OffloadConnectionError(f"handshake with {self.host}:{self.port} failed: {exc}") from exc

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.connect_timeout
        client_nonce = p.new_nonce()
        self._send(p.Hello(client_nonce=client_nonce, client_name=self.client_name))
        auth = _take_welcome(self, self._next_frame(deadline, "WELCOME"), client_nonce)
        if auth is None:
            return
        frame, args = auth
        self._send(frame)
        _check_auth_ok(self._next_frame(deadline, "AUTH_OK"), self.key, args)

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        self._pending.clear()
        self._abandoned.clear()
        self._pongs.clear()
        self._frames.clear()
        self._decoder.reset()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> OffloadClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests -----------------------------------------------------------------------------------

    def submit(
        self,
        tensor: np.ndarray,
        model_id: str,
        *,
        layout: str = "NHWC",
        quant: tuple[float, int] | None = None,
        top_k: int = 0,
    ) -> int:
        """Send one INFER without waiting; returns its request id (answers come from :meth:`receive`)."""
        self._require_connected()
        request_id = next(self._ids) % 0xFFFFFFFF + 1  # 1..2^32-1; 0 means "connection-level"
        self._send(_infer_frame(tensor, model_id, request_id, layout=layout, quant=quant, top_k=top_k,
                                version=self.version, server_max_frame=self.server_max_frame,
                                server=f"{self.host}:{self.port}"))
        self._pending[request_id] = _Pending(sent_at=time.monotonic())
        return request_id

    def receive(self, timeout: float | None = None) -> InferResult:
        """Next answer to any submitted request; raises OffloadServerError if that answer is an ERROR."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox.items:
            if self._fatal is not None:
                raise self._fatal
            if not self._pending:
                raise OffloadError("receive() called with no request in flight")
            self._pump(deadline)
        _, item = self._inbox.items.popitem(last=False)
        if isinstance(item, OffloadServerError):
            raise item
        return item

    def infer(
        self,
        tensor: np.ndarray,
        model_id: str,
        *,
        layout: str = "NHWC",
        quant: tuple[float, int] | None = None,
        top_k: int = 0,
        timeout: float | None = None,
    ) -> InferResult:
        """Classify one tensor and wait for its answer (answers to other pipelined requests are kept)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id = self.submit(tensor, model_id, layout=layout, quant=quant, top_k=top_k)
        try:
            while request_id not in self._inbox.items:
                self._pump(deadline)
        except OffloadTimeout:
            self._abandon(request_id)
            raise
        item = self._inbox.items.pop(request_id)
        if isinstance(item, OffloadServerError):
            raise item
        return item

    def ping(self, timeout: float | None = None) -> float:
        """Round trip of a PING in seconds."""
        self._require_connected()
        deadline = None if timeout is None else time.monotonic() + timeout
        token = int.from_bytes(p.new_nonce()[:8], "little")
        start = time.monotonic()
        self._send(p.Ping(token=token))
        while token not in self._pongs:
            self._pump(deadline)
        return self._pongs.pop(token) - start

    # ---- internals ----------------------------------------------------------------------------------

    def _abandon(self, request_id: int) -> None:
        if self._pending.pop(request_id, None) is not None:
            self._abandoned.add(request_id)

    def _require_connected(self) -> None:
        if self._sock is None:
            if self._fatal is not None:  # the server ended the connection; say why
                raise self._fatal
            raise OffloadConnectionError("not connected: call connect() first")

    def _send(self, msg: p.Message | bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(self.connect_timeout if self.version is None else self.send_timeout)
            self._sock.sendall(msg if isinstance(msg, bytes) else p.encode(msg, version=self.version))
        except socket.timeout:
            self._drop()  # part of a frame may have been sent: the stream is unusable
            raise OffloadTimeout(f"sending to {self.host}:{self.port} stalled (server not reading)") from None
        except OSError as exc:
            self._drop()
            raise OffloadConnectionError(f"sending to {self.host}:{self.port} failed: {exc}") from exc

    def _next_frame(self, deadline: float | None, what: str) -> p.Message:
        """Next decoded frame (used during the handshake, before answers are sorted)."""
        while not self._frames:
            self._read_some(deadline, what)
        return self._frames.pop(0)

    def _read_some(self, deadline: float | None, what: str) -> None:
        sock = self._sock
        if sock is None:
            raise OffloadConnectionError("connection is closed")
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OffloadTimeout(f"no {what} from {self.host}:{self.port} within the timeout")
            sock.settimeout(remaining)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise OffloadTimeout(f"no {what} from {self.host}:{self.port} within the timeout") from None
        except OSError as exc:
            self._drop()
            raise OffloadConnectionError(f"connection to {self.host}:{self.port} broke: {exc}") from exc
        if not chunk:
            self._drop()
            raise OffloadConnectionError(f"server {self.host}:{self.port} closed the connection")
        try:
            self._frames.extend(self._decoder.feed(chunk))
        except p.ProtocolError as exc:
            self._drop()
            raise OffloadConnectionError(f"server sent an invalid frame: {exc}") from exc

    def _pump(self, deadline: float | None) -> None:
        """Read at least one chunk and sort every complete frame into answers."""
        if self._fatal is not None:
            raise self._fatal
        if not self._frames:
            self._read_some(deadline, "answer")
        frames, self._frames = self._frames, []
        now = time.monotonic()
        for msg in frames:
            if isinstance(msg, p.Result):
                pending = self._pending.pop(msg.request_id, None)
                if pending is None:
                    self._abandoned.discard(msg.request_id)
                    continue
                self._inbox.items[msg.request_id] = _infer_result(msg, pending.sent_at, now)
            elif isinstance(msg, p.Error):
                if msg.request_id == 0:  # the server closes the connection after this
                    self._fatal = OffloadServerError(msg.code, msg.message)
                    self._drop()
                    return
                if self._pending.pop(msg.request_id, None) is None:
                    self._abandoned.discard(msg.request_id)
                    continue
                self._inbox.items[msg.request_id] = OffloadServerError(msg.code, msg.message, msg.request_id)
            elif isinstance(msg, p.Pong):
                self._pongs[msg.token] = now
            elif isinstance(msg, p.Ping):
                self._send(p.Pong(token=msg.token))
            else:
                log.warning("ignoring unexpected %s frame from the server", type(msg).__name__)


# ---------------------------------------------------------------------------------------------------------
# asyncio client: requests pipelined on one connection
# ---------------------------------------------------------------------------------------------------------

class AsyncOffloadClient:
    """One connection to an offload server on an asyncio loop, with up to ``max_inflight`` requests on
    the wire at once (never more than the server's WELCOME allows). A reader task pairs each RESULT or
    ERROR with its request id, so answers may arrive in any order; a connection-level ERROR (request id 0)
    or a broken stream fails every request still in flight with that reason, and the connection is closed.

    ``on_late(result)`` is called for an answer that arrives after its caller stopped waiting (its round
    trip still tells how the server is doing). All methods must run on one event loop."""

    def __init__(self, host: str, port: int, *, key: bytes | None = None, ssl_context: ssl.SSLContext | None = None,
                 connect_timeout: float = 2.0, client_name: str = "hi-agent", max_frame: int = p.DEFAULT_MAX_FRAME,
                 max_inflight: int = 4, on_late=None) -> None:
        self.host, self.port = host, port
        self.key = key
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.client_name = client_name
        self.max_frame = max_frame
        self.max_inflight = max(1, int(max_inflight))
        self.on_late = on_late
        self.version: int | None = None
        self.server_name = ""
        self.server_max_inflight = 0
        self.server_max_frame = 0  # from WELCOME: the largest frame the server reads (0 before the handshake)
        self._reader = None
        self._writer = None
        self._reader_task = None
        self._slots = None  # asyncio.Semaphore, made on connect (bound to the running loop)
        self._ids = itertools.count(0)
        self._pending: dict[int, tuple] = {}  # request id -> (future, sent_at)
        self._abandoned: dict[int, float] = {}  # request id -> sent_at, for on_late
        self._fatal: OffloadError | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._fatal is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def free_slots(self) -> int:
        """Requests this connection can still send: given-up ones hold their slot until answered."""
        return max(0, self.max_inflight - len(self._pending) - len(self._abandoned))

    async def connect(self) -> None:
        import asyncio

        if self._writer is not None:
            return
        self._fatal = None
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ssl_context,
                                        server_hostname=self.host if self.ssl_context else None),
                self.connect_timeout)
        except asyncio.TimeoutError:
            raise OffloadConnectionError(f"cannot connect to {self.host}:{self.port}: timed out") from None
        except ssl.SSLError as exc:
            raise OffloadConnectionError(f"TLS handshake with {self.host}:{self.port} failed: {exc}") from exc
        except OSError as exc:
            raise OffloadConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.wait_for(self._handshake(), self.connect_timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise OffloadConnectionError(f"handshake with {self.host}:{self.port} timed out") from None
        except OffloadError:
            await self.close()
            raise
        except (OSError, p.ProtocolError, EOFError) as exc:
            await self.close()
            raise OffloadConnectionError(f"handshake with {self.host}:{self.port} failed: {exc}") from exc
        except BaseException:  # cancelled mid-handshake (a deadline, a hedge that lost): no half-open client
            await self.close()
            raise
        if self.server_max_inflight:
            self.max_inflight = min(self.max_inflight, self.server_max_inflight)
        self._slots = asyncio.Semaphore(self.max_inflight)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _frame(self, what: str) -> p.Message:
        msg = await p.read_frame(self._reader, self.max_frame)
        if msg is None:
            raise OffloadConnectionError(f"server {self.host}:{self.port} closed the connection before {what}")
        return msg

    async def _handshake(self) -> None:
        client_nonce = p.new_nonce()
        await p.write_frame(self._writer, p.Hello(client_nonce=client_nonce, client_name=self.client_name))
        auth = _take_welcome(self, await self._frame("WELCOME"), client_nonce)
        if auth is None:
            return
        frame, args = auth
        await p.write_frame(self._writer, frame, version=self.version)
        _check_auth_ok(await self._frame("AUTH_OK"), self.key, args)

    async def infer(self, tensor: np.ndarray, model_id: str, *, layout: str = "NHWC",
                    quant: tuple[float, int] | None = None, top_k: int = 0,
                    timeout: float | None = None) -> InferResult:
        """Send one INFER (waiting for a free slot first) and wait for its answer; ``timeout`` (s) covers
        both. On timeout the request is abandoned (its answer, if it comes, goes to ``on_late``)."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if not self.connected:
            raise self._fatal or OffloadConnectionError("not connected: call connect() first")
        await self._acquire_slot(None if deadline is None else max(0.0, deadline - loop.time()))
        request_id = None
        keep_slot = False  # a given-up request keeps its slot until its answer comes: the server still has it
        try:
            if not self.connected:  # the connection died while this request waited for its slot
                raise self._fatal or OffloadConnectionError(f"the connection to {self.host}:{self.port} closed")
            request_id = next(self._ids) % 0xFFFFFFFF + 1  # 1..2^32-1; 0 means "connection-level"
            frame = _infer_frame(tensor, model_id, request_id, layout=layout, quant=quant, top_k=top_k,
                                 version=self.version, server_max_frame=self.server_max_frame,
                                 server=f"{self.host}:{self.port}")
            fut = loop.create_future()
            sent_at = time.monotonic()
            self._pending[request_id] = (fut, sent_at)
            try:
                self._writer.write(frame)
                if self._writer.transport.get_write_buffer_size() > 1 << 16:
                    await self._writer.drain()  # back-pressure only when the socket buffer fills up
            except (OSError, RuntimeError) as exc:
                self._fail_all(OffloadConnectionError(f"sending to {self.host}:{self.port} failed: {exc}"))
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await asyncio.wait_for(asyncio.shield(fut), remaining)
            except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
                # given up on, by its own timeout or by a caller that moved on (a hedge that lost, the
                # agent's deadline): its answer, when it comes, still goes to on_late, and until then it
                # counts against the server's max_inflight
                if self._pending.pop(request_id, None) is not None and self.connected:
                    self._abandon(request_id, sent_at)
                    keep_slot = True
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise OffloadTimeout(f"no answer from {self.host}:{self.port} within the timeout") from None
        finally:
            if request_id is not None:
                self._pending.pop(request_id, None)
            if not keep_slot:
                self._slots.release()

    async def _acquire_slot(self, timeout: float | None) -> None:
        """One of the server's max_inflight slots, within ``timeout``. Not ``wait_for(acquire())``: up to
        Python 3.11 that can swallow a cancellation that arrives as the slot frees, and the cancelled request
        would then be sent anyway."""
        import asyncio

        acquire = asyncio.ensure_future(self._slots.acquire())
        try:
            done, _ = await asyncio.wait({acquire}, timeout=timeout)
        except asyncio.CancelledError:
            if not acquire.cancel():  # it had the slot already: give it back
                self._slots.release()
            raise
        if not done:
            if not acquire.cancel():
                self._slots.release()
            raise OffloadTimeout(f"no free request slot on {self.host}:{self.port} within the timeout")

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await p.read_frame(self._reader, self.max_frame)
                if msg is None:
                    raise OffloadConnectionError(f"server {self.host}:{self.port} closed the connection")
                now = time.monotonic()
                if isinstance(msg, p.Result):
                    entry = self._pending.pop(msg.request_id, None)
                    if entry is not None:
                        if not entry[0].done():
                            entry[0].set_result(_infer_result(msg, entry[1], now))
                    elif msg.request_id in self._abandoned:
                        sent_at = self._abandoned.pop(msg.request_id)
                        self._slots.release()
                        if self.on_late is not None:
                            self.on_late(_infer_result(msg, sent_at, now))
                elif isinstance(msg, p.Error):
                    if msg.request_id == 0:  # the server closes the connection after this
                        raise OffloadServerError(msg.code, msg.message)
                    entry = self._pending.pop(msg.request_id, None)
                    if self._abandoned.pop(msg.request_id, None) is not None:
                        self._slots.release()
                    if entry is not None and not entry[0].done():
                        entry[0].set_exception(OffloadServerError(msg.code, msg.message, msg.request_id))
                elif isinstance(msg, p.Ping):
                    self._writer.write(p.encode(p.Pong(token=msg.token), version=self.version))
                elif not isinstance(msg, p.Pong):
                    log.warning("ignoring unexpected %s frame from the server", type(msg).__name__)
        except OffloadError as exc:
            self._fail_all(exc)
        except (OSError, EOFError) as exc:
            self._fail_all(OffloadConnectionError(f"connection to {self.host}:{self.port} broke: {exc}"))
        except p.ProtocolError as exc:
            self._fail_all(OffloadConnectionError(f"server sent an invalid frame: {exc}"))
        except Exception as exc:  # noqa: BLE001 - includes cancellation by close(): fail whoever still waits
            import asyncio

            self._fail_all(OffloadConnectionError(f"connection to {self.host}:{self.port} closed ({exc!r})"))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _abandon(self, request_id: int, sent_at: float) -> None:
        """Remember a given-up request for on_late; bounded, so a server that never answers them does not
        grow this without end (the oldest is forgotten first)."""
        if len(self._abandoned) >= _MAX_ABANDONED:  # (each holds a slot, so this is only a backstop)
            self._abandoned.pop(next(iter(self._abandoned)))
            self._slots.release()
        self._abandoned[request_id] = sent_at

    def _fail_all(self, exc: OffloadError) -> None:
        self._fatal = exc
        pending, self._pending = self._pending, {}
        for _ in self._abandoned:  # wake whoever waits for a slot: they find the connection gone
            self._slots.release()
        self._abandoned.clear()
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(exc)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        import asyncio

        task, self._reader_task = self._reader_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing must not raise
                pass
        if self._writer is not None or self._pending:
            self._fail_all(OffloadConnectionError("connection closed by the client"))
