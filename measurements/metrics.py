"""Accuracy, latency and energy per inference from per-sample run logs (the paper's Eq. 1-4).

Energy has two honest sources and every output says which one it used:

* ``measured``: a power meter (or RAPL) was attached and gave the run's energy;
* ``modeled``: no meter; the device profile's average power times the measured time of each phase
  (compute power while preprocessing/inferring/deciding, offload power while offloading), or the
  profile's per-offload energy when it has one.

When neither is available the energy is ``None``, never a guess.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hi_runtime.equations import DeciderConfusion, energy_mj, expected_energy_mj
from hi_runtime.records import summarize
from measurements.logs import RunLog, model_key

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
    # a profile's per-dataset offload energy (an ImageNet image is 49 CIFAR-10 images on the link) and which
    # dataset each of its models serves, so a run is charged for its own images
    offload_mj_by_dataset: dict = field(default_factory=dict)
    model_datasets: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.compute_w < 0 or (self.offload_w is not None and self.offload_w < 0):
            raise ValueError("power cannot be negative")
        if self.offload_w is None and self.offload_mj is None:
            raise ValueError("an energy model needs offload_w (power while offloading) or offload_mj")

    @classmethod
    def from_profile(cls, profile, link: str | None = None) -> EnergyModel:
        """Build from a :class:`hi_runtime.device_profiles.DeviceProfile`; raises when the profile lacks power."""
        from hi_runtime.device_profiles import ProfileError

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
        by_dataset = {}
        try:
            costs = profile.link(link)
            by_dataset = {ds: c.energy_mj.value for ds, c in costs.datasets.items() if c.energy_mj.value is not None}
        except ProfileError:
            pass
        if offload_w is None and offload_mj is None:
            offload_w = compute.value
        return cls(compute_w=compute.value, offload_w=offload_w, offload_mj=offload_mj,
                   source=f"profile {profile.id} ({compute.cite})", offload_mj_by_dataset=by_dataset,
                   model_datasets={name: m.dataset for name, m in profile.models.items() if m.dataset})

    def offload_mj_for(self, log: RunLog) -> float | None:
        """Energy of one offload of this run's images: its dataset's (the header's ``dataset``, else the
        one the profile's model of that name serves), else the link's default."""
        dataset = log.header.get("dataset") or self.model_datasets.get(model_key(log.model))
        return self.offload_mj_by_dataset.get(dataset, self.offload_mj)


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
    shed_fraction: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.confusion is not None:
            out["confusion"].update(
                f1_accept=self.confusion.f1_accept, f1_offload=self.confusion.f1_offload
            )
        return out


def compute_metrics(
    log: RunLog,
    energy_model: EnergyModel | None = None,
    measured_energy_j: float | None = None,
) -> RunMetrics:
    """Summarize one run: the core summary (hi_runtime.records.summarize: Eq. 1-3, latency percentiles,
    the decider's confusion) plus energy (Eq. 4).

    ``measured_energy_j`` is the meter's energy for the whole run (all samples); it wins over the
    energy model. Without either, energy stays ``None``."""
    records = log.records
    n = len(records)
    if n == 0:
        raise ValueError("a run with no samples has no metrics")
    s = summarize(records, log.strategy)
    labeled = [r for r in records if r.label is not None]
    final_accuracy = (sum(1 for r in labeled if r.final_class == r.label) / len(labeled)) if labeled else None
    # the local model's accuracy only when every labelled sample has a local answer: a remote run's few
    # degraded samples are no measure of the model (the planner would take them for its accuracy)
    local_accuracy = s.local_accuracy
    sent = s.sent_ratio if s.sent_ratio is not None else s.offload_ratio  # shed samples paid no offload
    offloaded = sent > 0

    energy = None
    source = None
    note = ""
    if measured_energy_j is not None:
        if measured_energy_j < 0:
            raise ValueError("measured energy cannot be negative")
        energy = measured_energy_j * 1000.0 / n
        source = ENERGY_MEASURED
        note = "meter energy for the whole run divided by the number of samples"
    elif energy_model is not None and s.on_device_ms is not None:
        local_mj = energy_mj(energy_model.compute_w, s.on_device_ms)
        link_mj = energy_model.offload_mj_for(log) if offloaded else None
        if not offloaded:
            per_offload = 0.0
        elif link_mj is not None:
            per_offload = link_mj
        elif s.offload_ms is not None and energy_model.offload_w is not None:
            per_offload = energy_mj(energy_model.offload_w, s.offload_ms)
        else:
            per_offload = None
        if per_offload is not None:
            energy = expected_energy_mj(local_mj, per_offload, sent)
            source = ENERGY_MODELED
            note = f"profile power x measured time; {energy_model.source}".strip("; ")
        else:
            note = "the profile has no per-offload energy and the log no offload times to model it from"
    elif energy_model is not None:
        note = "the log has no on-device time for every sample to model it from"

    return RunMetrics(
        n=n,
        n_labeled=s.labelled,
        device=log.device,
        model=log.model,
        strategy=log.strategy,
        accuracy=s.accuracy,
        accuracy_eq2=s.accuracy_eq2,
        final_accuracy=final_accuracy,
        local_accuracy=local_accuracy,
        server_accuracy_offloaded=s.server_accuracy_offloaded,
        offload_fraction=s.offload_ratio,
        degraded_fraction=s.degraded / n,
        confusion=s.confusion,
        latency_ms=s.latency_eq3_ms,
        latency_ms_measured=s.latency_mean_ms,
        latency_ms_p50=s.latency_p50_ms,
        latency_ms_p95=s.latency_p95_ms,
        local_ms=s.on_device_ms,
        offload_ms=s.offload_ms,
        energy_mj=energy,
        energy_source=source,
        energy_note=note,
        exit_fractions={k: v / n for k, v in s.exits.items()},
        problems=list(log.problems),
        shed_fraction=s.shed / n,
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
        f"offloaded: {pct(m.offload_fraction)}   degraded (local fallback): {pct(m.degraded_fraction)}   "
        f"shed (answered locally by admission control): {pct(m.shed_fraction)}",
        f"latency per inference (Eq. 3): {ms(m.latency_ms)}   measured mean {ms(m.latency_ms_measured)}, "
        f"p50 {ms(m.latency_ms_p50)}, p95 {ms(m.latency_ms_p95)}",
    ]
    if m.energy_mj is None:
        lines.append(f"energy per inference (Eq. 4): n/a ({m.energy_note or 'no meter and no profile power'})")
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
