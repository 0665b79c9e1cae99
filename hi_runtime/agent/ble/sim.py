"""A virtual HI device on bumble: the device side of docs/ble.md, written as the firmware must behave.

It is the executable reference for the Nano 33 BLE firmware (ArduinoBLE) and what the gateway tests talk
to. Per sample: notify START, the image chunks (``chunk_payload_size(mtu)`` bytes each, MTU from the
gateway's CONFIG, else 23), END; then wait for RESULT. A NACK makes it resend the requested byte range and
END again. If no RESULT arrives within ``result_timeout_s`` it ABORTs and keeps its local answer. Faults
can be injected (chunks dropped on the first pass, a lost END) to test the gateway's recovery.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from hi_runtime.agent.ble import spec


@dataclass
class Faults:
    drop_first_pass: set = field(default_factory=set)  # chunk seq numbers not sent the first time
    drop_always: set = field(default_factory=set)  # chunk seq numbers never sent (unrecoverable)
    drop_end_once: bool = False  # the first END of each sample is lost


@dataclass
class DeviceOutcome:
    sample_id: int
    result: spec.Result | None  # None: no answer in time, the device answered locally (and ABORTed)
    nacks: int
    chunks_sent: int


class VirtualHiDevice:
    """Adds the HI GATT service to a bumble ``Device`` and plays the firmware's part."""

    def __init__(self, device, *, result_timeout_s: float = 3.0, faults: Faults | None = None) -> None:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        P = Characteristic.Properties
        self.device = device
        self.result_timeout_s = result_timeout_s
        self.faults = faults or Faults()
        self.att_mtu = spec.DEFAULT_ATT_MTU
        self.control = Characteristic(spec.CONTROL_UUID, P.NOTIFY | P.WRITE, Characteristic.WRITEABLE,
                                      CharacteristicValue(write=self._on_control))
        self.image = Characteristic(spec.IMAGE_UUID, P.NOTIFY, Characteristic.READABLE, b"")
        # write-without-response is listed only so BlueZ can report the MTU (AcquireWrite); the gateway
        # always writes RESULT with response
        self.result = Characteristic(spec.RESULT_UUID, P.WRITE | P.WRITE_WITHOUT_RESPONSE, Characteristic.WRITEABLE,
                                     CharacteristicValue(write=self._on_result))
        device.add_service(Service(spec.SERVICE_UUID, [self.control, self.image, self.result]))
        self._inbox: asyncio.Queue = asyncio.Queue()
        self.configs: list[int] = []
        self.bad_writes: list[bytes] = []

    # GATT write handlers (run on the stack's loop)
    def _on_control(self, connection, value: bytes) -> None:
        try:
            msg = spec.decode_control(bytes(value))
        except spec.BleProtocolError:
            self.bad_writes.append(bytes(value))
            return
        if isinstance(msg, spec.Config):
            self.att_mtu = msg.att_mtu
            self.configs.append(msg.att_mtu)
        elif isinstance(msg, spec.Nack):
            self._inbox.put_nowait(msg)

    def _on_result(self, connection, value: bytes) -> None:
        try:
            self._inbox.put_nowait(spec.decode_result(bytes(value)))
        except spec.BleProtocolError:
            self.bad_writes.append(bytes(value))

    async def _notify(self, characteristic, data: bytes) -> None:
        await self.device.notify_subscribers(characteristic, data)

    async def _send_range(self, payload: bytes, offset: int, length: int, first: bool) -> int:
        sent = 0
        size = spec.chunk_payload_size(self.att_mtu)
        # resend whole chunks covering the range, on the same grid as the first pass
        start = (offset // size) * size
        for chunk in spec.split_chunks(payload[start:offset + length], self.att_mtu, start, start // size):
            if chunk.seq in self.faults.drop_always or (first and chunk.seq in self.faults.drop_first_pass):
                continue
            await self._notify(self.image, chunk.encode())
            sent += 1
        return sent

    async def offload(self, sample_id: int, tensor: np.ndarray, *, quant: tuple[float, int] | None = (1.0, -128),
                      layout: int = spec.LAYOUT_NHWC) -> DeviceOutcome:
        """Send one tensor (HWC, or CHW with layout NCHW) and wait for the gateway's answer."""
        arr = np.ascontiguousarray(tensor)
        dtype = {np.dtype(np.uint8): spec.DTYPE_UINT8, np.dtype(np.int8): spec.DTYPE_INT8,
                 np.dtype(np.float32): spec.DTYPE_FLOAT32}[arr.dtype]
        if layout == spec.LAYOUT_NCHW:
            c, h, w = arr.shape
        else:
            h, w, c = arr.shape
        payload = arr.tobytes()
        scale, zp = quant if quant is not None and dtype != spec.DTYPE_FLOAT32 else (0.0, 0)
        start = spec.Start(sample_id, len(payload), dtype, layout, h, w, c, scale, zp)
        while not self._inbox.empty():  # stale answers of an earlier sample
            self._inbox.get_nowait()
        await self._notify(self.control, start.encode())
        sent = await self._send_range(payload, 0, len(payload), first=True)
        nchunks = -(-len(payload) // spec.chunk_payload_size(self.att_mtu))
        if not self.faults.drop_end_once:
            await self._notify(self.control, spec.End(sample_id, nchunks).encode())
        nacks = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.result_timeout_s
        while True:
            try:
                msg = await asyncio.wait_for(self._inbox.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                await self._notify(self.control, spec.Abort(sample_id).encode())
                return DeviceOutcome(sample_id, None, nacks, sent)
            if isinstance(msg, spec.Result) and msg.sample_id == sample_id:
                return DeviceOutcome(sample_id, msg, nacks, sent)
            if isinstance(msg, spec.Nack) and msg.sample_id == sample_id:
                nacks += 1
                sent += await self._send_range(payload, msg.offset, msg.length, first=False)
                await self._notify(self.control, spec.End(sample_id, nchunks).encode())
