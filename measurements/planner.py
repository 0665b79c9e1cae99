"""Strategy comparison and QoS planner: which of on-device, remote, HI and EE-HI suits a device.

The paper's QoS rules (as stated in the project issue): a configuration must reach a minimum
accuracy, and it only makes sense on the device if its latency is at most half of the latency of
offloading every sample, and its energy at most half of the energy of offloading every sample
(otherwise simply offloading would do). Among the configurations that pass, the planner picks the
lowest latency (or energy, with ``objective="energy"``), ties broken by higher accuracy.

Inputs come from two places, and every candidate records which:

* the device profile (``measurements.profiles``): latency/energy of each model, exit, decider and
  link, and whatever accuracy the profile knows;
* run statistics (``RunStats``), measured by our own runs (``hi-bench metrics`` on hi-agent logs):
  model accuracy, the decider's operating point (HI accuracy, offload fraction) and EE-HI sweeps.
  They fill what a profile lacks (the paper's profiles hold costs but, here, few accuracies).

A candidate with a missing input is reported as incomplete with the exact missing field, never
filled with a guess. A QoS rule that cannot be checked (for example the energy rule when the
profile has no offload energy) is reported as unchecked on every candidate.
"""
from __future__ import annotations

import math

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Union

from hi_runtime.equations import energy_mj, expected_energy_mj, expected_latency_ms
from measurements.profiles import Cited, DeviceProfile, ModelCosts, ProfileError

HALF_OFFLOAD = "half-offload"
STRATEGY_ON_DEVICE = "on-device"
STRATEGY_REMOTE = "remote"
STRATEGY_HI = "hi"
STRATEGY_EE_HI = "ee-hi"
OBJECTIVES = ("latency", "energy")

Limit = Union[None, float, str]


# --- QoS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QoS:
    """Requirements. Latency and energy limits are a number (ms, mJ), ``"half-offload"`` (the
    paper's rule) or ``None`` (no limit)."""

    min_accuracy: float | None = None
    max_latency: Limit = HALF_OFFLOAD
    max_energy: Limit = HALF_OFFLOAD

    def __post_init__(self) -> None:
        if self.min_accuracy is not None and not 0.0 <= self.min_accuracy <= 1.0:
            raise ValueError(f"accuracy target must be in [0, 1] (or a percentage), got {self.min_accuracy}")
        for name in ("max_latency", "max_energy"):
            value = getattr(self, name)
            if isinstance(value, str) and value != HALF_OFFLOAD:
                raise ValueError(f"{name} must be a number, {HALF_OFFLOAD!r} or none, got {value!r}")
            if isinstance(value, (int, float)) and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def describe(self) -> str:
        def limit(value: Limit, unit: str) -> str:
            if value is None:
                return "none"
            if value == HALF_OFFLOAD:
                return "<= half of offloading every sample"
            return f"<= {value:g} {unit}"

        acc = "none" if self.min_accuracy is None else f">= {100 * self.min_accuracy:.1f}%"
        return f"accuracy {acc}; latency {limit(self.max_latency, 'ms')}; energy {limit(self.max_energy, 'mJ')}"


def _parse_limit(text: str, what: str) -> Limit:
    value = text.strip().lower()
    if value in ("none", "off", "no", ""):
        return None
    if value in ("half", HALF_OFFLOAD, "half-offload", "paper"):
        return HALF_OFFLOAD
    try:
        return float(value.removesuffix("ms").removesuffix("mj"))
    except ValueError:
        raise ValueError(f"{what} limit {text!r} is not a number, 'half-offload' or 'none'") from None


def parse_qos(text: str) -> QoS:
    """Parse ``accuracy=0.9,latency=half-offload,energy=none``. Accuracy may be a fraction or a
    percentage (``90`` or ``90%``). Unspecified latency/energy rules default to the paper's
    half-offload rule."""
    fields: dict = {}
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        if "=" not in part:
            raise ValueError(f"QoS item {part!r} needs key=value (keys: accuracy, latency, energy)")
        key, value = (s.strip() for s in part.split("=", 1))
        key = key.lower()
        if key in ("accuracy", "acc", "min_accuracy"):
            number = float(value.rstrip("%"))
            fields["min_accuracy"] = number / 100.0 if (value.endswith("%") or number > 1.0) else number
        elif key in ("latency", "max_latency"):
            fields["max_latency"] = _parse_limit(value, "latency")
        elif key in ("energy", "max_energy"):
            fields["max_energy"] = _parse_limit(value, "energy")
        else:
            raise ValueError(f"unknown QoS key {key!r}; use accuracy, latency, energy")
    return QoS(**fields)


# --- run statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HIPoint:
    """The decider's operating point on one model, as measured: what HI achieves on it."""

    hi_accuracy: float
    offload_fraction: float
    source: str


@dataclass(frozen=True)
class EEPoint:
    """One EE-HI threshold: where samples leave the network and what the system achieves.

    ``exit_fractions`` maps exit index to the fraction of samples whose local work ended there; index
    ``k < len(profile exits)`` is early exit ``k``, index ``len(exits)`` is the full model."""

    threshold: float
    exit_fractions: dict
    offload_fraction: float
    accuracy: float
    source: str


@dataclass
class ModelStats:
    local_accuracy: float | None = None
    server_accuracy: float | None = None
    hi: HIPoint | None = None
    ee: list = field(default_factory=list)
    source: str = ""


def format_threshold(t: float) -> str:
    """An exit threshold as printed: ``inf`` is an exit that never lets a sample out."""
    return "never" if math.isinf(t) else f"{t:g}"


def model_key(logged: str | None) -> str | None:
    """The profile's name for the model a log names: hi-agent logs the file (``resnet8_int8.tflite``,
    ``models/cifar10/server.onnx``) while profiles key models by name (``resnet8``), so drop the folder,
    the extension and a trailing ``_int8``/``_float`` precision tag."""
    if not logged:
        return logged
    name = logged.replace("\\", "/").rsplit("/", 1)[-1]
    for ext in (".tflite", ".onnx", ".keras", ".json", ".h5"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    for tag in ("_int8", "_float", "_fp32", "_f32"):
        if name.endswith(tag):
            name = name[: -len(tag)]
            break
    return name


@dataclass
class RunStats:
    """Measured statistics per model name (``resnet8``...), independent of the device they came from:
    accuracy does not depend on which board runs the same INT8 model."""

    models: dict = field(default_factory=dict)

    def for_model(self, name: str) -> ModelStats:
        return self.models.setdefault(name, ModelStats())

    @classmethod
    def from_runs(cls, runs: Iterable, model_override: str | None = None) -> RunStats:
        """Collect statistics from ``(RunLog, RunMetrics)`` pairs. HI runs give the HI point, EE-HI
        runs (one per threshold, ``ee_threshold`` in the log header) give sweep points, and any run
        with local answers gives the local model's accuracy."""
        stats = cls()
        for log, metrics in runs:
            model = model_override or model_key(log.model)
            if not model:
                raise ValueError(
                    f"run log {log.path or ''} names no model (header 'model'); pass the model name explicitly"
                )
            entry = stats.for_model(model)
            label = f"measured: {log.path.name if log.path else 'run'}"
            entry.source = ", ".join(filter(None, [entry.source, label]))
            # An EE-HI run's local answers come from whichever exit each sample took, so they are the
            # model's on-device accuracy only when no sample could leave early (threshold "never").
            early = metrics.strategy == STRATEGY_EE_HI and log.header.get("ee_threshold") is not None
            if metrics.local_accuracy is not None and entry.local_accuracy is None and not early:
                entry.local_accuracy = metrics.local_accuracy
            if metrics.server_accuracy_offloaded is not None and metrics.strategy == STRATEGY_REMOTE:
                entry.server_accuracy = metrics.server_accuracy_offloaded
            strategy = metrics.strategy
            if strategy == STRATEGY_HI and metrics.accuracy is not None:
                entry.hi = HIPoint(metrics.accuracy, metrics.offload_fraction, label)
            elif strategy == STRATEGY_EE_HI and metrics.accuracy is not None:
                threshold = log.header.get("ee_threshold", log.header.get("threshold"))
                if threshold is None and log.header.get("ee_thresholds"):
                    threshold = math.inf  # hi-agent logs a first exit that never exits as null
                if threshold is None:
                    raise ValueError(
                        f"EE-HI log {log.path or ''} has no 'ee_threshold' in its header; "
                        "the sweep needs one log per threshold"
                    )
                entry.ee.append(EEPoint(float(threshold), dict(metrics.exit_fractions),
                                        metrics.offload_fraction, metrics.accuracy, label))
        for entry in stats.models.values():
            entry.ee.sort(key=lambda p: p.threshold)
        return stats


# --- candidates --------------------------------------------------------------------------------


@dataclass
class Candidate:
    device: str
    strategy: str
    model: str | None = None
    link: str | None = None
    threshold: float | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    energy_mj: float | None = None
    energy_modeled: bool = False
    inputs: list = field(default_factory=list)  # where each input came from
    missing: list = field(default_factory=list)  # inputs the profile/stats lack
    verdict: str = ""  # "ok", "fails: ...", "incomplete: ..."
    unchecked: list = field(default_factory=list)

    @property
    def label(self) -> str:
        parts = [self.strategy]
        if self.model:
            parts.append(self.model)
        if self.strategy in (STRATEGY_REMOTE, STRATEGY_HI, STRATEGY_EE_HI) and self.link:
            parts.append(f"via {self.link}")
        if self.threshold is not None:
            parts.append(f"threshold {format_threshold(self.threshold)}")
        return " ".join(parts)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def feasible(self) -> bool:
        return self.verdict == "ok"


def _take(c: Candidate, cited: Cited, path: str) -> float | None:
    if cited.known:
        c.inputs.append(f"{path} = {cited.value:g} ({cited.cite})")
        return cited.value
    c.missing.append(path)
    return None


def _modeled_energy(c: Candidate, profile: DeviceProfile, cited: Cited, time_ms: float | None, path: str,
                    power: Cited) -> float | None:
    """Energy from the profile, or power x time labeled modeled when only power is known."""
    if cited.known:
        c.inputs.append(f"{path} = {cited.value:g} mJ ({cited.cite})")
        return cited.value
    if power.known and time_ms is not None:
        c.energy_modeled = True
        c.inputs.append(f"{path} modeled = {power.value:g} W x {time_ms:g} ms ({power.cite})")
        return energy_mj(power.value, time_ms)
    c.missing.append(path)
    return None


@dataclass(frozen=True)
class OffloadCost:
    latency_ms: float | None
    energy_mj: float | None
    notes: tuple


def offload_cost(profile: DeviceProfile, link: str, dataset: str | None) -> OffloadCost:
    """Cost of offloading one sample: link round trip plus server run time (the device waits for it;
    the paper's offload latency was measured against a server that answers at once)."""
    probe = Candidate(profile.id, STRATEGY_REMOTE, link=link)
    costs = profile.link(link)
    latency = _take(probe, costs.latency_ms, f"links.{link}.latency_ms")
    server = profile.server_for(dataset)
    notes = []
    if latency is not None:
        if server is not None and server.latency_ms.known:
            latency += server.latency_ms.value
            notes.append(f"+ server {server.name} {server.latency_ms.value:g} ms ({server.latency_ms.cite})")
        else:
            notes.append("server run time not in profile: offload latency is the link round trip only")
    energy = _modeled_energy(probe, profile, costs.energy_mj, latency, f"links.{link}.energy_mj",
                             profile.power.offload_w)
    if probe.energy_modeled:
        notes.append("offload energy modeled as offload power x offload latency")
    return OffloadCost(latency, energy, tuple(notes + probe.inputs))


def _server_accuracy(profile: DeviceProfile, model: ModelCosts, stats: ModelStats | None,
                     c: Candidate) -> float | None:
    server = profile.server_for(model.dataset)
    if server is not None and server.accuracy.known:
        return _take(c, server.accuracy, f"servers.{server.name}.accuracy")
    if stats is not None and stats.server_accuracy is not None:
        c.inputs.append(f"server accuracy = {stats.server_accuracy:.4f} ({stats.source})")
        return stats.server_accuracy
    c.missing.append(f"servers.<{model.dataset or 'dataset'}>.accuracy")
    return None


def candidates_for(profile: DeviceProfile, stats: RunStats | None = None,
                   links: Sequence[str] | None = None) -> list[Candidate]:
    """Every strategy the profile (and the run statistics) can describe, with its predicted
    accuracy, latency (Eq. 3) and energy (Eq. 4)."""
    stats = stats or RunStats()
    link_names = list(links) if links else [profile.default_link if profile.default_link in profile.links
                                             else next(iter(profile.links), None)]
    out: list[Candidate] = []
    remote_seen: set = set()
    for name, model in profile.models.items():
        mstats = stats.models.get(name)
        # On-device ------------------------------------------------------------------------------
        c = Candidate(profile.id, STRATEGY_ON_DEVICE, model=name)
        if model.accuracy.known:
            c.accuracy = _take(c, model.accuracy, f"models.{name}.accuracy")
        elif mstats is not None and mstats.local_accuracy is not None:
            c.accuracy = mstats.local_accuracy
            c.inputs.append(f"accuracy = {c.accuracy:.4f} ({mstats.source})")
        else:
            c.missing.append(f"models.{name}.accuracy")
        c.latency_ms = _take(c, model.latency_ms, f"models.{name}.latency_ms")
        c.energy_mj = _modeled_energy(c, profile, model.energy_mj, c.latency_ms, f"models.{name}.energy_mj",
                                      profile.power.compute_w)
        out.append(c)

        for link in link_names:
            if link is None:
                continue
            cost = offload_cost(profile, link, model.dataset)
            # Remote only: every sample offloaded (one candidate per link and dataset) -----------
            if (link, model.dataset) not in remote_seen:
                remote_seen.add((link, model.dataset))
                r = Candidate(profile.id, STRATEGY_REMOTE, link=link)
                r.accuracy = _server_accuracy(profile, model, mstats, r)
                r.latency_ms, r.energy_mj = cost.latency_ms, cost.energy_mj
                r.inputs.extend(cost.notes)
                if cost.latency_ms is None:
                    r.missing.append(f"links.{link}.latency_ms")
                if cost.energy_mj is None:
                    r.missing.append(f"links.{link}.energy_mj")
                r.energy_modeled = any("modeled" in n for n in cost.notes)
                out.append(r)

            # HI -----------------------------------------------------------------------------------
            h = Candidate(profile.id, STRATEGY_HI, model=name, link=link)
            point = _hi_point(model, mstats, h)
            local_ms = _take(h, model.latency_ms, f"models.{name}.latency_ms")
            dec_ms = model.decider.latency_ms.value or 0.0
            if model.decider.latency_ms.known:
                h.inputs.append(f"decider latency {dec_ms:g} ms ({model.decider.latency_ms.cite})")
            else:
                h.inputs.append("decider latency not in profile: counted as 0 ms")
            local_mj = _modeled_energy(h, profile, model.energy_mj, local_ms, f"models.{name}.energy_mj",
                                       profile.power.compute_w)
            h.inputs.extend(cost.notes)
            if point is not None:
                h.accuracy = point.hi_accuracy
                if cost.latency_ms is None:
                    h.missing.append(f"links.{link}.latency_ms")
                elif local_ms is not None:
                    h.latency_ms = expected_latency_ms(local_ms + dec_ms, cost.latency_ms, point.offload_fraction)
                dec_mj = model.decider.energy_mj.value or 0.0
                if cost.energy_mj is None:
                    h.missing.append(f"links.{link}.energy_mj")
                elif local_mj is not None:
                    h.energy_mj = expected_energy_mj(local_mj + dec_mj, cost.energy_mj, point.offload_fraction)
                h.energy_modeled = h.energy_modeled or any("modeled" in n for n in cost.notes)
            out.append(h)

            # EE-HI: one candidate per threshold --------------------------------------------------
            if mstats is not None and mstats.ee:
                for ee in mstats.ee:
                    out.append(_ee_candidate(profile, model, ee, link, cost))
    return out


def _hi_point(model: ModelCosts, mstats: ModelStats | None, c: Candidate) -> HIPoint | None:
    dec = model.decider
    if dec.hi_accuracy.known and dec.offload_fraction.known:
        _take(c, dec.hi_accuracy, f"models.{model.name}.decider.hi_accuracy")
        _take(c, dec.offload_fraction, f"models.{model.name}.decider.offload_fraction")
        return HIPoint(dec.hi_accuracy.value, dec.offload_fraction.value, dec.hi_accuracy.cite)
    if mstats is not None and mstats.hi is not None:
        c.inputs.append(
            f"HI accuracy {mstats.hi.hi_accuracy:.4f}, offload fraction {mstats.hi.offload_fraction:.4f} "
            f"({mstats.hi.source})"
        )
        return mstats.hi
    c.missing.append(f"models.{model.name}.decider.hi_accuracy/offload_fraction (or a measured HI run)")
    return None


def _ee_candidate(profile: DeviceProfile, model: ModelCosts, ee: EEPoint, link: str, cost: OffloadCost) -> Candidate:
    c = Candidate(profile.id, STRATEGY_EE_HI, model=model.name, link=link, threshold=ee.threshold)
    c.accuracy = ee.accuracy
    c.inputs.append(f"EE sweep point threshold {format_threshold(ee.threshold)} ({ee.source})")
    c.inputs.extend(cost.notes)
    local_ms: float | None = 0.0  # latency and energy are known or missing independently
    local_mj: float | None = 0.0
    for index, fraction in sorted(ee.exit_fractions.items()):
        index = int(index)
        if index < len(model.exits):
            lat, en = model.exits[index].latency_ms, model.exits[index].energy_mj
            path = f"models.{model.name}.exits[{index}]"
        elif index == len(model.exits):
            lat, en = model.latency_ms, model.energy_mj
            path = f"models.{model.name}"
        else:
            c.missing.append(f"models.{model.name}.exits[{index}] (the sweep uses exit {index})")
            local_ms = local_mj = None
            continue
        ms = _take(c, lat, f"{path}.latency_ms")
        mj = _modeled_energy(c, profile, en, ms, f"{path}.energy_mj", profile.power.compute_w)
        local_ms = None if ms is None or local_ms is None else local_ms + fraction * ms
        local_mj = None if mj is None or local_mj is None else local_mj + fraction * mj
    dec_ms = model.decider.latency_ms.value or 0.0
    dec_mj = model.decider.energy_mj.value or 0.0
    if cost.latency_ms is None:
        c.missing.append(f"links.{link}.latency_ms")
    elif local_ms is not None:
        c.latency_ms = expected_latency_ms(local_ms + dec_ms, cost.latency_ms, ee.offload_fraction)
    if cost.energy_mj is None or local_mj is None:
        c.missing.append(f"links.{link}.energy_mj")
    else:
        c.energy_mj = expected_energy_mj(local_mj + dec_mj, cost.energy_mj, ee.offload_fraction)
        c.energy_modeled = c.energy_modeled or any("modeled" in n for n in cost.notes)
    return c


# --- QoS evaluation ----------------------------------------------------------------------------


def _limit_value(limit: Limit, offload_value: float | None) -> tuple[float | None, bool]:
    """Resolve a limit to a number; the bool says whether the rule can be checked at all."""
    if limit is None:
        return None, True
    if limit == HALF_OFFLOAD:
        return (None, False) if offload_value is None else (0.5 * offload_value, True)
    return float(limit), True


def evaluate(candidates: Sequence[Candidate], profile: DeviceProfile, qos: QoS,
             link: str | None = None) -> None:
    """Set ``verdict`` and ``unchecked`` on each candidate (in place).

    The half-offload rules compare against offloading every sample over the candidate's own link
    (or ``link``/the default link for on-device candidates)."""
    for c in candidates:
        c.unchecked = []
        chosen_link = c.link or link or profile.default_link
        offload = None
        if chosen_link in profile.links:
            dataset = profile.models[c.model].dataset if c.model in profile.models else None
            offload = offload_cost(profile, chosen_link, dataset)
        max_ms, ms_ok = _limit_value(qos.max_latency, offload.latency_ms if offload else None)
        max_mj, mj_ok = _limit_value(qos.max_energy, offload.energy_mj if offload else None)
        if not ms_ok:
            c.unchecked.append(f"latency rule (no offload latency for link {chosen_link!r})")
        if not mj_ok:
            c.unchecked.append(f"energy rule (no offload energy for link {chosen_link!r})")
        needed = []
        if qos.min_accuracy is not None and c.accuracy is None:
            needed.append("accuracy")
        if max_ms is not None and c.latency_ms is None:
            needed.append("latency")
        if max_mj is not None and c.energy_mj is None:
            needed.append("energy")
        if c.latency_ms is None and c.energy_mj is None and not needed:
            needed.append("latency and energy")
        if needed:
            c.verdict = f"incomplete: {', '.join(needed)} unknown (missing {', '.join(dict.fromkeys(c.missing)) or 'inputs'})"
            continue
        fails = []
        if qos.min_accuracy is not None and c.accuracy < qos.min_accuracy - 1e-12:
            fails.append(f"accuracy {100 * c.accuracy:.2f}% < {100 * qos.min_accuracy:.2f}%")
        if c.strategy != STRATEGY_REMOTE:
            if max_ms is not None and c.latency_ms > max_ms + 1e-12:
                fails.append(f"latency {c.latency_ms:.3f} ms > {max_ms:.3f} ms")
            if max_mj is not None and c.energy_mj > max_mj + 1e-12:
                fails.append(f"energy {c.energy_mj:.4f} mJ > {max_mj:.4f} mJ")
        c.verdict = "ok" if not fails else "fails: " + "; ".join(fails)


@dataclass
class Plan:
    device: str
    qos: QoS
    objective: str
    best: Candidate | None
    candidates: list
    reason: str


def _key(objective: str):
    def key(c: Candidate):
        primary = c.latency_ms if objective == "latency" else c.energy_mj
        secondary = c.energy_mj if objective == "latency" else c.latency_ms
        inf = float("inf")
        return (inf if primary is None else primary, -(c.accuracy or 0.0), inf if secondary is None else secondary)

    return key


def plan(profile: DeviceProfile, qos: QoS, stats: RunStats | None = None, objective: str = "latency",
         links: Sequence[str] | None = None, model: str | None = None) -> Plan:
    """Recommend a configuration for ``profile`` under ``qos``.

    Remote-only is always the fallback the half-offload rules are measured against: it is chosen only
    when no on-device configuration passes and it meets the accuracy target itself."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if links:
        for name in links:
            profile.link(name)  # raises with the list of known links
    candidates = candidates_for(profile, stats, links)
    if model is not None:
        if model not in profile.models:
            raise ProfileError(f"profile {profile.id!r} has no model {model!r}; it has {sorted(profile.models)}")
        candidates = [c for c in candidates if c.model in (None, model)]
    evaluate(candidates, profile, qos)
    local = [c for c in candidates if c.feasible and c.strategy != STRATEGY_REMOTE]
    remote = [c for c in candidates if c.feasible and c.strategy == STRATEGY_REMOTE]
    ranked = sorted(local, key=_key(objective))
    if ranked:
        best = ranked[0]
        runner = ranked[1] if len(ranked) > 1 else None
        metric = "latency" if objective == "latency" else "energy"
        value = best.latency_ms if objective == "latency" else best.energy_mj
        reason = (f"{best.label} meets {qos.describe()} with the lowest {metric} "
                  f"({value:.4g} {'ms' if objective == 'latency' else 'mJ'})")
        if runner is not None:
            other = runner.latency_ms if objective == "latency" else runner.energy_mj
            reason += f"; next best: {runner.label} ({other:.4g})"
    elif remote:
        best = sorted(remote, key=_key(objective))[0]
        reason = (f"no on-device, HI or EE-HI configuration meets {qos.describe()}; "
                  f"offload every sample ({best.label})")
    else:
        best = None
        incomplete = [c for c in candidates if c.verdict.startswith("incomplete")]
        reason = f"no configuration meets {qos.describe()}"
        if incomplete:
            reason += f"; {len(incomplete)} configuration(s) could not be evaluated for missing inputs"
    return Plan(profile.id, qos, objective, best, candidates, reason)


# --- the paper's tables ------------------------------------------------------------------------


@dataclass
class TableRow:
    device: str
    target: float
    best: Candidate | None
    reason: str


def best_strategy_table(profiles: Sequence[DeviceProfile], targets: Sequence[float],
                        stats: RunStats | None = None, objective: str = "latency",
                        base_qos: QoS | None = None) -> list[TableRow]:
    """Table 5 style: the best configuration per device and accuracy target."""
    base_qos = base_qos or QoS()
    rows = []
    for profile in profiles:
        for target in targets:
            qos = QoS(min_accuracy=target, max_latency=base_qos.max_latency, max_energy=base_qos.max_energy)
            p = plan(profile, qos, stats, objective)
            rows.append(TableRow(profile.id, target, p.best, p.reason))
    return rows


def ee_threshold_table(profiles: Sequence[DeviceProfile], targets: Sequence[float], stats: RunStats,
                       objective: str = "latency", base_qos: QoS | None = None) -> list[dict]:
    """Table 6 style: for each device, EE model and accuracy target, the EE-HI threshold that meets
    the QoS at the lowest cost (``None`` when no threshold does)."""
    base_qos = base_qos or QoS()
    rows = []
    for profile in profiles:
        for target in targets:
            qos = QoS(min_accuracy=target, max_latency=base_qos.max_latency, max_energy=base_qos.max_energy)
            candidates = [c for c in candidates_for(profile, stats) if c.strategy == STRATEGY_EE_HI]
            evaluate(candidates, profile, qos)
            for model in sorted({c.model for c in candidates}):
                mine = [c for c in candidates if c.model == model]
                ok = sorted((c for c in mine if c.feasible), key=_key(objective))
                rows.append({
                    "device": profile.id,
                    "model": model,
                    "target": target,
                    "threshold": ok[0].threshold if ok else None,
                    "candidate": ok[0] if ok else None,
                    "evaluated": len(mine),
                    "incomplete": sum(1 for c in mine if c.verdict.startswith("incomplete")),
                })
    return rows


def format_candidates(candidates: Sequence[Candidate]) -> str:
    header = f"{'configuration':<34} {'accuracy':>9} {'latency ms':>11} {'energy mJ':>11}  verdict"
    lines = [header, "-" * len(header)]
    for c in candidates:
        acc = "?" if c.accuracy is None else f"{100 * c.accuracy:.2f}%"
        lat = "?" if c.latency_ms is None else f"{c.latency_ms:.3f}"
        en = "?" if c.energy_mj is None else f"{c.energy_mj:.4f}" + ("*" if c.energy_modeled else "")
        lines.append(f"{c.label:<34} {acc:>9} {lat:>11} {en:>11}  {c.verdict}")
    if any(c.energy_modeled for c in candidates):
        lines.append("* energy modeled (profile power x time), not measured")
    return "\n".join(lines)


def format_plan(p: Plan, verbose: bool = False) -> str:
    lines = [f"device: {p.device}", f"QoS: {p.qos.describe()}; objective: lowest {p.objective}"]
    if p.best is not None:
        b = p.best
        acc = "?" if b.accuracy is None else f"{100 * b.accuracy:.2f}%"
        lat = "?" if b.latency_ms is None else f"{b.latency_ms:.3f} ms"
        en = "?" if b.energy_mj is None else f"{b.energy_mj:.4f} mJ" + (" (modeled)" if b.energy_modeled else "")
        lines += [f"recommended: {b.label}", f"  accuracy {acc}, latency {lat}, energy {en}"]
        if b.unchecked:
            lines.append("  not checked: " + "; ".join(b.unchecked))
    else:
        lines.append("recommended: none")
    lines.append(f"why: {p.reason}")
    lines += ["", format_candidates(p.candidates)]
    if verbose:
        for c in p.candidates:
            lines.append(f"\n{c.label}:")
            lines += [f"  input: {i}" for i in c.inputs]
            lines += [f"  missing: {m}" for m in dict.fromkeys(c.missing)]
    return "\n".join(lines)
