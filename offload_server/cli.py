"""hi-server: serve large models to HI devices over the offload protocol (docs/server.md).

Settings come from a YAML config (--config) and are overridden by flags; with no config, --model ID=PATH
serves a model file directly. SIGINT/SIGTERM stop the server gracefully (accepted requests are answered).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from offload_server.config import KEY_ENV, ConfigError, ModelConfig, ServerConfig


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="hi-server",
        description="Edge offload server of the HI runtime: dynamic batching over ONNX Runtime / LiteRT models.",
        epilog="Example: hi-server --config configs/server.yaml   (see docs/server.md)",
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
    ap.add_argument("--max-batch-size", type=int, help="override every model's max_batch_size")
    ap.add_argument("--max-queue-delay-us", type=int, help="override every model's max_queue_delay_us")
    ap.add_argument("--max-inflight", type=int, help="requests in flight per connection")
    ap.add_argument("--max-frame", type=int, help="largest accepted frame in bytes")
    ap.add_argument("--idle-timeout", type=float, dest="idle_timeout_s", help="seconds before idle connections close")
    ap.add_argument("--log-format", choices=["json", "kv"], help="structured log format (default json)")
    ap.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    ap.add_argument("--check", action="store_true", help="load the config and models, print a summary, exit")
    return ap


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig.from_yaml(args.config) if args.config else ServerConfig()
    for spec in args.model:
        model_id, sep, path = spec.partition("=")
        if not sep or not model_id or not path:
            raise ConfigError(f"--model {spec!r} must look like ID=PATH, e.g. --model resnet56=models/x.onnx")
        config.models.append(ModelConfig(id=model_id, path=path))
    if not config.models:
        raise ConfigError("nothing to serve: give --config FILE or --model ID=PATH")
    overrides = {
        "host": args.host, "port": args.port, "auth_key_file": args.key_file, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key, "metrics_port": args.metrics_port, "metrics_host": args.metrics_host,
        "compat_port": args.compat_port, "compat_host": args.compat_host,
        "compat_allow_unauthenticated": args.compat_allow_unauthenticated, "max_inflight": args.max_inflight,
        "max_frame": args.max_frame, "idle_timeout_s": args.idle_timeout_s, "log_format": args.log_format,
        "log_level": args.log_level,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    for model in config.models:
        if args.max_batch_size is not None:
            model.max_batch_size = args.max_batch_size
        if args.max_queue_delay_us is not None:
            model.max_queue_delay_us = args.max_queue_delay_us
    config.validate()
    return config


async def _serve(config: ServerConfig) -> None:
    from offload_server.server import OffloadServer

    server = OffloadServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    await server.serve_forever(stop)


async def _check(config: ServerConfig) -> None:
    from offload_server.server import OffloadServer

    config.port = 0
    config.metrics_port = None
    config.compat_port = None if config.compat_port is None else 0
    server = OffloadServer(config)
    await server.start()
    summary = {mid: {"backend": m.backend.description, "input_shape": list(m.backend.input.shape),
                     "input_dtype": str(m.backend.input.dtype), "max_batch_size": m.config.max_batch_size,
                     "max_queue_delay_us": m.config.max_queue_delay_us} for mid, m in server.models.items()}
    await server.stop()
    print(json.dumps({"ok": True, "models": summary, "default_model": config.default_model_id}, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from offload_server import logs

    try:
        config = config_from_args(args)
        logs.configure(config.log_format, config.log_level)
        asyncio.run(_check(config) if args.check else _serve(config))
    except ConfigError as exc:
        print(f"hi-server: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. port already in use
        print(f"hi-server: error: {exc} (is another server using the port? try --port)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
