"""The gateway's GATT-client interface on bumble, and an in-process radio for tests and simulation.

``virtual_radio(n)`` creates ``n`` bumble devices on one ``bumble.link.LocalLink`` (no hardware): device 0
acts as the gateway's central, the others can be virtual HI devices (``hi_runtime.agent.ble.sim``).
"""
from __future__ import annotations

import asyncio
from typing import Callable

from hi_runtime.agent.ble import spec
from hi_runtime.agent.ble.gateway import GattLink


class BumbleLink(GattLink):
    """A connected peer seen through bumble's GATT client."""

    def __init__(self, peer, address: str) -> None:
        self.peer = peer
        self.address = address
        self._chars: dict[str, object] = {}

    @classmethod
    async def open(cls, connection, *, mtu: int | None = None) -> BumbleLink:
        """Exchange the MTU (when ``mtu`` is given; otherwise keep the default 23), discover the HI service."""
        from bumble.core import UUID
        from bumble.device import Peer

        peer = Peer(connection)
        if mtu is not None:
            await peer.request_mtu(mtu)
        await peer.discover_services([UUID(spec.SERVICE_UUID)])
        services = peer.get_services_by_uuid(UUID(spec.SERVICE_UUID))
        if not services:
            raise ConnectionError(f"{connection.peer_address} does not expose the HI offload service {spec.SERVICE_UUID}")
        await services[0].discover_characteristics()
        link = cls(peer, str(connection.peer_address))
        for uuid in (spec.CONTROL_UUID, spec.IMAGE_UUID, spec.RESULT_UUID):
            chars = services[0].get_characteristics_by_uuid(UUID(uuid))
            if not chars:
                raise ConnectionError(f"{link.address}: HI service lacks characteristic {uuid}")
            link._chars[uuid] = chars[0]
        return link

    @property
    def mtu(self) -> int:
        return int(self.peer.connection.att_mtu)

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        await self.peer.subscribe(self._chars[uuid], lambda value: callback(bytes(value)))

    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        await self.peer.write_value(self._chars[uuid], data, with_response=response)

    async def disconnect(self) -> None:
        await self.peer.connection.disconnect()


class VirtualRadio:
    """``count`` powered-on bumble devices sharing one in-process LocalLink."""

    def __init__(self, count: int) -> None:
        from bumble.controller import Controller
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.link import LocalLink
        from bumble.transport.common import AsyncPipeSink

        self.link = LocalLink()
        addresses = [":".join([f"{0xC0 + i:02X}"] * 6) for i in range(count)]
        self.controllers = [Controller(f"C{i}", link=self.link, public_address=a) for i, a in enumerate(addresses)]
        self.devices = [Device(name=f"hi-{i}", address=Address(a), host=Host(c, AsyncPipeSink(c)))
                        for i, (a, c) in enumerate(zip(addresses, self.controllers))]

    async def power_on(self) -> None:
        for d in self.devices:
            await d.power_on()

    async def connect(self, central_index: int, peripheral_index: int):
        """Peripheral advertises, central connects; returns (central-side, peripheral-side) connections."""
        central, periph = self.devices[central_index], self.devices[peripheral_index]
        fut = asyncio.get_running_loop().create_future()
        periph.once("connection", fut.set_result)
        await periph.start_advertising(advertising_interval_min=1.0)
        conn = await central.connect(periph.random_address)
        return conn, await fut
