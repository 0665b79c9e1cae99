"""Voltech PM1000+ power analyzer (the analyzer used by Behera et al.).

Command set, from the PM1000+ user manual's remote-operation chapter (Voltech 2010, pages 47 and 52,
read via manualshive.com / easymanua.ls) and consistent with public scripts for the Tektronix PA1000,
which shares it:

* ``:SEL:CLR`` clears the result list; ``:SEL:WAT``, ``:SEL:VLT``, ``:SEL:AMP`` ... add a result;
* ``:FRD?`` returns the selected results, comma separated, in the order they were selected;
* ``:DSE 2`` enables, and ``:DSR?`` reads (and clears), the display data status register whose bit 1
  (NDV, value 2) says new data arrived since the last ``:DSR?``;
* one instruction per message (``":SEL:VLT;:SEL:AMP"`` is not valid), LF terminated;
* allow about 0.5 s after each configuration command; results update about every 0.5 s.

Not verified on a real PM1000+ (none was available); verified against a pyvisa-sim definition built
from the commands above (tests/test_power_meters.py).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from measurements.power.base import MeterError
from measurements.power.scpi import ScpiPowerMeter, open_visa_resource, parse_number

NEW_DATA_BIT = 0x02  # DSR bit 1, NDV
RESULTS = {"WAT": "power_w", "VLT": "voltage_v", "AMP": "current_a", "PWF": "power_factor", "FRQ": "frequency_hz"}


class VoltechPM1000(ScpiPowerMeter):
    def __init__(self, resource: Any, results: Sequence[str] = ("WAT",), settle_s: float = 0.5,
                 poll_s: float = 0.05, data_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, configure: bool = True) -> None:
        super().__init__(resource, power_query=":FRD?", settle_s=settle_s)
        unknown = [r for r in results if r.upper() not in RESULTS]
        if unknown:
            raise MeterError(f"unsupported PM1000+ results {unknown}; supported: {sorted(RESULTS)}")
        self.results = [r.upper() for r in results]
        if "WAT" not in self.results:
            self.results.insert(0, "WAT")
        self.poll_s = poll_s
        self.data_timeout_s = data_timeout_s
        self.clock = clock
        if configure:
            self.configure()

    @classmethod
    def open(cls, address: str, backend: str = "", **kwargs) -> VoltechPM1000:
        timeout_ms = kwargs.pop("timeout_ms", 5000)
        return cls(open_visa_resource(address, backend, timeout_ms=timeout_ms), **kwargs)

    def configure(self) -> None:
        """Select the results to report (power first) and enable the new-data flag."""
        self.write(":SEL:CLR")
        for result in self.results:
            self.write(f":SEL:{result}")
        self.write(":DSE 2")

    def wait_for_new_data(self) -> None:
        deadline = self.clock() + self.data_timeout_s
        while True:
            status = self.query(":DSR?")
            try:
                value = int(parse_number(status))
            except MeterError as exc:
                raise MeterError(f"PM1000+ :DSR? returned {status!r}, not a status register value") from exc
            if value & NEW_DATA_BIT:
                return
            if self.clock() >= deadline:
                raise MeterError(
                    f"PM1000+ reported no new data within {self.data_timeout_s} s (:DSR? = {value}); "
                    "check the wiring and that the analyzer is measuring"
                )
            time.sleep(self.poll_s)

    def read_results(self) -> dict:
        """Wait for a fresh update, then read every selected result by name."""
        self.wait_for_new_data()
        reply = self.query(":FRD?")
        fields = [f.strip() for f in reply.split(",") if f.strip()]
        if len(fields) < len(self.results):
            raise MeterError(
                f"PM1000+ :FRD? returned {len(fields)} value(s) ({reply!r}) for {len(self.results)} "
                f"selected result(s) {self.results}; another program may have changed the selection"
            )
        return {RESULTS[name]: parse_number(text) for name, text in zip(self.results, fields)}

    def read_power_w(self) -> float:
        return self.read_results()["power_w"]
