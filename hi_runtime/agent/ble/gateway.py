"""BLE gateway logic, independent of the Bluetooth stack.

A :class:`DeviceSession` serves one connected microcontroller over an abstract :class:`GattLink` (one
implementation on bleak for real radios, one on bumble for tests): it subscribes to the device's CONTROL
and IMAGE notifications, tells it the negotiated MTU, reassembles each image, asks again for missing
bytes (NACK), forwards the tensor to the offload server and writes the class back. Whatever happens, the
device gets a RESULT it can act on: ``ok`` with the server's class, ``degraded`` when the server did not
answer in time (keep the local answer), ``error`` when the image could not be received.
"""
from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from hi_runtime.agent.ble import spec

log = logging.getLogger(__name__)


class GattLink(abc.ABC):
    """What the gateway needs from a connected peripheral (service already discovered)."""

    address: str = "?"

    @property
    @abc.abstractmethod
    def mtu(self) -> int:
        """The negotiated ATT MTU."""

    @abc.abstractmethod
    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        """Subscribe to a characteristic's notifications; ``callback`` runs on the event loop."""

    @abc.abstractmethod
    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        """Write a characteristic (with response: the device acknowledged it at the ATT layer)."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        ...


@dataclass
class OffloadAnswer:
    ok: bool
    class_id: int | None = None
    t_ms: float = 0.0
    error: str | None = None


#: ``forward(tensor, quant, layout) -> OffloadAnswer``: how the gateway reaches the server.
Forward = Callable[[np.ndarray, Optional[tuple], str], Awaitable[OffloadAnswer]]


def offloader_forward(offloader, latency_budget_ms: float) -> Forward:
    """A Forward on an :class:`~hi_runtime.agent.offloader.Offloader` (pipelined, retries, breakers,
    failover); the offloader runs on its own loop thread, so the BLE loop only awaits the answer."""

    async def forward(tensor: np.ndarray, quant, layout: str) -> OffloadAnswer:
        deadline = offloader.clock() + latency_budget_ms / 1e3
        out = await asyncio.wrap_future(offloader.submit(tensor, quant=quant, layout=layout, deadline=deadline))
        return OffloadAnswer(out.ok, out.class_id, out.t_ms, out.error)

    return forward


@dataclass
class GatewayConfig:
    stall_timeout_s: float = 0.5  # no chunk/END this long while receiving -> NACK the first gap
    max_nack_rounds: int = 3  # then RESULT status=error
    forward_layouts: dict = field(default_factory=lambda: {spec.LAYOUT_NHWC: "NHWC", spec.LAYOUT_NCHW: "NCHW"})


@dataclass
class SessionStats:
    started: int = 0
    answered_ok: int = 0
    degraded: int = 0
    errors: int = 0
    nacks: int = 0
    aborted: int = 0
    bad_messages: int = 0
    undelivered: int = 0  # answers the device never took: it had given up (ABORT, a new START) or dropped


@dataclass
class GatewayRecord:
    """What the gateway did for one sample (logged in the hi-agent schema by the CLI)."""

    address: str
    sample_id: int
    status: int
    class_id: int | None
    t_offload_ms: float
    t_total_ms: float
    nacks: int
    delivered: bool = True  # False: the device had given up or the write failed; it kept its local answer


class DeviceSession:
    """Serves one device until it disconnects or :meth:`stop` is called."""

    def __init__(self, link: GattLink, forward: Forward, config: GatewayConfig | None = None,
                 on_record: Callable[[GatewayRecord], None] | None = None) -> None:
        self.link = link
        self.forward = forward
        self.config = config or GatewayConfig()
        self.on_record = on_record
        self.stats = SessionStats()
        self._events: asyncio.Queue = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self.ready = asyncio.Event()

    # callbacks may come from a stack thread: hop onto the loop
    def _push(self, kind: str, data: bytes) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, bytes(data)))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.link.start_notify(spec.CONTROL_UUID, lambda d: self._push("control", d))
        await self.link.start_notify(spec.IMAGE_UUID, lambda d: self._push("chunk", d))
        await self.link.write(spec.CONTROL_UUID, spec.Config(self.link.mtu).encode())
        self.ready.set()

    def stop(self) -> None:
        self._stopped = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._events.put_nowait, ("stop", b""))

    async def run(self) -> SessionStats:
        if not self.ready.is_set():
            await self.start()
        current: spec.Reassembly | None = None
        t_start = 0.0
        rounds = 0
        while not self._stopped:
            timeout = self.config.stall_timeout_s if current is not None else None
            try:
                kind, data = await asyncio.wait_for(self._events.get(), timeout)
            except asyncio.TimeoutError:
                kind, data = "stall", b""
            if kind == "stop":
                break
            try:
                if kind == "chunk":
                    if current is not None:
                        current.add(spec.decode_chunk(data))
                    continue
                if kind == "stall":
                    msg: object = spec.End(current.start.sample_id, current.chunks) if current else None
                else:
                    msg = spec.decode_control(data)
            except spec.BleProtocolError as exc:
                self.stats.bad_messages += 1
                log.warning("%s: %s", self.link.address, exc)
                if kind == "control" and data[:1] == bytes([spec.OP_START]) and len(data) >= 3:
                    # a START we cannot serve: answer error so the device keeps its local answer now
                    current = None
                    sid = int.from_bytes(data[1:3], "little")
                    await self._result(spec.Result(sid, spec.STATUS_ERROR), time.perf_counter(), 0)
                continue
            if isinstance(msg, spec.Start):
                current, t_start, rounds = spec.Reassembly(msg), time.perf_counter(), 0
                self.stats.started += 1
            elif isinstance(msg, spec.Abort):
                if current is not None and current.start.sample_id == msg.sample_id:
                    current = None
                    self.stats.aborted += 1
            elif isinstance(msg, spec.End) and current is not None and msg.sample_id == current.start.sample_id:
                if current.complete:
                    await self._offload(current, t_start, rounds)
                    current = None
                elif rounds >= self.config.max_nack_rounds:
                    await self._result(spec.Result(msg.sample_id, spec.STATUS_ERROR), t_start, rounds)
                    current = None
                else:
                    gap = current.first_missing()
                    assert gap is not None
                    rounds += 1
                    self.stats.nacks += 1
                    log.info("%s: sample %d missing %d bytes at %d; NACK %d", self.link.address, msg.sample_id,
                             gap[1], gap[0], rounds)
                    await self.link.write(spec.CONTROL_UUID, spec.Nack(msg.sample_id, gap[0], gap[1]).encode())
        return self.stats

    async def _offload(self, r: spec.Reassembly, t_start: float, rounds: int) -> None:
        s = r.start
        dtype = {spec.DTYPE_UINT8: np.uint8, spec.DTYPE_INT8: np.int8, spec.DTYPE_FLOAT32: "<f4"}[s.dtype]
        tensor = np.frombuffer(bytes(r.buffer), dtype=dtype).reshape(s.shape)
        try:
            ans = await self.forward(tensor, s.quant, self.config.forward_layouts[s.layout])
        except Exception as exc:
            log.exception("forwarding sample %d failed", s.sample_id)
            ans = OffloadAnswer(False, error=repr(exc))
        if ans.ok and ans.class_id is not None and 0 <= ans.class_id < spec.NO_CLASS:
            res = spec.Result(s.sample_id, spec.STATUS_OK, ans.class_id, round(ans.t_ms))
        else:
            res = spec.Result(s.sample_id, spec.STATUS_DEGRADED, spec.NO_CLASS, round(ans.t_ms))
        if self._given_up(s.sample_id):  # the device timed out while the server worked: it kept its answer
            self.stats.aborted += 1
            self._record(res, t_start, rounds, ans.t_ms, delivered=False)
            return
        await self._result(res, t_start, rounds, ans.t_ms)

    def _given_up(self, sample_id: int) -> bool:
        """Whether the events that arrived during the server call (still queued, left in place) include the
        device's ABORT of this sample or the START of another: then no RESULT is due."""
        queued = []
        while not self._events.empty():
            queued.append(self._events.get_nowait())
        for event in queued:
            self._events.put_nowait(event)
        for kind, data in queued:
            if kind == "control" and len(data) >= 3:
                op, sid = data[0], int.from_bytes(data[1:3], "little")
                if (op == spec.OP_ABORT and sid == sample_id) or op == spec.OP_START:
                    return True
        return False

    async def _result(self, res: spec.Result, t_start: float, rounds: int, t_offload_ms: float = 0.0) -> None:
        try:
            await self.link.write(spec.RESULT_UUID, res.encode())
        except Exception as exc:  # noqa: BLE001 - a device that disconnected mid-answer just loses it
            log.warning("%s: writing the result of sample %d failed: %s", self.link.address, res.sample_id, exc)
            self._record(res, t_start, rounds, t_offload_ms, delivered=False)
            return
        self._record(res, t_start, rounds, t_offload_ms)

    def _record(self, res: spec.Result, t_start: float, rounds: int, t_offload_ms: float,
                delivered: bool = True) -> None:
        if not delivered:
            self.stats.undelivered += 1
        elif res.status == spec.STATUS_OK:
            self.stats.answered_ok += 1
        elif res.status == spec.STATUS_DEGRADED:
            self.stats.degraded += 1
        else:
            self.stats.errors += 1
        if self.on_record is not None:
            self.on_record(GatewayRecord(self.link.address, res.sample_id, res.status,
                                         res.class_id if res.status == spec.STATUS_OK else None, t_offload_ms,
                                         (time.perf_counter() - t_start) * 1e3, rounds, delivered))
