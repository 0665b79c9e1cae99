"""The firmware's BLE offload session (hi_ble_offload.c) against the real gateway logic
(hi_runtime.agent.ble.gateway.DeviceSession): the C device and the Python gateway exchange the exact bytes of
docs/ble.md through an in-process GattLink, at the default and a large MTU, with lost chunks (NACK rounds),
a failing server (degraded) and a gateway that never answers (device timeout + ABORT)."""
from __future__ import annotations

import asyncio
import ctypes
import shutil
import time

import numpy as np
import pytest
from core_host import CoreLib

from hi_runtime.agent.ble import spec
from hi_runtime.agent.ble.gateway import DeviceSession, GatewayConfig, GattLink, OffloadAnswer

CHAR = {spec.CONTROL_UUID: 1, spec.IMAGE_UUID: 2, spec.RESULT_UUID: 3}
UUID = {v: k for k, v in CHAR.items()}


class BleResult(ctypes.Structure):
    _fields_ = [("status", ctypes.c_uint8), ("class_id", ctypes.c_uint8), ("server_ms", ctypes.c_uint16),
                ("sample_id", ctypes.c_uint16)]


@pytest.fixture(scope="module")
def lib():
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no host C compiler")
    core = CoreLib()
    L = core.lib
    L.hi_ble_begin.argtypes = [ctypes.c_void_p, ctypes.c_uint16, ctypes.c_char_p, ctypes.c_uint16, ctypes.c_uint8,
                               ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_float,
                               ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint32]
    L.hi_ble_next.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int),
                              ctypes.c_uint32]
    L.hi_ble_on_write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    L.hi_ble_poll.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(BleResult)]
    return core


def _now() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


class CDevice(GattLink):
    """A GattLink whose peripheral is the C session; `drop` loses first-pass chunks by sequence number."""

    address = "c-device"

    def __init__(self, core: CoreLib, mtu: int, drop: set[int] = frozenset()) -> None:
        self.L = core.lib
        self.s = ctypes.create_string_buffer(self.L.hi_core_sizeof(8))
        self.L.hi_ble_init(self.s)
        self._mtu = mtu
        self.drop = set(drop)
        self.cbs = {}
        self.sent_chunks = 0
        self.aborts = 0

    @property
    def mtu(self) -> int:
        return self._mtu

    async def start_notify(self, uuid, callback) -> None:
        self.cbs[uuid] = callback

    async def write(self, uuid, data, response=True) -> None:
        self.L.hi_ble_on_write(self.s, CHAR[uuid], bytes(data), len(data))

    async def disconnect(self) -> None:
        pass

    async def offload(self, sample_id: int, img: np.ndarray, timeout_ms: int = 3000) -> BleResult:
        data = img.astype(np.int8).tobytes()
        assert self.L.hi_ble_begin(self.s, sample_id, data, len(data), 2, 0, 32, 32, 3, 1.0, -128, _now(),
                                   timeout_ms) == 0
        out = ctypes.create_string_buffer(600)
        ch = ctypes.c_int()
        res = BleResult()
        while True:
            n = self.L.hi_ble_next(self.s, out, len(out), ctypes.byref(ch), _now())
            if n > 0:
                msg = out.raw[:n]
                assert n <= self._mtu - 3  # never longer than the stack can notify
                if ch.value == 2:
                    self.sent_chunks += 1
                    seq = int.from_bytes(msg[:2], "little")
                    if seq in self.drop:
                        self.drop.discard(seq)
                        continue
                if msg[0] == spec.OP_ABORT and ch.value == 1:
                    self.aborts += 1
                self.cbs[UUID[ch.value]](msg)
                await asyncio.sleep(0)
                continue
            if self.L.hi_ble_poll(self.s, _now(), ctypes.byref(res)) == 2:
                # flush a queued ABORT
                n = self.L.hi_ble_next(self.s, out, len(out), ctypes.byref(ch), _now())
                if n > 0:
                    self.aborts += out.raw[0] == spec.OP_ABORT
                    self.cbs[UUID[ch.value]](out.raw[:n])
                return res
            await asyncio.sleep(0.001)


async def _session(dev: CDevice, forward, **cfg):
    seen = []

    async def fwd(tensor, quant, layout):
        seen.append((tensor.copy(), quant, layout))
        return await forward(tensor)

    sess = DeviceSession(dev, fwd, GatewayConfig(**cfg))
    await sess.start()
    task = asyncio.create_task(sess.run())
    return sess, task, seen


@pytest.mark.parametrize("mtu,drop", [(23, set()), (247, set()), (23, {0, 5, 191}), (185, {3})])
def test_c_device_against_gateway(lib, mtu, drop):
    async def main():
        dev = CDevice(lib, mtu, drop)

        async def forward(t):
            return OffloadAnswer(True, int(np.abs(t.astype(np.int32)).sum()) % 10, 1.5)

        sess, task, seen = await _session(dev, forward, stall_timeout_s=0.2)
        rng = np.random.default_rng(mtu)
        for sid in (1, 2, 300):
            img = rng.integers(-128, 128, (32, 32, 3)).astype(np.int8)
            res = await dev.offload(sid, img)
            assert (res.status, res.sample_id) == (spec.STATUS_OK, sid)
            assert res.class_id == int(np.abs(img.astype(np.int32)).sum()) % 10
            tensor, quant, layout = seen[-1]
            np.testing.assert_array_equal(tensor.reshape(32, 32, 3), img)  # every byte arrived in place
            assert quant == (1.0, -128) and layout == "NHWC"
        sess.stop()
        stats = await task
        return stats, dev

    stats, dev = asyncio.run(main())
    assert stats.answered_ok == 3 and stats.errors == 0
    assert (stats.nacks >= 1) if drop else (stats.nacks == 0)  # lost chunks were NACKed and resent
    assert dev.sent_chunks >= 3 * -(-3072 // spec.chunk_payload_size(mtu))


def test_server_down_is_degraded_and_silence_times_out_with_abort(lib):
    async def main():
        dev = CDevice(lib, 23)

        async def failing(t):
            return OffloadAnswer(False, error="server down")

        sess, task, _ = await _session(dev, failing)
        img = np.zeros((32, 32, 3), np.int8)
        res = await dev.offload(5, img)
        assert res.status == spec.STATUS_DEGRADED and res.class_id == 255
        sess.stop()
        await task

        dev2 = CDevice(lib, 23)

        async def slow(t):
            await asyncio.sleep(1.0)
            return OffloadAnswer(True, 1, 1000.0)

        sess2, task2, _ = await _session(dev2, slow)
        res = await dev2.offload(6, img, timeout_ms=200)
        assert res.status == 3 and res.class_id == 255  # HI_BLE_STATUS_TIMEOUT: keep the local answer
        assert dev2.aborts == 1
        await asyncio.sleep(1.1)
        sess2.stop()
        return await task2

    stats2 = asyncio.run(main())
    assert stats2.started == 1
