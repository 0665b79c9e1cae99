"""Loopback load test of hi-server: dynamic batching against batch-1 serving of the same model, same run.

N concurrent clients (asyncio, in a separate process so they do not share the server's GIL) each send a
fixed number of requests one after another, like devices offloading; the script reports throughput and
p50/p99 latency per serving mode. Run as ``python measurements/bench_server.py --help`` or ``hi-bench server``.

The shipped server model is ``models/cifar10/server.onnx``; ``--standin cnn`` builds a small stand-in ONNX
CNN in a temp dir instead (numbers from a stand-in say nothing about the shipped model).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL = "server.onnx"  # the shipped server model (hi_runtime.artifacts finds it wherever installed)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model", type=Path, default=None,
                    help=f"model to serve (default: the shipped {DEFAULT_MODEL}, wherever installed; $HI_MODELS_DIR "
                         "overrides)")
    ap.add_argument("--standin", choices=["linear", "cnn"],
                    help="serve a stand-in ONNX model built in a temp dir instead of --model")
    ap.add_argument("--standin-width", type=int, default=32, help="channels of the stand-in CNN (default 32)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    ap.add_argument("--requests", type=int, default=50, help="requests per client (default 50)")
    ap.add_argument("--warmup", type=int, default=2, help="uncounted requests per client first (default 2)")
    ap.add_argument("--max-batch-size", type=int, default=64, help="batch limit of the batched mode (default 64)")
    ap.add_argument("--max-queue-delay-us", type=int, default=2000,
                    help="queue delay of the batched mode in microseconds (default 2000)")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    ap.add_argument("--modes", default="batch1,batched", help="comma list of batch1 and batched (default both)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")


def register_cli(subparsers) -> None:
    """``hi-bench server``."""
    ap = subparsers.add_parser("server", help="load-test hi-server: dynamic batching vs batch-1 on loopback",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    ap.set_defaults(func=run)


# ---- load generator (runs in a child process) -------------------------------------------------------------


def _load_worker(port: int, clients: int, requests: int, warmup: int, model_id: str, conn) -> None:
    import asyncio

    import numpy as np

    from hi_runtime import protocol as p

    images = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    frames = [p.Infer.from_array(img, model_id, 0) for img in images]

    async def client(idx: int, start: asyncio.Event, latencies: list[float], errors: list[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await p.write_frame(writer, p.Hello(client_nonce=p.new_nonce(), client_name=f"bench{idx}"))
        welcome = await p.read_frame(reader)
        if not isinstance(welcome, p.Welcome):
            raise RuntimeError(f"handshake failed: {welcome}")
        for n in range(warmup + requests):
            if n == warmup:
                await start.wait()
            base = frames[(idx * 7 + n) % len(frames)]
            msg = p.Infer(n + 1, base.model_id, base.dtype, base.layout, base.shape, base.data)
            t0 = time.perf_counter()
            await p.write_frame(writer, msg)
            answer = await p.read_frame(reader)
            if n < warmup:
                continue
            if isinstance(answer, p.Result):  # only answers count: a fast refusal is no served request
                latencies.append(time.perf_counter() - t0)
            else:
                errors.append(repr(answer))
        writer.close()

    async def main() -> dict[str, object]:
        latencies: list[float] = []
        errors: list[str] = []
        start = asyncio.Event()
        tasks = [asyncio.create_task(client(i, start, latencies, errors)) for i in range(clients)]
        await asyncio.sleep(0.5 + 0.01 * clients)  # everyone connected and warmed up
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        return {"wall_s": time.perf_counter() - t0, "latencies": latencies, "errors": errors[:5],
                "n_errors": len(errors)}

    try:
        conn.send(asyncio.run(main()))
    except BaseException as exc:  # report, do not hang the parent
        conn.send({"failure": repr(exc)})
    finally:
        conn.close()


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


def bench_mode(model_path: Path, mode: str, args: argparse.Namespace) -> dict[str, object]:
    from offload_server.config import ModelConfig, ServerConfig
    from offload_server.server import run_server_in_thread

    batched = mode == "batched"
    model = ModelConfig(id="bench", path=str(model_path), max_batch_size=args.max_batch_size if batched else 1,
                        max_queue_delay_us=args.max_queue_delay_us if batched else 0, num_threads=args.threads)
    config = ServerConfig(models=[model], host="127.0.0.1", port=0, max_connections=max(1024, args.clients + 8),
                          idle_timeout_s=600)
    ctx = mp.get_context("spawn")
    with run_server_in_thread(config) as handle:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_load_worker, args=(handle.port, args.clients, args.requests, args.warmup,
                                                      "bench", child), daemon=True)
        proc.start()
        child.close()
        result = parent.recv()
        proc.join(30)
        reg = handle.server.metrics.registry
        batch_sum = reg.get_sample_value("hi_server_batch_size_sum", {"model": "bench"}) or 0.0
        batch_count = reg.get_sample_value("hi_server_batch_size_count", {"model": "bench"}) or 1.0
        backend = handle.server.models["bench"].backend.description
    if "failure" in result:
        raise RuntimeError(f"load generator failed in mode {mode}: {result['failure']}")
    lat = result["latencies"]
    total = len(lat)
    if not total:
        raise RuntimeError(f"no request was answered in mode {mode} ({result['n_errors']} errors, first: "
                           f"{(result['errors'] or ['?'])[0]})")
    return {
        "mode": mode,
        "max_batch_size": model.max_batch_size,
        "max_queue_delay_us": model.max_queue_delay_us,
        "requests": total,
        "errors": result["n_errors"],
        "wall_s": round(result["wall_s"], 4),
        "throughput_rps": round(total / result["wall_s"], 1),
        "p50_ms": round(1000 * _percentile(lat, 50), 2),
        "p99_ms": round(1000 * _percentile(lat, 99), 2),
        "mean_batch_size": round(batch_sum / batch_count, 2),
        "backend": backend,
    }


def run(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("batch1", "batched")]
    if bad:
        raise ValueError(f"--modes {bad}: use batch1 and/or batched")
    if args.clients < 1 or args.requests < 1:
        raise ValueError("--clients and --requests must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        if args.standin:
            from offload_server.standin import build_standin_onnx

            model_path = build_standin_onnx(Path(tmp) / f"standin_{args.standin}.onnx", kind=args.standin,
                                            width=args.standin_width)
            model_name = f"stand-in {args.standin} (width {args.standin_width})"
        else:
            if args.model is None:
                from hi_runtime.artifacts import require

                args.model = require(DEFAULT_MODEL, also="or use --standin cnn for a stand-in")
            model_path = args.model
            if not model_path.is_file():
                raise ValueError(f"model {model_path} does not exist: train/export it (hi-train), pass --model, "
                                 "or use --standin cnn for a stand-in")
            model_name = str(model_path)
        print(f"model: {model_name}; {args.clients} clients x {args.requests} requests; loopback", flush=True)
        rows = []
        for mode in modes:
            row = bench_mode(model_path, mode, args)
            rows.append(row)
            print(f"  {mode:8s} batch<={row['max_batch_size']:<4d} throughput {row['throughput_rps']:9.1f} req/s  "
                  f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  mean batch {row['mean_batch_size']:6.2f}"
                  f"  errors {row['errors']}", flush=True)
    summary: dict[str, object] = {"model": model_name, "clients": args.clients, "requests_per_client": args.requests,
                                  "machine": platform.platform(), "processor": platform.processor(),
                                  "python": sys.version.split()[0], "results": rows}
    by_mode = {r["mode"]: r for r in rows}
    if "batch1" in by_mode and "batched" in by_mode:
        speedup = by_mode["batched"]["throughput_rps"] / by_mode["batch1"]["throughput_rps"]
        summary["speedup"] = round(speedup, 2)
        print(f"  dynamic batching: {speedup:.2f}x the batch-1 throughput; batched p99 "
              f"{by_mode['batched']['p99_ms']:.2f} ms (goal at 64 clients on the shipped model: >= 3x, p99 < 50 ms)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_server.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"bench_server: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
