"""Open any supported meter from one text spec, and measure the energy of a block of work.

Specs (so every CLI takes the same ``--meter`` argument):

* ``rapl`` or ``rapl:/path/to/powercap``: Linux RAPL package energy;
* ``pm1000:<VISA address>``: Voltech PM1000+ (e.g. ``pm1000:GPIB0::8::INSTR``);
* ``scpi:<VISA address>`` or ``scpi:<VISA address>|<power query>``: a generic SCPI meter.

``backend`` is PyVISA's backend string (empty: the system VISA; ``@py``: pyvisa-py; ``file.yaml@sim``
for simulation).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from measurements.power.base import EnergyWindow, MeterError, PowerSampler

if TYPE_CHECKING:
    from measurements.power.scpi import ScpiPowerMeter


@dataclass(frozen=True)
class MeterSpec:
    kind: str  # "rapl" | "pm1000" | "scpi"
    address: str = ""
    query: str | None = None


def parse_meter_spec(spec: str) -> MeterSpec:
    text = (spec or "").strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind == "rapl":
        return MeterSpec("rapl", rest)
    if kind in ("pm1000", "scpi"):
        if not rest:
            raise MeterError(f"meter spec {spec!r} needs a VISA address, e.g. {kind}:GPIB0::8::INSTR")
        address, _, query = rest.partition("|")
        if query and kind != "scpi":
            raise MeterError("only scpi meters take a custom power query (scpi:<address>|<query>)")
        return MeterSpec(kind, address, query or None)
    raise MeterError(f"unknown meter spec {spec!r}; use rapl, pm1000:<VISA address> or scpi:<VISA address>")


def open_meter(kind: str, address: str, backend: str = "", **kwargs) -> ScpiPowerMeter:
    """Open a VISA meter by kind: ``pm1000`` (Voltech PM1000+) or ``scpi`` (generic).

    The one place that maps a kind to its driver; pyvisa is imported only when a meter is opened."""
    from measurements.power.scpi import ScpiPowerMeter
    from measurements.power.voltech import VoltechPM1000

    kind = kind.lower()
    if kind in ("pm1000", "pm1000+", "voltech"):
        return VoltechPM1000.open(address, backend, **kwargs)
    if kind in ("scpi", "generic"):
        return ScpiPowerMeter.open(address, backend, **kwargs)
    raise MeterError(f"unknown meter kind {kind!r}; use pm1000 or scpi")


@dataclass
class EnergyMeasurement:
    energy_j: float
    duration_s: float
    mean_power_w: float | None
    source: str  # e.g. "measured (Voltech PM1000+ GPIB0::8::INSTR)"


class MeteredBlock:
    """``with MeteredBlock(spec) as block: work()`` then ``block.result`` holds the energy."""

    def __init__(self, spec: str, backend: str = "", interval_s: float = 0.5, settle_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = parse_meter_spec(spec)
        self.backend = backend
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.clock = clock
        self.result: EnergyMeasurement | None = None
        self._meter = None
        self._runner = None

    def __enter__(self) -> MeteredBlock:
        s = self.spec
        if s.kind == "rapl":
            from measurements.power.rapl import POWERCAP_ROOT, RaplReader

            self._meter = RaplReader(Path(s.address) if s.address else POWERCAP_ROOT)
            self._label = "measured (RAPL package " + "+".join(self._meter.zone_names) + ")"
            self._runner = EnergyWindow(self._meter, self.clock).start()
        else:
            if s.kind == "pm1000":
                self._meter = open_meter(s.kind, s.address, self.backend, settle_s=self.settle_s)
                self._label = f"measured (Voltech PM1000+ {s.address})"
            else:
                self._meter = open_meter(s.kind, s.address, self.backend,
                                         **({"power_query": s.query} if s.query else {}))
                self._label = f"measured (SCPI meter {s.address})"
            self._runner = PowerSampler(self._meter, self.interval_s, self.clock).start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if isinstance(self._runner, EnergyWindow):
                energy = self._runner.stop()
                duration = self._runner.duration_s or 0.0
                mean = energy / duration if duration > 0 else None
            else:
                trace = self._runner.stop()
                energy, duration, mean = trace.energy_j(), trace.duration_s, trace.mean_power_w()
            self.result = EnergyMeasurement(energy, duration, mean, self._label)
        finally:
            self._meter.close()
