"""``hi-agent demo``: the whole HI story on one machine, offline, in about a minute.

It starts the offload server inside this process on 127.0.0.1 (an ephemeral port), then runs on-device
only, HI, remote only (and EE-HI when its chain exists) over the shipped sample of CIFAR-10 JPEG test
images, prints the comparison and writes a Markdown report with the per-sample JSONL logs.

It never fakes a result: if a shipped artifact is missing it names the file and the ``hi-train`` command
that produces it, and exits non-zero. Latencies are measured here, over loopback, so they show the
runtime's behaviour, not a real device's or a real network's.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hi_runtime.records import RecordWriter, Summary, default_header, summary_markdown, summary_text

DEMO_SAMPLES = "demo_samples.npz"
SERVER_MODEL_ID = "cifar10"

#: What the demo needs and how each file is made (the commands of docs/training.md / docs/decider.md).
REQUIRED = {
    "resnet8_int8.tflite": "hi-train model --arch resnet8 --dataset cifar10 --data ../shared/datasets/cifar10-jpeg "
                           "--epochs 50 --batch-size 64 --lr 0.05 --weight-decay 2e-4 --out models/cifar10/resnet8 "
                           "--export int8,float   (docs/training.md)",
    "decider_resnet8.json": "hi-train decider --model models/cifar10/resnet8_int8.tflite --server "
                            "models/cifar10/server.onnx --data ../shared/datasets/cifar10-jpeg "
                            "--out models/cifar10/decider_resnet8   (docs/decider.md)",
    "server.onnx": "hi-train model --arch resnet9 --dataset cifar10 --data ../shared/datasets/cifar10-jpeg "
                   "--epochs 18 --batch-size 128 --lr 0.1 --weight-decay 5e-4 --warmup-epochs 2 --label-smoothing 0.1 "
                   "--precision mixed_bfloat16 --out models/cifar10/server_resnet9 --export onnx, the same with "
                   "--arch resnet9_w32 --epochs 30 --seed 1 in float32 (no --precision) --out "
                   "models/cifar10/server_resnet9_w32_s1, then hi-train export --keras "
                   "models/cifar10/server_resnet9.keras models/cifar10/server_resnet9_w32_s1.keras --data "
                   "../shared/datasets/cifar10-jpeg --export onnx --tta flip --out models/cifar10/server   "
                   "(docs/training.md, the edge-server model)",
}
EE_CHAIN = "ee_resnet8.json"
EE_HOW = "hi-train early-exit ... --out models/cifar10/ee_resnet8 (see docs/decider.md)"


class DemoError(RuntimeError):
    pass


def missing_artifacts(models_dir: Path, samples: Path) -> list[str]:
    """One line per missing file, each with the command that makes it."""
    lines = [f"{models_dir / name} is missing; produce it with:\n    {how}"
             for name, how in REQUIRED.items() if not (models_dir / name).exists()]
    if not samples.exists():
        lines.append(f"{samples} is missing; produce it with:\n    hi-agent demo --make-samples "
                     "../shared/datasets/cifar10-jpeg")
    return lines


def make_demo_samples(data_dir: str | Path, out: str | Path, per_class: int = 50, seed: int = 0) -> Path:
    """A class-stratified random sample of the CIFAR-10 JPEG *test* split (decoded pixels, so a device
    without Pillow reads it with numpy alone), ``per_class`` images per class."""
    from hi_runtime.datasets import load_dataset

    ds = load_dataset("cifar10", data_dir, "test", progress=False)
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(ds.labels == c)
        picks.append(np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)))
    order = np.concatenate(picks)
    order = order[rng.permutation(len(order))]  # mixed classes, as a camera would see them
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=ds.images[order], labels=ds.labels[order], ids=order.astype(np.int64),
                        class_names=np.array(ds.class_names),
                        source=np.array(f"cifar10-jpeg test split, {per_class} per class, seed {seed}; ids are "
                                        "indices into the test split in the loader's order"))
    return out


@dataclass
class DemoResult:
    summaries: list[Summary]
    report: Path
    logs: dict


def run_demo(models_dir: Path, out_dir: Path, *, samples: Path | None = None, limit: int | None = None,
             latency_budget_ms: float = 200.0, include_ee: bool = True, backend: str = "auto",
             num_threads: int | None = None, reference: bool = False, progress: bool = True,
             echo=print) -> DemoResult:
    from hi_runtime.backends import Classifier, open_backend
    from hi_runtime.decider import Decider
    from hi_runtime.agent.inputs import load_npz
    from hi_runtime.agent.offloader import Endpoint, OffloadConfig, ResilientOffloader
    from hi_runtime.agent.strategies import Agent, AgentConfig, ChainRunner

    models_dir = Path(models_dir)
    samples = Path(samples) if samples else models_dir / DEMO_SAMPLES
    problems = missing_artifacts(models_dir, samples)
    if problems:
        raise DemoError("hi-agent demo cannot run:\n  " + "\n  ".join(problems))
    try:
        from offload_server.config import ModelConfig, ServerConfig
        from offload_server.server import run_server_in_thread
    except ImportError as exc:
        raise DemoError(f"the demo runs the offload server in-process but it cannot be imported ({exc}); install "
                        "the server extra: pip install 'hi-runtime[server]'") from exc

    source = load_npz(samples).limit(limit)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    bk = {"num_threads": num_threads, "reference": reference}
    classifier = Classifier(open_backend(models_dir / "resnet8_int8.tflite", backend, announce=echo, **bk))
    decider = Decider.load(models_dir / "decider_resnet8.json")
    chain = None
    if include_ee and (models_dir / EE_CHAIN).exists():
        chain = ChainRunner(models_dir / EE_CHAIN, backend, **bk)
        policy = chain.chain.policy
        if all(t == float("inf") for t in policy.thresholds) and policy.decider is None:
            notes.append(f"{EE_CHAIN} has no exit thresholds and no final decider yet (threshold search pending: "
                         "hi-train thresholds), so EE-HI ran the whole EE model on the device and offloaded nothing.")
    elif include_ee:
        notes.append(f"EE-HI skipped: {models_dir / EE_CHAIN} does not exist ({EE_HOW}).")
    strategies = ["local", "hi", "remote"] + (["ee-hi"] if chain is not None else [])

    # one device sends one sample at a time: a batching window would only add its delay to every offload
    config = ServerConfig(host="127.0.0.1", port=0, log_level="WARNING",
                          models=[ModelConfig(id=SERVER_MODEL_ID, path=str(models_dir / "server.onnx"),
                                              max_queue_delay_us=0)])
    summaries, logs = [], {}
    t_start = time.perf_counter()
    with run_server_in_thread(config) as server:
        where = f"{server.host}:{server.port}"
        echo(f"offload server (in-process) on {where} serving server.onnx")
        for strategy in strategies:
            offloader = None
            if strategy != "local":
                offloader = ResilientOffloader(OffloadConfig(
                    endpoints=[Endpoint(server.host, server.port)], model_id=SERVER_MODEL_ID,
                    latency_budget_ms=latency_budget_ms))
            agent = Agent(AgentConfig(strategy=strategy, latency_budget_ms=latency_budget_ms, progress=progress),
                          classifier=classifier, decider=decider if strategy in ("local", "hi") else None,
                          chain=chain if strategy == "ee-hi" else None, offloader=offloader)
            log_path = out_dir / f"{strategy}.jsonl"
            header = default_header(model=EE_CHAIN if strategy == "ee-hi" else "resnet8_int8.tflite",
                                    strategy=strategy, server=where, input=f"{samples.name} ({source.total} images)",
                                    backend=classifier.backend.describe(), demo=True,
                                    decider="decider_resnet8.json" if strategy in ("local", "hi") else None,
                                    latency_budget_ms=latency_budget_ms)
            try:
                with RecordWriter(log_path, header) as writer:
                    summaries.append(agent.run(source, writer))
            finally:
                agent.close()
            if summaries[-1].degraded:
                notes.append(f"{strategy}: {summaries[-1].degraded} samples answered locally (degraded); last "
                             f"offload error: {agent.last_error}")
            logs[strategy] = log_path
    elapsed = time.perf_counter() - t_start
    report = write_report(out_dir, summaries, logs, source.total or 0, samples, classifier, notes, elapsed)
    echo(summary_text(summaries, title=f"hi-agent demo: {source.total} CIFAR-10 JPEG test images"))
    echo(f"report: {report}")
    return DemoResult(summaries, report, logs)


def write_report(out_dir: Path, summaries: list[Summary], logs: dict, n: int, samples: Path, classifier,
                 notes: list[str], elapsed: float) -> Path:
    by = {s.strategy: s for s in summaries}
    lines = [
        "# hi-agent demo report",
        "",
        (f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} on {platform.node()} "
         f"({platform.machine()}, Python {platform.python_version()}) in {elapsed:.1f} s."),
        "",
        (f"{n} images from `{samples.name}` (a class-stratified sample of the CIFAR-10 test split re-encoded as "
         "JPEG q75: accuracies are a few points below pristine CIFAR-10, and with this few images each one "
         f"is worth {100 / max(1, n):.2f} points)."),
        (f"Local model `resnet8_int8.tflite` on {classifier.backend.describe()}; the offload server ran in this "
         "process on 127.0.0.1, so offload latencies are loopback latencies, not a real network's."),
        "",
        summary_markdown(summaries),
        "Latency is per sample, from preprocessing to the final answer (offloads included).",
        "",
    ]
    if "hi" in by and "local" in by and by["hi"].accuracy is not None and by["local"].accuracy is not None:
        lines.append(f"HI changed accuracy by {100 * (by['hi'].accuracy - by['local'].accuracy):+.2f} points over "
                     f"on-device only while offloading {100 * by['hi'].offload_ratio:.1f}% of the samples.")
        lines.append("")
    lines += [f"- {note}" for note in notes]
    lines += ["", "Per-sample logs (schema in docs/agent.md):", ""]
    lines += [f"- `{p.name}` ({k})" for k, p in logs.items()]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out_dir / "summary.json").write_text(json.dumps([s.as_dict() for s in summaries], indent=2) + "\n")
    return path


def cmd_demo(args) -> int:
    def echo(msg: str) -> None:
        print(msg, flush=True)

    if getattr(args, "make_samples", None):
        out = Path(args.samples) if args.samples else Path(args.models_dir) / DEMO_SAMPLES
        path = make_demo_samples(args.make_samples, out)
        echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        return 0
    try:
        run_demo(Path(args.models_dir), Path(args.out), samples=Path(args.samples) if args.samples else None,
                 limit=args.limit, latency_budget_ms=args.latency_budget_ms, include_ee=not args.no_ee,
                 backend=args.backend, num_threads=args.threads, reference=args.reference_kernels,
                 progress=not args.no_progress, echo=echo)
    except DemoError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
