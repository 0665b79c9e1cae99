"""A stand-in offload server with a fixed (and changeable) delay per request, speaking the real protocol
over loopback TCP: what the agent's latency tests measure against.

Every INFER is answered ``delay_s`` after it arrived, each on its own timer, so pipelined requests
overlap exactly as they would at a server with that much parallel capacity (``capacity`` bounds how many
it serves at once; beyond that requests queue). The class it answers is ``label_of(tensor)`` (default: the
pixel sum mod 10). It records when each request arrived and the most requests it held at once.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from hi_runtime import protocol as p


@dataclass
class DelayServer:
    delay_s: float = 0.005
    capacity: int = 1_000_000
    max_inflight: int = 64
    label_of: object = None
    host: str = "127.0.0.1"
    port: int = 0
    arrivals: list = field(default_factory=list)
    served: int = 0
    peak_concurrency: int = 0
    close_on_infer: bool = False  # dies mid-request: a connection closes delay_s after its first INFER, unanswered

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="delay-server")
        self._server = None
        self._active = 0
        self._sem = None

    def __enter__(self) -> DelayServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self._sem = asyncio.Semaphore(self.capacity)
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks = set()
        try:
            hello = await p.read_frame(reader)
            if not isinstance(hello, p.Hello):
                return
            await p.write_frame(writer, p.Welcome(version=p.PROTOCOL_VERSION, server_nonce=p.new_nonce(),
                                                  max_inflight=self.max_inflight, server_name="delay-server"))
            while True:
                msg = await p.read_frame(reader)
                if msg is None:
                    return
                if isinstance(msg, p.Infer) and self.close_on_infer:
                    await asyncio.sleep(self.delay_s)
                    return
                if isinstance(msg, p.Infer):
                    t = asyncio.ensure_future(self._answer(msg, writer, time.monotonic()))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        except (ConnectionError, p.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            for t in tasks:
                t.cancel()
            writer.close()

    async def _answer(self, msg: p.Infer, writer: asyncio.StreamWriter, arrived: float) -> None:
        self.arrivals.append(arrived)
        async with self._sem:
            self._active += 1
            self.peak_concurrency = max(self.peak_concurrency, self._active)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self._active -= 1
        x = msg.to_array()
        label = self.label_of(x) if self.label_of else int(np.asarray(x, dtype=np.int64).sum() % 10)
        total_us = int((time.monotonic() - arrived) * 1e6)
        self.served += 1
        try:
            writer.write(p.encode(p.Result(request_id=msg.request_id, class_id=label, total_us=total_us,
                                           infer_us=int(self.delay_s * 1e6))))
        except (ConnectionError, RuntimeError):
            pass
