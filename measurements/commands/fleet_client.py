"""A small asyncio client of the HI offload protocol for the fleet simulator (``hi-bench fleet``).

One connection, pipelined: ``infer()`` may be called by many tasks at once; a reader task hands each
RESULT/ERROR to the request with its id, in whatever order the server answers. It uses the protocol's
one codec (hi_runtime.protocol: encode, FrameDecoder, the HMAC handshake) and nothing of its own on the
wire. It exists because the agent's offload client is blocking; once the agent's asyncio client lands in
hi_runtime, the simulator should use that instead (same behaviour, one client).
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

import numpy as np

from hi_runtime import protocol as p


class FleetClientError(Exception):
    """Base of the client's failures."""


class ServerError(FleetClientError):
    """The server answered with an ERROR frame (``request_id`` 0: for the whole connection, now closed)."""

    def __init__(self, code: int, message: str, request_id: int = 0) -> None:
        try:
            self.name = p.ErrorCode(code).name
        except ValueError:
            self.name = f"code {code}"
        super().__init__(f"server error {self.name}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


class ConnectionLost(FleetClientError, ConnectionError):
    """Could not connect, or the connection broke (requests in flight fail with this)."""


class AsyncOffloadClient:
    def __init__(self, host: str, port: int, *, key: bytes | None = None, client_name: str = "hi-fleet",
                 connect_timeout: float = 5.0, max_frame: int = p.DEFAULT_MAX_FRAME) -> None:
        self.host = host
        self.port = port
        self.key = key
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self.version = p.PROTOCOL_VERSION
        self.server_max_inflight = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = p.FrameDecoder(max_frame)
        self._frames: list[p.Message] = []
        self._pending: dict[int, asyncio.Future[p.Result]] = {}
        self._ids = itertools.count(1)
        self._pump: asyncio.Task | None = None
        self._closed_reason: FleetClientError | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._closed_reason is None

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {self.host}:{self.port}: {exc or 'timeout'}") from None
        try:
            await asyncio.wait_for(self._handshake(), self.connect_timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise ConnectionLost(f"handshake with {self.host}:{self.port} timed out") from None
        except BaseException:
            await self.close()
            raise
        self._pump = asyncio.get_running_loop().create_task(self._read_loop())

    async def _handshake(self) -> None:
        nonce = p.new_nonce()
        await self._send(p.Hello(client_nonce=nonce, client_name=self.client_name))
        welcome = await self._next_frame()
        if isinstance(welcome, p.Error):
            raise ServerError(welcome.code, welcome.message)
        if not isinstance(welcome, p.Welcome):
            raise ConnectionLost(f"expected WELCOME, got {type(welcome).__name__}")
        self.version = welcome.version
        self.server_max_inflight = welcome.max_inflight
        if not welcome.auth_required:
            return
        if self.key is None:
            raise ServerError(p.ErrorCode.AUTH_REQUIRED, "the server requires a pre-shared key (--key-file)")
        args = (welcome.server_nonce, nonce, welcome.version, self.client_name)
        await self._send(p.Auth(mac=p.client_proof(self.key, *args)))
        answer = await self._next_frame()
        if isinstance(answer, p.Error):
            raise ServerError(answer.code, answer.message)
        if not isinstance(answer, p.AuthOk) or not p.verify(p.server_proof(self.key, *args), answer.mac):
            raise ServerError(p.ErrorCode.AUTH_FAILED, "the server did not prove it holds the key")

    async def infer(self, image: np.ndarray, model_id: str, *, layout: str = "NHWC",
                    quant: tuple[float, int] | None = None, top_k: int = 0) -> p.Result:
        """Send one INFER and wait for its RESULT (raises ServerError for an ERROR answer)."""
        if not self.connected:
            raise self._closed_reason or ConnectionLost("not connected")
        request_id = next(self._ids) % 0xFFFFFFFF or next(self._ids)  # never 0 (connection-level)
        future: asyncio.Future[p.Result] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(p.Infer.from_array(image, model_id, request_id, layout=layout, quant=quant, top_k=top_k))
            return await future
        finally:
            self._pending.pop(request_id, None)  # a caller that gave up (timeout) drops the late answer

    async def close(self) -> None:
        self._fail_all(ConnectionLost("client closed"))
        if self._pump is not None:
            self._pump.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, asyncio.TimeoutError, ConnectionError):
                pass

    # ---- internals ----------------------------------------------------------------------------------

    async def _send(self, msg: p.Message) -> None:
        assert self._writer is not None
        if self._writer.is_closing():
            self._fail_all(ConnectionLost(f"connection to {self.host}:{self.port} is closed"))
            raise self._closed_reason  # type: ignore[misc]
        try:
            self._writer.write(p.encode(msg, version=self.version))
            await self._writer.drain()
        except (OSError, ConnectionError) as exc:
            self._fail_all(ConnectionLost(f"sending to {self.host}:{self.port} failed: {exc}"))
            raise self._closed_reason from None  # type: ignore[misc]

    async def _next_frame(self) -> p.Message:
        while not self._frames:
            await self._read_chunk()
        return self._frames.pop(0)

    async def _read_chunk(self) -> None:
        assert self._reader is not None
        chunk = await self._reader.read(65536)
        if not chunk:
            raise ConnectionLost(f"server {self.host}:{self.port} closed the connection")
        try:
            self._frames.extend(self._decoder.feed(chunk))
        except p.ProtocolError as exc:
            raise ConnectionLost(f"server sent an invalid frame: {exc}") from None

    async def _read_loop(self) -> None:
        try:
            while True:
                if not self._frames:
                    await self._read_chunk()
                frames, self._frames = self._frames, []
                for msg in frames:
                    self._dispatch(msg)
        except asyncio.CancelledError:
            raise
        except FleetClientError as exc:
            self._fail_all(exc)
        except (OSError, ConnectionError) as exc:
            self._fail_all(ConnectionLost(f"connection to {self.host}:{self.port} broke: {exc}"))

    def _dispatch(self, msg: p.Message) -> None:
        if isinstance(msg, p.Result):
            self._resolve(msg.request_id, msg)
        elif isinstance(msg, p.Error):
            if msg.request_id == 0:  # the server closes the connection after this
                self._fail_all(ServerError(msg.code, msg.message))
            else:
                self._resolve(msg.request_id, ServerError(msg.code, msg.message, msg.request_id))
        elif isinstance(msg, p.Ping) and self._writer is not None:
            self._writer.write(p.encode(p.Pong(token=msg.token), version=self.version))

    def _resolve(self, request_id: int, outcome: Any) -> None:
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return  # answer to a request whose caller gave up
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _fail_all(self, exc: FleetClientError) -> None:
        if self._closed_reason is None:
            self._closed_reason = exc
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)
