"""hi-agent: the device-side hierarchical inference (HI) runtime.

Subcommands:
  run      answer samples with a strategy (local, remote, hi, ee-hi) and log every sample
  demo     offline demo on the shipped models with a loopback server in this process
  gateway  BLE gateway: forward microcontrollers' images to the server (--ble)
  serial   microcontroller sample stream over a serial port (registered by hi_runtime.agent.serial_bridge)

Only numpy is needed to start; backends, the server client, tqdm/rich and BLE import when used.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from hi_runtime.agent.options import (
    add_arrival_args,
    add_backend_args,
    add_input_args,
    add_input_format_args,
    add_server_args,
    build_offloader,
    is_single_file_early_exit,
    load_chain_arg,
    parse_arrival,
    resolve_input_format,
)
from hi_runtime.artifacts import default_path
from hi_runtime.cli_support import (
    Parser,
    UsageError,
    add_verbosity,
    at_least,
    distinct_files,
    fraction,
    interrupted_exit_code,
    output_file,
    register_subcommands,
    run,
    stop_signals_interrupt,
)
from hi_runtime.records import LOG_FORMATS, LOG_WRITERS, STRATEGIES

#: Subcommands registered by their own modules (each exposes register_cli(subparsers)).
SUBCOMMAND_MODULES = ("hi_runtime.agent.serial_bridge",)


# ---------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------

def parse_exit_thresholds(text: str) -> list[float | None]:
    """``0.9`` or ``0.8,never``: exit thresholds in [0, 1] for ``--exit-thresholds`` (None = never exit)."""
    out: list[float | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("never", "none", "inf"):
            out.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"exit threshold {part!r} is not a number or 'never'") from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"exit threshold {value:g} is outside [0, 1] (a max-softmax bound)")
        out.append(value)
    return out


def register_run(sub) -> None:
    from hi_runtime.agent.inputs import INPUT_FORMS

    p = sub.add_parser("run", help="answer samples with a strategy and log every sample",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run the HI runtime over an input source.\n\ninput forms:\n  " +
                                   "\n  ".join(INPUT_FORMS),
                       epilog="example:\n  hi-agent run --strategy hi --server 192.168.1.10:8555 "
                              "--input cifar10:../shared/datasets/cifar10-jpeg:test --limit 1000 --log runs/hi.jsonl")
    p.add_argument("--strategy", choices=STRATEGIES, help="local, remote, hi or ee-hi (or take it from --qos)")
    p.add_argument("--qos", metavar="REQUIREMENTS",
                   help="choose the strategy for a QoS instead of --strategy: the grammar of hi-bench plan, e.g. "
                        "accuracy=0.88 (the fastest strategy that reaches it) or latency=5 (the most accurate "
                        "within 5 ms), among --qos-candidates")
    p.add_argument("--qos-candidates", nargs="+", metavar="FILE", default=[],
                   help="measured candidates for --qos: YAML/JSON 'strategy: {accuracy, latency_ms}', or the "
                        "--summary-json files of earlier runs")
    add_input_args(p)
    p.add_argument("--model", default=None,
                   help="local model (.tflite or .onnx); default: the shipped resnet8_int8.tflite. With ee-hi: a "
                        "single-file early-exit model (IF operators pick the exit) instead of --ee-chain")
    p.add_argument("--output", default=None, metavar="NAME",
                   help="the scores output of a --model with several outputs (e.g. final_scores of an early-exit "
                        "model run as a plain one); a model with one output needs none")
    p.add_argument("--decider", default=None,
                   help="decider JSON (hi-train decider); default: the shipped decider_resnet8.json with the shipped "
                        "model (another model needs its own: a decider only fits the model it was fitted for)")
    p.add_argument("--force-decider", action="store_true",
                   help="use --decider although it was fitted for another model or output (a warning instead of "
                        "an error)")
    p.add_argument("--threshold", type=fraction, default=None,
                   help="override the decider's threshold (ee-hi: the chain's final-exit decider)")
    p.add_argument("--ee-chain", default=None,
                   help="early-exit chain JSON for ee-hi (hi-train early-exit or split-ee); default: the shipped "
                        "ee_resnet8.json unless --model is a single-file early-exit model")
    p.add_argument("--exit-thresholds", type=parse_exit_thresholds, default=None, metavar="T[,T...]",
                   help="ee-hi: override the chain's exit thresholds, one per non-final exit ('never' = no "
                        "exit there), e.g. 0.9; one run per value gives the EE-HI sweep of hi-bench compare")
    p.add_argument("--log", help="per-sample log (.jsonl or .csv)")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="force the log format (default: by extension)")
    p.add_argument("--log-writer", choices=LOG_WRITERS, default="process",
                   help="where log lines are formatted: process (default: a writer process on another core, "
                        "off the device's thread), inline (on the device's thread) or thread")
    p.add_argument("--summary-json", help="also write the summary as JSON here")
    p.add_argument("--device", help="device name for the log header (default: host name and machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_input_format_args(p)
    add_arrival_args(p)
    add_backend_args(p)
    add_server_args(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from hi_runtime.agent.inputs import InputError, open_input
    from hi_runtime.agent.offloader import DEFAULT_BUDGET_MS
    from hi_runtime.agent.strategies import (
        NEEDS_SERVER,
        Agent,
        AgentConfig,
        StrategyError,
        choose_strategy,
        load_candidates,
    )
    from hi_runtime.backends import BackendError, Classifier, open_backend
    from hi_runtime.qos import QoSError, parse_qos
    from hi_runtime.records import RecordWriter, default_header, summary_text

    def say(msg: str) -> None:
        print(f"hi-agent: {msg}", file=sys.stderr)

    arrival = parse_arrival(args.arrival)
    for flag, path, example in (("--log", args.log, "run.jsonl"), ("--summary-json", args.summary_json, "summary.json")):
        if path:
            output_file(flag, path, example)
    distinct_files({"--log": args.log, "--summary-json": args.summary_json}, {"--input": input_file(args.input)})
    from hi_runtime.records import is_run_log, is_summary_json

    replaceable_output("--log", args.log, is_run_log)
    replaceable_output("--summary-json", args.summary_json, is_summary_json)
    if args.model and Path(args.model).is_dir():
        raise UsageError(f"--model {args.model} is a folder; give a model file (.tflite or .onnx)")
    try:
        budget = args.latency_budget_ms or DEFAULT_BUDGET_MS
        model = args.model or default_path("resnet8_int8.tflite")
        args.user_decider = args.decider  # given on the command line (not the shipped default below)
        if args.decider is None and model is not None and model == default_path("resnet8_int8.tflite"):
            args.decider = default_path("decider_resnet8.json")  # the shipped pair; another model has no default
        single_ee = args.model is not None and is_single_file_early_exit(args.model)
        ee_chain = load_chain_arg(args.ee_chain) if args.ee_chain else None
        if ee_chain is None and args.model is None and default_path("ee_resnet8.json"):
            ee_chain = default_path("ee_resnet8.json")
        available = ["remote"] if args.server else []
        if model:
            available.append("local")
            if args.decider and args.server:
                available.append("hi")
        if (ee_chain or single_ee) and args.server:
            available.append("ee-hi")
        if args.strategy:
            strategy = args.strategy
        elif args.qos:
            if not args.qos_candidates:
                raise UsageError("--qos chooses among measured strategies: give --qos-candidates FILE (e.g. the "
                                 "--summary-json of earlier runs), or pick one with --strategy")
            qos = parse_qos(args.qos)
            strategy = choose_strategy(qos, load_candidates(args.qos_candidates), available)
            say(f"QoS {qos.describe()} -> strategy {strategy}")
        else:
            raise UsageError("give --strategy (local, remote, hi, ee-hi) or --qos REQUIREMENTS")
        if strategy in NEEDS_SERVER and not args.server:
            raise UsageError(f"strategy {strategy} offloads: give --server HOST:PORT (repeat for failover)")
        bk = {"num_threads": args.threads, "reference": args.reference_kernels, "announce": say}
        classifier = chain = decider = None
        if strategy in ("local", "hi", "remote") and model:
            fmt = resolve_input_format(args, model, say=say)
            backend = open_backend(model, args.backend, **bk)
            output = getattr(args, "output", None) or (single_model_scores(model) if single_ee else None)
            try:
                classifier = Classifier(backend, output, input_format=fmt)
            except BackendError as exc:
                raise UsageError(f"--model {model}: {exc}" + ("" if getattr(args, "output", None) else " with --output NAME")) from None
        elif strategy in ("local", "hi"):
            raise UsageError(f"strategy {strategy} needs a local model: --model PATH (the shipped "
                             "resnet8_int8.tflite is found automatically when the package is installed)")
        if strategy == "ee-hi":
            chain = open_early_exit(args, ee_chain, single_ee, bk, say)
            chain.override_policy(exit_thresholds=args.exit_thresholds, decider_threshold=args.threshold)
        threshold = args.threshold
        if strategy in ("hi", "local") and args.decider:
            from hi_runtime.decider import Decider

            decider = Decider.load(args.decider)
            if classifier is not None:  # a decider only fits the model it was fitted for
                check_decider_binding(decider, args, model, classifier.output_spec, say)
            if threshold is not None:
                decider = decider.with_threshold(threshold)
        elif strategy == "hi":
            raise UsageError(f"strategy hi needs a decider fitted for {Path(model).name}: --decider FILE (made by "
                             f"`hi-train decider --model {model} --data ...`, or from published weights with "
                             "`hi-train decider --coefficients ...`)")
        size = (classifier.image_shape[:2] if classifier else chain.image_shape[:2] if chain else (32, 32))
        try:
            source = open_input(args.input, size=tuple(size), limit=args.limit, offset=args.offset,
                                order=args.order)
        except InputError as exc:
            raise UsageError(f"--input: {exc}") from None
        images = getattr(source, "images", None)  # stored arrays keep their size (folders are resized)
        want = classifier.image_shape if classifier is not None else (chain.image_shape if chain is not None else None)
        if images is not None and want is not None and tuple(images.shape[1:]) != tuple(want):
            source.close()
            raise UsageError(f"--input {args.input}: images are {'x'.join(map(str, images.shape[1:]))} (HxWxC), "
                             f"the model takes {'x'.join(map(str, want))}; give images of that size (an images:DIR "
                             "folder is resized to it)")
        offloader = build_offloader(args, budget) if strategy in NEEDS_SERVER else None
        agent = Agent(AgentConfig(strategy=strategy, latency_budget_ms=budget, arrival=arrival,
                                  admission=not args.no_admission, progress=not args.no_progress),
                      classifier=classifier, decider=decider, chain=chain, offloader=offloader)
    except (BackendError, InputError, StrategyError, QoSError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    if strategy == "ee-hi":  # the chain's model name (as hi-bench profile --ee-chain keys it), else its file
        model_name = chain.model_name
    else:
        model_name = Path(model).name if model else None
    header = default_header(
        model=model_name, strategy=strategy, server=",".join(args.server) or None, device=args.device,
        input=source.name,
        backend=classifier.backend.describe() if classifier else (chain.backends[0].describe() if chain else None),
        decider=args.decider if decider is not None else None,
        **(chain.header_fields() if chain is not None else
           {"decider_threshold": decider.threshold if decider is not None else None}),
        arrival=str(arrival), latency_budget_ms=budget, max_inflight=args.max_inflight,
        connections=args.connections, admission=not args.no_admission, server_model_id=args.model_id or None)
    try:
        writer = RecordWriter(args.log, header, args.log_format, background=args.log_writer) if args.log else None
    except OSError as exc:  # nothing answered yet: a log that cannot even take its header is a usage error
        agent.close()
        source.close()
        raise UsageError(f"--log: {exc}; give a path on a disk with room") from None
    log_failure = None  # the per-sample log could not be written: the run's answers are still summarized
    stopped = run_failure = None
    try:
        with stop_signals_interrupt():  # systemd/Docker stop with SIGTERM: finish like Ctrl-C, lose nothing
            summary = agent.run(source, writer)
    except KeyboardInterrupt as exc:
        stopped = exc
    except (InputError, BackendError) as exc:  # e.g. an input that breaks midway: keep what was answered
        run_failure = str(exc)
    finally:
        agent.close()
        source.close()
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                log_failure = str(exc)
    log_failure = agent.log_error or log_failure
    if stopped is not None or run_failure is not None:
        from hi_runtime.records import summarize

        summary = summarize(agent.records, strategy)
        say(f"interrupted after {len(agent.records)} samples" if stopped is not None else
            f"the run stopped after {len(agent.records)} samples: {run_failure}")
    print(summary_text([summary]))
    if summary.degraded:
        say(f"{summary.degraded} samples answered locally (degraded); last offload error: {agent.last_error}")
    if summary.shed:
        say(f"{summary.shed} samples answered locally at once (shed): the expected wait for the server exceeded "
            f"their {budget:g} ms budget")
    skipped = getattr(source, "skipped", None)
    if skipped:
        say(f"skipped {len(skipped)} files that are not readable images (first: {skipped[0]})")
    if args.log:
        say(f"per-sample log: {args.log}")
    if args.summary_json:
        from hi_runtime.records import write_summary_json

        try:
            write_summary_json(args.summary_json, summary, header)
        except OSError as exc:
            say(f"writing --summary-json {args.summary_json} failed: {exc.strerror or exc}; the summary is above")
            return 1
    if log_failure:
        say(f"{log_failure}; the summary above covers all {summary.samples} samples answered")
    if stopped is not None:
        return interrupted_exit_code(stopped)
    return 1 if (log_failure or run_failure) else 0


def input_file(spec: str | None) -> str | None:
    """The file an ``--input`` spec reads (npz), for the check that no output overwrites it."""
    if not spec:
        return None
    kind, _, rest = spec.partition(":")
    if kind == "npz" and rest:
        return rest
    return spec if spec.lower().endswith(".npz") else None


def replaceable_output(flag: str, path: str | None, looks_like_ours) -> None:
    """An existing file at ``path`` is replaced only when it is what this flag writes (an earlier run's log
    or summary): a typo that names a model or a dataset must not destroy it."""
    if not path:
        return
    p = Path(path)
    if p.is_file() and p.stat().st_size and not looks_like_ours(p):
        raise UsageError(f"{flag} {path} exists and is not a hi-agent {flag.lstrip('-').replace('-', ' ')}: it "
                         "would be overwritten; give another path (or delete that file first)")


def check_decider_binding(decider, args, model, spec, say) -> None:
    """A decider only fits the model (and output) it was fitted for: a mismatch is a usage error naming the
    fix, or a warning with --force-decider; a decider that records no model gets a warning."""
    from hi_runtime.decider import OutputSpec

    out = (OutputSpec("int8_scores", spec.scale, spec.zero_point, spec.name) if spec.quantized
           else OutputSpec("probabilities", name=spec.name))
    if decider.model is None:  # an older or hand-written decider: nothing to check against
        say(f"warning: {Path(args.decider).name} records no model it was fitted for; refit it with "
            "`hi-train decider` so a mismatch can be caught")
        return
    problems = decider.check_model(model, out, force=args.force_decider, name=Path(args.decider).name)
    if problems:
        say(f"warning: --force-decider: {'; '.join(problems)}")


def single_model_scores(model: str) -> str:
    """The scores output of a single-file early-exit model (its other output is the exit index)."""
    from hi_runtime.early_exit_graph import output_names

    return output_names(Path(model).read_bytes(), name=Path(model).name)[0]


def open_early_exit(args, ee_chain, single_ee: bool, bk: dict, say):
    """ee-hi's early-exit runner: a single-file early-exit ``--model`` (IF operators) or the ``--ee-chain``
    segment chain, never one silently instead of the other."""
    from hi_runtime.backends import ChainRunner, SingleModelEarlyExit

    if args.model is not None and args.ee_chain:
        raise UsageError("strategy ee-hi runs either a chain (--ee-chain) or a single-file early-exit model "
                         "(--model), not both: drop one")
    if args.model is not None and not single_ee:
        raise UsageError(f"strategy ee-hi: --model {args.model} has no early exits (no IF operator); give a "
                         "single-file early-exit .tflite, or a segment chain with --ee-chain CHAIN.json")
    if single_ee:
        from hi_runtime.decider import Decider
        from hi_runtime.early_exit_graph import describe

        decider = None
        if args.decider:
            decider = Decider.load(args.decider)
        else:
            say("no --decider for the single-file early-exit model: its final exit accepts every sample "
                "(nothing is offloaded); fit one with `hi-train decider`")
        fmt = resolve_input_format(args, args.model, say=say)
        runner = SingleModelEarlyExit(args.model, args.backend, input_format=fmt, decider=decider, **bk)
        if decider is not None:  # bound to the model's scores output, as for local and hi
            check_decider_binding(decider, args, args.model, runner.scores_spec, say)
        say(f"single-file early-exit model {Path(args.model).name}: {describe(runner.graph)}")
        return runner
    if getattr(args, "user_decider", None):
        raise UsageError("strategy ee-hi with a segment chain uses the decider inside the chain JSON (its final "
                         "exit's, fitted for that exit): drop --decider (--threshold moves that decider's "
                         "threshold), or give a single-file early-exit --model for --decider to apply to")
    if ee_chain is None:
        raise UsageError("strategy ee-hi needs --ee-chain (made by `hi-train early-exit` or `hi-train split-ee`) "
                         "or a single-file early-exit --model")
    if isinstance(ee_chain, str):
        ee_chain = load_chain_arg(ee_chain)
    first = ee_chain.segments[0].file
    fmt = resolve_input_format(args, ee_chain.path if "input" in ee_chain.meta else first,
                               embedded=ee_chain.meta.get("input"), say=say)
    return ChainRunner(ee_chain, args.backend, input_format=fmt, **bk)


# ---------------------------------------------------------------------------------------------------
# demo and gateway (their modules register the arguments)
# ---------------------------------------------------------------------------------------------------

def register_demo(sub) -> None:
    p = sub.add_parser("demo", help="offline demo: local vs HI vs remote vs EE-HI on the shipped models and samples",
                       description="Starts the edge server in a child process on 127.0.0.1 (the CPU-sized "
                                   "server_cpu.onnx), runs every strategy over the shipped CIFAR-10 sample in a "
                                   "closed loop, then HI with samples arriving at --rate per second, and writes "
                                   "a report. Needs no network and no dataset.")
    p.add_argument("--models-dir", default=None,
                   help="directory with resnet8_int8.tflite, decider_resnet8.json, server_cpu.onnx (and "
                        "ee_resnet8.json for EE-HI); default: the shipped models (or $HI_MODELS_DIR)")
    p.add_argument("--server-model", default="server_cpu.onnx",
                   help="edge model file in the models directory (default server_cpu.onnx; server.onnx is the "
                        "GPU ensemble, ~10x the compute per image)")
    p.add_argument("--samples", default=None, help="npz of samples (default: MODELS_DIR/demo_samples.npz)")
    p.add_argument("--out", default="runs/demo", help="report directory (default runs/demo)")
    p.add_argument("--limit", type=at_least(1), default=None, help="use only this many samples")
    p.add_argument("--latency-budget-ms", type=at_least(0, float, exclusive=True), default=None,
                   help="per-sample budget (default 1000)")
    p.add_argument("--rate", type=at_least(0, float), default=400.0,
                   help="samples per second of the rate-mode runs (HI and remote, 100 ms budget; default 400; 0 skips them)")
    p.add_argument("--max-inflight", type=at_least(1), default=4,
                   help="requests in flight per connection (default 4)")
    p.add_argument("--no-ee", action="store_true", help="skip EE-HI even if its chain exists")
    p.add_argument("--make-samples", metavar="CIFAR10_DIR",
                   help="instead of running: write the demo sample (50 test images per class) from this "
                        "CIFAR-10 directory to --samples or MODELS_DIR/demo_samples.npz")
    p.add_argument("--no-progress", action="store_true")
    add_backend_args(p)
    p.set_defaults(func=lambda a: importlib.import_module("hi_runtime.agent.demo").cmd_demo(a))


def register_gateway(sub) -> None:
    p = sub.add_parser("gateway", help="BLE gateway between microcontrollers and the offload server",
                       description="Connects as a BLE central to devices exposing the HI offload GATT service "
                                   "(docs/ble.md), reassembles their images, offloads them and writes the class "
                                   "back. Needs bleak (pip install 'hi-runtime[ble]').")
    p.add_argument("--ble", action="store_true", required=True, help="use Bluetooth Low Energy (the only transport)")
    p.add_argument("--address", action="append", default=[],
                   help="device address to connect to (repeatable); default: scan for the HI service")
    p.add_argument("--scan-seconds", type=at_least(0, float, exclusive=True), default=10.0,
                   help="scan time when no --address is given")
    p.add_argument("--max-devices", type=at_least(1), default=4, help="devices served at once when scanning")
    p.add_argument("--log", help="per-sample log of what the gateway forwarded (.jsonl or .csv)")
    add_server_args(p)
    p.set_defaults(func=lambda a: importlib.import_module("hi_runtime.agent.ble.bleak_gateway").cmd_gateway(a))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hi-agent", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="see docs/agent.md; `hi-agent SUBCOMMAND --help` for each")
    add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    register_run(sub)
    register_demo(sub)
    register_gateway(sub)
    register_subcommands(sub, SUBCOMMAND_MODULES, "hi-agent")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv, tool="hi-agent")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
