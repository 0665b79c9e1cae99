"""Meter interfaces and a background sampler that turns power readings into energy.

Why a sampler: a bench power analyzer reports average power about twice a second, far slower than
one inference, so energy per inference is measured over a whole run (many samples) and divided by
the number of samples. The sampler polls the meter in a thread while the run executes and integrates
power over time (trapezoid rule).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class MeterError(RuntimeError):
    """The meter did not answer, answered nonsense, or is not present on this machine."""


@runtime_checkable
class PowerMeter(Protocol):
    def read_power_w(self) -> float:
        """The meter's latest average power in watts."""

    def close(self) -> None:
        ...


@runtime_checkable
class EnergyCounter(Protocol):
    def read_energy_j(self) -> float:
        """A monotonically increasing energy counter in joules (wraparound handled by the reader)."""

    def close(self) -> None:
        ...


@dataclass
class PowerTrace:
    """Timestamped power readings (seconds from ``time.monotonic``, watts)."""

    times_s: list = field(default_factory=list)
    watts: list = field(default_factory=list)

    def add(self, t: float, w: float) -> None:
        self.times_s.append(t)
        self.watts.append(w)

    @property
    def duration_s(self) -> float:
        return self.times_s[-1] - self.times_s[0] if len(self.times_s) > 1 else 0.0

    def energy_j(self) -> float:
        """Trapezoid integral of power over the trace (0 with fewer than two readings)."""
        total = 0.0
        for i in range(1, len(self.times_s)):
            total += 0.5 * (self.watts[i] + self.watts[i - 1]) * (self.times_s[i] - self.times_s[i - 1])
        return total

    def mean_power_w(self) -> float | None:
        """Time-weighted mean power; the plain mean when all readings share one instant."""
        if not self.watts:
            return None
        if self.duration_s > 0:
            return self.energy_j() / self.duration_s
        return sum(self.watts) / len(self.watts)


class PowerSampler:
    """Poll a :class:`PowerMeter` every ``interval_s`` in a background thread.

    Use as a context manager around the workload; ``trace`` holds the readings afterwards. Errors in
    the thread are re-raised from ``stop()`` so a dead meter never yields a silent zero."""

    def __init__(self, meter: PowerMeter, interval_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise ValueError("sampling interval must be positive")
        self.meter = meter
        self.interval_s = interval_s
        self.clock = clock
        self.trace = PowerTrace()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            while True:
                self.trace.add(self.clock(), float(self.meter.read_power_w()))
                if self._stop.wait(self.interval_s):
                    break
            self.trace.add(self.clock(), float(self.meter.read_power_w()))
        except BaseException as exc:  # re-raised in stop()
            self._error = exc

    def start(self) -> PowerSampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> PowerTrace:
        if self._thread is None:
            raise RuntimeError("sampler was not started")
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise MeterError(f"power meter failed while sampling: {self._error}") from self._error
        return self.trace

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.stop()


class EnergyWindow:
    """Energy used between ``start()`` and ``stop()`` on an :class:`EnergyCounter` (e.g. RAPL)."""

    def __init__(self, counter: EnergyCounter, clock: Callable[[], float] = time.monotonic) -> None:
        self.counter = counter
        self.clock = clock
        self._start: tuple | None = None
        self.energy_j: float | None = None
        self.duration_s: float | None = None

    def start(self) -> EnergyWindow:
        self._start = (self.clock(), self.counter.read_energy_j())
        return self

    def stop(self) -> float:
        if self._start is None:
            raise RuntimeError("energy window was not started")
        t1, e1 = self.clock(), self.counter.read_energy_j()
        self.duration_s = t1 - self._start[0]
        self.energy_j = e1 - self._start[1]
        return self.energy_j

    def __enter__(self) -> EnergyWindow:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.energy_j is None:
            self.stop()
