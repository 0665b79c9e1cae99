"""Command-line options shared by the agent's subcommands (run, demo, serial, gateway), and what they build.

They live apart from ``cli.py`` so that the serial bridge and the BLE gateway, which ``cli.py`` registers,
can use them without importing ``cli.py`` back.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from hi_runtime.cli_support import UsageError

KEY_ENV = "HI_AGENT_KEY"


def read_key(key_file: str | None) -> bytes | None:
    """The pre-shared key from --key-file or $HI_AGENT_KEY (stripped), as the server reads its own."""
    if key_file:
        try:
            return Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --key-file {key_file}: {exc.strerror or exc}") from None
    env = os.environ.get(KEY_ENV)
    return env.encode("utf-8") if env else None


def add_backend_args(p: argparse.ArgumentParser) -> None:
    from hi_runtime.backends import BACKEND_CHOICES

    g = p.add_argument_group("local inference")
    g.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="interpreter for local models (auto: ai-edge-litert, tflite-runtime, tf.lite for .tflite; "
                        "onnxruntime for .onnx)")
    g.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the runtime's)")
    g.add_argument("--reference-kernels", action="store_true",
                   help="TFLite reference kernels: bit-exact with TFLite Micro on the boards, slower")


def add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("offloading")
    g.add_argument("--server", action="append", default=[], metavar="HOST:PORT",
                   help="offload server; repeat for failover (first = primary)")
    g.add_argument("--model-id", default="", help="server model id (default: the server's default model)")
    g.add_argument("--key-file", help=f"pre-shared key file (or ${KEY_ENV}); needed when the server requires it")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--tls-ca", help="CA bundle / server certificate to trust with --tls (default: system CAs)")
    g.add_argument("--latency-budget-ms", type=float, default=None,
                   help="per-sample latency budget, from the sample's arrival to its final answer: no offload "
                        "waits longer (default 1000, or the QoS config's); within it, the next server is tried "
                        "once a request outlasts the recent round trips")
    g.add_argument("--connect-timeout", type=float, default=1.0, help="TCP connect + handshake timeout (s)")
    g.add_argument("--max-inflight", type=int, default=4, metavar="K",
                   help="requests in flight per connection (pipelined; the server's limit caps it; default 4)")
    g.add_argument("--connections", type=int, default=1, metavar="N",
                   help="connections per server (default 1)")
    g.add_argument("--max-attempts", type=int, default=3, help="offload attempts per sample, across servers")


def add_arrival_args(p: argparse.ArgumentParser) -> None:
    from hi_runtime.agent.arrivals import ARRIVAL_FORMS

    p.add_argument("--arrival", default="closed", metavar="PROCESS",
                   help=f"how samples arrive: {', '.join(ARRIVAL_FORMS)} (closed: the next after the previous "
                        "answer, the paper's latency per inference; rate:30: a 30 fps camera, latency includes "
                        "queueing; burst: all at once, throughput). Default closed")
    p.add_argument("--no-admission", action="store_true",
                   help="offload even when the expected wait already exceeds the sample's deadline (default: "
                        "answer such samples locally at once, flagged shed)")


def parse_arrival(text: str):
    from hi_runtime.agent.arrivals import Arrival

    try:
        return Arrival.parse(text)
    except ValueError as exc:
        raise UsageError(f"--arrival: {exc}") from None


def _ssl_context(args):
    if not args.tls:
        return None
    import ssl

    ctx = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else ssl.create_default_context()
    return ctx


def build_offloader(args, budget_ms: float):
    """An Offloader from the shared server flags, or None without --server."""
    if not args.server:
        return None
    from hi_runtime.agent.offloader import Endpoint, OffloadConfig, Offloader

    try:
        endpoints = [Endpoint.parse(s) for s in args.server]
    except ValueError as exc:
        raise UsageError(f"--server: {exc}") from None
    try:
        cfg = OffloadConfig(endpoints=endpoints, model_id=args.model_id, key=read_key(args.key_file),
                            ssl_context=_ssl_context(args), latency_budget_ms=budget_ms,
                            connect_timeout=args.connect_timeout, max_attempts=args.max_attempts,
                            max_inflight=args.max_inflight, connections=getattr(args, "connections", 1))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Offloader(cfg)


def add_input_args(p: argparse.ArgumentParser) -> None:
    """--input/--limit/--offset/--order, shared by ``hi-agent run`` and ``hi-agent serial``."""
    from hi_runtime.agent.inputs import DATASET_ORDERS

    p.add_argument("--input", required=True, help="where samples come from (forms above)")
    p.add_argument("--limit", type=int, default=None, help="answer at most this many samples")
    p.add_argument("--offset", type=int, default=0, help="skip this many samples first")
    p.add_argument("--order", choices=DATASET_ORDERS, default="shuffled",
                   help="dataset splits: shuffled (fixed seed 0, so --limit takes a fair sample; "
                        "the default) or stored (class by class)")


