"""Configuration of hi-server: dataclasses built in code (tests, the agent's offline demo) or from YAML.

Validation happens here, once, so that every error names the offending key and what to do about it, and
the rest of the server can trust its config.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hi_runtime.protocol import ABSOLUTE_MAX_FRAME, HEADER_SIZE, MAX_MODEL_ID_LEN

KEY_ENV = "HI_SERVER_KEY"
MIN_KEY_BYTES = 16


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


@dataclass
class ModelConfig:
    """One served model and how requests are turned into its input.

    A request's tensor is first converted to float pixels (0..255, NHWC): dequantized with the request's
    (scale, zero_point) if it carries them, transposed if it is channel-planar (NCHW), resized to the
    model's input size. Then the model input is ``x = (pixel * pixel_scale - mean) / std``, cast or
    quantized to the model's input dtype and laid out in ``input_layout``.
    """

    id: str
    path: str
    backend: str = "auto"  # "onnx", "tflite" or "auto" (by file extension)
    input_layout: str = "NHWC"  # the model's input layout: "NHWC" or "NCHW"
    input_dtype: str = "auto"  # expected model input dtype ("float32", "uint8", "int8"); auto = from the model
    input_size: tuple[int, int] | None = None  # (H, W); None = from the model
    resize: str = "bilinear"  # how other image sizes are fitted: "bilinear", "nearest" or "none" (reject)
    pixel_scale: float = 1.0
    mean: list[float] | None = None  # per channel, after pixel_scale
    std: list[float] | None = None
    output: str = "probabilities"  # "probabilities" or "logits" (softmax applied by the server)
    max_batch_size: int = 32
    max_queue_delay_us: int = 2000
    num_threads: int = 0  # backend intra-op threads; 0 = backend default
    providers: list[str] | None = None  # ONNX Runtime execution providers; None = best available

    def validate(self) -> None:
        where = f"model {self.id!r}"
        if not self.id or len(self.id) > MAX_MODEL_ID_LEN or not all(0x21 <= ord(c) <= 0x7E for c in self.id):
            raise ConfigError(f"model id {self.id!r} must be 1..{MAX_MODEL_ID_LEN} printable ASCII characters")
        if self.backend not in ("onnx", "tflite", "auto"):
            raise ConfigError(f"{where}: backend {self.backend!r} must be 'onnx', 'tflite' or 'auto'")
        if self.input_layout.upper() not in ("NHWC", "NCHW"):
            raise ConfigError(f"{where}: input_layout {self.input_layout!r} must be 'NHWC' or 'NCHW'")
        self.input_layout = self.input_layout.upper()
        if self.input_dtype not in ("auto", "float32", "uint8", "int8"):
            raise ConfigError(f"{where}: input_dtype {self.input_dtype!r} must be auto, float32, uint8 or int8")
        if self.resize not in ("bilinear", "nearest", "none"):
            raise ConfigError(f"{where}: resize {self.resize!r} must be 'bilinear', 'nearest' or 'none'")
        if self.output not in ("probabilities", "logits"):
            raise ConfigError(f"{where}: output {self.output!r} must be 'probabilities' or 'logits'")
        if self.input_size is not None:
            if len(self.input_size) != 2 or min(self.input_size) < 1:
                raise ConfigError(f"{where}: input_size {self.input_size!r} must be [height, width]")
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) not in (1, 3)):
                raise ConfigError(f"{where}: {name} must be a list of 1 or 3 numbers, got {value!r}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ConfigError(f"{where}: std must not contain 0")
        if not 1 <= self.max_batch_size <= 4096:
            raise ConfigError(f"{where}: max_batch_size {self.max_batch_size} must be 1..4096")
        if not 0 <= self.max_queue_delay_us <= 10_000_000:
            raise ConfigError(f"{where}: max_queue_delay_us {self.max_queue_delay_us} must be 0..10000000")
        if not Path(self.path).is_file():
            raise ConfigError(
                f"{where}: model file {self.path} does not exist (train/export it first, or fix 'path'; "
                "relative paths in a YAML config are relative to the config file)"
            )

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


@dataclass
class ServerConfig:
    models: list[ModelConfig] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8555  # 0 = ephemeral (tests)
    default_model: str | None = None  # model for INFERs with an empty model id; None = the first model
    server_name: str = "hi-server"
    # security
    auth_key: str | None = None  # pre-shared key as text (prefer auth_key_file or $HI_SERVER_KEY)
    auth_key_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # per-connection limits
    max_frame: int = 256 * 1024
    max_inflight: int = 32
    max_connections: int = 1024
    idle_timeout_s: float = 60.0  # silent and nothing in flight this long -> closed
    handshake_timeout_s: float = 5.0
    frame_timeout_s: float = 10.0  # a frame's body must arrive this long after its header
    # observability
    metrics_port: int | None = None  # Prometheus /metrics and /healthz; None = off, 0 = ephemeral
    metrics_host: str = "127.0.0.1"
    log_format: str = "json"  # "json" lines or "kv" (key=value)
    log_level: str = "INFO"
    # the paper's raw protocol (3072 planar bytes in, 1 class byte out); None = off
    compat_port: int | None = None
    compat_host: str | None = None  # None = same as host
    compat_model: str | None = None  # None = the default model
    compat_allow_unauthenticated: bool = False  # needed to expose the (key-less) compat port off loopback
    shutdown_grace_s: float = 10.0
    executor_threads: int = 0  # 0 = one per model (each model runs one batch at a time)

    # ---- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: Path | None = None) -> ServerConfig:
        data = dict(data)
        models_raw = data.pop("models", None)
        if not models_raw:
            raise ConfigError("config has no 'models': list at least one model (id, path)")
        models = []
        for i, raw in enumerate(models_raw):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"models[{i}] must be a mapping with at least 'id' and 'path'")
            raw = dict(raw)
            for required in ("id", "path"):
                if required not in raw:
                    raise ConfigError(f"models[{i}] is missing '{required}'")
            if base_dir is not None and not Path(str(raw["path"])).is_absolute():
                raw["path"] = str((base_dir / str(raw["path"])).resolve())
            models.append(_build(ModelConfig, raw, f"models[{i}]"))
        config = _build(cls, {**data, "models": models}, "server")
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
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
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
        for model in self.models:
            model.validate()
        if self.default_model is not None and self.default_model not in ids:
            raise ConfigError(f"default_model {self.default_model!r} is not one of the models {ids}")
        if self.compat_model is not None and self.compat_model not in ids:
            raise ConfigError(f"compat_model {self.compat_model!r} is not one of the models {ids}")
        if not HEADER_SIZE < self.max_frame <= ABSOLUTE_MAX_FRAME:
            raise ConfigError(f"max_frame {self.max_frame} must be {HEADER_SIZE + 1}..{ABSOLUTE_MAX_FRAME}")
        if not 1 <= self.max_inflight <= 65535:
            raise ConfigError(f"max_inflight {self.max_inflight} must be 1..65535")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if self.log_format not in ("json", "kv"):
            raise ConfigError(f"log_format {self.log_format!r} must be 'json' or 'kv'")
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
                raise ConfigError(f"cannot read auth_key_file {self.auth_key_file}: {exc}") from None
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


def _build(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(names)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
