"""hi-server: serve large models to HI devices over the offload protocol (docs/server.md).

Settings come from a YAML config (--config) and are overridden by flags; with no config, --model ID=PATH
serves a model file directly. SIGINT/SIGTERM stop the server gracefully (accepted requests are answered).
A user mistake (a bad flag value, a wrong setting, a missing file, a port in use) is one line on stderr
naming what was wrong and the fix, with exit status 2; never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from hi_runtime.cli_support import Parser, UsageError, at_least, run
from offload_server.config import KEY_ENV, ConfigError, ModelConfig, ServerConfig, build, set_checked


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="hi-server",
        description="Edge offload server of the HI runtime: dynamic batching over ONNX Runtime / LiteRT models, "
                    "in this process or on Ray Serve replicas (--backend ray).",
        epilog="Examples: hi-server --config configs/server.yaml   |   hi-server --config configs/server-ray.yaml "
               "(see docs/server.md)",
    )
    ap.add_argument("--config", help="YAML config file (see configs/server.yaml)")
    ap.add_argument("--model", action="append", default=[], metavar="ID=PATH",
                    help="serve a model file (.onnx or .tflite) under ID; repeatable; added to the config's models")
    ap.add_argument("--host", help="address to bind (default 127.0.0.1; non-loopback needs a key)")
    ap.add_argument("--port", type=int, help="protocol port (default 8555; 0 = any free port)")
    ap.add_argument("--key-file", help=f"file holding the pre-shared key (or set ${KEY_ENV})")
    ap.add_argument("--tls-cert", help="PEM certificate: serve TLS (with --tls-key)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ap.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics and /healthz on this port")
    ap.add_argument("--metrics-host", help="address of the metrics endpoint (default 127.0.0.1)")
    ap.add_argument("--compat-port", type=int, help="also speak the paper's raw protocol on this port")
    ap.add_argument("--compat-host", help="address of the compatibility port (default: --host)")
    ap.add_argument("--compat-allow-unauthenticated", action="store_true", default=None,
                    help="allow the key-less compatibility port on a non-loopback address")
    ap.add_argument("--compat-reply-bytes", type=int, choices=[1, 2],
                    help="compat port answer width: 1 byte (default) or 2 (uint16 little-endian)")
    ap.add_argument("--max-batch-size", type=int, help="override every model's max_batch_size")
    ap.add_argument("--max-queue-delay-us", type=int, help="override every model's max_queue_delay_us")
    ap.add_argument("--max-inflight", type=int, help="requests in flight per connection")
    ap.add_argument("--max-frame", type=int, help="largest accepted frame in bytes")
    ap.add_argument("--max-connections-per-peer", type=int, help="open connections per client address")
    ap.add_argument("--idle-timeout", type=at_least(0, float, exclusive=True), dest="idle_timeout_s", help="seconds before idle connections close")
    ap.add_argument("--log-format", choices=["json", "kv"], help="structured log format (default json)")
    ap.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    ray = ap.add_argument_group("Ray Serve backend (pip install 'hi-runtime[cluster]'; docs/server.md, Scaling out)")
    ray.add_argument("--backend", choices=["inprocess", "ray"],
                     help="where the models run: in this process (default) or on a Ray Serve deployment")
    ray.add_argument("--ray-address", help="Ray cluster to join: 'auto' (after `ray start`) or ray://HOST:10001; "
                                           "unset = start a local Ray")
    ray.add_argument("--replicas", type=int, help="replicas per model (ray.num_replicas)")
    ray.add_argument("--gpus-per-replica", type=at_least(0, float), help="GPUs per replica (ray.ray_actor_options.num_gpus)")
    ap.add_argument("--check", action="store_true",
                    help="load the config and models in this process, print a summary, exit (no cluster needed)")
    ap.set_defaults(func=serve_or_check)
    return ap


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from hi_runtime.artifacts import find_model

    config = ServerConfig.from_yaml(args.config) if args.config else ServerConfig()
    for spec in args.model:
        model_id, sep, path = spec.partition("=")
        if not sep or not model_id or not path:
            raise ConfigError(f"--model {spec!r} must look like ID=PATH, e.g. --model resnet56=models/x.onnx")
        config.models.append(build(ModelConfig, {"id": model_id, "path": find_model(path)}))
    if not config.models:
        raise ConfigError("nothing to serve: give --config FILE or --model ID=PATH")
    overrides = {
        "host": args.host, "port": args.port, "auth_key_file": args.key_file, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key, "metrics_port": args.metrics_port, "metrics_host": args.metrics_host,
        "compat_port": args.compat_port, "compat_host": args.compat_host,
        "compat_allow_unauthenticated": args.compat_allow_unauthenticated,
        "compat_reply_bytes": args.compat_reply_bytes, "max_inflight": args.max_inflight,
        "max_frame": args.max_frame, "max_connections_per_peer": args.max_connections_per_peer,
        "idle_timeout_s": args.idle_timeout_s, "log_format": args.log_format, "log_level": args.log_level,
        "backend": args.backend,
    }
    for name, value in overrides.items():
        if value is not None:
            set_checked(config, name, value)
    if args.ray_address is not None:
        set_checked(config.ray, "address", args.ray_address)
    if args.replicas is not None:
        set_checked(config.ray, "num_replicas", args.replicas)
        set_checked(config.ray, "autoscaling_config", None)
    if args.gpus_per_replica is not None:
        set_checked(config.ray, "ray_actor_options", {**config.ray.ray_actor_options,
                                                      "num_gpus": args.gpus_per_replica})
    for model in config.models:
        if args.max_batch_size is not None:
            set_checked(model, "max_batch_size", args.max_batch_size)
        if args.max_queue_delay_us is not None:
            set_checked(model, "max_queue_delay_us", args.max_queue_delay_us)
    config.validate()
    if config.backend == "ray":
        check_ray_settings(config)
    return config


def check_ray_settings(config: ServerConfig) -> None:
    """Ray must be installed, and Serve must accept the deployment options (before any cluster starts)."""
    try:
        from offload_server import ray_backend
    except ImportError as exc:
        raise ConfigError(f"backend: ray needs Ray Serve ({exc}): pip install 'hi-runtime[cluster]', "
                          "or use backend: inprocess") from None
    for model in config.models:
        ray_backend.check_options(model, config.ray)


async def _serve(config: ServerConfig) -> None:
    from offload_server.server import OffloadServer

    server = OffloadServer(config)
    await server.start()  # before the signal handlers: ray.init installs its own SIGTERM handler
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        await stop.wait()
    finally:
        await server.stop()


async def _check(config: ServerConfig) -> None:
    """Load every model in this process (also for backend: ray, whose replicas load the same files), so a
    bad file or setting shows before a cluster is involved."""
    from offload_server.server import OffloadServer

    backend = config.backend
    config.backend = "inprocess"
    config.port = 0
    config.metrics_port = None
    config.compat_port = None if config.compat_port is None else 0
    server = OffloadServer(config)
    await server.start()
    summary = {mid: {"backend": m.backend.description, "input_shape": list(m.backend.input.shape),
                     "input_dtype": str(m.backend.input.dtype), "max_batch_size": m.config.max_batch_size,
                     "max_queue_delay_us": m.config.max_queue_delay_us} for mid, m in server.models.items()}
    await server.stop()
    out: dict[str, object] = {"ok": True, "backend": backend, "models": summary,
                              "default_model": config.default_model_id}
    if backend == "ray":
        ray = config.ray
        out["ray"] = {"address": ray.address, "num_replicas": None if ray.autoscaling_config else ray.num_replicas,
                      "autoscaling_config": ray.autoscaling_config, "ray_actor_options": ray.ray_actor_options,
                      "deploy": ray.deploy}
    print(json.dumps(out, indent=1))


def serve_or_check(args: argparse.Namespace) -> int:
    from offload_server import logs

    config = config_from_args(args)
    logs.configure(config.log_format, config.log_level)
    try:
        asyncio.run(_check(config) if args.check else _serve(config))
    except OSError as exc:  # e.g. port already in use, unreadable certificate
        raise UsageError(f"{exc} (is another server using the port? try --port; check the paths in the config)") \
            from None
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv, tool="hi-server", user_errors=(ConfigError,))


if __name__ == "__main__":
    sys.exit(main())
