"""Accuracy, latency and energy per inference from per-sample run logs (the paper's Eq. 1-4).

Energy has two honest sources and every output says which one it used:

* ``measured``: a power meter (or RAPL) was attached and gave the run's energy;
* ``modeled``: no meter; the device profile's average power times the measured time of each phase
  (compute power while preprocessing/inferring/deciding, offload power while offloading), or the
  profile's per-offload energy when it has one.

When neither is available the energy is ``None``, never a guess.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from hi_runtime.equations import (
    DeciderConfusion,
    energy_mj,
    expected_energy_mj,
    expected_latency_ms,
    hi_accuracy,
    hi_accuracy_from_confusion,
)
from measurements.logs import RunLog, SampleRecord

ENERGY_MEASURED = "measured"
ENERGY_MODELED = "modeled"


@dataclass(frozen=True)
class EnergyModel:
    """Inputs for modeled energy: average power in each phase, optionally a fixed energy per offload.

    ``source`` is carried into every output so a reader can see where the watts came from."""

    compute_w: float
    offload_w: float | None = None
    offload_mj: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.compute_w < 0 or (self.offload_w is not None and self.offload_w < 0):
            raise ValueError("power cannot be negative")
        if self.offload_w is None and self.offload_mj is None:
            raise ValueError("an energy model needs offload_w (power while offloading) or offload_mj")

    @classmethod
    def from_profile(cls, profile, link: str | None = None) -> EnergyModel:
        """Build from a :class:`measurements.profiles.DeviceProfile`; raises when the profile lacks power."""
        from measurements.profiles import ProfileError

        compute = profile.power.compute_w
        if not compute.known:
            raise ProfileError(
                f"profile {profile.id!r} has no power.compute_w, so energy cannot be modeled; "
                "attach a meter (--energy-j) or add the device's power to the profile"
            )
        offload_w = profile.power.offload_w.value
        offload_mj = None
        try:
            offload_mj = profile.link(link).energy_mj.value
        except ProfileError:
            pass
        if offload_w is None and offload_mj is None:
            offload_w = compute.value
        return cls(compute_w=compute.value, offload_w=offload_w, offload_mj=offload_mj,
                   source=f"profile {profile.id} ({compute.cite})")


@dataclass
class RunMetrics:
    """Everything ``hi-bench metrics`` reports about one run. Fractions are in [0, 1]."""

    n: int
    n_labeled: int
    device: str | None
    model: str | None
    strategy: str | None
    accuracy: float | None  # Eq. 1 (over labeled samples)
    accuracy_eq2: float | None  # Eq. 2, must equal Eq. 1
    final_accuracy: float | None  # final_class vs label, as the agent reported it
    local_accuracy: float | None  # local model alone, all labeled samples
    server_accuracy_offloaded: float | None
    offload_fraction: float
    degraded_fraction: float
    confusion: DeciderConfusion | None
    latency_ms: float | None  # Eq. 3 from the logged phases
    latency_ms_measured: float | None  # mean of the logged end-to-end time
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    local_ms: float | None  # mean on-device time per sample (all samples)
    offload_ms: float | None  # mean offload time per offloaded sample
    energy_mj: float | None  # Eq. 4
    energy_source: str | None  # "measured" | "modeled" | None
    energy_note: str = ""
    exit_fractions: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.confusion is not None:
            out["confusion"].update(
                f1_accept=self.confusion.f1_accept, f1_offload=self.confusion.f1_offload
            )
        return out


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (same as numpy's default) without importing numpy."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _answered_by_server(record: SampleRecord) -> bool:
    """An offloaded sample counts as the server's answer only if the server answered; a degraded
    sample (server or network failed) falls back to the local answer, as the device does."""
    return record.offloaded and not record.degraded and record.server_class is not None


def confusion_counts(records: Iterable[SampleRecord]) -> DeciderConfusion | None:
    """Decider confusion over labeled records that have a local answer (``None`` if there are none)."""
    tp = fp = fn = tn = 0
    for r in records:
        if r.label is None or r.local_class is None:
            continue
        right = r.local_class == r.label
        if r.offloaded:
            fn += right
            tn += not right
        else:
            tp += right
            fp += not right
    total = tp + fp + fn + tn
    return DeciderConfusion(tp, fp, fn, tn) if total else None


def compute_metrics(
    log: RunLog,
    energy_model: EnergyModel | None = None,
    measured_energy_j: float | None = None,
) -> RunMetrics:
    """Summarize one run.

    ``measured_energy_j`` is the meter's energy for the whole run (all samples); it wins over the
    energy model. Without either, energy stays ``None``."""
    records = log.records
    n = len(records)
    if n == 0:
        raise ValueError("a run with no samples has no metrics")
    labeled = [r for r in records if r.label is not None]

    # Eq. 1 -------------------------------------------------------------------------------------
    accuracy = final_accuracy = local_accuracy = server_acc = accuracy_eq2 = None
    confusion = None
    if labeled:
        local_correct = sum(1 for r in labeled if not _answered_by_server(r) and r.local_class == r.label)
        server_correct = sum(1 for r in labeled if _answered_by_server(r) and r.server_class == r.label)
        accuracy = hi_accuracy(local_correct, server_correct, len(labeled))
        final_accuracy = sum(1 for r in labeled if r.final_class == r.label) / len(labeled)
        with_local = [r for r in labeled if r.local_class is not None]
        if with_local:
            local_accuracy = sum(1 for r in with_local if r.local_class == r.label) / len(with_local)
        served = [r for r in labeled if _answered_by_server(r)]
        if served:
            server_acc = sum(1 for r in served if r.server_class == r.label) / len(served)
        # Eq. 2 ---------------------------------------------------------------------------------
        # Degraded samples were offloaded by the decider but answered locally; Eq. 2 models a
        # working server, so it is reported only when every labeled sample fits that model.
        confusion = confusion_counts(labeled)
        no_fallbacks = all(not r.offloaded or _answered_by_server(r) for r in labeled)
        if confusion is not None and confusion.n == len(labeled) and no_fallbacks:
            accuracy_eq2 = hi_accuracy_from_confusion(confusion, server_acc if server_acc is not None else 0.0)

    offloaded = [r for r in records if r.offloaded]
    offload_fraction = len(offloaded) / n
    degraded_fraction = sum(1 for r in records if r.degraded) / n

    # Eq. 3 -------------------------------------------------------------------------------------
    on_device = [r.on_device_ms for r in records if r.on_device_ms is not None]
    offload_times = [r.t_offload_ms for r in offloaded if r.t_offload_ms is not None]
    local_ms = _mean(on_device) if len(on_device) == n else None
    offload_ms = _mean(offload_times) if offloaded and len(offload_times) == len(offloaded) else None
    latency = None
    if local_ms is not None and (offload_ms is not None or not offloaded):
        latency = expected_latency_ms(local_ms, offload_ms or 0.0, offload_fraction)
    totals = [r.total_ms for r in records if r.total_ms is not None]

    # Eq. 4 -------------------------------------------------------------------------------------
    energy = None
    source = None
    note = ""
    if measured_energy_j is not None:
        if measured_energy_j < 0:
            raise ValueError("measured energy cannot be negative")
        energy = measured_energy_j * 1000.0 / n
        source = ENERGY_MEASURED
        note = "meter energy for the whole run divided by the number of samples"
    elif energy_model is not None and local_ms is not None:
        local_mj = energy_mj(energy_model.compute_w, local_ms)
        if not offloaded:
            per_offload = 0.0
        elif energy_model.offload_mj is not None:
            per_offload = energy_model.offload_mj
        elif offload_ms is not None and energy_model.offload_w is not None:
            per_offload = energy_mj(energy_model.offload_w, offload_ms)
        else:
            per_offload = None
        if per_offload is not None:
            energy = expected_energy_mj(local_mj, per_offload, offload_fraction)
            source = ENERGY_MODELED
            note = f"profile power x measured time; {energy_model.source}".strip("; ")

    exits: dict = {}
    with_exit = [r.exit_index for r in records if r.exit_index is not None]
    if with_exit:
        for index in sorted(set(with_exit)):
            exits[int(index)] = with_exit.count(index) / n

    return RunMetrics(
        n=n,
        n_labeled=len(labeled),
        device=log.device,
        model=log.model,
        strategy=log.strategy,
        accuracy=accuracy,
        accuracy_eq2=accuracy_eq2,
        final_accuracy=final_accuracy,
        local_accuracy=local_accuracy,
        server_accuracy_offloaded=server_acc,
        offload_fraction=offload_fraction,
        degraded_fraction=degraded_fraction,
        confusion=confusion,
        latency_ms=latency,
        latency_ms_measured=_mean(totals) if totals else None,
        latency_ms_p50=_percentile(totals, 0.50),
        latency_ms_p95=_percentile(totals, 0.95),
        local_ms=local_ms,
        offload_ms=offload_ms,
        energy_mj=energy,
        energy_source=source,
        energy_note=note,
        exit_fractions=exits,
        problems=list(log.problems),
    )


def format_metrics(m: RunMetrics) -> str:
    """A short human summary; energy always shows whether it was measured or modeled."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}%"

    def ms(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f} ms"

    lines = [
        f"run: device={m.device or '?'} model={m.model or '?'} strategy={m.strategy or '?'} "
        f"samples={m.n} labeled={m.n_labeled}",
        f"accuracy (Eq. 1): {pct(m.accuracy)}   (Eq. 2: {pct(m.accuracy_eq2)}; "
        f"local model alone: {pct(m.local_accuracy)}; server on offloaded: {pct(m.server_accuracy_offloaded)})",
        f"offloaded: {pct(m.offload_fraction)}   degraded (local fallback): {pct(m.degraded_fraction)}",
        f"latency per inference (Eq. 3): {ms(m.latency_ms)}   measured mean {ms(m.latency_ms_measured)}, "
        f"p50 {ms(m.latency_ms_p50)}, p95 {ms(m.latency_ms_p95)}",
    ]
    if m.energy_mj is None:
        lines.append("energy per inference (Eq. 4): n/a (no meter and no profile power)")
    else:
        lines.append(f"energy per inference (Eq. 4): {m.energy_mj:.4f} mJ [{m.energy_source}] {m.energy_note}")
    if m.confusion is not None:
        c = m.confusion
        f1o = "n/a" if c.f1_offload is None else f"{c.f1_offload:.3f}"
        f1a = "n/a" if c.f1_accept is None else f"{c.f1_accept:.3f}"
        lines.append(f"decider: TP={c.tp} FP={c.fp} FN={c.fn} TN={c.tn}  F1(offload)={f1o} F1(accept)={f1a}")
    if m.exit_fractions:
        lines.append("exits taken: " + ", ".join(f"exit {k}: {pct(v)}" for k, v in m.exit_fractions.items()))
    if m.problems:
        lines.append(f"warning: {len(m.problems)} log line(s) skipped, first: {m.problems[0]}")
    return "\n".join(lines)
