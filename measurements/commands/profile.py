"""``hi-bench profile``: measure this machine and write a profile YAML in the paper profiles' format."""
from __future__ import annotations

import argparse
from pathlib import Path

from hi_runtime.cli_support import at_least


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "profile", help="time a TFLite model on this machine and write a measured profile",
        description="Time invoke() of a TFLite model (and read RAPL energy when the machine exposes "
                    "it), optionally add offload latency and the decider's operating point from "
                    "hi-agent run logs, and write a 'kind: measured' profile YAML.",
    )
    p.add_argument("--model", type=Path, required=True, help="TFLite model to time")
    p.add_argument("--model-name", default="resnet8", help="name of the model in the profile (default resnet8)")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--id", default=None, help="profile id (default: this_machine)")
    p.add_argument("--name", default=None, help="human-readable device name")
    p.add_argument("--out", type=Path, required=True, help="profile YAML to write")
    p.add_argument("--runs", type=at_least(1), default=200, help="timed invokes (default 200)")
    p.add_argument("--warmup", type=at_least(0), default=20, help="untimed invokes first (default 20)")
    p.add_argument("--threads", type=at_least(1), default=1, help="interpreter threads (default 1)")
    p.add_argument("--rapl", choices=("auto", "on", "off"), default="auto",
                   help="read RAPL energy (auto: when the machine exposes it)")
    p.add_argument("--power-w", type=at_least(0, float, exclusive=True), default=None,
                   help="the machine's power in W, to model energy when nothing is measured (labeled modeled)")
    p.add_argument("--ee-chain", type=Path, default=None,
                   help="also time each segment of this early-exit chain JSON (hi-train early-exit) and write "
                        "its model with per-exit latencies, for the EE-HI rows of hi-bench compare")
    p.add_argument("--run-log", nargs="+", type=Path, default=[], metavar="LOG",
                   help="hi-agent logs: remote -> offload latency, hi -> decider point, any -> accuracy")
    p.add_argument("--link", default="wifi", help="link name the offload latency is stored under")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hi_runtime.cli_support import output_file
    from measurements.commands.common import check_run_logs, load_runs
    from measurements.machine_profile import build_measured_profile, time_tflite_invoke
    from measurements.power.rapl import RaplReader, rapl_available
    from hi_runtime.device_profiles import save_profile

    # every file named on the command line is checked before the (long) timing, naming its flag
    output_file("--out", args.out, "this_machine.yaml")
    check_run_logs(args.run_log, "--run-log")
    chain = None
    if args.ee_chain is not None:
        from hi_runtime.early_exit import SegmentChain

        chain = SegmentChain.load(args.ee_chain)  # a bad chain raises EarlyExitError (a ValueError) naming it
    counter = None
    source = ""
    if args.rapl == "on" or (args.rapl == "auto" and rapl_available()):
        counter = RaplReader()  # raises with the reason when RAPL is absent or unreadable
        source = "RAPL package " + "+".join(counter.zone_names)
    timing = time_tflite_invoke(args.model, args.runs, args.warmup, args.threads, counter,
                                progress=not args.no_progress)
    ee_model, ee_timings, ee_paths = None, [], []
    if chain is not None:
        ee_model = str(chain.meta.get("model") or args.ee_chain.stem)
        ee_paths = [Path(s.file) for s in chain.segments]
        ee_timings = [time_tflite_invoke(path, args.runs, args.warmup, args.threads,
                                         progress=not args.no_progress) for path in ee_paths]
    runs = load_runs(args.run_log, flag="--run-log") if args.run_log else []
    profile = build_measured_profile(args.id or "this_machine", args.model_name, timing, dataset=args.dataset,
                                     model_path=args.model, threads=args.threads, power_w=args.power_w,
                                     energy_source=source, runs=runs, link=args.link, name=args.name,
                                     ee_model=ee_model, ee_timings=ee_timings, ee_paths=ee_paths)
    path = save_profile(profile, args.out)
    model = profile.models[args.model_name]
    energy = model.energy_mj
    print(f"{args.model.name}: mean {timing.mean_ms:.4f} ms, p50 {timing.p50_ms:.4f} ms, "
          f"p95 {timing.p95_ms:.4f} ms over {timing.runs} invokes")
    print("energy: " + (f"{energy.value:.4f} mJ ({energy.cite})" if energy.known else
                        "not measured (no RAPL here and no --power-w)"))
    if ee_timings:
        print(f"{ee_model}: segments " + ", ".join(f"{t.mean_ms:.4f}" for t in ee_timings) + " ms (mean)")
    print(f"profile written to {path}")
    return 0
