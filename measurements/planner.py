"""Strategy comparison and QoS planner: which of on-device, remote, HI and EE-HI suits a device.

The paper's procedure (Sec. 3.3, ``hi_runtime.qos``): fix one requirement (accuracy at least a
target; latency or energy at most half of offloading one image) and, among the configurations that
meet it, pick the one with the largest gains in the other two. Concretely, with ``objective="auto"``:

* accuracy fixed: the lowest latency wins, then the lowest energy (``objective="energy"`` swaps them);
* latency or energy fixed: the highest accuracy wins, then the lower other cost.

Offloading every sample (remote) competes like any configuration; under a half-offload rule it can
never pass (its cost *is* the offload cost), so it is then the fallback: recommended when nothing
else passes and it meets the accuracy target itself.

Inputs come from two places, and every candidate records which:

* the device profile (``hi_runtime.device_profiles``): latency/energy/accuracy of each model, exit, decider
  and link (per dataset where the paper's Table 3 differs per dataset);
* run statistics (``RunStats``), measured by our own runs (``hi-bench metrics`` on hi-agent logs):
  model accuracy, the decider's operating point (HI accuracy, offload fraction) and EE-HI points.
  They fill what a profile lacks; a profile value marked as an assumption yields to a measurement.

A candidate with a missing input is reported as incomplete with the exact missing field, never
filled with a guess. A QoS rule that cannot be checked (for example the energy rule when the
profile has no offload energy) is reported as unchecked on every candidate.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hi_runtime.equations import energy_mj, expected_energy_mj, expected_latency_ms
from hi_runtime.device_profiles import Cited, DeviceProfile, ModelCosts, ProfileError
from hi_runtime.qos import HALF_OFFLOAD, Limit, QoS, QoSError, parse_qos, parse_targets  # noqa: F401 (re-exported)
from measurements.logs import model_key  # noqa: F401 (re-exported: the planner maps logged files to profile names)

STRATEGY_ON_DEVICE = "on-device"
STRATEGY_REMOTE = "remote"
STRATEGY_HI = "hi"
STRATEGY_EE_HI = "ee-hi"
OBJECTIVES = ("auto", "accuracy", "latency", "energy")
UNLOGGED = math.nan  # an EE-HI run whose log does not say its exit threshold


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
    """An exit threshold as printed: ``inf`` is an exit that never lets a sample out, NaN one whose log
    did not record it."""
    if math.isnan(t):
        return "not logged"
    return "never" if math.isinf(t) else f"{t:g}"


@dataclass
class RunStats:
    """Measured statistics per model name (``resnet8``...), independent of the device they came from:
    accuracy does not depend on which board runs the same INT8 model. ``server_accuracy`` is the
    server's accuracy from remote runs, whichever local model their log names (a remote run has none)."""

    models: dict = field(default_factory=dict)
    server_accuracy: float | None = None
    server_source: str = ""

    def for_model(self, name: str) -> ModelStats:
        return self.models.setdefault(name, ModelStats())

    @classmethod
    def from_runs(cls, runs: Iterable, model_override: str | None = None) -> RunStats:
        """Collect statistics from ``(RunLog, RunMetrics)`` pairs. HI runs give the HI point, EE-HI
        runs give operating points (one per logged ``ee_threshold``; a log without it is still one
        point, labeled "threshold not logged"), remote runs the server's accuracy, and any run with
        local answers the local model's accuracy. Every log hi-agent writes is accepted."""
        stats = cls()
        for log, metrics in runs:
            name = log.path.name if log.path else "run"
            label = f"measured: {name}"
            strategy = metrics.strategy
            if strategy == STRATEGY_REMOTE and metrics.server_accuracy_offloaded is not None:
                stats.server_accuracy = metrics.server_accuracy_offloaded
                stats.server_source = label
            model = model_override or model_key(log.model)
            if not model:
                if strategy == STRATEGY_REMOTE:
                    continue  # offloading every sample involves no local model
                raise ValueError(f"run log {log.path or name} names no model (its header has no 'model'); "
                                 "pass --run-model NAME (the profile's model name, e.g. resnet8)")
            entry = stats.for_model(model)
            entry.source = ", ".join(filter(None, [entry.source, label]))
            if strategy == STRATEGY_REMOTE and metrics.server_accuracy_offloaded is not None:
                entry.server_accuracy = metrics.server_accuracy_offloaded
            # An EE-HI run's local answers come from whichever exit each sample took, so they are the
            # model's on-device accuracy only when the log says no sample could leave early.
            thresholds = log.header.get("ee_thresholds")
            never_exits = bool(thresholds) and all(t is None for t in thresholds)
            if metrics.local_accuracy is not None and entry.local_accuracy is None and \
                    (strategy != STRATEGY_EE_HI or never_exits):
                entry.local_accuracy = metrics.local_accuracy
            if strategy == STRATEGY_HI and metrics.accuracy is not None:
                entry.hi = HIPoint(metrics.accuracy, metrics.offload_fraction, label)
            elif strategy == STRATEGY_EE_HI and metrics.accuracy is not None:
                threshold = log.header.get("ee_threshold", log.header.get("threshold"))
                if threshold is None:
                    # hi-agent logs a first exit that never exits as null; a log without any threshold
                    # field (e.g. hi-agent demo's) is one operating point whose threshold is unknown
                    threshold = math.inf if thresholds else UNLOGGED
                entry.ee.append(EEPoint(float(threshold), dict(metrics.exit_fractions),
                                        metrics.offload_fraction, metrics.accuracy, label))
        for entry in stats.models.values():
            entry.ee.sort(key=lambda p: (math.isnan(p.threshold), 0.0 if math.isnan(p.threshold) else p.threshold))
        return stats


# --- candidates --------------------------------------------------------------------------------


@dataclass
class Candidate:
    device: str
    strategy: str
    model: str | None = None
    link: str | None = None
    dataset: str | None = None
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
    missing: tuple = ()  # the profile paths of the unknown costs


def offload_cost(profile: DeviceProfile, link: str, dataset: str | None) -> OffloadCost:
    """Cost of offloading one sample of ``dataset`` over ``link``: the link's cost for that dataset,
    plus the server's run time when the profile lists it separately (the device waits for it; the
    paper's Table 3 already includes it, so its server entries leave it null)."""
    probe = Candidate(profile.id, STRATEGY_REMOTE, link=link)
    base = profile.link(link)
    costs = base.for_dataset(dataset)
    at = f"links.{link}" + (f".datasets.{dataset}" if costs is not base else "")
    latency = _take(probe, costs.latency_ms, f"{at}.latency_ms")
    server = profile.server_for(dataset)
    notes = []
    if latency is not None:
        if server is not None and server.latency_ms.known:
            latency += server.latency_ms.value
            notes.append(f"+ server {server.name} {server.latency_ms.value:g} ms ({server.latency_ms.cite})")
        elif server is not None and server.latency_ms.cite.startswith("not added"):
            notes.append(f"server {server.name}: {server.latency_ms.cite}")
        else:
            notes.append("server run time not in profile: offload latency is the link round trip only")
    energy = _modeled_energy(probe, profile, costs.energy_mj, latency, f"{at}.energy_mj",
                             profile.power.offload_w)
    if probe.energy_modeled:
        notes.append("offload energy modeled as offload power x offload latency")
    return OffloadCost(latency, energy, tuple(notes + probe.inputs), tuple(probe.missing))


def _server_accuracy(profile: DeviceProfile, model: ModelCosts, stats: RunStats, mstats: ModelStats | None,
                     c: Candidate) -> float | None:
    server = profile.server_for(model.dataset)
    if server is not None and server.accuracy.known:
        return _take(c, server.accuracy, f"servers.{server.name}.accuracy")
    if mstats is not None and mstats.server_accuracy is not None:
        c.inputs.append(f"server accuracy = {mstats.server_accuracy:.4f} ({mstats.source})")
        return mstats.server_accuracy
    if stats.server_accuracy is not None:
        c.inputs.append(f"server accuracy = {stats.server_accuracy:.4f} ({stats.server_source})")
        return stats.server_accuracy
    c.missing.append(f"servers.<{model.dataset or 'dataset'}>.accuracy")
    return None


def datasets_of(profile: DeviceProfile) -> list[str | None]:
    """The datasets the profile's models belong to, in the order they first appear."""
    return list(dict.fromkeys(m.dataset for m in profile.models.values()))


def is_assumption(cited: Cited) -> bool:
    """A profile value derived under a stated assumption (its cite says "assumption"): a measured
    value from the user's own runs takes its place."""
    return cited.known and "assumption" in cited.cite.lower()


def candidates_for(profile: DeviceProfile, stats: RunStats | None = None,
                   links: Sequence[str] | None = None, dataset: str | None = None) -> list[Candidate]:
    """Every strategy the profile (and the run statistics) can describe, with its predicted
    accuracy, latency (Eq. 3) and energy (Eq. 4); only models of ``dataset`` when it is given."""
    stats = stats or RunStats()
    link_names = list(links) if links else [profile.default_link if profile.default_link in profile.links
                                             else next(iter(profile.links), None)]
    out: list[Candidate] = []
    remote_seen: set = set()
    for name, model in profile.models.items():
        if dataset is not None and model.dataset != dataset:
            continue
        mstats = stats.models.get(name)
        # On-device ------------------------------------------------------------------------------
        c = Candidate(profile.id, STRATEGY_ON_DEVICE, model=name, dataset=model.dataset)
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
                r = Candidate(profile.id, STRATEGY_REMOTE, link=link, dataset=model.dataset)
                r.accuracy = _server_accuracy(profile, model, stats, mstats, r)
                r.latency_ms, r.energy_mj = cost.latency_ms, cost.energy_mj
                r.inputs.extend(cost.notes)
                r.missing.extend(cost.missing)
                r.energy_modeled = any("modeled" in n for n in cost.notes)
                out.append(r)

            # HI -----------------------------------------------------------------------------------
            h = Candidate(profile.id, STRATEGY_HI, model=name, link=link, dataset=model.dataset)
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
            h.missing.extend(cost.missing)
            if point is not None:
                h.accuracy = point.hi_accuracy
                if cost.latency_ms is not None and local_ms is not None:
                    h.latency_ms = expected_latency_ms(local_ms + dec_ms, cost.latency_ms, point.offload_fraction)
                dec_mj = model.decider.energy_mj.value or 0.0
                if cost.energy_mj is not None and local_mj is not None:
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
    measured = mstats.hi if mstats is not None else None
    assumed = is_assumption(dec.hi_accuracy) or is_assumption(dec.offload_fraction)
    if dec.hi_accuracy.known and dec.offload_fraction.known and not (assumed and measured is not None):
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
    c = Candidate(profile.id, STRATEGY_EE_HI, model=model.name, link=link, threshold=ee.threshold,
                  dataset=model.dataset)
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
    c.missing.extend(cost.missing)
    if cost.latency_ms is not None and local_ms is not None:
        c.latency_ms = expected_latency_ms(local_ms + dec_ms, cost.latency_ms, ee.offload_fraction)
    if cost.energy_mj is not None and local_mj is not None:
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


def _within(value: float | None, limit: Limit) -> bool:
    """A numeric limit kept (the half-offload rule and no limit pass: the fallback is that reference)."""
    return not isinstance(limit, (int, float)) or (value is not None and value <= float(limit) + 1e-12)


def evaluate(candidates: Sequence[Candidate], profile: DeviceProfile, qos: QoS,
             link: str | None = None, objective: str = "auto") -> None:
    """Set ``verdict`` and ``unchecked`` on each candidate (in place).

    The half-offload rules compare against offloading one sample of the candidate's dataset over its
    own link (or ``link``/the default link for on-device candidates). A candidate must also know the
    quantity the ``objective`` ranks by, or it cannot be ranked (incomplete)."""
    objective = resolve_objective(qos, objective)
    for c in candidates:
        c.unchecked = []
        chosen_link = c.link or link or profile.default_link
        offload = None
        if chosen_link in profile.links:
            offload = offload_cost(profile, chosen_link, c.dataset)
        max_ms, ms_ok = _limit_value(qos.max_latency, offload.latency_ms if offload else None)
        max_mj, mj_ok = _limit_value(qos.max_energy, offload.energy_mj if offload else None)
        if not ms_ok:
            c.unchecked.append(f"latency rule (no offload latency for link {chosen_link!r})")
        if not mj_ok:
            c.unchecked.append(f"energy rule (no offload energy for link {chosen_link!r})")
        needed = []
        if (qos.min_accuracy is not None or objective == "accuracy") and c.accuracy is None:
            needed.append("accuracy")
        if (max_ms is not None or objective == "latency") and c.latency_ms is None:
            needed.append("latency")
        if (max_mj is not None or objective == "energy") and c.energy_mj is None:
            needed.append("energy")
        if needed:
            c.verdict = f"incomplete: {', '.join(needed)} unknown (missing {', '.join(dict.fromkeys(c.missing)) or 'inputs'})"
            continue
        fails = []
        if qos.min_accuracy is not None and c.accuracy < qos.min_accuracy - 1e-12:
            fails.append(f"accuracy {100 * c.accuracy:.2f}% < {100 * qos.min_accuracy:.2f}%")
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
    dataset: str | None = None
    notes: list = field(default_factory=list)


def resolve_objective(qos: QoS, objective: str = "auto") -> str:
    """``auto``: the paper's procedure. With an accuracy requirement the cost is what is gained (lowest
    latency, then energy); with only latency or energy fixed, accuracy is (highest accuracy)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if objective != "auto":
        return objective
    if qos.min_accuracy is None and (qos.max_latency is not None or qos.max_energy is not None):
        return "accuracy"
    return "latency"


def _key(objective: str):
    inf = float("inf")

    def v(x: float | None) -> float:
        return inf if x is None else x

    def key(c: Candidate):
        acc = -(c.accuracy if c.accuracy is not None else -inf)
        if objective == "accuracy":
            return (acc, v(c.latency_ms), v(c.energy_mj))
        if objective == "energy":
            return (v(c.energy_mj), v(c.latency_ms), acc)
        return (v(c.latency_ms), v(c.energy_mj), acc)

    return key


def _value(c: Candidate, objective: str) -> str:
    if objective == "accuracy":
        return f"{100 * c.accuracy:.2f}%"
    if objective == "energy":
        return f"{c.energy_mj:.4g} mJ"
    return f"{c.latency_ms:.4g} ms"


BEST_WORD = {"accuracy": "highest accuracy", "latency": "lowest latency", "energy": "lowest energy"}


def plan(profile: DeviceProfile, qos: QoS, stats: RunStats | None = None, objective: str = "auto",
         links: Sequence[str] | None = None, model: str | None = None, dataset: str | None = None) -> Plan:
    """Recommend a configuration for ``profile`` under ``qos`` (see the module docstring).

    One dataset at a time (a device serves one task): ``dataset``, else the dataset of ``model``, else
    the profile's first. Remote competes like any configuration; under a half-offload rule it cannot
    pass, and is then recommended only when nothing else passes and it meets the accuracy target and every
    numeric limit."""
    objective = resolve_objective(qos, objective)
    if links:
        for name in links:
            profile.link(name)  # raises with the list of known links
    notes = []
    if model is not None:
        profile.model(model)  # raises with the list of known models
        dataset = profile.models[model].dataset
    known = datasets_of(profile)
    if dataset is not None and dataset not in known:
        raise ProfileError(f"profile {profile.id!r} has no model for dataset {dataset!r}; its datasets: "
                           f"{', '.join(str(d) for d in known) or 'none'}")
    if dataset is None and known:
        dataset = known[0]
    if len(known) > 1 and dataset == known[0]:
        notes.append(f"dataset {dataset} (the profile also has {', '.join(str(d) for d in known[1:])}: "
                     "choose with --dataset)")
    candidates = candidates_for(profile, stats, links, dataset)
    if model is not None:
        candidates = [c for c in candidates if c.model in (None, model)]
    # one reference offload for every candidate's half-offload rule: the link asked for (the on-device
    # candidates have no link of their own), else the profile's default
    evaluate(candidates, profile, qos, link=links[0] if links else None, objective=objective)
    ranked = sorted((c for c in candidates if c.feasible), key=_key(objective))
    what = qos.describe()
    if ranked:
        best = ranked[0]
        reason = f"{best.label} meets {what} with the {BEST_WORD[objective]} ({_value(best, objective)})"
        if len(ranked) > 1:
            reason += f"; next best: {ranked[1].label} ({_value(ranked[1], objective)})"
        if best.strategy == STRATEGY_ON_DEVICE and qos.min_accuracy is not None:
            notes.append(f"HI is not needed: {best.model} on the device meets the accuracy target by itself, and "
                         "HI with it would only add the decider and the offloads (Eq. 3/4)")
    else:
        half = HALF_OFFLOAD in (qos.max_latency, qos.max_energy)
        remote = [c for c in candidates if c.strategy == STRATEGY_REMOTE and c.accuracy is not None
                  and (qos.min_accuracy is None or c.accuracy >= qos.min_accuracy - 1e-12)
                  and _within(c.latency_ms, qos.max_latency) and _within(c.energy_mj, qos.max_energy)]
        if half and remote:
            best = sorted(remote, key=_key("latency"))[0]
            reason = (f"no on-device, HI or EE-HI configuration meets {what}; offload every sample "
                      f"({best.label}: the cost the half-offload rule is measured against)")
        else:
            best = None
            incomplete = [c for c in candidates if c.verdict.startswith("incomplete")]
            reason = f"no configuration meets {what}"
            if incomplete:
                reason += f"; {len(incomplete)} configuration(s) could not be evaluated for missing inputs"
    return Plan(profile.id, qos, objective, best, candidates, reason, dataset, notes)


# --- the paper's tables ------------------------------------------------------------------------


@dataclass
class TableRow:
    device: str
    target: float
    best: Candidate | None
    reason: str


def best_strategy_table(profiles: Sequence[DeviceProfile], targets: Sequence[float],
                        stats: RunStats | None = None, objective: str = "auto",
                        base_qos: QoS | None = None, dataset: str | None = None) -> list[TableRow]:
    """The best configuration per device and accuracy target (one dataset per device: ``dataset``,
    else the profile's first)."""
    base_qos = base_qos or QoS()
    rows = []
    for profile in profiles:
        ds = dataset if dataset in datasets_of(profile) else None
        for target in targets:
            p = plan(profile, base_qos.with_accuracy(target), stats, objective, dataset=ds)
            rows.append(TableRow(profile.id, target, p.best, p.reason))
    return rows


def ee_threshold_table(profiles: Sequence[DeviceProfile], targets: Sequence[float], stats: RunStats,
                       objective: str = "auto", base_qos: QoS | None = None) -> list[dict]:
    """Table 6 style: for each device, EE model and accuracy target, the EE-HI threshold that meets
    the QoS at the lowest cost (``None`` when no threshold does)."""
    base_qos = base_qos or QoS()
    rows = []
    for profile in profiles:
        for target in targets:
            qos = base_qos.with_accuracy(target)
            objective_here = resolve_objective(qos, objective)
            candidates = [c for c in candidates_for(profile, stats) if c.strategy == STRATEGY_EE_HI]
            evaluate(candidates, profile, qos, objective=objective_here)
            for model in sorted({c.model for c in candidates}):
                mine = [c for c in candidates if c.model == model]
                ok = sorted((c for c in mine if c.feasible), key=_key(objective_here))
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
    width = max([34] + [len(c.label) for c in candidates])
    header = f"{'configuration':<{width}} {'accuracy':>9} {'latency ms':>11} {'energy mJ':>11}  verdict"
    lines = [header, "-" * len(header)]
    for c in candidates:
        acc = "?" if c.accuracy is None else f"{100 * c.accuracy:.2f}%"
        lat = "?" if c.latency_ms is None else f"{c.latency_ms:.3f}"
        en = "?" if c.energy_mj is None else f"{c.energy_mj:.4f}" + ("*" if c.energy_modeled else "")
        lines.append(f"{c.label:<{width}} {acc:>9} {lat:>11} {en:>11}  {c.verdict}")
    if any(c.energy_modeled for c in candidates):
        lines.append("* energy modeled (profile power x time), not measured")
    return "\n".join(lines)


def format_plan(p: Plan, verbose: bool = False) -> str:
    lines = [f"device: {p.device}" + (f", dataset {p.dataset}" if p.dataset else ""),
             f"QoS: {p.qos.describe()}; objective: {BEST_WORD[p.objective]}"]
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
    lines += [f"note: {n}" for n in p.notes]
    lines += ["", format_candidates(p.candidates)]
    if verbose:
        for c in p.candidates:
            lines.append(f"\n{c.label}:")
            lines += [f"  input: {i}" for i in c.inputs]
            lines += [f"  missing: {m}" for m in dict.fromkeys(c.missing)]
    return "\n".join(lines)
