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
    notes: ["..."]                          # free text
    hardware: {clock_mhz: 1500, cpu_cite: "..."}   # free-form; its numbers are cited by its *_cite keys

The layout is checked by type with pydantic models (``_ProfileIn`` below), then turned into the frozen
dataclasses the callers use. Unknown keys are refused (except inside ``hardware``); numbers must be
numbers (not strings or booleans, not NaN): durations more than 0, energies and powers at least 0,
accuracies, F1 scores and shares between 0 and 1. A mistake is one :class:`ProfileError` line naming
the file, the key path and what is expected, e.g.
``rpi4.yaml: models.resnet8.latency_ms: Input should be greater than 0, got -1.63``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

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


# --- the file format: pydantic models of the YAML (see the module docstring) ---------------------


def _number_as_text(value: Any) -> Any:
    """YAML reads ``id: 2024`` or a numeric mapping key as a number; text fields take its str()."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _empty_mapping_if_null(value: Any) -> Any:
    return {} if value is None else value


def _empty_list_if_null(value: Any) -> Any:
    return () if value is None else value


def _notes(value: Any) -> Any:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


_Text = Annotated[str, BeforeValidator(_number_as_text)]


def _short(value: Any, limit: int = 60) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Schema(BaseModel):
    """A mapping of the profile: known keys only; a null section is an empty one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def _known(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]

    @classmethod
    def _prepare(cls, raw: Any) -> Any:
        return {} if raw is None else raw

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, raw: Any) -> Any:
        raw = cls._prepare(raw)
        known = cls._known()
        if not isinstance(raw, dict):
            raise PydanticCustomError("not_a_mapping", "expected a mapping of {known}, got {given}",
                                      {"known": ", ".join(known), "given": _short(raw)})
        unknown = [str(k) for k in raw if k not in known]
        if unknown:
            raise PydanticCustomError("unknown_keys", "unknown keys {keys}; use {known}",
                                      {"keys": sorted(unknown), "known": ", ".join(known)})
        return raw


_NUMBER = {"strict": True, "allow_inf_nan": False}  # no strings, no booleans, no NaN or infinity


class _Cited(_Schema):
    """A cited value: a bare number (cited by the profile's ``source``) or ``{value, cite, unit, note}``."""

    value: float | None = Field(None, **_NUMBER)
    cite: _Text | None = None
    unit: str | None = None
    note: str | None = None

    @classmethod
    def _prepare(cls, raw: Any) -> Any:
        if isinstance(raw, bool):
            raise PydanticCustomError("cited_boolean", "expected a number, got a boolean")
        if isinstance(raw, (int, float)):
            return {"value": raw}
        if not isinstance(raw, dict):
            raise PydanticCustomError("cited_type", "expected a number, null or a {value, cite} mapping, got {given}",
                                      {"given": _short(raw)})
        return raw

    @model_validator(mode="after")
    def _has_a_cite(self, info: ValidationInfo) -> _Cited:
        source = (info.context or {}).get("source", "")
        if self.value is not None and not (self.cite or source):
            raise PydanticCustomError("cite_missing", "a value needs a cite (where the number comes from)")
        return self

    def to_cited(self, source: str) -> Cited:
        return Cited(self.value, self.cite or source, self.unit, self.note)


class _Positive(_Cited):
    """A duration: more than zero."""

    value: float | None = Field(None, gt=0, **_NUMBER)


class _NonNegative(_Cited):
    """An energy or a power: zero or more."""

    value: float | None = Field(None, ge=0, **_NUMBER)


class _Fraction(_Cited):
    """An accuracy, F1 score or share: between 0 and 1 (93.5% is 0.935)."""

    value: float | None = Field(None, ge=0, le=1, **_NUMBER)


def _cited(value: _Cited | None, source: str) -> Cited:
    return Cited(None, "not given") if value is None else value.to_cited(source)


class _DatasetLinkIn(_Schema):
    latency_ms: _Positive | None = None
    energy_mj: _NonNegative | None = None
    note: str | None = None  # accepted, not kept

    def to_costs(self, source: str, datasets: dict | None = None) -> LinkCosts:
        return LinkCosts(latency_ms=_cited(self.latency_ms, source), energy_mj=_cited(self.energy_mj, source),
                         datasets=datasets or {})


class _LinkIn(_DatasetLinkIn):
    datasets: Annotated[dict[_Text, _DatasetLinkIn], BeforeValidator(_empty_mapping_if_null)] = {}

    def to_costs(self, source: str, datasets: dict | None = None) -> LinkCosts:
        return super().to_costs(source, {ds: c.to_costs(source) for ds, c in self.datasets.items()})


class _DeciderIn(_Schema):
    f1: _Fraction | None = None
    offload_fraction: _Fraction | None = None
    hi_accuracy: _Fraction | None = None
    latency_ms: _NonNegative | None = None  # a measured mean may round to 0 for a one-neuron decider
    energy_mj: _NonNegative | None = None


class _ExitIn(_Schema):
    latency_ms: _Positive | None = None
    energy_mj: _NonNegative | None = None
    accuracy: _Fraction | None = None


class _ModelIn(_Schema):
    dataset: _Text | None = None
    latency_ms: _Positive | None = None
    energy_mj: _NonNegative | None = None
    accuracy: _Fraction | None = None
    decider: _DeciderIn = _DeciderIn()
    exits: Annotated[tuple[_ExitIn, ...], BeforeValidator(_empty_list_if_null)] = ()


class _ServerIn(_Schema):
    dataset: _Text | None = None
    latency_ms: _Positive | None = None
    accuracy: _Fraction | None = None


class _PowerIn(_Schema):
    compute_w: _NonNegative | None = None
    offload_w: _NonNegative | None = None
    idle_w: _NonNegative | None = None


_Links = Annotated[dict[_Text, _LinkIn], BeforeValidator(_empty_mapping_if_null)]
_Models = Annotated[dict[_Text, _ModelIn], BeforeValidator(_empty_mapping_if_null)]
_Servers = Annotated[dict[_Text, _ServerIn], BeforeValidator(_empty_mapping_if_null)]
_Claims = Annotated[dict[_Text, _Cited | None], BeforeValidator(_empty_mapping_if_null)]


class _ProfileIn(_Schema):
    """The whole file (the layout in the module docstring)."""

    schema_: Literal[SCHEMA] = Field(SCHEMA, alias="schema")  # type: ignore[valid-type]
    id: _Text = Field(min_length=1)
    name: _Text | None = None
    kind: Literal[KINDS] = "paper"  # type: ignore[valid-type]
    source: _Text | None = None
    inherit: _Text | None = None  # read by load_profile
    notes: Annotated[tuple[_Text, ...], BeforeValidator(_notes)] = ()
    hardware: Annotated[dict[Any, Any], BeforeValidator(_empty_mapping_if_null)] = {}  # free-form
    power: _PowerIn = _PowerIn()
    links: _Links = {}
    default_link: _Text | None = None
    models: _Models = {}
    servers: _Servers = {}
    claims: _Claims = {}

    def to_profile(self, path: Path | None) -> DeviceProfile:
        source = self.source or ""

        def cited(value: _Cited | None) -> Cited:
            return _cited(value, source)

        models = {
            name: ModelCosts(
                name=name, dataset=m.dataset, latency_ms=cited(m.latency_ms), energy_mj=cited(m.energy_mj),
                accuracy=cited(m.accuracy),
                decider=DeciderStats(**{k: cited(getattr(m.decider, k)) for k in _DeciderIn.model_fields}),
                exits=tuple(ExitCosts(**{k: cited(getattr(ex, k)) for k in _ExitIn.model_fields}) for ex in m.exits),
            )
            for name, m in self.models.items()
        }
        return DeviceProfile(
            id=self.id,
            name=self.name or self.id,
            kind=self.kind,
            source=source,
            notes=self.notes,
            power=PowerDraw(**{k: cited(getattr(self.power, k)) for k in _PowerIn.model_fields}),
            links={name: link.to_costs(source) for name, link in self.links.items()},
            default_link=self.default_link or "wifi",
            models=models,
            servers={name: ServerModel(name=name, dataset=s.dataset, latency_ms=cited(s.latency_ms),
                                       accuracy=cited(s.accuracy)) for name, s in self.servers.items()},
            claims={name: cited(c) for name, c in self.claims.items()},
            hardware=dict(self.hardware),
            path=path,
        )


_HINTS = {("id",): " (a short name such as rpi4)"}
_OWN_MESSAGES = ("not_a_mapping", "unknown_keys", "cited_boolean", "cited_type", "cite_missing")


def _node(raw: Any, loc: Sequence) -> tuple[bool, Any]:
    """The value at ``loc`` in the raw mapping (keys compared as text): ``(found, value)``."""
    for part in loc:
        if isinstance(raw, dict):
            match = [k for k in raw if str(k) == str(part)]
            if not match:
                return False, None
            raw = raw[match[0]]
        elif isinstance(raw, (list, tuple)) and isinstance(part, int) and 0 <= part < len(raw):
            raw = raw[part]
        else:
            return False, None
    return True, raw


def _loc_text(loc: Sequence) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(exc: ValidationError, raw: dict) -> tuple[tuple, tuple, str]:
    """The first problem of a ValidationError: its key path in the file, the path of the offending key
    (the unknown key itself for unknown keys) and one line saying what is expected."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc, kind = tuple(err.get("loc", ())), err.get("type", "")
    if loc and loc[-1] == "value" and not isinstance(_node(raw, loc[:-1])[1], dict):
        loc = loc[:-1]  # a bare number, validated as {value: ...}: the key the file has
    culprit = loc + (err["ctx"]["keys"][0],) if kind == "unknown_keys" else loc
    if kind == "missing":
        message = "required" + _HINTS.get(loc, "")
    elif kind in _OWN_MESSAGES:
        message = err["msg"]
    else:
        message = f"{err['msg']}, got {_short(err.get('input'))}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return loc, culprit, message


def _validate(raw: Any, path: Path | None, origin: Callable[[tuple], Path | None] | None = None) -> DeviceProfile:
    where = str(path or "profile")
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: top level must be a mapping")
    source = raw.get("source")
    source = str(source) if isinstance(source, (str, int, float)) and source else ""
    try:
        parsed = _ProfileIn.model_validate(raw, context={"source": source})
    except ValidationError as exc:
        loc, culprit, message = _problem(exc, raw)
        if origin is not None:
            where = str(origin(culprit) or where)
        key = _loc_text(loc)
        raise ProfileError(f"{where}: {key}: {message}" if key else f"{where}: {message}") from None
    return parsed.to_profile(path)


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


def profile_from_dict(raw: dict, path: Path | None = None) -> DeviceProfile:
    """A profile from its YAML mapping; a mistake is a ProfileError naming the file (``path``), the key
    path and what is expected."""
    return _validate(raw, path)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: top level must be a mapping")
    return data


def load_profile(name_or_path: str | Path, search_dirs: Iterable[Path] | None = None) -> DeviceProfile:
    """Load a profile by file path or by id (``rpi4`` finds ``rpi4.yaml`` in the profile folders).

    ``inherit`` is resolved relative to the profile's own folder: the inherited file supplies values
    the device leaves out or sets to null (model accuracy, decider F1, server models), for the models
    the device lists. A mistake in an inherited value is reported with the inherited file's name."""
    path = _resolve(name_or_path, search_dirs)
    raw = _read_yaml(path)
    parent = raw.get("inherit")
    if not parent:
        return _validate(raw, path)
    parent_path = (path.parent / str(parent)).resolve()
    if not parent_path.exists():
        raise ProfileError(f"{path}: inherited file {parent} not found next to it")
    base = _read_yaml(parent_path)
    base = {k: v for k, v in base.items() if k in ("models", "servers", "claims", "links", "power")}
    # Shared model constants complete the models the device lists; they never add a model the
    # device did not run (a microcontroller profile must not gain ResNet-56).
    device_models = raw.get("models") or {}
    if isinstance(base.get("models"), dict) and isinstance(device_models, dict):
        base["models"] = {k: v for k, v in base["models"].items() if k in device_models}

    def origin(loc: tuple) -> Path:
        """The file a problem's key comes from: the device's unless only the inherited file gives it."""
        found, value = _node(raw, loc)
        given = found and value is not None and not (_is_cited_mapping(value) and value.get("value") is None)
        return path if given or not _node(base, loc)[0] else parent_path

    return _validate(_merge(base, raw), path, origin)


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
