"""Blocking client of the HI offload protocol, used by hi-agent's offloader, the benchmarks and the tests.

It pipelines: :meth:`OffloadClient.submit` sends a request without waiting and :meth:`receive` returns the
next answer, so a device can keep several requests in flight. Incoming bytes go through a FrameDecoder, so
a timeout in the middle of a frame never desynchronizes the stream; answers to requests whose caller gave
up (timeout) are dropped when they arrive. Not thread-safe: use one client per thread.
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
from typing_extensions import Self

from hi_runtime import protocol as p

log = logging.getLogger(__name__)


class OffloadError(Exception):
    """Base of every failure of an offload attempt; the agent falls back to the local answer on it."""


class OffloadTimeout(OffloadError, TimeoutError):
    """No answer within the timeout (the connection stays usable)."""


class OffloadConnectionError(OffloadError, ConnectionError):
    """Could not connect, the connection broke, or the server sent an invalid frame (connection closed)."""


class OffloadAuthError(OffloadError):
    """Authentication failed: wrong or missing key, or the server could not prove it holds the key."""


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
        welcome = self._next_frame(deadline, "WELCOME")
        if isinstance(welcome, p.Error):
            raise self._handshake_error(welcome)
        if not isinstance(welcome, p.Welcome):
            raise OffloadConnectionError(f"expected WELCOME, server sent {type(welcome).__name__}")
        if welcome.version not in p.SUPPORTED_VERSIONS:
            raise OffloadConnectionError(f"server chose protocol version {welcome.version}, not one we speak")
        self.version = welcome.version
        self.server_name = welcome.server_name
        self.server_max_inflight = welcome.max_inflight
        if not welcome.auth_required:
            if self.key is not None:
                raise OffloadAuthError(
                    f"server {self.host}:{self.port} does not require authentication but a key was given: "
                    "refusing an unauthenticated server (configure the server's key, or pass key=None)"
                )
            return
        if self.key is None:
            raise OffloadAuthError(
                f"server {self.host}:{self.port} requires a pre-shared key: pass key=... (the server's auth key)"
            )
        args = (welcome.server_nonce, client_nonce, welcome.version, self.client_name)
        self._send(p.Auth(mac=p.client_proof(self.key, *args)))
        answer = self._next_frame(deadline, "AUTH_OK")
        if isinstance(answer, p.Error):
            raise self._handshake_error(answer)
        if not isinstance(answer, p.AuthOk):
            raise OffloadConnectionError(f"expected AUTH_OK, server sent {type(answer).__name__}")
        if not p.verify(p.server_proof(self.key, *args), answer.mac):
            raise OffloadAuthError("the server's AUTH_OK proof is wrong: it does not hold our key (impostor?)")

    @staticmethod
    def _handshake_error(err: p.Error) -> OffloadError:
        if err.code in (p.ErrorCode.AUTH_FAILED, p.ErrorCode.AUTH_REQUIRED):
            return OffloadAuthError(f"server rejected authentication: {err.message} (check the key)")
        return OffloadServerError(err.code, err.message)

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

    def __enter__(self) -> Self:
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
        try:
            msg = p.Infer.from_array(tensor, model_id, request_id, layout=layout, quant=quant, top_k=top_k)
        except p.ProtocolError as exc:
            raise ValueError(f"cannot offload this tensor: {exc}") from exc
        self._send(msg)
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

    def _send(self, msg: p.Message) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(self.connect_timeout if self.version is None else self.send_timeout)
            self._sock.sendall(p.encode(msg, version=self.version))
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
                self._inbox.items[msg.request_id] = InferResult(
                    request_id=msg.request_id,
                    class_id=msg.class_id,
                    top_k=[(c, s) for c, s in msg.top_k],
                    server_timings={
                        "queue_us": float(msg.queue_us),
                        "infer_us": float(msg.infer_us),
                        "total_us": float(msg.total_us),
                        "batch_size": float(msg.batch_size),
                    },
                    round_trip_s=now - pending.sent_at,
                )
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
