"""``hi-bench reproduce``: every run behind the "ours" column of docs/reproduction.md, in one command.

It starts ``hi-server`` on the shipped edge model in a process of its own (loopback TCP; a separate
process so the agent's timings do not share an interpreter lock with the server), answers the test split
with ``hi-agent run`` for local, remote, HI and an EE-HI sweep (one run per exit threshold), then writes
into ``--out``:

* ``runs/*.jsonl``: the per-sample logs;
* ``this_machine.yaml``: this machine's measured profile (``hi-bench profile``, EE segments included);
* ``compare.txt``: the strategy comparison, Table 5 and Table 6 forms (``hi-bench compare``), for this
  machine and the paper's Raspberry Pi 4;
* ``report/``: the Markdown report with figures (``hi-bench report``);
* ``summary.json`` and ``summary.md``: per run accuracy (Eq. 1), offload ratio, exit shares, latency per
  inference (Eq. 3) on this machine and modeled with the paper's Pi 4 constants (full ResNet-8 1.63 ms,
  EE segments scaled by their MACs, 9.68 ms per offload), and EE-HI against HI at equal or better accuracy.

Timings mean something only on an otherwise idle machine: run it with nothing else on the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from hi_runtime.cli_support import UsageError, at_least, fraction, need_folder
from measurements.commands.common import accuracy_targets, format_targets

DEFAULT_EE_THRESHOLDS = "0.5,0.6,0.7,0.8,0.9,0.95,0.97,never"


def exit_thresholds(text: str) -> list[float | None]:
    """An argparse ``type`` for ``--ee-thresholds``, read by hi-agent's own parser while parsing, so a bad
    threshold is refused before the server starts."""
    from hi_runtime.agent.cli import parse_exit_thresholds

    return parse_exit_thresholds(text)  # raises argparse.ArgumentTypeError naming the bad value


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce", help="run local/remote/HI/EE-HI on the test split and write every number the "
                          "reproduction notes quote",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  hi-bench reproduce --data ../shared/datasets/cifar10-jpeg --out runs/reproduce",
    )
    p.add_argument("--data", required=True, help="CIFAR-10 dataset (e.g. ../shared/datasets/cifar10-jpeg)")
    p.add_argument("--models", type=Path, default=None,
                   help="folder with resnet8_int8.tflite, decider_resnet8.json, ee_resnet8.json, server.onnx "
                        "(default: the shipped models, wherever installed; $HI_MODELS_DIR overrides)")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="output folder")
    p.add_argument("--limit", type=at_least(1), default=None,
                   help="answer only this many test samples (default: all)")
    p.add_argument("--ee-thresholds", type=exit_thresholds, default=DEFAULT_EE_THRESHOLDS,
                   help=f"exit-1 thresholds of the EE-HI sweep (default {DEFAULT_EE_THRESHOLDS})")
    p.add_argument("--ee-only-threshold", type=fraction, default=0.9,
                   help="also run the EE model alone (nothing offloaded) at this exit threshold, the point the "
                        "authors' notebook reports (default 0.9)")
    p.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="use this running hi-server instead of starting one on loopback")
    p.add_argument("--targets", type=accuracy_targets, default="0.8,0.82,0.85,0.87",
                   help="accuracy targets for the Table 5/6 forms (fractions or %%)")
    p.add_argument("--timing-runs", type=at_least(1), default=2000, help="invokes timed per model for the profile")
    p.add_argument("--latency-budget-ms", type=at_least(0, float, exclusive=True), default=2000.0,
                   help="per-sample budget of every agent run (default 2000). Generous on purpose: reproduce "
                        "measures what each strategy answers, and an offload that misses a tight deadline on a "
                        "slow (CPU) server answers locally, which would mix that server's speed into the "
                        "accuracies; the summary counts such degraded samples per run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


# --- the server in its own process -------------------------------------------------------------------

def _serve(model_path: str, conn, stop) -> None:  # pragma: no cover - runs in the child process
    from offload_server.config import ModelConfig, ServerConfig
    from offload_server.server import run_server_in_thread

    config = ServerConfig(models=[ModelConfig(id="cifar10", path=model_path)], host="127.0.0.1", port=0)
    try:
        with run_server_in_thread(config) as handle:
            conn.send(("ok", handle.port))
            stop.wait()
    except Exception as exc:  # the parent reports it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def loopback_server(model_path: Path):
    """``hi-server`` on ``model_path`` in a child process; yields ``127.0.0.1:PORT``."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(str(model_path), child, stop), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(120):
            raise RuntimeError(f"the loopback hi-server on {model_path} did not start within 120 s")
        status, value = parent.recv()
        if status != "ok":
            raise RuntimeError(f"the loopback hi-server on {model_path} failed to start: {value}")
        yield f"127.0.0.1:{value}"
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()


# --- summary -----------------------------------------------------------------------------------------

@dataclass
class RunRow:
    name: str
    strategy: str
    exit_threshold: float | None
    samples: int
    accuracy: float
    offloaded: float
    exit1_share: float | None
    host_ms: float  # Eq. 3 from this machine's logged phases
    host_measured_ms: float  # mean logged end-to-end time (includes queueing behind pipelined offloads)
    pi4_ms: float  # Eq. 3 with the paper's Pi 4 constants
    degraded: int = 0  # samples whose offload failed or missed the budget, answered locally


def pi4_cost_ms(strategy: str, offloaded: float, exit_fractions: dict, exit_ms: list[float],
                full_ms: float, offload_ms: float) -> float:
    """Eq. 3 with fixed device costs: the local part weighted by exit shares (none for remote)."""
    from hi_runtime.equations import expected_latency_ms

    if strategy == "remote":
        local = 0.0
    elif strategy == "ee-hi":
        local = sum(float(share) * exit_ms[int(k)] for k, share in exit_fractions.items())
    else:
        local = full_ms
    return expected_latency_ms(local, offload_ms, offloaded)


def savings(rows: list[RunRow], floor: float) -> dict | None:
    """The cheapest EE-HI sweep point whose accuracy is at least ``floor``, against HI (Pi 4 model)."""
    hi = next((r for r in rows if r.strategy == "hi"), None)
    ok = sorted((r for r in rows if r.strategy == "ee-hi" and r.accuracy >= floor), key=lambda r: r.pi4_ms)
    if hi is None or not ok:
        return None
    best = ok[0]
    return {"ee_hi": best.name, "hi_accuracy": hi.accuracy, "ee_hi_accuracy": best.accuracy,
            "pi4_saving": 1.0 - best.pi4_ms / hi.pi4_ms, "host_saving": 1.0 - best.host_ms / hi.host_ms}


def _fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summary_markdown(rows: list[RunRow], comparisons: dict, meta: dict) -> str:
    lines = ["# hi-bench reproduce: summary", "",
             f"Data: {meta['data']} (test split, {meta['samples']} samples; JPEG CIFAR-10, a few points below "
             "pristine CIFAR-10). Host: " + meta["host"] + ". Server: " + meta["server"] + ".", "",
             "Latency per inference is Eq. 3 (on-device time + offload fraction x offload time). "
             "'this host' uses the logged phase times; 'Pi 4 model' uses the paper's Raspberry Pi 4 constants "
             f"(full ResNet-8 {meta['pi4_full_ms']} ms, EE exits {meta['pi4_exit_ms']} ms by MACs, "
             f"{meta['pi4_offload_ms']} ms per offload).", "",
             "| run | accuracy | offloaded | degraded | exit-1 share | this host ms (Eq. 3) | this host ms "
             "(measured mean) | Pi 4 model ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        share = "" if r.exit1_share is None else f"{100 * r.exit1_share:.1f}%"
        lines.append(f"| {r.name} | {100 * r.accuracy:.2f}% | {100 * r.offloaded:.2f}% | {r.degraded} | {share} | "
                     f"{_fmt_ms(r.host_ms)} | {_fmt_ms(r.host_measured_ms)} | {_fmt_ms(r.pi4_ms)} |")
    degraded = sum(r.degraded for r in rows)
    if degraded:
        lines += ["", f"**{degraded} samples degraded** (offload failed or missed the "
                      f"{meta.get('latency_budget_ms', '?')} ms budget; answered locally): the accuracies of "
                      "those runs are below what their strategy achieves with a server that keeps up. Rerun with "
                      "a larger --latency-budget-ms or a faster server."]
    lines += ["", "EE-HI against HI (cheapest sweep point at or above the accuracy floor):", ""]
    for label, cmp in comparisons.items():
        if cmp is None:
            lines.append(f"- {label}: no EE-HI sweep point reaches it")
        else:
            lines.append(f"- {label}: {cmp['ee_hi']} at {100 * cmp['ee_hi_accuracy']:.2f}% vs HI "
                         f"{100 * cmp['hi_accuracy']:.2f}%: latency saving {100 * cmp['pi4_saving']:.1f}% "
                         f"(Pi 4 model), {100 * cmp['host_saving']:.1f}% (this host)")
    return "\n".join(lines) + "\n"


# --- the command -------------------------------------------------------------------------------------

def _agent(argv: list[str]) -> None:
    from hi_runtime.agent.cli import main as agent_main

    rc = agent_main(argv)
    if rc != 0:
        raise RuntimeError(f"hi-agent {' '.join(argv)} failed with exit code {rc} (its message is above)")


def _bench(argv: list[str], capture: Path | None = None) -> None:
    from measurements.cli import main as bench_main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf) if capture else contextlib.nullcontext():
        rc = bench_main(argv)
    if capture:
        capture.write_text(buf.getvalue())
    if rc != 0:
        raise RuntimeError(f"hi-bench {argv[0]} failed with exit code {rc}")


def _model_files(models: Path) -> dict[str, Path]:
    files = {"local": models / "resnet8_int8.tflite", "decider": models / "decider_resnet8.json",
             "chain": models / "ee_resnet8.json", "server": models / "server.onnx"}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"missing model files: {', '.join(missing)}; --models must hold the shipped "
                                "artifacts (see models/README.md)")
    return files


def _check_data(data: str) -> None:
    """Load the test split once before the server starts, so a wrong --data is one line (exit 2) instead of
    a failed hi-agent run; the agent runs then read it from the dataset cache."""
    from hi_runtime.datasets import DatasetError, load_dataset

    try:
        load_dataset("cifar10", data, "test", progress=False)
    except DatasetError as exc:
        raise UsageError(f"--data: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from hi_runtime.artifacts import models_dir
    from hi_runtime.early_exit import SegmentChain
    from measurements.commands.common import load_runs
    from training.thresholds import CostModel, reference_costs

    if args.server:  # checked before anything runs, not after the local run
        from hi_runtime.agent.offloader import Endpoint

        try:
            Endpoint.parse(args.server)
        except ValueError as exc:
            raise ValueError(f"--server: {exc}") from None
    args.models = models_dir("cifar10", args.models)
    files = _model_files(args.models)
    _check_data(args.data)
    thresholds = args.ee_thresholds  # parsed by exit_thresholds
    out: Path = need_folder("--out", args.out, create=True)
    logs_dir = need_folder("--out", out / "runs", create=True)
    chain = SegmentChain.load(files["chain"])
    card = args.models / "resnet8.json"
    ref_macs = json.loads(card.read_text()).get("macs") if card.exists() else None
    pi4 = reference_costs("rpi4", "resnet8")  # the paper's Pi 4 (Tables 3/4), read from its profile
    cost = CostModel.from_macs([int(s.macs) for s in chain.segments], pi4.full_ms, ref_macs, pi4.offload_ms)
    # closed loop on purpose: each sample is sent when the previous one is answered, so the logged phase
    # times are service times (no queueing behind an arrival process), which is what Eq. 3 and the
    # paper's tables describe; arrival-driven runs are `hi-agent run --arrival rate:FPS` (docs/agent.md)
    common = ["--input", f"cifar10:{args.data}:test", "--latency-budget-ms", f"{args.latency_budget_ms:g}",
              "--arrival", "closed"]
    common += ["--limit", str(args.limit)] if args.limit else []
    if args.no_progress:
        common.append("--no-progress")

    def say(msg: str) -> None:
        print(f"hi-bench reproduce: {msg}", file=sys.stderr, flush=True)

    plan = [("local", ["--strategy", "local", "--model", str(files["local"])]),
            ("remote", ["--strategy", "remote"]),
            ("hi", ["--strategy", "hi", "--model", str(files["local"]), "--decider", str(files["decider"])])]
    for t in thresholds:
        tag = "never" if t is None else f"{t:g}"
        plan.append((f"ee-hi@{tag}", ["--strategy", "ee-hi", "--ee-chain", str(files["chain"]),
                                      "--exit-thresholds", tag]))
    ee_only = f"ee@{args.ee_only_threshold:g}"  # decider threshold 0 accepts every final-exit answer
    plan.append((ee_only, ["--strategy", "ee-hi", "--ee-chain", str(files["chain"]),
                           "--exit-thresholds", f"{args.ee_only_threshold:g}", "--threshold", "0"]))
    server_cm = contextlib.nullcontext(args.server) if args.server else loopback_server(files["server"])
    paths: dict[str, Path] = {}
    with server_cm as server:
        say(f"offloading to {server} ({'given' if args.server else 'loopback hi-server on ' + files['server'].name})")
        for name, argv in plan:
            path = logs_dir / f"{name.replace('@', '_')}.jsonl"
            say(f"run {name} -> {path}")
            _agent(["run", *argv, "--server", server, *common, "--log", str(path)])
            paths[name] = path

    say("profile of this machine (times invoke() of the local model and the EE segments)")
    profile_path = out / "this_machine.yaml"
    _bench(["profile", "--model", str(files["local"]), "--id", "this_machine", "--out", str(profile_path),
            "--ee-chain", str(files["chain"]), "--runs", str(args.timing_runs), "--link", "loopback_tcp",
            "--run-log", str(paths["local"]), str(paths["remote"]), str(paths["hi"]),
            *(["--no-progress"] if args.no_progress else [])])
    all_logs = [str(p) for name, p in paths.items() if name != ee_only]  # one sweep point per threshold
    from hi_runtime.device_profiles import PROFILES_DIR

    dirs = ["--profiles-dir", str(out), "--profiles-dir", str(PROFILES_DIR)]
    _bench(["compare", *dirs, "--device", "this_machine", "--device", "rpi4", "--targets",
            format_targets(args.targets), "--runs", *all_logs], capture=out / "compare.txt")
    _bench(["report", "--out", str(out / "report"), *dirs, "--device", "this_machine", "--targets",
            format_targets(args.targets), "--runs", *all_logs], capture=out / "report.txt")

    rows: list[RunRow] = []
    for (name, _), (log, m) in zip(plan, load_runs([paths[name] for name, _ in plan])):
        threshold = log.header.get("ee_threshold") if m.strategy == "ee-hi" else None
        share = float(m.exit_fractions.get(0, m.exit_fractions.get("0", 0.0))) if m.strategy == "ee-hi" else None
        rows.append(RunRow(
            name=name, strategy="ee" if name == ee_only else m.strategy, exit_threshold=threshold, samples=m.n, accuracy=m.accuracy,
            offloaded=m.offload_fraction, exit1_share=share, host_ms=m.latency_ms,
            host_measured_ms=m.latency_ms_measured, degraded=round(m.degraded_fraction * m.n),
            pi4_ms=pi4_cost_ms(m.strategy, m.offload_fraction, m.exit_fractions, cost.exit_ms,
                               pi4.full_ms, pi4.offload_ms)))
    local = next(r for r in rows if r.strategy == "local")
    hi = next(r for r in rows if r.strategy == "hi")
    # only one HI run (the shipped decider), so EE-HI is compared with it at HI's accuracy, never below it
    comparisons = {f"accuracy >= HI's ({100 * hi.accuracy:.2f}%)": savings(rows, hi.accuracy)}
    import platform

    meta = {"data": args.data, "samples": local.samples, "server": args.server or f"loopback hi-server, "
            f"{files['server'].name}", "host": f"{platform.machine()} {platform.system()}",
            "latency_budget_ms": args.latency_budget_ms, "pi4_full_ms": pi4.full_ms, "pi4_offload_ms": pi4.offload_ms,
            "pi4_exit_ms": [round(v, 3) for v in cost.exit_ms]}
    (out / "summary.json").write_text(json.dumps(
        {"meta": meta, "runs": [asdict(r) for r in rows], "ee_hi_vs_hi": comparisons}, indent=2) + "\n")
    text = summary_markdown(rows, comparisons, meta)
    (out / "summary.md").write_text(text)
    print(text)
    say(f"wrote {out}/summary.md, summary.json, compare.txt, this_machine.yaml, report/ and runs/")
    return 0
