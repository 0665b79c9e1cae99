"""Device profiles: the measured constants of a device, each value with the place it came from.

A profile is one YAML file in ``hi_runtime/profiles/``. Paper profiles hold the numbers published by
Behera et al. (every value cites its table or section, or is ``null`` with a note saying it was not
found); measured profiles are written by ``hi-bench profile`` on a real machine in the same format.

Why every number carries a citation: the planner's recommendations are only as good as its inputs,
and a reproduction is worthless if one cannot tell a published constant from a guess. A value is
written either as a bare number (then the profile's ``source`` is its citation, the form used by
measured profiles) or as ``{value: ..., cite: "...", unit: ..., note: ...}``.

Layout (all sections optional except ``id``)::

    schema: hi-bench-profile/1
    id: rpi4
    name: Raspberry Pi 4 Model B
    kind: paper | measured
    source: "<where the numbers come from>"
    inherit: _paper_models.yaml        # model-level constants shared by all devices (accuracy, F1)
    power:   {compute_w: <cited>, offload_w: <cited>, idle_w: <cited>}
    links:   {wifi: {latency_ms: <cited>, energy_mj: <cited>,
                    datasets: {imagenet: {latency_ms: <cited>, energy_mj: <cited>}}}, ble: {...}}
    default_link: wifi
    models:
      resnet8:
        dataset: cifar10
        latency_ms: <cited>  energy_mj: <cited>  accuracy: <cited>
        decider: {f1: <cited>, offload_fraction: <cited>, hi_accuracy: <cited>,
                  latency_ms: <cited>, energy_mj: <cited>}
        exits: [{latency_ms: <cited>, energy_mj: <cited>, accuracy: <cited>}, ...]
    servers:  {vit_h14: {dataset: cifar10, latency_ms: <cited>, accuracy: <cited>}}
    claims:   {<name>: <cited>}           # relative results quoted by the paper (e.g. savings)
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA = "hi-bench-profile/1"
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
KINDS = ("paper", "measured", "models")


class ProfileError(ValueError):
    """A profile file is missing, malformed, or lacks a value the caller needs."""


@dataclass(frozen=True)
class Cited:
    """A number and where it came from. ``value`` is ``None`` when the source did not give it."""

    value: float | None
    cite: str = ""
    unit: str | None = None
    note: str | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    def to_yaml(self) -> dict:
        out: dict[str, Any] = {"value": self.value, "cite": self.cite}
        if self.unit:
            out["unit"] = self.unit
        if self.note:
            out["note"] = self.note
        return out


MISSING = Cited(None, "not given")


def _cited(raw: Any, default_cite: str, where: str) -> Cited:
    if raw is None:
        return Cited(None, "not given")
    if isinstance(raw, bool):
        raise ProfileError(f"{where}: expected a number, got a boolean")
    if isinstance(raw, (int, float)):
        return Cited(float(raw), default_cite)
    if isinstance(raw, dict):
        unknown = set(raw) - {"value", "cite", "unit", "note"}
        if unknown:
            raise ProfileError(f"{where}: unknown keys {sorted(unknown)}; use value, cite, unit, note")
        value = raw.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ProfileError(f"{where}: value must be a number or null, got {value!r}")
        cite = str(raw.get("cite") or default_cite)
        if value is not None and not cite:
            raise ProfileError(f"{where}: a value needs a cite (where the number comes from)")
        return Cited(None if value is None else float(value), cite, raw.get("unit"), raw.get("note"))
    raise ProfileError(f"{where}: expected a number, null or a {{value, cite}} mapping, got {raw!r}")


@dataclass(frozen=True)
class LinkCosts:
    """One offload over a link (image up, answer back), as the device sees it.

    ``datasets`` holds costs that differ per dataset (an ImageNet image is 49 times a CIFAR-10 image:
    the paper's Table 3 has a row per dataset); the top-level values serve every other dataset."""

    latency_ms: Cited = MISSING
    energy_mj: Cited = MISSING
    datasets: dict = field(default_factory=dict)

    def for_dataset(self, dataset: str | None) -> LinkCosts:
        return self.datasets.get(dataset, self) if dataset else self


@dataclass(frozen=True)
class DeciderStats:
    """The offload decider on this model: its quality and the operating point it ends up at."""

    f1: Cited = MISSING
    offload_fraction: Cited = MISSING
    hi_accuracy: Cited = MISSING
    latency_ms: Cited = MISSING
    energy_mj: Cited = MISSING


@dataclass(frozen=True)
class ExitCosts:
    """Running the model up to (and including) one early-exit branch."""

    latency_ms: Cited = MISSING
    energy_mj: Cited = MISSING
    accuracy: Cited = MISSING


@dataclass(frozen=True)
class ModelCosts:
    name: str
    dataset: str | None = None
    latency_ms: Cited = MISSING
    energy_mj: Cited = MISSING
    accuracy: Cited = MISSING
    decider: DeciderStats = field(default_factory=DeciderStats)
    exits: tuple = ()


@dataclass(frozen=True)
class ServerModel:
    name: str
    dataset: str | None = None
    latency_ms: Cited = MISSING
    accuracy: Cited = MISSING


@dataclass(frozen=True)
class PowerDraw:
    """Average device power, used to model energy (power x measured time) when no meter is attached."""

    compute_w: Cited = MISSING
    offload_w: Cited = MISSING
    idle_w: Cited = MISSING


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    name: str = ""
    kind: str = "paper"
    source: str = ""
    notes: tuple = ()
    power: PowerDraw = field(default_factory=PowerDraw)
    links: dict = field(default_factory=dict)
    default_link: str = "wifi"
    models: dict = field(default_factory=dict)
    servers: dict = field(default_factory=dict)
    claims: dict = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)
    path: Path | None = None

    def link(self, name: str | None = None) -> LinkCosts:
        name = name or self.default_link
        if name not in self.links:
            raise ProfileError(
                f"profile {self.id!r} has no link {name!r}; it has {sorted(self.links) or 'none'}"
            )
        return self.links[name]

    def model(self, name: str) -> ModelCosts:
        if name not in self.models:
            raise ProfileError(
                f"profile {self.id!r} has no model {name!r}; it has {sorted(self.models) or 'none'}"
            )
        return self.models[name]

    def server_for(self, dataset: str | None) -> ServerModel | None:
        """The server model for a dataset (the first one listed for it), or ``None``."""
        for server in self.servers.values():
            if dataset is None or server.dataset in (None, dataset):
                return server
        return None

    def cited_values(self) -> list[tuple[str, Cited]]:
        """Every value in the profile with a dotted path, for audits and documentation."""
        out: list[tuple[str, Cited]] = []
        for key in ("compute_w", "offload_w", "idle_w"):
            out.append((f"power.{key}", getattr(self.power, key)))
        for name, link in self.links.items():
            out += [(f"links.{name}.latency_ms", link.latency_ms), (f"links.{name}.energy_mj", link.energy_mj)]
            for ds, costs in link.datasets.items():
                out += [(f"links.{name}.datasets.{ds}.latency_ms", costs.latency_ms),
                        (f"links.{name}.datasets.{ds}.energy_mj", costs.energy_mj)]
        for name, model in self.models.items():
            for key in ("latency_ms", "energy_mj", "accuracy"):
                out.append((f"models.{name}.{key}", getattr(model, key)))
            for key in ("f1", "offload_fraction", "hi_accuracy", "latency_ms", "energy_mj"):
                out.append((f"models.{name}.decider.{key}", getattr(model.decider, key)))
            for index, ex in enumerate(model.exits):
                for key in ("latency_ms", "energy_mj", "accuracy"):
                    out.append((f"models.{name}.exits[{index}].{key}", getattr(ex, key)))
        for name, server in self.servers.items():
            out += [(f"servers.{name}.latency_ms", server.latency_ms), (f"servers.{name}.accuracy", server.accuracy)]
        for name, claim in self.claims.items():
            out.append((f"claims.{name}", claim))
        return out


# --- parsing -------------------------------------------------------------------------------------


def _is_cited_mapping(value: Any) -> bool:
    return isinstance(value, dict) and "value" in value


def _merge(base: Any, override: Any) -> Any:
    """Deep merge: ``override`` wins wherever it gives a value; a null (bare or ``{value: null}``)
    keeps the base's value with the base's citation. Cited values are replaced whole, never mixed
    (a number must keep its own citation)."""
    if override is None or (_is_cited_mapping(override) and override.get("value") is None):
        return copy.deepcopy(base) if base is not None else copy.deepcopy(override)
    if _is_cited_mapping(override) or _is_cited_mapping(base):
        return copy.deepcopy(override)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _section(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: '{key}' must be a mapping")
    return value


def profile_from_dict(raw: dict, path: Path | None = None) -> DeviceProfile:
    where = str(path or "profile")
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: top level must be a mapping")
    schema = raw.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise ProfileError(f"{where}: schema {schema!r} is not {SCHEMA!r}")
    if not raw.get("id"):
        raise ProfileError(f"{where}: 'id' is required (a short name such as rpi4)")
    kind = raw.get("kind", "paper")
    if kind not in KINDS:
        raise ProfileError(f"{where}: kind {kind!r} must be one of {KINDS}")
    source = str(raw.get("source") or "")

    def cited(value: Any, at: str) -> Cited:
        return _cited(value, source, f"{where}: {at}")

    power_raw = _section(raw, "power", where)
    power = PowerDraw(**{k: cited(power_raw.get(k), f"power.{k}") for k in ("compute_w", "offload_w", "idle_w")})
    unknown_power = set(power_raw) - {"compute_w", "offload_w", "idle_w"}
    if unknown_power:
        raise ProfileError(f"{where}: unknown power keys {sorted(unknown_power)}")

    def link_costs(link: Any, at: str, nested: bool) -> LinkCosts:
        link = link or {}
        if not isinstance(link, dict):
            raise ProfileError(f"{where}: {at} must be a mapping of latency_ms, energy_mj")
        unknown = set(link) - {"latency_ms", "energy_mj", "note"} - ({"datasets"} if nested else set())
        if unknown:
            raise ProfileError(f"{where}: unknown keys {sorted(unknown)} in {at}; use latency_ms, energy_mj"
                               + (", datasets" if nested else ""))
        per_dataset = {}
        if nested:
            for ds, costs in (link.get("datasets") or {}).items():
                per_dataset[str(ds)] = link_costs(costs, f"{at}.datasets.{ds}", False)
        return LinkCosts(latency_ms=cited(link.get("latency_ms"), f"{at}.latency_ms"),
                         energy_mj=cited(link.get("energy_mj"), f"{at}.energy_mj"), datasets=per_dataset)

    links = {str(name): link_costs(link, f"links.{name}", True)
             for name, link in _section(raw, "links", where).items()}

    models = {}
    for name, model in _section(raw, "models", where).items():
        model = model or {}
        at = f"models.{name}"
        dec = model.get("decider") or {}
        exits = tuple(
            ExitCosts(
                latency_ms=cited((ex or {}).get("latency_ms"), f"{at}.exits[{i}].latency_ms"),
                energy_mj=cited((ex or {}).get("energy_mj"), f"{at}.exits[{i}].energy_mj"),
                accuracy=cited((ex or {}).get("accuracy"), f"{at}.exits[{i}].accuracy"),
            )
            for i, ex in enumerate(model.get("exits") or [])
        )
        models[str(name)] = ModelCosts(
            name=str(name),
            dataset=model.get("dataset"),
            latency_ms=cited(model.get("latency_ms"), f"{at}.latency_ms"),
            energy_mj=cited(model.get("energy_mj"), f"{at}.energy_mj"),
            accuracy=cited(model.get("accuracy"), f"{at}.accuracy"),
            decider=DeciderStats(
                **{k: cited(dec.get(k), f"{at}.decider.{k}")
                   for k in ("f1", "offload_fraction", "hi_accuracy", "latency_ms", "energy_mj")}
            ),
            exits=exits,
        )

    servers = {}
    for name, server in _section(raw, "servers", where).items():
        server = server or {}
        servers[str(name)] = ServerModel(
            name=str(name),
            dataset=server.get("dataset"),
            latency_ms=cited(server.get("latency_ms"), f"servers.{name}.latency_ms"),
            accuracy=cited(server.get("accuracy"), f"servers.{name}.accuracy"),
        )

    claims = {str(k): cited(v, f"claims.{k}") for k, v in _section(raw, "claims", where).items()}
    notes = raw.get("notes") or ()
    if isinstance(notes, str):
        notes = (notes,)
    return DeviceProfile(
        id=str(raw["id"]),
        name=str(raw.get("name") or raw["id"]),
        kind=kind,
        source=source,
        notes=tuple(str(n) for n in notes),
        power=power,
        links=links,
        default_link=str(raw.get("default_link") or "wifi"),
        models=models,
        servers=servers,
        claims=claims,
        hardware=dict(raw.get("hardware") or {}),
        path=path,
    )


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: top level must be a mapping")
    return data


def load_profile(name_or_path: str | Path, search_dirs: Iterable[Path] | None = None) -> DeviceProfile:
    """Load a profile by file path or by id (``rpi4`` finds ``rpi4.yaml`` in the profile folders).

    ``inherit`` is resolved relative to the profile's own folder: the inherited file supplies values
    the device leaves out or sets to null (model accuracy, decider F1, server models), for the models
    the device lists."""
    path = _resolve(name_or_path, search_dirs)
    raw = _read_yaml(path)
    parent = raw.get("inherit")
    if parent:
        parent_path = (path.parent / str(parent)).resolve()
        if not parent_path.exists():
            raise ProfileError(f"{path}: inherited file {parent} not found next to it")
        base = _read_yaml(parent_path)
        base = {k: v for k, v in base.items() if k in ("models", "servers", "claims", "links", "power")}
        # Shared model constants complete the models the device lists; they never add a model the
        # device did not run (a microcontroller profile must not gain ResNet-56).
        device_models = raw.get("models") or {}
        base["models"] = {k: v for k, v in (base.get("models") or {}).items() if k in device_models}
        raw = _merge(base, raw)
    return profile_from_dict(raw, path)


def _resolve(name_or_path: str | Path, search_dirs: Iterable[Path] | None) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    dirs = list(search_dirs) if search_dirs is not None else [PROFILES_DIR]
    for folder in dirs:
        for suffix in (".yaml", ".yml"):
            path = Path(folder) / f"{name_or_path}{suffix}"
            if path.exists():
                return path
    known = ", ".join(p.id for p in list_profiles(dirs)) or "none"
    raise ProfileError(f"no profile {str(name_or_path)!r}; known profiles: {known}")


def list_profiles(search_dirs: Iterable[Path] | None = None, kind: str | None = None) -> list[DeviceProfile]:
    """All device profiles (files starting with ``_`` hold shared data and are not devices)."""
    out = []
    for folder in list(search_dirs) if search_dirs is not None else [PROFILES_DIR]:
        for path in sorted(Path(folder).glob("*.y*ml")):
            if path.name.startswith("_"):
                continue
            profile = load_profile(path)
            if kind is None or profile.kind == kind:
                out.append(profile)
    return out


def profile_to_dict(profile: DeviceProfile) -> dict:
    """The YAML form of a profile (values always in the explicit ``{value, cite}`` form)."""
    def models() -> dict:
        out = {}
        for name, m in profile.models.items():
            entry: dict[str, Any] = {}
            if m.dataset:
                entry["dataset"] = m.dataset
            for key in ("latency_ms", "energy_mj", "accuracy"):
                entry[key] = getattr(m, key).to_yaml()
            entry["decider"] = {k: getattr(m.decider, k).to_yaml()
                                for k in ("f1", "offload_fraction", "hi_accuracy", "latency_ms", "energy_mj")}
            entry["exits"] = [{k: getattr(ex, k).to_yaml() for k in ("latency_ms", "energy_mj", "accuracy")}
                              for ex in m.exits]
            out[name] = entry
        return out

    data: dict[str, Any] = {
        "schema": SCHEMA,
        "id": profile.id,
        "name": profile.name,
        "kind": profile.kind,
        "source": profile.source,
    }
    if profile.notes:
        data["notes"] = list(profile.notes)
    if profile.hardware:
        data["hardware"] = dict(profile.hardware)
    data["power"] = {k: getattr(profile.power, k).to_yaml() for k in ("compute_w", "offload_w", "idle_w")}
    def link(costs: LinkCosts) -> dict:
        out: dict[str, Any] = {"latency_ms": costs.latency_ms.to_yaml(), "energy_mj": costs.energy_mj.to_yaml()}
        if costs.datasets:
            out["datasets"] = {ds: link(c) for ds, c in costs.datasets.items()}
        return out

    data["links"] = {n: link(l) for n, l in profile.links.items()}
    data["default_link"] = profile.default_link
    data["models"] = models()
    data["servers"] = {n: {"dataset": s.dataset, "latency_ms": s.latency_ms.to_yaml(), "accuracy": s.accuracy.to_yaml()}
                       for n, s in profile.servers.items()}
    if profile.claims:
        data["claims"] = {n: c.to_yaml() for n, c in profile.claims.items()}
    return data


def save_profile(profile: DeviceProfile, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profile_to_dict(profile), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
