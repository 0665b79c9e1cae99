"""``hi-bench fleet``: N simulated devices offloading to an edge tier, as asyncio tasks.

Each device captures frames at a fixed rate (``--arrival rate:FPS``, random phase) or as a Poisson process
(``poisson:FPS``), and offloads each frame with probability P: ``--offload-prob P``, or the offload ratio
its decider card measured on the test split (``--decider-card``). Like the agent, a device keeps at most
``--device-inflight`` offloads open and waits at most its latency budget (``--deadline-ms``) for each; a
frame it cannot offload is answered by its local model, so every frame gets an answer. Outcomes:

* ``ok``: the server's RESULT arrived within the budget (its latency is counted in p50/p99);
* ``shed``: not sent, because the device's window was full, or refused by the server with BUSY;
* ``degraded``: sent, but answered locally because of an error, a timeout or a broken connection.

Against any server (``--server HOST:PORT``, repeatable for failover: a device moves to the next one after
a connection failure) it reports throughput, p50/p99, shed/degraded counts and, with ``--metrics-url``,
the per-replica load from the server's Prometheus counters. With ``--local ray --replicas 1,2`` it starts
the front door and a local Ray Serve deployment itself and measures each replica count in turn, in one run,
alternating (``--rounds``), so the printed ratio compares like with like on a noisy machine. The devices
then run in a child process, so they do not share the front door's interpreter.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hi_runtime.cli_support import at_least, fraction, output_file

DEFAULT_MODEL = "server.onnx"  # the shipped edge model (hi_runtime.artifacts finds it wherever installed)


# ---- configuration ----------------------------------------------------------------------------------------


@dataclass
class Arrival:
    kind: str  # "rate" (fixed period, random phase) or "poisson"
    fps: float

    @classmethod
    def parse(cls, text: str) -> Arrival:
        kind, sep, value = text.partition(":")
        try:
            fps = float(value)
        except ValueError:
            fps = float("nan")
        if not sep or kind not in ("rate", "poisson") or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"--arrival {text!r} must be rate:FPS or poisson:FPS with FPS > 0, e.g. rate:10")
        return cls(kind, fps)


@dataclass
class FleetConfig:
    servers: list[tuple[str, int]]
    devices: int = 50
    arrival: Arrival = field(default_factory=lambda: Arrival("rate", 10.0))
    offload_prob: float = 0.3
    duration_s: float = 10.0
    deadline_ms: float = 100.0
    device_inflight: int = 4
    model_id: str = "cifar10"
    key: bytes | None = None
    seed: int = 0
    frames_per_device: int | None = None  # stop after this many frames instead of after duration_s


@dataclass
class FleetResult:
    label: str
    devices: int
    duration_s: float
    frames: int
    local: int  # the decider kept the frame on the device
    offloaded: int  # attempts sent to a server
    ok: int
    shed: int
    degraded: int
    errors: dict[str, int]
    latencies_ms: list[float] = field(repr=False)
    replica_load: dict[str, int] = field(default_factory=dict)
    offered_rps: float = 0.0

    @property
    def throughput_rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_ms"}
        out.update(throughput_rps=round(self.throughput_rps, 2), p50_ms=_round(self.percentile(50)),
                   p99_ms=_round(self.percentile(99)))
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def offload_prob_from_card(path: Path) -> float:
    """The offload ratio a decider card measured on its test split (what the device would offload)."""
    try:
        card = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--decider-card {path} does not exist (the shipped one: "
                         "models/cifar10/decider_resnet8.card.json)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"--decider-card {path} is not a readable JSON card: {exc}") from None
    ratio = (card.get("test") or {}).get("offload_ratio")
    if not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ValueError(f"--decider-card {path} has no test.offload_ratio in [0, 1]: is it a decider card?")
    return float(ratio)


# ---- the simulation ---------------------------------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.frames = self.local = self.offloaded = self.ok = self.shed = self.degraded = 0
        self.errors: Counter[str] = Counter()
        self.latencies_ms: list[float] = []


async def _device(idx: int, cfg: FleetConfig, images: Any, tally: _Tally, t0: float, t_end: float) -> None:
    from hi_runtime.offload_client import AsyncOffloadClient, OffloadError, OffloadServerError
    from hi_runtime.protocol import ErrorCode

    loop = asyncio.get_running_loop()
    rng = random.Random(cfg.seed * 100_003 + idx)
    period = 1.0 / cfg.arrival.fps
    server_index = idx % len(cfg.servers)  # spread devices over the front doors; fail over in order
    client: AsyncOffloadClient | None = None
    lock = asyncio.Lock()
    inflight: set[asyncio.Task] = set()

    async def connected() -> AsyncOffloadClient:
        nonlocal client
        async with lock:  # one connection per device, shared by its pipelined offloads
            if client is None or not client.connected:
                host, port = cfg.servers[server_index]
                fresh = AsyncOffloadClient(host, port, key=cfg.key, client_name=f"fleet{idx}",
                                           connect_timeout=max(1.0, cfg.deadline_ms / 1e3), max_inflight=1024)
                await fresh.connect()
                client = fresh
            return client

    def fail_over() -> None:
        nonlocal server_index, client
        server_index = (server_index + 1) % len(cfg.servers)
        client = None

    async def offload(frame: int) -> None:
        sent = time.perf_counter()
        deadline = cfg.deadline_ms / 1e3
        try:
            c = await asyncio.wait_for(connected(), deadline)
            remaining = deadline - (time.perf_counter() - sent)
            if remaining <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(c.infer(images[frame % len(images)], cfg.model_id), remaining)
        except asyncio.TimeoutError:
            tally.degraded += 1
            tally.errors["deadline"] += 1
            return
        except OffloadServerError as exc:  # BUSY: the server shed it; anything else: answered locally, flagged
            try:
                name = ErrorCode(exc.code).name
            except ValueError:
                name = f"code {exc.code}"
            if name == "BUSY":
                tally.shed += 1
            else:
                tally.degraded += 1
            tally.errors[name] += 1
            if exc.request_id == 0:  # the server closed the connection: next time, the next front door
                fail_over()
            return
        except (OffloadError, OSError) as exc:
            tally.degraded += 1
            tally.errors[type(exc).__name__] += 1
            fail_over()
            return
        tally.ok += 1
        tally.latencies_ms.append((time.perf_counter() - sent) * 1e3)

    next_t = t0 + (rng.uniform(0, period) if cfg.arrival.kind == "rate" else rng.expovariate(cfg.arrival.fps))
    frame = idx * 7
    sent_frames = 0
    while next_t < t_end and (cfg.frames_per_device is None or sent_frames < cfg.frames_per_device):
        delay = next_t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tally.frames += 1
        sent_frames += 1
        frame += 1
        if rng.random() >= cfg.offload_prob:
            tally.local += 1
        elif len(inflight) >= cfg.device_inflight:
            tally.shed += 1
            tally.errors["device window full"] += 1
        else:
            tally.offloaded += 1
            task = loop.create_task(offload(frame))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        next_t += period if cfg.arrival.kind == "rate" else rng.expovariate(cfg.arrival.fps)
    if inflight:
        await asyncio.gather(*inflight, return_exceptions=True)
    if client is not None:
        await client.close()


async def simulate(cfg: FleetConfig, label: str = "", progress: bool = False) -> FleetResult:
    """Run the fleet for ``duration_s`` (or ``frames_per_device``) and count what happened to each frame."""
    import numpy as np

    images = np.random.default_rng(cfg.seed).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    tally = _Tally()
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    horizon = cfg.duration_s if cfg.frames_per_device is None else 1e9
    t_end = t0 + horizon
    started = time.perf_counter()
    tasks = [loop.create_task(_device(i, cfg, images, tally, t0, t_end)) for i in range(cfg.devices)]
    reporter = loop.create_task(_progress(tally, cfg, started)) if progress else None
    try:
        await asyncio.gather(*tasks)
    finally:
        if reporter is not None:
            reporter.cancel()
    elapsed = time.perf_counter() - started  # traffic plus the drain of the last offloads: answers / wall time
    return FleetResult(label or ",".join(f"{h}:{p}" for h, p in cfg.servers), cfg.devices, elapsed, tally.frames,
                       tally.local, tally.offloaded, tally.ok, tally.shed, tally.degraded, dict(tally.errors),
                       tally.latencies_ms,
                       offered_rps=cfg.devices * cfg.arrival.fps * cfg.offload_prob)


async def _progress(tally: _Tally, cfg: FleetConfig, started: float) -> None:
    while True:
        await asyncio.sleep(2.0)
        print(f"  ... {time.perf_counter() - started:5.1f}/{cfg.duration_s:g} s: {tally.frames} frames, "
              f"{tally.ok} ok, {tally.shed} shed, {tally.degraded} degraded", file=sys.stderr, flush=True)


def _simulate_in_child(cfg: FleetConfig, label: str, conn) -> None:
    try:
        result = asyncio.run(simulate(cfg, label, progress=True))
        conn.send(("ok", result))
    except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


def simulate_in_child(cfg: FleetConfig, label: str) -> FleetResult:
    """The same simulation in a spawned process, so the devices do not share the server's interpreter."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_simulate_in_child, args=(cfg, label, child), daemon=True)
    proc.start()
    child.close()
    timeout = (cfg.duration_s if cfg.frames_per_device is None else 600) + 120
    if not parent.poll(timeout):
        proc.kill()
        raise RuntimeError(f"the fleet simulation did not finish within {timeout:.0f} s")
    status, payload = parent.recv()
    proc.join(10)
    if status != "ok":
        raise RuntimeError(f"the fleet simulation failed: {payload}")
    return payload


# ---- per-replica load from the server's metrics -----------------------------------------------------------


def replica_counts_from_registry(registry: Any) -> dict[str, int]:
    """``hi_server_replica_requests_total`` per replica, from a prometheus_client registry."""
    out: dict[str, int] = {}
    for family in registry.collect():
        if family.name == "hi_server_replica_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels["replica"]
                    out[key] = out.get(key, 0) + int(sample.value)
    return out


def replica_counts_from_url(url: str) -> dict[str, int]:
    """The same counters scraped from a server's /metrics endpoint."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError as exc:
        raise ValueError(f"--metrics-url {url} cannot be read ({exc}); give the server's metrics endpoint, "
                         "e.g. http://127.0.0.1:9108/metrics") from None
    out: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "hi_server_replica_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = sample.labels["replica"]
                    out[key] = out.get(key, 0) + int(sample.value)
    return out


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0) > 0}


# ---- local servers (one box): in-process, or Ray Serve with a given replica count ------------------------


def _local_server_config(args: argparse.Namespace, model_path: Path, backend: str, replicas: int):
    from offload_server.config import ModelConfig, RayConfig, ServerConfig

    # the same cores either way: one replica may use them all, N replicas split them
    threads = args.threads or (max(1, (os.cpu_count() or 1) // replicas) if backend == "ray" else 0)
    model = ModelConfig(id=args.model_id, path=str(model_path), max_batch_size=args.max_batch_size,
                        max_queue_delay_us=args.max_queue_delay_us, num_threads=threads)
    ray = RayConfig(num_replicas=replicas, ray_actor_options={"num_cpus": 1}, deploy="always",
                    keep_app_on_stop=True, app_prefix="hi-fleet")
    limit = max(1024, args.devices + 16)
    # devices give up at their deadline: the server need not keep working on requests much older than that
    return ServerConfig(models=[model], host="127.0.0.1", port=0, backend=backend, ray=ray, log_level="WARNING",
                        max_connections=limit, max_connections_per_peer=limit, idle_timeout_s=600,
                        request_timeout_s=max(1.0, 2 * args.deadline_ms / 1e3))


def _run_local(args: argparse.Namespace, cfg: FleetConfig) -> list[FleetResult]:
    try:
        return _run_local_rounds(args, cfg)
    except TimeoutError:
        raise RuntimeError("a local server did not stop in time (overloaded?); try a lower --arrival") from None


def _run_local_rounds(args: argparse.Namespace, cfg: FleetConfig) -> list[FleetResult]:
    import logging

    from offload_server.server import run_server_in_thread

    model_path = _model_for(args)
    started_ray = False
    labels: list[tuple[str, int]] = []
    if args.local == "inprocess":
        labels = [("inprocess", 1)] * args.rounds
    else:
        counts = _parse_replicas(args.replicas)
        per_round = ([("inprocess", 0)] if args.baseline else []) + [(f"ray x{n}", n) for n in counts]
        labels = per_round * args.rounds
        import ray

        if not ray.is_initialized():
            print(f"starting a local Ray ({args.ray_cpus} CPUs) ...", file=sys.stderr, flush=True)
            os.environ.setdefault("RAY_worker_niceness", "0")  # replicas compete on equal terms (Ray: 15)
            ray.init(num_cpus=args.ray_cpus, include_dashboard=False, logging_level=logging.WARNING)
            started_ray = True
    results = []
    try:
        for label, replicas in labels:
            backend = "ray" if args.local == "ray" and replicas > 0 else "inprocess"
            config = _local_server_config(args, model_path, backend, max(1, replicas))
            print(f"== {label}: starting the front door ...", file=sys.stderr, flush=True)
            with run_server_in_thread(config) as handle:
                cfg.servers = [("127.0.0.1", handle.port)]
                before = replica_counts_from_registry(handle.server.metrics.registry)
                result = simulate_in_child(cfg, label)
                result.replica_load = diff_counts(replica_counts_from_registry(handle.server.metrics.registry), before)
            results.append(result)
            print(format_result(result), flush=True)
    finally:
        if args.local == "ray":
            _delete_fleet_apps(shutdown=started_ray)
    return results


def _delete_fleet_apps(shutdown: bool) -> None:
    import ray
    from ray import serve

    if not ray.is_initialized():  # Serve calls would start a new local Ray
        return
    try:
        for name in list(serve.status().applications):
            if name.startswith("hi-fleet-"):
                serve.delete(name)
    finally:
        if shutdown:  # only a Ray this command started
            ray.shutdown()


def _parse_replicas(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--replicas {text!r} must be a comma list of replica counts >= 1, e.g. 1,2")
    return counts


def _model_for(args: argparse.Namespace) -> Path:
    if args.standin:
        import tempfile

        from offload_server.standin import build_standin_onnx

        folder = Path(tempfile.mkdtemp(prefix="hi-fleet-"))
        return build_standin_onnx(folder / f"standin_{args.standin}.onnx", kind=args.standin, width=args.standin_width)
    if args.model is None:
        from hi_runtime.artifacts import shipped

        args.model = shipped(DEFAULT_MODEL)
    if not Path(args.model).is_file():
        raise ValueError(f"--model {args.model} does not exist (give a model file, or --standin cnn)")
    return Path(args.model)


# ---- reporting --------------------------------------------------------------------------------------------


def format_result(r: FleetResult) -> str:
    p50, p99 = r.percentile(50), r.percentile(99)
    lat = "n/a" if p50 is None else f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    load = ", ".join(f"{k}: {v}" for k, v in r.replica_load.items()) or "unknown (give --metrics-url)"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "none"
    return (f"{r.label}: {r.devices} devices, {r.frames} frames in {r.duration_s:.1f} s, offered "
            f"{r.offered_rps:.1f} offloads/s; {r.offloaded} sent, {r.ok} ok ({r.throughput_rps:.1f}/s), {lat}; "
            f"shed {r.shed}, degraded {r.degraded} (errors: {errors}); per replica: {load}")


def compare_replicas(results: list[FleetResult]) -> str | None:
    """Mean throughput per replica count over the rounds, and each count's ratio to the first."""
    by_count: dict[str, list[float]] = {}
    for r in results:
        by_count.setdefault(r.label, []).append(r.throughput_rps)
    if len(by_count) < 2:
        return None
    labels = list(by_count)
    base = sum(by_count[labels[0]]) / len(by_count[labels[0]])
    parts = []
    for label in labels:
        mean = sum(by_count[label]) / len(by_count[label])
        ratio = mean / base if base else float("nan")
        parts.append(f"{label}: {mean:.1f} req/s ({ratio:.2f}x)")
    return "throughput by replica count (mean of rounds, measured alternately in this run): " + "; ".join(parts)


def plot(results: list[FleetResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for r in results:
        if r.latencies_ms:
            xs = sorted(r.latencies_ms)
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=r.label)
    ax.set_xlabel("offload latency at the device (ms)")
    ax.set_ylabel("fraction of answered offloads")
    ax.set_title("latency CDF (ok answers)")
    if any(r.latencies_ms for r in results):
        ax.legend(fontsize=8)
    ax = axes[1]
    names = [f"{i + 1}: {r.label}" for i, r in enumerate(results)]
    bottom = [0.0] * len(results)
    for key, colour in (("ok", "tab:green"), ("shed", "tab:orange"), ("degraded", "tab:red")):
        values = [getattr(r, key) / r.duration_s for r in results]
        ax.bar(names, values, bottom=bottom, label=key, color=colour)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("offloads per second")
    ax.set_title("what happened to the offloads")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax = axes[2]
    drawn = False
    for i, r in enumerate(results):
        width = 0.8 / max(1, len(r.replica_load))
        for j, (replica, count) in enumerate(sorted(r.replica_load.items())):
            ax.bar(i - 0.4 + (j + 0.5) * width, count / r.duration_s, width=width * 0.95, color=f"C{j}")
            ax.text(i - 0.4 + (j + 0.5) * width, count / r.duration_s, replica, ha="center", va="bottom", fontsize=7)
            drawn = True
    ax.set_xticks(range(len(results)), names, rotation=20, fontsize=8)
    ax.set_ylabel("requests per second")
    ax.set_title("load per replica" if drawn else "load per replica (unknown: no metrics)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- command line -----------------------------------------------------------------------------------------


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("fleet", help="simulate N devices offloading to an edge tier (throughput, p99, shed)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=50, help="simulated devices (default 50)")
    p.add_argument("--arrival", default="rate:10", help="frames per device: rate:FPS or poisson:FPS (default rate:10)")
    odds = p.add_mutually_exclusive_group()
    odds.add_argument("--offload-prob", type=fraction, help="probability that a frame is offloaded (default 0.3)")
    odds.add_argument("--decider-card", type=Path, help="take it from a decider card's test offload ratio")
    p.add_argument("--duration", type=at_least(0, float, exclusive=True), default=10.0, help="seconds of simulated traffic per run (default 10)")
    p.add_argument("--deadline-ms", type=at_least(0, float, exclusive=True), default=100.0,
                   help="a device's latency budget per offload (default 100, the agent's default)")
    p.add_argument("--device-inflight", type=int, default=4, help="offloads a device keeps open (default 4)")
    p.add_argument("--model-id", default="cifar10", help="model id to request (default cifar10)")
    p.add_argument("--seed", type=int, default=0)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", action="append", metavar="HOST:PORT",
                       help="front door(s) to offload to (repeat: devices spread over them and fail over)")
    where.add_argument("--local", choices=["inprocess", "ray"],
                       help="start the server here: in-process, or a local Ray Serve deployment (--replicas)")
    p.add_argument("--key-file", type=Path, help="pre-shared key of the server")
    p.add_argument("--metrics-url", help="the server's /metrics, for the per-replica load (with --server)")
    local = p.add_argument_group("with --local")
    local.add_argument("--replicas", default="1,2", help="replica counts to compare with --local ray (default 1,2)")
    local.add_argument("--rounds", type=int, default=1, help="times each replica count is measured, alternating")
    local.add_argument("--baseline", action="store_true",
                       help="with --local ray: also measure the in-process backend in every round")
    local.add_argument("--model", type=Path, default=None,
                       help=f"model to serve (default: the shipped {DEFAULT_MODEL}, wherever installed)")
    local.add_argument("--standin", choices=["linear", "cnn"], help="serve a stand-in ONNX model instead of --model")
    local.add_argument("--standin-width", type=int, default=32, help="channels of the stand-in CNN (default 32)")
    local.add_argument("--max-batch-size", type=int, default=32)
    local.add_argument("--max-queue-delay-us", type=int, default=2000)
    local.add_argument("--threads", type=int, default=0,
                       help="ONNX Runtime threads per replica (default: this machine's cores / replicas)")
    local.add_argument("--ray-cpus", type=int, default=4, help="logical CPUs of the local Ray (default 4)")
    p.add_argument("--plot", type=Path, default=Path("fleet.png"),
                   help="figure to write (default fleet.png; .png is added to a name without a suffix)")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.set_defaults(func=run)


def fleet_config_from_args(args: argparse.Namespace) -> FleetConfig:
    from hi_runtime.agent.offloader import Endpoint

    if args.devices < 1:
        raise ValueError(f"--devices {args.devices} must be >= 1")
    if args.duration <= 0 or args.deadline_ms <= 0 or args.device_inflight < 1 or args.rounds < 1:
        raise ValueError("--duration, --deadline-ms, --device-inflight and --rounds must be positive")
    if args.decider_card is not None:
        prob = offload_prob_from_card(args.decider_card)
    else:
        prob = 0.3 if args.offload_prob is None else args.offload_prob
    if not 0 <= prob <= 1:
        raise ValueError(f"--offload-prob {prob} must be in [0, 1]")
    servers = []
    for text in args.server or []:
        ep = Endpoint.parse(text)
        servers.append((ep.host, ep.port))
    key = None
    if args.key_file is not None:
        try:
            key = args.key_file.read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"--key-file {args.key_file} cannot be read: {exc.strerror or exc}") from None
    return FleetConfig(servers=servers or [("127.0.0.1", 0)], devices=args.devices, arrival=Arrival.parse(args.arrival),
                       offload_prob=prob, duration_s=args.duration, deadline_ms=args.deadline_ms,
                       device_inflight=args.device_inflight, model_id=args.model_id, key=key, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    if not args.plot.suffix:
        args.plot = args.plot.with_suffix(".png")  # what savefig would write: checked and named as such
    output_file("--plot", args.plot, "fleet.png")  # before the traffic, not after it
    try:
        cfg = fleet_config_from_args(args)
        if args.local and args.metrics_url:
            raise ValueError("--metrics-url is for --server; with --local the load per replica is read directly")
        if args.local:
            results = _run_local(args, cfg)
        else:
            results = []
            for _ in range(args.rounds):
                before = replica_counts_from_url(args.metrics_url) if args.metrics_url else {}
                result = asyncio.run(simulate(cfg, progress=True))
                if args.metrics_url:
                    result.replica_load = diff_counts(replica_counts_from_url(args.metrics_url), before)
                results.append(result)
                print(format_result(result), flush=True)
    except ValueError as exc:
        print(f"hi-bench fleet: error: {exc}", file=sys.stderr)
        return 2
    line = compare_replicas(results)
    if line:
        print(line)
    plot(results, args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.summary() for r in results], indent=1))
        print(f"results: {args.json}")
    return 0
