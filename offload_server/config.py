"""Configuration of hi-server: dataclasses built in code (tests, the agent's offline demo) or from YAML.

The dataclasses are pydantic dataclasses, so every field is checked by type when a config is built or a
setting is assigned (``port: "abc"`` fails at once, naming the key). Checks that need more than the type
(ranges, files, settings that depend on each other) happen in ``validate()``, once, so that every error
names the offending key and what to do about it, and the rest of the server can trust its config.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, ValidationError
from pydantic.dataclasses import dataclass

from hi_runtime import protocol
from hi_runtime.artifacts import find_model
from hi_runtime.protocol import ABSOLUTE_MAX_FRAME, HEADER_SIZE, MAX_MODEL_ID_LEN

KEY_ENV = "HI_SERVER_KEY"
MIN_KEY_BYTES = 16

# Unknown keys are errors (a typo must not be silently ignored); assignments are type-checked too, so a
# flag override cannot smuggle in a wrong type; NaN and infinity are no setting (NaN passes every "> 0").
_STRICT = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


@dataclass(config=_STRICT)
class ModelConfig:
    """One served model and how requests are turned into its input.

    A request's tensor is first converted to float pixels (0..255, NHWC): dequantized with the request's
    (scale, zero_point) if it carries them, transposed if it is channel-planar (NCHW), resized to the
    model's input size. Then the model input is ``x = (pixel * pixel_scale - mean) / std``, cast or
    quantized to the model's input dtype and laid out in ``input_layout``.
    """

    id: str
    path: str
    backend: Literal["onnx", "tflite", "auto"] = "auto"  # model runtime; "auto" = by file extension
    input_layout: str = "NHWC"  # the model's input layout: "NHWC" or "NCHW" (any case)
    input_dtype: Literal["auto", "float32", "uint8", "int8"] = "auto"  # checked against the model
    input_size: tuple[StrictInt, StrictInt] | None = None  # (H, W); None = from the model
    resize: Literal["bilinear", "nearest", "none"] = "bilinear"  # how other image sizes are fitted
    pixel_scale: StrictFloat = 1.0
    mean: list[StrictFloat] | None = None  # per channel, after pixel_scale
    std: list[StrictFloat] | None = None
    output: Literal["probabilities", "logits"] = "probabilities"  # logits: the server applies softmax
    output_name: str | None = None  # the output tensor to serve; a model with several must name one
    max_batch_size: StrictInt = 32
    max_queue_delay_us: StrictInt = 2000
    num_threads: StrictInt = 0  # backend intra-op threads; 0 = backend default
    providers: list[str] | None = None  # ONNX Runtime execution providers; None = best available

    def validate(self, check_file: bool = True) -> None:
        where = f"model {self.id!r}"
        if not self.id or len(self.id) > MAX_MODEL_ID_LEN or not all(0x21 <= ord(c) <= 0x7E for c in self.id):
            raise ConfigError(f"model id {self.id!r} must be 1..{MAX_MODEL_ID_LEN} printable ASCII characters")
        if self.input_layout.upper() not in ("NHWC", "NCHW"):
            raise ConfigError(f"{where}: input_layout {self.input_layout!r} must be 'NHWC' or 'NCHW'")
        self.input_layout = self.input_layout.upper()
        if self.input_size is not None and min(self.input_size) < 1:
            raise ConfigError(f"{where}: input_size {list(self.input_size)} must be [height, width], both >= 1")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) not in (1, 3):
                raise ConfigError(f"{where}: {name} must be a list of 1 or 3 numbers, got {value!r}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ConfigError(f"{where}: std must not contain 0")
        if not 1 <= self.max_batch_size <= 4096:
            raise ConfigError(f"{where}: max_batch_size {self.max_batch_size} must be 1..4096")
        if not 0 <= self.max_queue_delay_us <= 10_000_000:
            raise ConfigError(f"{where}: max_queue_delay_us {self.max_queue_delay_us} must be 0..10000000")
        if self.num_threads < 0:
            raise ConfigError(f"{where}: num_threads {self.num_threads} must be >= 0 (0 = the backend's default)")
        if check_file and not Path(self.path).is_file():
            raise ConfigError(
                f"{where}: model file {self.path} does not exist (train/export it first, or fix 'path'; "
                "relative paths in a YAML config are relative to the config file)"
            )

    def input_spec(self):
        """The normalization part of these settings as the project's one input spec (the type the agent
        uses for its local models): pixel_scale, mean, std, input_layout, input_dtype."""
        from hi_runtime.input_spec import InputSpec, InputSpecError

        try:
            return InputSpec(pixel_scale=self.pixel_scale, mean=self.mean, std=self.std,
                             layout=self.input_layout, dtype=self.input_dtype)
        except InputSpecError as exc:
            raise ConfigError(f"model {self.id!r}: {exc}") from None

    @property
    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        suffix = Path(self.path).suffix.lower()
        if suffix == ".onnx":
            return "onnx"
        if suffix == ".tflite":
            return "tflite"
        raise ConfigError(f"model {self.id!r}: cannot tell the backend of {self.path}; set backend: onnx|tflite")


@dataclass(config=_STRICT)
class RayConfig:
    """How the model tier runs on Ray Serve (``backend: ray``; docs/server.md, "Scaling out").

    Every front door of a deployment uses the same file: the first one to start deploys one Serve
    application per model (named ``<app_prefix>-<model id>``), the others attach to it by name.
    """

    # None: start a Ray instance on this machine (one box); "auto": join the cluster this node is part of
    # (after `ray start --head` / `ray start --address=HEAD:6379`); or "ray://host:10001" (Ray Client).
    address: str | None = None
    namespace: str = "hi-server"
    app_prefix: str = "hi"
    # "auto": deploy if the application is not running yet, else attach; "always": (re)deploy from this
    # config; "never": only attach (a front door on a node that does not hold the model files).
    deploy: Literal["auto", "always", "never"] = "auto"
    num_replicas: StrictInt | None = 1  # fixed replica count (ignored with autoscaling_config)
    autoscaling_config: dict[str, Any] | None = None  # Serve's: min_replicas, max_replicas, target_ongoing_requests...
    ray_actor_options: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1})  # per replica, e.g. num_gpus: 1
    max_ongoing_requests: StrictInt | None = None  # calls per replica; None = 2 x max_batch_size
    # micro-batches a front door keeps in flight per model; while that many are out, new requests gather
    # into the next one. None = 2 x replicas (max_replicas with autoscaling)
    max_inflight_batches: StrictInt | None = None
    max_queued_requests: StrictInt = -1  # per front door and model; beyond it requests get BUSY; -1 = unbounded
    retries: StrictInt = 1  # re-sends of a request whose replica died (Serve routes it to a live one)
    health_check_period_s: StrictFloat | None = None  # how often Serve checks replicas; None = Serve's 10 s
    num_cpus: StrictInt | None = None  # CPUs of the local Ray started when address is None; None = all
    keep_app_on_stop: StrictBool | None = None  # None: delete the applications only if this process started Ray

    def validate(self) -> None:
        if self.autoscaling_config is None and (self.num_replicas is None or self.num_replicas < 1):
            raise ConfigError("ray.num_replicas must be >= 1 (or set ray.autoscaling_config)")
        if self.max_ongoing_requests is not None and self.max_ongoing_requests < 1:
            raise ConfigError("ray.max_ongoing_requests must be >= 1 (or null for 2 x max_batch_size)")
        if self.max_inflight_batches is not None and self.max_inflight_batches < 1:
            raise ConfigError("ray.max_inflight_batches must be >= 1 (or null for 2 x replicas)")
        if self.max_queued_requests == 0 or self.max_queued_requests < -1:
            raise ConfigError("ray.max_queued_requests must be >= 1, or -1 for unbounded")
        if self.health_check_period_s is not None and self.health_check_period_s <= 0:
            raise ConfigError("ray.health_check_period_s must be > 0 (or null for Serve's default)")
        if not 0 <= self.retries <= 5:
            raise ConfigError(f"ray.retries {self.retries} must be 0..5")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError("ray.num_cpus must be >= 1 (or null for every CPU)")
        if not self.app_prefix or not all(c.isalnum() or c in "-_" for c in self.app_prefix):
            raise ConfigError(f"ray.app_prefix {self.app_prefix!r} must be letters, digits, '-' or '_'")


@dataclass(config=_STRICT)
class ServerConfig:
    models: list[ModelConfig] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: StrictInt = 8555  # 0 = ephemeral (tests)
    default_model: str | None = None  # model for INFERs with an empty model id; None = the first model
    server_name: str = "hi-server"
    # where the models run: "inprocess" (this process, the default) or "ray" (a Ray Serve deployment)
    backend: Literal["inprocess", "ray"] = "inprocess"
    ray: RayConfig = field(default_factory=RayConfig)
    # security
    auth_key: str | None = None  # pre-shared key as text (prefer auth_key_file or $HI_SERVER_KEY)
    auth_key_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # per-connection limits
    max_frame: StrictInt = 256 * 1024
    max_inflight: StrictInt = 32
    max_connections: StrictInt = 1024
    max_connections_per_peer: StrictInt = 256  # per client IP address, so one peer cannot take every slot
    idle_timeout_s: StrictFloat = 60.0  # silent and nothing in flight this long -> closed
    handshake_timeout_s: StrictFloat = 5.0
    frame_timeout_s: StrictFloat = 10.0  # a whole frame must arrive this long after its first byte
    # an INFER not answered this long after it arrived gets BUSY and leaves the queue (a device waits far
    # less: past this the work is wasted, and under overload an unbounded queue only grows)
    request_timeout_s: StrictFloat = 30.0
    # observability
    metrics_port: StrictInt | None = None  # Prometheus /metrics and /healthz; None = off, 0 = ephemeral
    metrics_host: str = "127.0.0.1"
    log_format: Literal["json", "kv"] = "json"  # "json" lines or "kv" (key=value)
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR
    # the paper's raw protocol (3072 planar bytes in, 1 class byte out); None = off
    compat_port: StrictInt | None = None
    compat_host: str | None = None  # None = same as host
    compat_model: str | None = None  # None = the default model
    compat_allow_unauthenticated: StrictBool = False  # needed to expose the (key-less) compat port off loopback
    compat_reply_bytes: Literal[1, 2] = 1  # class reply width: 1 byte, or 2 (uint16 little-endian)
    shutdown_grace_s: StrictFloat = 10.0
    executor_threads: StrictInt = 0  # 0 = one per model (each model runs one batch at a time)

    # ---- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: Path | None = None) -> ServerConfig:
        data = dict(data)
        models_raw = data.pop("models", None)
        if not models_raw:
            raise ConfigError("config has no 'models': list at least one model (id, path)")
        if not isinstance(models_raw, list):
            raise ConfigError("'models' must be a list of model settings (each with at least 'id' and 'path')")
        models = []
        for i, raw in enumerate(models_raw):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"models[{i}] must be a mapping with at least 'id' and 'path'")
            raw = dict(raw)
            for required in ("id", "path"):
                if required not in raw:
                    raise ConfigError(f"models[{i}] is missing '{required}'")
            if base_dir is not None:
                # beside the config first; a bare file name that is not there may be a shipped model (a wheel)
                raw["path"] = find_model(str(raw["path"]), base=base_dir)
            models.append(raw)
        config = build(cls, {**data, "models": models})
        for name in ("auth_key_file", "tls_cert", "tls_key"):
            value = getattr(config, name)
            if value and base_dir is not None and not Path(value).is_absolute():
                setattr(config, name, str((base_dir / value).resolve()))
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ServerConfig:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        return cls.from_dict(data, base_dir=path.parent)

    # ---- checks -------------------------------------------------------------------------------------

    def validate(self) -> None:
        if not self.models:
            raise ConfigError("no models configured: add at least one ModelConfig")
        ids = [m.id for m in self.models]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate model ids in {ids}")
        # With Ray the replicas load the files on their nodes; a front door that only attaches to a running
        # deployment needs none of them (the replica reports a missing file when it starts).
        for model in self.models:
            model.validate(check_file=self.backend == "inprocess")
        if self.default_model is not None and self.default_model not in ids:
            raise ConfigError(f"default_model {self.default_model!r} is not one of the models {ids}")
        if self.compat_model is not None and self.compat_model not in ids:
            raise ConfigError(f"compat_model {self.compat_model!r} is not one of the models {ids}")
        for name in ("port", "metrics_port", "compat_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ConfigError(f"{name} {value} must be 0..65535 (0 = any free port)")
        try:  # the protocol's own rule for names: every WELCOME carries this one
            protocol.encode(protocol.Welcome(version=protocol.PROTOCOL_VERSION, server_nonce=protocol.new_nonce(),
                                             server_name=self.server_name))
        except protocol.ProtocolError as exc:
            raise ConfigError(f"{exc} (at most {protocol.MAX_NAME_LEN} characters, e.g. edge-box-1)") from None
        if not HEADER_SIZE < self.max_frame <= ABSOLUTE_MAX_FRAME:
            raise ConfigError(f"max_frame {self.max_frame} must be {HEADER_SIZE + 1}..{ABSOLUTE_MAX_FRAME}")
        if not 1 <= self.max_inflight <= 65535:
            raise ConfigError(f"max_inflight {self.max_inflight} must be 1..65535")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.max_connections_per_peer < 1:
            raise ConfigError("max_connections_per_peer must be at least 1")
        for name in ("idle_timeout_s", "handshake_timeout_s", "frame_timeout_s", "request_timeout_s",
                     "shutdown_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} {getattr(self, name)} must be > 0 seconds")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level {self.log_level!r} must be DEBUG, INFO, WARNING or ERROR")
        if self.executor_threads < 0:
            raise ConfigError("executor_threads must be >= 0 (0 = one per model)")
        if self.backend == "ray":
            self.ray.validate()
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both tls_cert and tls_key (PEM files), or neither")
        for name in ("tls_cert", "tls_key"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise ConfigError(f"{name} file {value} does not exist")
        key = self.load_key()
        if not is_loopback(self.host) and key is None:
            raise ConfigError(
                f"refusing to serve on non-loopback address {self.host!r} without a pre-shared key: set "
                f"auth_key_file (or --key-file, or ${KEY_ENV}) to a secret of >= {MIN_KEY_BYTES} bytes, "
                "or bind 127.0.0.1"
            )
        compat_host = self.compat_host or self.host
        if self.compat_port is not None and not is_loopback(compat_host) and not self.compat_allow_unauthenticated:
            raise ConfigError(
                f"the compatibility port (the paper's raw protocol) has no authentication; exposing it on "
                f"{compat_host!r} needs compat_allow_unauthenticated: true (or --compat-allow-unauthenticated), "
                "or set compat_host: 127.0.0.1"
            )

    def load_key(self) -> bytes | None:
        """The pre-shared key from auth_key, auth_key_file or $HI_SERVER_KEY (first set wins)."""
        if self.auth_key:
            key = self.auth_key.encode("utf-8")
            source = "auth_key"
        elif self.auth_key_file:
            try:
                key = Path(self.auth_key_file).read_bytes().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read auth_key_file {self.auth_key_file}: {exc.strerror or exc} "
                                  "(fix the path, or use $HI_SERVER_KEY)") from None
            source = f"auth_key_file {self.auth_key_file}"
        elif os.environ.get(KEY_ENV):
            key = os.environ[KEY_ENV].encode("utf-8")
            source = f"${KEY_ENV}"
        else:
            return None
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the pre-shared key from {source} is {len(key)} bytes; use at least {MIN_KEY_BYTES}")
        return key

    def model(self, model_id: str) -> ModelConfig:
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(model_id)

    @property
    def default_model_id(self) -> str:
        return self.default_model or self.models[0].id


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve anywhere


# ---- type errors as one line ---------------------------------------------------------------------------


def build(cls: type, raw: Mapping[str, Any]) -> Any:
    """``cls(**raw)`` with pydantic's type errors turned into one ConfigError line (key, problem, fix)."""
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, cls)) from None


def set_checked(obj: Any, name: str, value: Any) -> None:
    """``setattr`` for flag overrides: a wrong type becomes a ConfigError naming the setting."""
    try:
        setattr(obj, name, value)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, type(obj))) from None


_EXPECTED = {
    "int": "a whole number", "float": "a number", "finite_number": "a finite number", "bool": "true or false", "string": "text",
    "list": "a list", "tuple": "a list", "dict": "a mapping", "dataclass": "a mapping",
}


def describe_validation_error(exc: ValidationError, cls: type) -> str:
    """The first problem of a ValidationError as one line: where, what was given, what to write instead."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        parent = _class_at(cls, loc[:-1])
        known = sorted(f.name for f in dataclasses.fields(parent)) if parent else []
        where = _loc_text(loc[:-1]) or "server"
        return f"{where}: unknown setting(s) [{loc[-1]!r}]; known: {known}{more}"
    if kind in ("missing", "missing_argument"):
        where = _loc_text(loc[:-1]) or "server"
        return f"{where} is missing '{loc[-1]}'{more}"
    key = _loc_text(loc)
    given = err.get("input")
    default = _default_at(cls, loc)
    expected = next((text for prefix, text in _EXPECTED.items() if kind.startswith(prefix)), None)
    if kind == "literal_error":
        fix = err.get("msg", "").replace("Input should be", "use")
    elif expected is not None:
        fix = f"use {expected}"
    else:
        fix = err.get("msg", "fix the value")
    if default not in (None, dataclasses.MISSING) and not isinstance(default, (list, dict)) and kind != "literal_error":
        example = str(default).lower() if isinstance(default, bool) else default
        fix += f", e.g. {loc[-1]}: {example}"
    return f"setting {key} = {given!r} is invalid: {fix}{more}"


def _loc_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field_type(cls: type, name: str) -> Any:
    import typing

    hints = typing.get_type_hints(cls)
    return hints.get(name)


def _unwrap(tp: Any) -> type | None:
    """The dataclass inside list[X], X | None, ... (None if there is none)."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in get_args(tp) if get_origin(tp) is not None else ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _class_at(cls: type, loc: tuple) -> type | None:
    current: type | None = cls
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        current = _unwrap(_field_type(current, str(part)))
    return current


def _default_at(cls: type, loc: tuple) -> Any:
    parent = _class_at(cls, loc[:-1])
    if parent is None or not loc:
        return None
    for f in dataclasses.fields(parent):
        if f.name == loc[-1]:
            return f.default
    return None
