"""``hi-agent gateway --ble``: the gateway on real radios through bleak (thin: all logic is in gateway.py).

Scans for devices advertising the HI offload service (or connects to ``--address``), serves each with a
:class:`~hi_runtime.agent.ble.gateway.DeviceSession`, and reconnects with backoff when a device drops. Offloads
go through the same resilient offloader as ``hi-agent run`` (timeouts from the latency budget, breaker,
failover): when the server is down every device promptly gets RESULT status=degraded.

Not verifiable in this repository's CI (no radio): the bleak layer is kept to connect/subscribe/write;
the session logic it drives is tested over bumble's in-process link (tests/test_ble.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Callable

from hi_runtime.agent.ble import spec
from hi_runtime.agent.ble.gateway import (
    DeviceSession,
    GatewayConfig,
    GatewayRecord,
    GattLink,
    offloader_forward,
)

log = logging.getLogger(__name__)


class BleakLink(GattLink):
    def __init__(self, client) -> None:
        self.client = client
        self.address = str(client.address)
        self._mtu = spec.DEFAULT_ATT_MTU

    @classmethod
    async def open(cls, address: str, timeout: float = 20.0,
                   on_disconnect: Callable[[], None] | None = None) -> BleakLink:
        from bleak import BleakClient

        client = BleakClient(address, timeout=timeout,
                             disconnected_callback=(lambda _c: on_disconnect()) if on_disconnect else None)
        await client.connect()
        link = cls(client)
        if client.services.get_service(spec.SERVICE_UUID) is None:
            await client.disconnect()
            raise ConnectionError(f"{address} does not expose the HI offload service {spec.SERVICE_UUID}")
        acquire = getattr(client._backend, "_acquire_mtu", None)  # BlueZ reports 23 until asked (bleak docs)
        if acquire is not None:
            try:
                await acquire()
            except Exception as exc:  # noqa: BLE001 - fall back to the always-safe default MTU
                log.info("%s: could not acquire the MTU (%s); using %d", address, exc, spec.DEFAULT_ATT_MTU)
        link._mtu = max(spec.DEFAULT_ATT_MTU, int(client.mtu_size or spec.DEFAULT_ATT_MTU))
        return link

    @property
    def mtu(self) -> int:
        return self._mtu

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        await self.client.start_notify(uuid, lambda _char, data: callback(bytes(data)))

    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        await self.client.write_gatt_char(uuid, data, response=response)

    async def disconnect(self) -> None:
        await self.client.disconnect()


class BluetoothUnavailable(RuntimeError):
    """This machine has no usable BLE central (no BlueZ D-Bus, no adapter): an environment failure."""


def _unavailable(exc: BaseException) -> BluetoothUnavailable:
    return BluetoothUnavailable(f"no BLE adapter is available through BlueZ ({exc}); start bluetoothd (systemctl "
                                "start bluetooth) and power the adapter on, on a machine with a Bluetooth adapter")


async def check_bluetooth() -> None:
    """Refuse to start without a BLE adapter, in one line: otherwise the scan fails with a D-Bus traceback and
    a device loop (``--address``) retries a radio that does not exist forever. BlueZ (Linux) only; other
    bleak backends report a missing radio on first use, which :func:`scan` turns into the same error."""
    if not sys.platform.startswith("linux"):
        return
    from bleak.exc import BleakError

    try:  # bleak's BlueZ backend internals: another layout (older or newer bleak) skips the early check
        from bleak.backends.bluezdbus.manager import get_global_bluez_manager
    except ImportError:
        return
    try:
        manager = await get_global_bluez_manager()
        default_adapter = getattr(manager, "get_default_adapter", None)
        if default_adapter is not None:
            default_adapter()
    except (OSError, BleakError) as exc:  # OSError: the D-Bus socket is missing or refuses us
        raise _unavailable(exc) from None


async def scan(seconds: float) -> list[str]:
    from bleak import BleakScanner
    from bleak.exc import BleakError

    try:
        found = await BleakScanner.discover(timeout=seconds, service_uuids=[spec.SERVICE_UUID])
    except (OSError, BleakError) as exc:
        raise _unavailable(exc) from None
    return [d.address for d in found]


async def serve_device(address: str, forward, config: GatewayConfig, on_record, stop: asyncio.Event) -> None:
    """Keep one device served: connect, run its session, reconnect with backoff after a drop."""
    backoff = 1.0
    while not stop.is_set():
        current: list[DeviceSession] = []  # the session to stop when bleak reports the disconnection

        def on_disconnect(current=current) -> None:
            for s in current:
                s.stop()

        link = None
        try:
            link = await BleakLink.open(address, on_disconnect=on_disconnect)
            log.info("%s connected (ATT MTU %d)", address, link.mtu)
            session = DeviceSession(link, forward, config, on_record)
            current.append(session)
            backoff = 1.0
            stats = await session.run()
            log.info("%s disconnected: %s", address, stats)
        except Exception as exc:  # noqa: BLE001 - radios fail in many ways; retry them all
            log.warning("%s: %s; retrying in %.0f s", address, exc, backoff)
        finally:
            if link is not None:  # a session that failed (or was cancelled) while connected: drop the link,
                # or the next round opens a second one and the device stays connected to the first
                with contextlib.suppress(Exception):
                    await asyncio.shield(link.disconnect())
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except asyncio.TimeoutError:
            pass
        backoff = min(backoff * 2, 30.0)


def _record_writer(path: str | None, args):
    if not path:
        return None, None
    from hi_runtime.records import RecordWriter, SampleRecord, default_header

    writer = RecordWriter(path, default_header(model=None, strategy="hi", server=",".join(args.server),
                                               gateway="ble", note="one record per sample a device offloaded"))

    def on_record(r: GatewayRecord) -> None:
        # an answer the device never took: it kept its local answer, which the gateway does not know
        writer.write(SampleRecord(
            sample_id=f"{r.address}#{r.sample_id}", strategy="hi", local_class=None, local_confidence=None,
            exit_index=None, decider_score=None, offloaded=True, server_class=r.class_id,
            final_class=r.class_id if r.delivered else None, degraded=r.status != spec.STATUS_OK or not r.delivered,
            label=None, t_offload_ms=r.t_offload_ms, t_total_ms=r.t_total_ms))

    return writer, on_record


def cmd_gateway(args) -> int:
    try:
        import bleak  # noqa: F401
    except ImportError:
        print("hi-agent gateway: error: bleak is not installed: pip install 'hi-runtime[ble]'", file=sys.stderr)
        return 1  # the installation lacks the extra: not a command-line mistake
    from hi_runtime.agent.offloader import DEFAULT_BUDGET_MS
    from hi_runtime.agent.options import build_offloader
    from hi_runtime.cli_support import UsageError, output_file

    if not args.server:
        raise UsageError("give the offload server with --server HOST:PORT")
    if args.log:
        output_file("--log", args.log, "gateway.jsonl")
    budget = args.latency_budget_ms or DEFAULT_BUDGET_MS
    offloader = build_offloader(args, budget)
    writer, on_record = _record_writer(args.log, args)

    async def main() -> None:
        stop = asyncio.Event()
        await check_bluetooth()
        addresses = list(args.address)
        if not addresses:
            print(f"scanning {args.scan_seconds:.0f} s for HI devices ({spec.SERVICE_UUID}) ...", file=sys.stderr)
            addresses = (await scan(args.scan_seconds))[:args.max_devices]
            if not addresses:
                raise SystemExit("hi-agent gateway: no device advertises the HI offload service; pass --address")
        print(f"serving {', '.join(addresses)}", file=sys.stderr)
        forward = offloader_forward(offloader, budget)
        await asyncio.gather(*(serve_device(a, forward, GatewayConfig(), on_record, stop) for a in addresses))

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except BluetoothUnavailable as exc:
        print(f"hi-agent gateway: error: {exc}", file=sys.stderr)
        return 1
    finally:
        offloader.close()
        if writer is not None:
            writer.close()
    return 0
