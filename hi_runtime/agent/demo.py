"""``hi-agent demo``: the whole HI story on one machine, offline, in about a minute.

It starts the edge server in a child process on 127.0.0.1 (``hi-server`` with the CPU-sized edge model,
``server_cpu.onnx``), then runs on-device only, HI, remote only and EE-HI (when its chain exists) over
the shipped sample of CIFAR-10 JPEG test images, each in a closed loop (the next sample after the
previous answer: the paper's latency per inference), plus HI once more with samples arriving on a clock
(``--rate``), which shows queueing and admission control. It prints the comparison and writes a Markdown
report with the per-sample JSONL logs.

It never fakes a result: if a shipped artifact is missing it names the file and how to get it, and exits
non-zero. Latencies are measured here, over loopback, so they show the runtime's behaviour, not a real
device's or a real network's.
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

from hi_runtime.cli_support import UsageError, need_folder
from hi_runtime.records import RecordWriter, Summary, default_header, summary_markdown, summary_text

DEMO_SAMPLES = "demo_samples.npz"
SERVER_MODEL_ID = "cifar10"
CPU_SERVER = "server_cpu.onnx"  # one ResNet-9 (width 32): sized for a CPU edge box like this one
DEFAULT_RATE_FPS = 400.0
RATE_BUDGET_MS = 100.0  # a camera's deadline: an answer later than this is worth less than a local one now

#: What the demo needs and how each file is made (the commands of docs/training.md / docs/decider.md).
REQUIRED = {
    "resnet8_int8.tflite": "hi-train model --arch resnet8 --dataset cifar10 --data ../shared/datasets/cifar10-jpeg "
                           "--epochs 50 --batch-size 64 --lr 0.05 --weight-decay 2e-4 --out models/cifar10/resnet8 "
                           "--export int8,float   (docs/training.md)",
    "decider_resnet8.json": "hi-train decider --model models/cifar10/resnet8_int8.tflite --server "
                            "models/cifar10/server_cpu.onnx --data ../shared/datasets/cifar10-jpeg "
                            "--max-offload 0.29 --out models/cifar10/decider_resnet8   (docs/decider.md)",
    CPU_SERVER: "hi-train member --onnx models/cifar10/server.onnx --member resnet9_w32 --data "
                "../shared/datasets/cifar10-jpeg --out models/cifar10/server_cpu   (docs/training.md)",
}
EE_CHAIN = "ee_resnet8.json"
EE_HOW = "hi-train early-exit ... --out models/cifar10/ee_resnet8 (see docs/decider.md)"


class DemoError(RuntimeError):
    """The demo could not run on this machine (its edge server did not start): an environment failure."""


def missing_artifacts(models_dir: Path, samples: Path, server_model: str = CPU_SERVER) -> list[str]:
    """One entry per missing file, each with the command that makes it (the shipped models come with the
    package; a missing one means --models-dir points elsewhere, or a checkout without them)."""
    needed = {**REQUIRED, server_model: REQUIRED.get(server_model, "its hi-train command (docs/training.md)")}
    lines = [f"{models_dir / name} is missing (make it with: {how})"
             for name, how in needed.items() if not (models_dir / name).exists()]
    if not samples.exists():
        lines.append(f"{samples} is missing (make it with: hi-agent demo --make-samples "
                     "../shared/datasets/cifar10-jpeg)")
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
             latency_budget_ms: float | None = None, include_ee: bool = True, backend: str = "auto",
             num_threads: int | None = None, reference: bool = False, progress: bool = True,
             server_model: str = CPU_SERVER, rate_fps: float | None = DEFAULT_RATE_FPS, max_inflight: int = 4,
             rate_budget_ms: float = RATE_BUDGET_MS, echo=print) -> DemoResult:
    from hi_runtime.agent.arrivals import Arrival
    from hi_runtime.agent.edge_process import EdgeProcess, EdgeProcessError
    from hi_runtime.agent.inputs import load_npz
    from hi_runtime.agent.offloader import DEFAULT_BUDGET_MS, Endpoint, OffloadConfig, Offloader
    from hi_runtime.agent.strategies import Agent, AgentConfig, ChainRunner
    from hi_runtime.backends import Classifier, open_backend
    from hi_runtime.decider import Decider

    budget = latency_budget_ms or DEFAULT_BUDGET_MS
    models_dir = Path(models_dir)
    samples = Path(samples) if samples else models_dir / DEMO_SAMPLES
    problems = missing_artifacts(models_dir, samples, server_model)
    if problems and len(problems) == len(REQUIRED) + 1 and not samples.exists():
        raise UsageError(f"--models-dir {models_dir} holds none of the shipped models ({', '.join(REQUIRED)}); "
                         "point it at a directory that has them, or leave it out to use the installed ones")
    if problems:  # the shipped files are the user's to point at (--models-dir) or to make: one line
        raise UsageError("; ".join(problems))
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
    runs = [("local", Arrival()), ("hi", Arrival()), ("remote", Arrival())]
    if chain is not None:
        runs.append(("ee-hi", Arrival()))
    if rate_fps:  # a camera: samples on a clock, a tight deadline; remote-only is where the server falls behind
        runs += [("hi", Arrival("rate", rate_fps)), ("remote", Arrival("rate", rate_fps))]

    summaries, logs = [], {}
    t_start = time.perf_counter()
    try:
        server = EdgeProcess.start(models_dir / server_model, model_id=SERVER_MODEL_ID,
                                   log_path=out_dir / "server.log")
    except EdgeProcessError as exc:
        raise DemoError(f"hi-agent demo: {exc}") from None
    with server:
        where = f"{server.host}:{server.port}"
        echo(f"edge server (child process) on {where} serving {server_model}")
        for strategy, arrival in runs:
            run_budget = budget if arrival.kind == "closed" else rate_budget_ms
            offloader = None
            if strategy != "local":
                offloader = Offloader(OffloadConfig(endpoints=[Endpoint(server.host, server.port)],
                                                    model_id=SERVER_MODEL_ID, latency_budget_ms=run_budget,
                                                    max_inflight=max_inflight))
            agent = Agent(AgentConfig(strategy=strategy, latency_budget_ms=run_budget, arrival=arrival,
                                      progress=progress),
                          classifier=classifier, decider=decider if strategy in ("local", "hi") else None,
                          chain=chain if strategy == "ee-hi" else None, offloader=offloader)
            name = strategy if arrival.kind == "closed" else f"{strategy}@{arrival}"
            log_path = out_dir / f"{name.replace(':', '-').replace('@', '_')}.jsonl"
            header = default_header(model=EE_CHAIN if strategy == "ee-hi" else "resnet8_int8.tflite",
                                    strategy=strategy, server=where, input=f"{samples.name} ({source.total} images)",
                                    backend=classifier.backend.describe(), demo=True, server_model=server_model,
                                    decider="decider_resnet8.json" if strategy in ("local", "hi") else None,
                                    **(chain.header_fields() if strategy == "ee-hi" else {}),
                                    arrival=str(arrival), latency_budget_ms=run_budget, max_inflight=max_inflight)
            try:
                with RecordWriter(log_path, header, background="process") as writer:
                    summary = agent.run(source, writer)
            finally:
                agent.close()
            summary.strategy = name
            summaries.append(summary)
            if arrival.kind != "closed" and strategy == "remote" and summary.shed:
                notes.append(f"{name}: the edge server could not keep up with {arrival.fps:g} offloads per second "
                             f"within {run_budget:g} ms, so {summary.shed} samples were answered locally at once "
                             "(shed) instead of waiting")
            if summary.degraded:
                notes.append(f"{name}: {summary.degraded} samples answered locally (degraded); last offload "
                             f"error: {agent.last_error}")
            logs[name] = log_path
    elapsed = time.perf_counter() - t_start
    report = write_report(out_dir, summaries, logs, source.total or 0, samples, classifier, notes, elapsed,
                          server_model, budget_ms=budget, rate_budget_ms=rate_budget_ms)
    echo(summary_text(summaries, title=f"hi-agent demo: {source.total} CIFAR-10 JPEG test images"))
    for line in promise_lines(summaries):
        echo(line)
    echo(f"report: {report}")
    return DemoResult(summaries, report, logs)


def promise_lines(summaries: list[Summary]) -> list[str]:
    """What the run says about the promise (near-remote accuracy at near-local cost), in numbers."""
    by = {s.strategy: s for s in summaries}
    lines = []
    hi, local, remote = by.get("hi"), by.get("local"), by.get("remote")
    if hi and local and hi.accuracy is not None and local.accuracy is not None:
        lines.append(f"HI: {100 * (hi.accuracy - local.accuracy):+.2f} points over on-device only, "
                     f"{100 * hi.offload_ratio:.1f}% offloaded, {hi.degraded} degraded")
    if hi and remote and hi.latency_mean_ms and remote.latency_mean_ms:
        lines.append(f"HI mean latency {hi.latency_mean_ms:.2f} ms = {hi.latency_mean_ms / remote.latency_mean_ms:.2f}x "
                     f"remote's {remote.latency_mean_ms:.2f} ms (closed loop)")
    for name, s in by.items():
        if "@" in name:
            lines.append(f"{name}: p99 {s.latency_p99_ms:.2f} ms, mean queue wait {s.queue_ms or 0:.2f} ms, "
                         f"{s.shed} shed, {s.degraded} degraded")
    return lines


def write_report(out_dir: Path, summaries: list[Summary], logs: dict, n: int, samples: Path, classifier,
                 notes: list[str], elapsed: float, server_model: str = CPU_SERVER,
                 budget_ms: float = 1000.0, rate_budget_ms: float = RATE_BUDGET_MS) -> Path:
    lines = [
        "# hi-agent demo report",
        "",
        (f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} on {platform.node()} "
         f"({platform.machine()}, Python {platform.python_version()}) in {elapsed:.1f} s."),
        "",
        (f"{n} images from `{samples.name}` (a class-stratified sample of the CIFAR-10 test split re-encoded as "
         "JPEG q75: accuracies are a few points below pristine CIFAR-10, and with this few images each one "
         f"is worth {100 / max(1, n):.2f} points)."),
        (f"Local model `resnet8_int8.tflite` on {classifier.backend.describe()}; the edge server (`{server_model}`) "
         "ran in a child process on 127.0.0.1, so offload latencies are loopback latencies, not a real network's."),
        "",
        summary_markdown(summaries),
        ("Latency is per sample, from its arrival to its final answer (offloads included), stamped when the "
         "answer arrived. Runs without `@` are closed loops (the next sample after the previous answer; budget "
         f"{budget_ms:g} ms); `@rate:N` runs had N samples arriving per second with a camera's {rate_budget_ms:g} ms "
         "budget, so their "
         "latency includes queueing, and `shed` counts offloads that admission control answered locally at "
         "once because the expected wait already exceeded the budget."),
        "",
    ]
    lines += [f"- {line}" for line in promise_lines(summaries)]
    lines.append("")
    lines += [f"- {note}" for note in notes]
    lines += ["", "Per-sample logs (schema in docs/agent.md):", ""]
    lines += [f"- `{p.name}` ({k})" for k, p in logs.items()]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (out_dir / "summary.json").write_text(json.dumps([s.as_dict() for s in summaries], indent=2) + "\n")
    return path


def cmd_demo(args) -> int:
    from hi_runtime.agent.inputs import InputError
    from hi_runtime.artifacts import ArtifactError, models_dir
    from hi_runtime.datasets import DatasetError

    def echo(msg: str) -> None:
        print(msg, flush=True)

    try:
        mdir = models_dir("cifar10", args.models_dir)
    except ArtifactError as exc:
        raise UsageError(str(exc)) from None
    if getattr(args, "make_samples", None):
        out = Path(args.samples) if args.samples else mdir / DEMO_SAMPLES
        if out.is_dir():
            raise UsageError(f"--samples {out} is a folder; give the .npz file to write, e.g. {out / DEMO_SAMPLES}")
        try:
            path = make_demo_samples(args.make_samples, out)
        except DatasetError as exc:
            raise UsageError(f"--make-samples: {exc}") from None
        echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        return 0
    check_demo_args(args, mdir)
    try:
        run_demo(mdir, Path(args.out), samples=Path(args.samples) if args.samples else None,
                 limit=args.limit, latency_budget_ms=args.latency_budget_ms, include_ee=not args.no_ee,
                 backend=args.backend, num_threads=args.threads, reference=args.reference_kernels,
                 progress=not args.no_progress, server_model=args.server_model, rate_fps=args.rate or None,
                 max_inflight=args.max_inflight, echo=echo)
    except InputError as exc:  # the sample file is not an .npz of images
        raise UsageError(f"--samples: {exc}" if args.samples else str(exc)) from None
    except DemoError as exc:  # the edge server did not start: this machine's failure, not the command line's
        print(f"hi-agent demo: error: {exc}", file=sys.stderr)
        return 1
    return 0


def check_demo_args(args, mdir: Path) -> None:
    """The files named on the command line, each checked with its flag before anything starts (the list of
    missing shipped artifacts in :func:`run_demo` is for a --models-dir that lacks them)."""
    if args.samples:
        samples = Path(args.samples)
        if samples.is_dir():
            raise UsageError(f"--samples {samples} is a folder; give the demo's .npz file (made by `hi-agent demo "
                             f"--make-samples CIFAR10_DIR --samples FILE.npz`)")
        if not samples.exists():
            raise UsageError(f"--samples {samples} does not exist; make it with `hi-agent demo --make-samples "
                             f"../shared/datasets/cifar10-jpeg --samples {samples}`")
    server = mdir / args.server_model
    if args.server_model not in REQUIRED and not server.is_file():
        present = sorted(p.name for p in mdir.glob("*.onnx")) if mdir.is_dir() else []
        what = "is a folder" if server.is_dir() else f"is not in {mdir}"
        raise UsageError(f"--server-model {args.server_model} {what}; give an .onnx model file there"
                         + (f" ({', '.join(present)})" if present else ""))
    need_folder("--out", args.out)
