"""BLE gateway: the GATT message formats, reassembly, and the gateway logic against a virtual HI device
(bumble peripheral behaving as docs/ble.md specifies) on bumble's in-process LocalLink, forwarding to a
real loopback offload server."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hi_runtime.agent.ble import spec

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------------

def test_control_messages_fit_the_default_att_payload_and_round_trip():
    msgs = [spec.Start(7, 3072, spec.DTYPE_INT8, spec.LAYOUT_NHWC, 32, 32, 3, 1.0, -128), spec.End(7, 192),
            spec.Abort(7), spec.Config(247), spec.Nack(7, 160, 32)]
    for m in msgs:
        raw = m.encode()
        assert len(raw) <= spec.DEFAULT_ATT_MTU - spec.ATT_NOTIFY_OVERHEAD
        assert spec.decode_control(raw) == m
    res = spec.Result(7, spec.STATUS_OK, 3, 12)
    assert len(res.encode()) == 6 and spec.decode_result(res.encode()) == res
    assert spec.Result(1, spec.STATUS_OK, 1, 10**6).encode()[-2:] == b"\xff\xff"  # server_ms saturates
    # byte-exact layout of START (what the firmware must send)
    # op | sample_id | total_len | dtype | layout | h | w | c | scale f32 | zero_point i32
    assert msgs[0].encode().hex() == "01" "0700" "000c" "02" "00" "20" "20" "03" "0000803f" "80ffffff"


def test_malformed_messages_are_rejected_with_reasons():
    with pytest.raises(spec.BleProtocolError, match="unknown CONTROL opcode"):
        spec.decode_control(b"\x55\x00")
    with pytest.raises(spec.BleProtocolError, match="must be 5 bytes"):
        spec.decode_control(b"\x02\x00")
    with pytest.raises(spec.BleProtocolError, match="total_len"):
        spec.decode_control(spec.Start(1, 100, spec.DTYPE_INT8, 0, 32, 32, 3).encode())
    with pytest.raises(spec.BleProtocolError, match="dtype"):
        spec.decode_control(spec.Start(1, 3072, 9, 0, 32, 32, 3).encode())
    with pytest.raises(spec.BleProtocolError, match="shorter"):
        spec.decode_chunk(b"\x01")
    with pytest.raises(spec.BleProtocolError, match="RESULT"):
        spec.decode_result(b"\x00")


def test_chunk_size_follows_the_mtu():
    assert spec.chunk_payload_size(23) == 16
    assert spec.chunk_payload_size(247) == 240
    assert spec.chunk_payload_size(10) == 16  # never below the default
    assert len(spec.split_chunks(bytes(3072), 23)) == 192
    assert len(spec.split_chunks(bytes(3072), 247)) == 13


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 600), st.sampled_from([23, 27, 64, 185, 247]), st.randoms(use_true_random=False),
       st.data())
def test_reassembly_in_any_order_with_duplicates_and_gaps(n, mtu, rnd, data):
    payload = bytes(np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8))
    start = spec.Start(1, n, spec.DTYPE_UINT8, spec.LAYOUT_NHWC, 1, n, 1)
    chunks = spec.split_chunks(payload, mtu)
    lost = set(data.draw(st.sets(st.integers(0, len(chunks) - 1), max_size=len(chunks))))
    order = [c for i, c in enumerate(chunks) if i not in lost]
    order += data.draw(st.lists(st.sampled_from(order), max_size=5)) if order else []
    rnd.shuffle(order)
    r = spec.Reassembly(start)
    for c in order:
        r.add(spec.decode_chunk(c.encode()))
    assert r.complete == (not lost)
    while not r.complete:  # NACK loop: resend exactly the first gap, on the chunk grid
        off, length = r.first_missing()
        assert length > 0 and not any(r.have[off:off + length])  # a real gap, all of it missing
        assert off + length == n or r.have[off + length] == 1
        for c in spec.split_chunks(payload[off:off + length], mtu, off):
            r.add(c)
    assert bytes(r.buffer) == payload
    with pytest.raises(spec.BleProtocolError, match="beyond"):
        r.add(spec.Chunk(0, n, b"x"))


# ---------------------------------------------------------------------------------------------------
# gateway against a virtual device on bumble
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tiny_kit):
    from test_agent_kit import server_config

    from offload_server.server import run_server_in_thread

    with run_server_in_thread(server_config(tiny_kit / "server.onnx")) as handle:
        yield handle


from test_agent_kit import color_images, tiny_kit_fixture

tiny_kit = tiny_kit_fixture  # the shared session fixture, made visible to pytest in this module


def server_classes(kit, images):
    from hi_runtime.backends import Classifier, open_backend

    return Classifier(open_backend(kit / "server.onnx")).predict(images).classes


def make_worker(*ports, budget_ms=3000.0):
    from hi_runtime.agent.offloader import Endpoint, OffloadConfig, Offloader

    cfg = OffloadConfig(endpoints=[Endpoint("127.0.0.1", p) for p in ports], latency_budget_ms=budget_ms,
                        max_inflight=8)
    return Offloader(cfg)


async def gateway_session(worker, *, mtu=None, faults=None, budget_ms=3000.0, device_timeout=5.0, **gw):
    """Connect a bumble central (the gateway) to a virtual HI device; returns (device, session, task)."""
    from hi_runtime.agent.ble.bumble_link import BumbleLink, VirtualRadio
    from hi_runtime.agent.ble.gateway import DeviceSession, GatewayConfig, offloader_forward
    from hi_runtime.agent.ble.sim import VirtualHiDevice

    radio = VirtualRadio(2)
    device = VirtualHiDevice(radio.devices[1], result_timeout_s=device_timeout, faults=faults)
    await radio.power_on()
    conn, _ = await radio.connect(0, 1)
    link = await BumbleLink.open(conn, mtu=mtu)
    records = []
    session = DeviceSession(link, offloader_forward(worker, budget_ms), GatewayConfig(**gw), records.append)
    await session.start()
    task = asyncio.create_task(session.run())
    await asyncio.sleep(0.05)  # subscriptions settle
    return device, session, task, records


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def int8_input(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.int16) - 128).astype(np.int8)  # the shipped model's input: q = pixel - 128


@pytest.mark.parametrize("mtu", [None, 247])
def test_gateway_forwards_images_and_writes_the_server_class(tiny_kit, server, mtu):
    x, _ = color_images(4, seed=21)
    expected = server_classes(tiny_kit, x)
    worker = make_worker(server.port)

    async def scenario():
        device, session, task, records = await gateway_session(worker, mtu=mtu)
        outs = [await device.offload(i, int8_input(x[i])) for i in range(len(x))]
        session.stop()
        await task
        return device, session, outs, records

    try:
        device, session, outs, records = run(scenario())
    finally:
        worker.close()
    assert device.configs == [mtu or 23]  # the gateway told the device the negotiated MTU
    assert all(o.result.status == spec.STATUS_OK for o in outs)
    assert [o.result.class_id for o in outs] == expected.tolist()
    assert [o.chunks_sent for o in outs] == [192 if mtu is None else 13] * len(x)
    assert session.stats.answered_ok == len(x) and session.stats.nacks == 0
    assert [r.class_id for r in records] == expected.tolist()


def test_lost_chunks_are_nacked_and_recovered(tiny_kit, server):
    from hi_runtime.agent.ble.sim import Faults

    x, _ = color_images(2, seed=22)
    expected = server_classes(tiny_kit, x)
    worker = make_worker(server.port)

    async def scenario():
        device, session, task, _ = await gateway_session(worker, mtu=64, faults=Faults(drop_first_pass={0, 5, 6, 40}))
        outs = [await device.offload(i, int8_input(x[i])) for i in range(2)]
        session.stop()
        await task
        return outs, session

    try:
        outs, session = run(scenario())
    finally:
        worker.close()
    assert [o.result.class_id for o in outs] == expected.tolist()
    assert all(o.result.status == spec.STATUS_OK for o in outs)
    assert all(o.nacks == 3 for o in outs)  # three separate gaps: {0}, {5,6}, {40}
    assert session.stats.nacks == 6


def test_lost_end_is_recovered_by_the_stall_timer(tiny_kit, server):
    from hi_runtime.agent.ble.sim import Faults

    x, _ = color_images(1, seed=23)
    worker = make_worker(server.port)

    async def scenario():
        device, session, task, _ = await gateway_session(worker, mtu=247, faults=Faults(drop_end_once=True),
                                                         stall_timeout_s=0.2)
        out = await device.offload(3, int8_input(x[0]))
        session.stop()
        await task
        return out

    try:
        out = run(scenario())
    finally:
        worker.close()
    assert out.result.status == spec.STATUS_OK and out.result.class_id == server_classes(tiny_kit, x)[0]


def test_unrecoverable_loss_ends_in_error_so_the_device_keeps_its_answer(server):
    from hi_runtime.agent.ble.sim import Faults

    x, _ = color_images(1, seed=24)
    worker = make_worker(server.port)

    async def scenario():
        device, session, task, _ = await gateway_session(worker, mtu=247, faults=Faults(drop_always={2}),
                                                         max_nack_rounds=2)
        out = await device.offload(9, int8_input(x[0]))
        session.stop()
        await task
        return out, session

    try:
        out, session = run(scenario())
    finally:
        worker.close()
    assert out.result.status == spec.STATUS_ERROR and out.result.class_id == spec.NO_CLASS
    assert out.nacks == 2 and session.stats.errors == 1


def test_server_down_answers_degraded_promptly():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    x, _ = color_images(3, seed=25)
    worker = make_worker(dead, budget_ms=200.0)

    async def scenario():
        loop = asyncio.get_running_loop()
        device, session, task, records = await gateway_session(worker, mtu=247, budget_ms=200.0)
        t = loop.time()
        outs = [await device.offload(i, int8_input(x[i])) for i in range(3)]
        elapsed = loop.time() - t
        session.stop()
        await task
        return outs, elapsed, records

    try:
        outs, elapsed, records = run(scenario())
    finally:
        worker.close()
    assert all(o.result is not None and o.result.status == spec.STATUS_DEGRADED for o in outs)
    assert all(o.result.class_id == spec.NO_CLASS for o in outs)
    assert elapsed < 3 * 1.0  # well inside the device's own timeout
    assert all(r.class_id is None and r.status == spec.STATUS_DEGRADED for r in records)


def test_bad_start_gets_an_error_result(server):
    worker = make_worker(server.port)

    async def scenario():
        device, session, task, _ = await gateway_session(worker)
        bad = spec.Start(5, 3072, 9, 0, 32, 32, 3).encode()  # unknown dtype
        await device._notify(device.control, bad)
        msg = await asyncio.wait_for(device._inbox.get(), 5)
        session.stop()
        await task
        return msg, session

    try:
        msg, session = run(scenario())
    finally:
        worker.close()
    assert msg == spec.Result(5, spec.STATUS_ERROR, spec.NO_CLASS, 0)
    assert session.stats.bad_messages == 1


def test_gateway_cli_needs_ble_flag_and_server(capsys):
    from hi_runtime.agent.cli import main

    with pytest.raises(SystemExit):
        main(["gateway"])  # --ble is required
    assert "--ble" in capsys.readouterr().err
    assert main(["gateway", "--ble"]) == 2
    assert "--server" in capsys.readouterr().err


def test_gateway_log_uses_the_agent_schema(tmp_path):
    import argparse

    from hi_runtime.agent.ble.bleak_gateway import _record_writer
    from hi_runtime.agent.ble.gateway import GatewayRecord
    from measurements.logs import read_run_log

    args = argparse.Namespace(server=["127.0.0.1:8555"])
    writer, on_record = _record_writer(str(tmp_path / "ble.jsonl"), args)
    on_record(GatewayRecord("C1:C1:C1:C1:C1:C1", 4, spec.STATUS_OK, 7, 3.5, 120.0, 0))
    on_record(GatewayRecord("C1:C1:C1:C1:C1:C1", 5, spec.STATUS_DEGRADED, None, 100.0, 180.0, 1))
    writer.close()
    log = read_run_log(tmp_path / "ble.jsonl")
    assert not log.problems and log.header["gateway"] == "ble"
    a, b = log.records
    assert a.sample_id == "C1:C1:C1:C1:C1:C1#4" and a.final_class == 7 and not a.degraded and a.offloaded
    assert b.final_class is None and b.degraded and b.t_offload_ms == 100.0


def test_an_answer_the_device_gave_up_on_is_logged_undelivered_not_answered(tmp_path):
    """The device's own budget ends while the server works on sample 1 (ABORT); sample 2 follows. The late
    answer is not written to the device nor counted as answered; sample 2 gets its own class."""
    from hi_runtime.agent.ble.bumble_link import BumbleLink, VirtualRadio
    from hi_runtime.agent.ble.gateway import DeviceSession, GatewayConfig, OffloadAnswer
    from hi_runtime.agent.ble.sim import VirtualHiDevice

    async def scenario():
        radio = VirtualRadio(2)
        device = VirtualHiDevice(radio.devices[1], result_timeout_s=0.5)
        await radio.power_on()
        conn, _ = await radio.connect(0, 1)
        link = await BumbleLink.open(conn, mtu=247)

        async def forward(tensor, quant, layout):
            first = int(tensor.reshape(-1)[0]) == 1
            await asyncio.sleep(0.8 if first else 0.05)  # slower than the device waits, for sample 1 only
            return OffloadAnswer(True, class_id=100 + int(tensor.reshape(-1)[0]), t_ms=800.0 if first else 50.0)

        records = []
        session = DeviceSession(link, forward, GatewayConfig(), records.append)
        await session.start()
        task = asyncio.create_task(session.run())
        await asyncio.sleep(0.05)
        one = await device.offload(1, np.full((8, 8, 3), 1, np.int8))
        two = await device.offload(2, np.full((8, 8, 3), 2, np.int8))
        await asyncio.sleep(0.3)
        session.stop()
        await task
        return one, two, records, session.stats

    one, two, records, stats = run(scenario())
    assert one.result is None and two.result.class_id == 102  # the device kept its own answer for sample 1
    by_id = {r.sample_id: r for r in records}
    assert not by_id[1].delivered and by_id[2].delivered
    assert stats.answered_ok == 1 and stats.aborted == 1 and stats.undelivered == 1


def test_a_result_that_cannot_be_written_is_not_counted_answered():
    from hi_runtime.agent.ble.gateway import DeviceSession, GatewayConfig

    class GoneLink:
        address = "AA:BB"
        mtu = 23

        async def write(self, uuid, data):
            raise OSError("Not connected")

    records = []
    session = DeviceSession(GoneLink(), None, GatewayConfig(), records.append)
    asyncio.run(session._result(spec.Result(1, spec.STATUS_OK, 7, 5), 0.0, 0, 5.0))
    assert session.stats.answered_ok == 0 and session.stats.undelivered == 1
    assert len(records) == 1 and not records[0].delivered


def test_serve_device_disconnects_a_session_that_failed_while_connected(monkeypatch):
    from hi_runtime.agent.ble import bleak_gateway
    from hi_runtime.agent.ble.gateway import GatewayConfig

    opened, closed = [], []
    stop = asyncio.Event()

    class FailingLink:
        mtu = 23
        address = "AA"

        @classmethod
        async def open(cls, address, on_disconnect=None):
            opened.append(address)
            if len(opened) >= 2:
                stop.set()
            return cls()

        async def start_notify(self, uuid, callback):
            raise OSError("ATT error 0x0e")

        async def disconnect(self):
            closed.append(True)

    monkeypatch.setattr(bleak_gateway, "BleakLink", FailingLink)

    async def scenario():
        await asyncio.wait_for(bleak_gateway.serve_device("AA", None, GatewayConfig(), None, stop), 10)

    asyncio.run(scenario())
    assert len(opened) == 2 and len(closed) == 2  # every round's link is let go before the next opens
