"""When samples arrive: the arrival process a run is measured under.

Latency means nothing without it: a strategy that consumes a dataset as fast as it can read it and one
that waits for each answer are not measured under the same load. So every run names one:

* ``closed``: the next sample arrives when the previous one has its final answer (one sample in the
  system at a time). This is the paper's "latency per inference" and the default for the Table forms:
  Eq. 3 (local + offload ratio x round trip) is what a closed run measures.
* ``rate:<fps>``: samples arrive on a clock, ``fps`` per second (a camera). A sample that arrives while
  the device is busy waits (``t_queue_ms``); latency runs from arrival to the final answer, so it shows
  the queueing, and admission control sheds offloads that could not make their deadline.
* ``burst``: every sample arrives at once (throughput mode: how fast can the device and server drain a
  backlog). Latencies then include the whole backlog ahead of each sample.

A live source (a camera) is always taken as it comes: its arrival is when the frame was read.
"""
from __future__ import annotations

from dataclasses import dataclass

ARRIVAL_FORMS = ("closed", "rate:<fps>", "burst")


@dataclass(frozen=True)
class Arrival:
    kind: str = "closed"  # closed | rate | burst
    fps: float | None = None

    @classmethod
    def parse(cls, text: str | Arrival | None) -> Arrival:
        if isinstance(text, Arrival):
            return text
        t = (text or "closed").strip().lower()
        if t in ("closed", "burst"):
            return cls(t)
        kind, sep, value = t.partition(":")
        if kind == "rate" and sep:
            try:
                fps = float(value)
            except ValueError:
                raise ValueError(f"arrival {text!r}: the rate must be a number of samples per second, e.g. "
                                 "rate:30") from None
            if not fps > 0:
                raise ValueError(f"arrival {text!r}: the rate must be positive")
            return cls("rate", fps)
        raise ValueError(f"arrival {text!r} is not one of {', '.join(ARRIVAL_FORMS)} (e.g. rate:30 for a "
                         "30 fps camera)")

    @property
    def pipelined(self) -> bool:
        """Whether a sample may arrive before the previous one is answered."""
        return self.kind != "closed"

    def due(self, index: int, start: float) -> float | None:
        """Arrival time of sample ``index`` for a paced run started at ``start``; None = when asked for."""
        if self.kind == "rate":
            return start + index / float(self.fps)
        if self.kind == "burst":
            return start
        return None

    def __str__(self) -> str:
        return f"rate:{self.fps:g}" if self.kind == "rate" else self.kind
