"""Power analyzers over VISA (GPIB, USB-TMC, LAN, RS-232) with PyVISA.

``ScpiPowerMeter`` speaks the generic SCPI subset most bench meters share (``*IDN?`` and one
configurable power query, ``MEAS:POW?`` by default). Meter-specific drivers (``voltech.py``) build
on it. Tests run against pyvisa-sim device definitions, so no instrument is needed to verify the
command exchange; a real meter has not been available to this project (see docs/measurements.md).
"""
from __future__ import annotations

import re
import time
from typing import Any

from measurements.power.base import MeterError

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_number(text: str) -> float:
    """First number in a meter reply (``"12.5 W"``, ``"+1.25E+01"``); ``MeterError`` if none."""
    match = _NUMBER.search(text or "")
    if match is None:
        raise MeterError(f"meter reply {text!r} holds no number")
    return float(match.group(0))


def open_visa_resource(address: str, backend: str = "", timeout_ms: int = 5000,
                       read_termination: str = "\n", write_termination: str = "\n") -> Any:
    """Open a VISA resource. ``backend`` is PyVISA's (``"@py"`` for pyvisa-py, ``"path.yaml@sim"``
    for pyvisa-sim, empty for the system VISA library)."""
    try:
        import pyvisa
    except ImportError as exc:  # pragma: no cover - pyvisa is in the measure extra
        raise MeterError("pyvisa is not installed; install the project's 'measure' extra") from exc
    try:
        manager = pyvisa.ResourceManager(backend) if backend else pyvisa.ResourceManager()
        resource = manager.open_resource(address)
    except Exception as exc:
        raise MeterError(
            f"cannot open VISA resource {address!r} (backend {backend or 'default'}): {exc}; "
            "check the address with `python -m pyvisa info` / list_resources()"
        ) from exc
    resource.timeout = timeout_ms
    resource.read_termination = read_termination
    resource.write_termination = write_termination
    return resource


class ScpiPowerMeter:
    """A meter that answers a power query with watts."""

    def __init__(self, resource: Any, power_query: str = "MEAS:POW?", settle_s: float = 0.0) -> None:
        self.resource = resource
        self.power_query = power_query
        self.settle_s = settle_s

    @classmethod
    def open(cls, address: str, backend: str = "", **kwargs) -> ScpiPowerMeter:
        timeout_ms = kwargs.pop("timeout_ms", 5000)
        return cls(open_visa_resource(address, backend, timeout_ms=timeout_ms), **kwargs)

    # Low-level exchange, with errors that name the command. -------------------------------------
    def write(self, command: str) -> None:
        try:
            self.resource.write(command)
        except Exception as exc:
            raise MeterError(f"writing {command!r} to the meter failed: {exc}") from exc
        if self.settle_s:
            time.sleep(self.settle_s)

    def query(self, command: str) -> str:
        try:
            reply = self.resource.query(command)
        except Exception as exc:
            raise MeterError(f"query {command!r} failed: {exc}") from exc
        reply = str(reply).strip()
        if not reply:
            raise MeterError(
                f"the meter sent an empty reply to {command!r}; check the address, the cable and the "
                "meter's interface settings (termination, baud rate)"
            )
        return reply

    # Meter API ----------------------------------------------------------------------------------
    def identify(self) -> str:
        return self.query("*IDN?")

    def read_power_w(self) -> float:
        return parse_number(self.query(self.power_query))

    def close(self) -> None:
        try:
            self.resource.close()
        except Exception:
            pass

    def __enter__(self) -> ScpiPowerMeter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
