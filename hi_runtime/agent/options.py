"""Command-line options shared by the agent's subcommands (run, demo, serial, gateway), and what they build.

They live apart from ``cli.py`` so that the serial bridge and the BLE gateway, which ``cli.py`` registers,
can use them without importing ``cli.py`` back.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from hi_runtime.cli_support import UsageError, at_least

KEY_ENV = "HI_AGENT_KEY"


def read_key(key_file: str | None) -> bytes | None:
    """The pre-shared key from --key-file or $HI_AGENT_KEY (stripped), as the server reads its own. An empty
    file is refused: sent as no key, every offload would fail authentication and be answered degraded."""
    if key_file:
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --key-file {key_file}: {exc.strerror or exc}") from None
        if not key:
            raise UsageError(f"--key-file {key_file} is empty; put the server's pre-shared key in it (the "
                             "hi-server --auth-key value)")
        return key
    env = os.environ.get(KEY_ENV)
    return env.encode("utf-8") if env else None


def add_backend_args(p: argparse.ArgumentParser) -> None:
    from hi_runtime.backends import BACKEND_CHOICES

    g = p.add_argument_group("local inference")
    g.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="interpreter for local models (auto: ai-edge-litert, tflite-runtime, tf.lite for .tflite; "
                        "onnxruntime for .onnx)")
    g.add_argument("--threads", type=at_least(1), default=None, help="interpreter threads (default: the runtime's)")
    g.add_argument("--reference-kernels", action="store_true",
                   help="TFLite reference kernels (slower): bit-exact with TFLite Micro on the boards for models "
                        "without FULLY_CONNECTED (the shipped resnet8_int8); the early-exit segments and ResNet-56 "
                        "use it, where TFLite Micro rounds a step differently (use --backend tflm for those)")


def add_server_args(p: argparse.ArgumentParser, *, default_budget_ms: float = 1000.0) -> None:
    g = p.add_argument_group("offloading")
    g.add_argument("--server", action="append", default=[], metavar="HOST:PORT",
                   help="offload server; repeat for failover (first = primary)")
    g.add_argument("--model-id", default="", help="server model id (default: the server's default model)")
    g.add_argument("--key-file", help=f"pre-shared key file (or ${KEY_ENV}); needed when the server requires it")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--tls-ca", help="CA bundle / server certificate to trust with --tls (default: system CAs)")
    g.add_argument("--latency-budget-ms", type=at_least(0, float, exclusive=True), default=None,
                   help="per-sample latency budget, from the sample's arrival to its final answer: no offload "
                        f"waits longer (default {default_budget_ms:g}, or the QoS config's); within it, the next "
                        "server is tried "
                        "once a request outlasts the recent round trips")
    g.add_argument("--connect-timeout", type=at_least(0, float, exclusive=True), default=1.0,
                   help="TCP connect + handshake timeout (s)")
    g.add_argument("--max-inflight", type=at_least(1), default=4, metavar="K",
                   help="requests in flight per connection (pipelined; the server's limit caps it; default 4)")
    g.add_argument("--connections", type=at_least(1), default=1, metavar="N",
                   help="connections per server (default 1)")
    g.add_argument("--max-attempts", type=at_least(1), default=3,
                   help="offload attempts per sample, across servers")


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
    """The client's TLS context; a --tls-ca that is missing or not PEM is named here, not by ssl's bare errno."""
    if not args.tls:
        return None
    import ssl

    if not args.tls_ca:
        return ssl.create_default_context()
    ca = Path(args.tls_ca)
    if not ca.is_file():
        what = "is a folder" if ca.is_dir() else "does not exist"
        raise UsageError(f"--tls-ca {args.tls_ca} {what}; give the server's certificate or its CA bundle (a PEM "
                         "file), or drop --tls-ca to trust the system CAs")
    try:
        return ssl.create_default_context(cafile=str(ca))
    except ssl.SSLError as exc:
        raise UsageError(f"--tls-ca {args.tls_ca} holds no PEM certificate ({exc.reason or exc}); give the "
                         "server's certificate or its CA bundle") from None


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
    p.add_argument("--limit", type=at_least(1), default=None, help="answer at most this many samples")
    p.add_argument("--offset", type=at_least(0), default=0, help="skip this many samples first")
    p.add_argument("--order", choices=DATASET_ORDERS, default="shuffled",
                   help="dataset splits: shuffled (fixed seed 0, so --limit takes a fair sample; "
                        "the default) or stored (class by class)")




# ---------------------------------------------------------------------------------------------------
# How the local model wants its input, and which early-exit model runs
# ---------------------------------------------------------------------------------------------------

def add_input_format_args(p: argparse.ArgumentParser) -> None:
    """How the local model wants its input (hi_runtime.input_spec): flags over the model's sidecar/card."""
    from hi_runtime.input_spec import add_cli_args

    add_cli_args(p)


def resolve_input_format(args, model_file: str | Path | None, embedded: dict | None = None, say=None):
    """The local model's input spec (``--input-spec``, the model's own, flags on top); ``say`` announces a
    spec other than raw NHWC pixels, and where it came from."""
    from hi_runtime.input_spec import from_cli

    fmt, source = from_cli(args, model_file, embedded)
    if say is not None and not fmt.is_identity:
        say(f"local model input: {fmt.describe()} (from {source})")
    return fmt


def load_chain_arg(path: str):
    """``--ee-chain``: a chain JSON (``hi-ee-chain/1``), anything else is a one-line usage error."""
    from hi_runtime.early_exit import EarlyExitError, SegmentChain

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--ee-chain {path} does not exist; give the chain JSON written by `hi-train early-exit` "
                         "or `hi-train split-ee`")
    with p.open("rb") as f:
        head = f.read(8)
    if p.suffix.lower() in (".tflite", ".onnx") or head[4:8] == b"TFL3":
        raise UsageError(f"--ee-chain takes a chain JSON, and {p.name} is a model file: run a single-file "
                         f"early-exit model with --model {path}, or split it into a chain with "
                         f"`hi-train split-ee {path} --out PREFIX`")
    try:
        return SegmentChain.load(p)
    except (EarlyExitError, AttributeError, TypeError) as exc:
        if isinstance(exc.__cause__, (UnicodeDecodeError, json.JSONDecodeError)):  # read_json's own line
            raise UsageError(f"--ee-chain: {exc}") from None
        raise UsageError(f"--ee-chain {path} is not a usable chain JSON ({exc}); give the .json written by "
                         "`hi-train early-exit` or `hi-train split-ee`") from None


def is_single_file_early_exit(path: str | Path) -> bool:
    """Whether a .tflite file has control flow (the IF operators of a single-file early-exit model)."""
    p = Path(path)
    if p.suffix.lower() != ".tflite" or not p.is_file():
        return False
    from hi_runtime.early_exit_graph import has_control_flow

    try:
        return has_control_flow(p.read_bytes())
    except (ValueError, ImportError):
        return False  # unreadable: open_backend says why
