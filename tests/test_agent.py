"""hi-agent strategies end to end on tiny models with a loopback offload server (127.0.0.1, ephemeral
ports): every strategy, logs in the agreed schema, degradation when the server stops and recovery when it
returns, failover, latency budget, QoS choice, and the CLI."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.tls import self_signed_cert
from test_agent_kit import color_images, server_config, tiny_kit_fixture

tiny_kit = tiny_kit_fixture  # the shared session fixture, made visible to pytest in this module

from hi_runtime.backends import Classifier, open_backend
from hi_runtime.decider import Decider
from hi_runtime.agent.inputs import ArraySource, Sample
from hi_runtime.agent.offloader import Endpoint, OffloadConfig, Offloader
from hi_runtime.records import SAMPLE_FIELDS, RecordWriter, default_header, summarize
from hi_runtime.agent.strategies import Agent, AgentConfig, ChainRunner, StrategyError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def data():
    return color_images(120, seed=11)


@pytest.fixture(scope="module")
def server(tiny_kit):
    from offload_server.server import run_server_in_thread

    with run_server_in_thread(server_config(tiny_kit / "server.onnx")) as handle:
        yield handle


def server_predictions(kit: Path, images: np.ndarray) -> np.ndarray:
    b = open_backend(kit / "server.onnx")
    return Classifier(b).predict(images).classes


def offloader_for(*ports: int, **kw) -> Offloader:
    kw.setdefault("latency_budget_ms", 3000.0)  # generous: the test machine is shared with training jobs
    return Offloader(OffloadConfig(endpoints=[Endpoint("127.0.0.1", p) for p in ports], **kw))


def make_agent(kit: Path, strategy: str, *ports: int, off_kw=None, **cfg) -> Agent:
    classifier = Classifier(open_backend(kit / "local_int8.tflite"))
    decider = Decider.load(kit / "decider.json")
    chain = ChainRunner(kit / "ee.json") if strategy == "ee-hi" else None
    off = offloader_for(*ports, **(off_kw or {})) if ports else None
    cfg.setdefault("progress", False)
    cfg.setdefault("latency_budget_ms", (off_kw or {}).get("latency_budget_ms", 3000.0))
    return Agent(AgentConfig(strategy=strategy, **cfg), classifier=classifier, decider=decider, chain=chain,
                 offloader=off)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------


def test_local_strategy_answers_like_the_model_and_logs_the_schema(tiny_kit, data, tmp_path):
    from measurements.logs import read_run_log

    x, y = data
    agent = make_agent(tiny_kit, "local")
    path = tmp_path / "local.jsonl"
    with RecordWriter(path, default_header(model="local_int8.tflite", strategy="local", server=None)) as w:
        summary = agent.run(ArraySource(x, y), w)
    direct = Classifier(open_backend(tiny_kit / "local_int8.tflite")).predict(x)
    recs = agent.records
    assert [r.sample_id for r in recs] == list(range(len(x)))
    assert [r.final_class for r in recs] == direct.classes.tolist() == [r.local_class for r in recs]
    assert not any(r.offloaded or r.degraded for r in recs)
    assert summary.accuracy == pytest.approx(float((direct.classes == y).mean()))
    assert summary.offload_ratio == 0 and summary.degraded == 0
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["type"] == "header" and {"device", "model", "strategy", "server", "started"} <= set(head)
    first = json.loads(lines[1])
    assert list(first) == ["type", *SAMPLE_FIELDS] and first["type"] == "sample"
    log = read_run_log(path)
    assert len(log) == len(x) and not log.problems and log.strategy == "local"
    assert all(r.t_total_ms >= r.t_local_ms > 0 for r in log.records)


def test_hi_offloads_exactly_what_the_int8_decider_rejects(tiny_kit, data, server):
    x, y = data
    agent = make_agent(tiny_kit, "hi", server.port)
    try:
        summary = agent.run(ArraySource(x, y))
    finally:
        agent.close()
    clf = Classifier(open_backend(tiny_kit / "local_int8.tflite"))
    pred = clf.predict(x)
    dec = Decider.load(tiny_kit / "decider.json")
    accept = dec.accept_int8(pred.raw, *clf.output_spec.quant)
    srv = server_predictions(tiny_kit, x)
    recs = agent.records
    assert 0 < (~accept).sum() < len(x), "tiny kit should offload some but not all samples"
    assert [r.offloaded for r in recs] == (~accept).tolist()
    for r, a, s, lc in zip(recs, accept, srv, pred.classes):
        assert r.local_class == lc and r.decider_score is not None
        assert not r.degraded
        assert r.final_class == (lc if a else s)
        assert r.server_class == (None if a else s)
        if r.offloaded:
            assert r.t_offload_ms > 0 and r.t_total_ms >= r.t_offload_ms
    assert summary.offload_ratio == pytest.approx(float((~accept).mean()))
    assert summary.accuracy > summarize(recs).local_accuracy  # the server is the stronger model here


def test_remote_offloads_everything(tiny_kit, data, server):
    x, y = data
    agent = make_agent(tiny_kit, "remote", server.port)
    try:
        agent.run(ArraySource(x[:40], y[:40]))
    finally:
        agent.close()
    srv = server_predictions(tiny_kit, x[:40])
    assert all(r.offloaded and not r.degraded for r in agent.records)
    assert [r.final_class for r in agent.records] == srv.tolist()
    assert all(r.local_class is None and r.t_local_ms is None for r in agent.records)


def test_ee_hi_follows_the_chain_policy(tiny_kit, data, server):
    from hi_runtime.early_exit import run_chain

    x, y = data
    agent = make_agent(tiny_kit, "ee-hi", server.port)
    try:
        agent.run(ArraySource(x, y))
    finally:
        agent.close()
    ref = ChainRunner(tiny_kit / "ee.json")
    srv = server_predictions(tiny_kit, x)
    exits = set()
    for i, r in enumerate(agent.records):
        res = run_chain(ref.chain, ref.run_segment, ref.preprocess(x[i]))
        exits.add(r.exit_index)
        assert r.exit_index == res.exit_index and r.local_class == res.predicted_class
        assert r.offloaded == res.offload and not r.degraded
        assert r.final_class == (srv[i] if res.offload else res.predicted_class)
        assert (r.decider_score is None) == (res.exit_index == 0)
    assert exits == {0, 1}, "tiny chain should use both exits"


class ScriptedSource:
    """Samples with hooks: ``actions[i]`` runs before sample i is yielded; ``pause`` slows the stream so
    breaker cool-downs elapse in a bounded number of samples."""

    def __init__(self, x, y, actions, pause=0.0):
        self.x, self.y, self.actions, self.pause = x, y, actions, pause
        self.total = len(x)

    def __iter__(self):
        for i in range(len(self.x)):
            if i in self.actions:
                self.actions[i]()
            if self.pause:
                time.sleep(self.pause)
            yield Sample(i, self.x[i], int(self.y[i]))


def test_server_stopped_mid_run_degrades_then_recovers(tiny_kit, data):
    from offload_server.server import run_server_in_thread

    x, y = data
    cfg = server_config(tiny_kit / "server.onnx")
    state = {}

    def start(port=0):
        cfg.port = port
        state["cm"] = run_server_in_thread(cfg)
        state["handle"] = state["cm"].__enter__()

    def stop():
        state["cm"].__exit__(None, None, None)

    start()
    port = state["handle"].port
    n = 90
    actions = {30: stop, 60: lambda: start(port)}
    agent = make_agent(tiny_kit, "remote", port, off_kw={"latency_budget_ms": 1000.0, "cooldown_s": 0.05,
                                                             "cooldown_max_s": 0.1, "failure_threshold": 1})
    try:
        agent.run(ScriptedSource(x[:n], y[:n], actions, pause=0.02))
    finally:
        agent.close()
        stop()
    recs = agent.records
    assert [r.sample_id for r in recs] == list(range(n))  # nothing dropped, order kept
    srv = server_predictions(tiny_kit, x[:n])
    local = Classifier(open_backend(tiny_kit / "local_int8.tflite")).predict(x[:n]).classes
    for r in recs:
        assert r.final_class is not None
        if r.degraded:  # answered by the local model, flagged
            assert r.final_class == local[r.sample_id] and r.server_class is None
        else:
            assert r.final_class == r.server_class == srv[r.sample_id]
    down = [r for r in recs if 33 <= r.sample_id < 60]
    assert down and all(r.degraded for r in down)
    assert not any(r.degraded for r in recs[:28])
    tail = recs[-15:]
    assert all(not r.degraded for r in tail), "offloading must resume once the server is back"
    assert agent.offloader.stats.connects >= 2  # reconnected automatically


def test_failover_to_secondary_when_primary_is_down_or_stops(tiny_kit, data, server):
    from offload_server.server import run_server_in_thread

    x, y = data
    dead = free_port()
    agent = make_agent(tiny_kit, "remote", dead, server.port)
    try:
        agent.run(ArraySource(x[:30], y[:30]))
    finally:
        agent.close()
    assert all(not r.degraded for r in agent.records)
    assert agent.offloader.stats.failovers >= 1

    with run_server_in_thread(server_config(tiny_kit / "server.onnx")) as primary:
        holder = {"h": primary}
        agent = make_agent(tiny_kit, "remote", primary.port, server.port)
        try:
            agent.run(ScriptedSource(x[:40], y[:40], {20: lambda: holder["h"].stop()}))
        finally:
            agent.close()
    assert all(not r.degraded for r in agent.records), "secondary must answer what the primary cannot"
    assert agent.offloader.stats.failovers >= 1


def test_unresponsive_server_costs_at_most_the_latency_budget(tiny_kit, data):
    x, y = data
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)  # accepts TCP but never speaks: the handshake times out
    conns = []
    stop = threading.Event()

    def accept_loop():
        sink.settimeout(0.05)
        while not stop.is_set():
            try:
                conns.append(sink.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    budget = 60.0
    agent = make_agent(tiny_kit, "hi", sink.getsockname()[1],
                       off_kw={"latency_budget_ms": budget, "failure_threshold": 1000, "max_inflight": 1},
                       latency_budget_ms=budget)
    try:
        agent.run(ArraySource(x[:40], y[:40]))
    finally:
        agent.close()
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        sink.close()
    off = [r for r in agent.records if r.offloaded]
    assert off and all(r.degraded and r.final_class == r.local_class for r in off)
    times = sorted(r.t_offload_ms for r in off)
    # the deadline bounds each offload; slack for timers and thread scheduling on a loaded 2-core machine
    assert times[len(times) // 2] <= budget + 15
    assert times[-1] <= 3 * budget


def test_strategy_requirements_are_checked(tiny_kit):
    clf = Classifier(open_backend(tiny_kit / "local_int8.tflite"))
    with pytest.raises(StrategyError, match="decider"):
        Agent(AgentConfig(strategy="hi"), classifier=clf, offloader=offloader_for(1))
    with pytest.raises(StrategyError, match="--server"):
        Agent(AgentConfig(strategy="hi"), classifier=clf, decider=Decider.load(tiny_kit / "decider.json"))
    with pytest.raises(StrategyError, match="chain"):
        Agent(AgentConfig(strategy="ee-hi"), offloader=offloader_for(1))
    with pytest.raises(StrategyError, match="unknown strategy"):
        Agent(AgentConfig(strategy="cloud"))


def test_qos_picks_the_cheapest_strategy_that_meets_accuracy(tmp_path):
    from hi_runtime.agent.strategies import choose_strategy, load_candidates
    from hi_runtime.qos import parse_qos

    path = tmp_path / "candidates.yaml"
    path.write_text("local: {accuracy: 0.80, latency_ms: 1.6}\nhi: {accuracy: 0.88, latency_ms: 4.5}\n"
                    "ee-hi: {accuracy: 0.87, latency_ms: 3.2}\nremote: {accuracy: 0.92, latency_ms: 25}\n")
    summary = tmp_path / "remote.json"  # a hi-agent --summary-json file is a candidate too
    summary.write_text(json.dumps({"strategy": "remote", "accuracy": 0.93, "latency_mean_ms": 20.0}))
    cands = load_candidates([path, summary])
    assert cands["remote"] == {"accuracy": 0.93, "latency_ms": 20.0}
    everything = ["local", "hi", "ee-hi", "remote"]
    assert choose_strategy(parse_qos("accuracy=0.85"), cands, everything) == "ee-hi"
    assert choose_strategy(parse_qos("accuracy=85%"), cands, ["local", "hi", "remote"]) == "hi"
    assert choose_strategy(parse_qos("latency=5"), cands, everything) == "hi"  # most accurate within 5 ms
    with pytest.raises(StrategyError, match="no strategy meets"):
        choose_strategy(parse_qos("accuracy=0.85"), cands, ["local", "remote"][:1])
    with pytest.raises(StrategyError, match="hi-bench plan"):
        choose_strategy(parse_qos("latency=half-offload"), cands, everything)
    path.write_text("hi: {accuracy: 1.5, latency_ms: 4}\n")
    with pytest.raises(StrategyError, match="hi.accuracy"):
        load_candidates([path])


def test_csv_log_round_trips_through_the_measurements_reader(tiny_kit, data, tmp_path):
    from measurements.logs import read_run_log

    x, y = data
    agent = make_agent(tiny_kit, "local")
    path = tmp_path / "run.csv"
    with RecordWriter(path, default_header(model="m", strategy="local", server=None, device="test-box")) as w:
        agent.run(ArraySource(x[:20], y[:20]), w)
    text = path.read_text().splitlines()
    assert text[0].startswith("# device: test-box")
    col_row = next(line for line in text if not line.startswith("#"))
    assert col_row.split(",") == list(SAMPLE_FIELDS)
    log = read_run_log(path)
    assert log.device == "test-box" and len(log) == 20 and not log.problems
    assert [r.final_class for r in log.records] == [r.final_class for r in agent.records]
    assert all(r.exit_index is None and r.server_class is None for r in log.records)


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------

def test_cli_run_hi_end_to_end(tiny_kit, server, tmp_path, capsys):
    from hi_runtime.agent.cli import main
    from measurements.logs import read_run_log

    log = tmp_path / "hi.csv"
    summary = tmp_path / "summary.json"
    rc = main(["run", "--strategy", "hi", "--model", str(tiny_kit / "local_int8.tflite"),
               "--decider", str(tiny_kit / "decider.json"), "--server", f"127.0.0.1:{server.port}", "--latency-budget-ms", "3000",
               "--input", f"npz:{tiny_kit / 'samples.npz'}", "--limit", "50", "--log", str(log),
               "--summary-json", str(summary), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "hi" in out.out and "accuracy" in out.out and "litert" in out.err
    run = read_run_log(log)
    assert len(run) == 50 and run.strategy == "hi" and run.header["server"] == f"127.0.0.1:{server.port}"
    s = json.loads(summary.read_text())
    assert s["samples"] == 50 and s["degraded"] == 0 and 0 < s["offload_ratio"] < 1


def test_cli_summarizes_the_run_when_its_log_cannot_be_written(tiny_kit, tmp_path, capsys, monkeypatch):
    """The log writer died (killed, disk full): the answers are still summarized, the failure is one line,
    exit 1, no traceback."""
    from hi_runtime.agent.cli import main
    from hi_runtime.records import RecordWriter

    real_close = RecordWriter.close

    def failing_close(self):
        real_close(self)
        raise OSError(f"writing the log {self.path} failed: the log writer process failed: exit -9")

    monkeypatch.setattr(RecordWriter, "close", failing_close)
    rc = main(["run", "--strategy", "local", "--model", str(tiny_kit / "local_int8.tflite"),
               "--input", f"npz:{tiny_kit / 'samples.npz'}", "--limit", "20", "--log", str(tmp_path / "r.jsonl"),
               "--no-progress"])
    out = capsys.readouterr()
    assert rc == 1 and "Traceback" not in out.err
    assert "local" in out.out and "covers all 20 samples answered" in out.err


@pytest.mark.parametrize("writer", ["inline", "thread", "process"])
def test_a_full_disk_stops_the_log_not_the_answers(tiny_kit, tmp_path, capsys, writer):
    """/dev/full buffers the header and refuses the rows, like a disk that fills mid-run: every sample is
    still answered and summarized, the failure is one line naming the log and the disk's error, exit 1
    (outside review, 2026-12-08: the run used to stop at the first failed write, or print a traceback).
    The process writer flushes the header before it starts: there the full disk is found before any
    sample, one usage line, exit 2."""
    from hi_runtime.agent.cli import main

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this platform")
    rc = main(["run", "--strategy", "local", "--model", str(tiny_kit / "local_int8.tflite"),
               "--input", f"npz:{tiny_kit / 'samples.npz'}", "--limit", "150", "--log", "/dev/full",
               "--log-writer", writer, "--no-progress"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "No space left on device" in out.err, out.err
    if writer == "process":
        assert rc == 2 and "give a path on a disk with room" in out.err
    else:
        assert rc == 1 and "covers all 150 samples answered" in out.err


def test_a_folder_with_one_unreadable_image_is_answered_without_it(tiny_kit, tmp_path, capsys):
    """One file that is not an image no longer ends a run over a folder with a traceback: it is skipped,
    named once, and every readable image is answered."""
    from PIL import Image

    from hi_runtime.agent.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "2b.png").write_bytes(b"not a png at all")
    log = tmp_path / "imgs.jsonl"
    rc = main(["run", "--strategy", "local", "--model", str(tiny_kit / "local_int8.tflite"),
               "--input", f"images:{folder}", "--log", str(log), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0 and "Traceback" not in out.err
    assert "skipped 1 files that are not readable images" in out.err and "2b.png" in out.err
    assert len(log.read_text().splitlines()) == 1 + 4  # header + every readable image


def test_a_rerun_replaces_its_own_log_and_summary(tiny_kit, tmp_path, capsys):
    """The refusal of outputs that are not ours (a model, a dataset) leaves re-running into the same log
    and summary alone, in both log formats."""
    from hi_runtime.agent.cli import main

    for log in (tmp_path / "r.jsonl", tmp_path / "r.csv"):
        argv = ["run", "--strategy", "local", "--model", str(tiny_kit / "local_int8.tflite"), "--input",
                f"npz:{tiny_kit / 'samples.npz'}", "--limit", "5", "--log", str(log), "--summary-json",
                str(tmp_path / "s.json"), "--no-progress"]
        assert main(argv) == 0
        assert main(argv) == 0, capsys.readouterr().err


def test_sigterm_stops_a_run_like_ctrl_c(repo_root, tmp_path):
    """systemd and Docker stop a service with SIGTERM: the agent finishes like Ctrl-C (every answered
    sample logged, the summary printed) and exits 128 + 15, where it used to die with samples unlogged."""
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "hi_runtime.agent.cli", "run", "--strategy", "local", "--input",
                             "demo", "--arrival", "rate:100", "--log", str(log), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo_root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.2)  # rows reach the file in batches: the run is under way once one has
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    n = int(err.split("interrupted after ")[1].split()[0])
    assert 0 < n < 500
    assert len(log.read_text().splitlines()) == 1 + n and "local" in out


def test_cli_threshold_override_changes_the_offload_ratio(tiny_kit, server, tmp_path):
    from hi_runtime.agent.cli import main

    ratios = []
    for t in ("0.01", "0.999"):
        out = tmp_path / f"s{t}.json"
        rc = main(["run", "--strategy", "hi", "--model", str(tiny_kit / "local_int8.tflite"),
                   "--decider", str(tiny_kit / "decider.json"), "--threshold", t,
                   "--server", f"127.0.0.1:{server.port}", "--latency-budget-ms", "3000",
                   "--input", str(tiny_kit / "samples.npz"),
                   "--limit", "40", "--summary-json", str(out), "--no-progress"])
        assert rc == 0
        ratios.append(json.loads(out.read_text())["offload_ratio"])
    assert ratios[0] < ratios[1] and ratios[1] > 0.9


def test_cli_ee_hi_sweep_logs_feed_the_planner(tiny_kit, server, tmp_path, capsys):
    """--exit-thresholds overrides the chain's policy; each log's header carries ee_threshold, so the
    runs form the EE-HI sweep that hi-bench compare reads (Table 6 form)."""
    from hi_runtime.agent.cli import main
    from measurements.logs import read_run_log
    from measurements.metrics import compute_metrics
    from measurements.planner import RunStats

    runs = []
    for t in ("0.0", "never"):
        log = tmp_path / f"ee_{t}.jsonl"
        rc = main(["run", "--strategy", "ee-hi", "--ee-chain", str(tiny_kit / "ee.json"), "--exit-thresholds", t,
                   "--threshold", "0.0", "--server", f"127.0.0.1:{server.port}", "--latency-budget-ms", "3000",
                   "--input", str(tiny_kit / "samples.npz"), "--limit", "30", "--log", str(log), "--no-progress"])
        assert rc == 0, capsys.readouterr().err
        run = read_run_log(log)
        runs.append((run, compute_metrics(run)))
    (low, _), (never, _) = runs
    assert low.header["ee_threshold"] == 0.0 and never.header["ee_thresholds"] == [None]
    assert low.header["decider_threshold"] == 0.0
    assert all(r.exit_index == 0 for r in low.records)  # every sample clears a 0 threshold at exit 1
    assert all(r.exit_index == 1 and not r.offloaded for r in never.records)  # decider accepts at t=0
    stats = RunStats.from_runs(runs[:1])
    (point,) = stats.models[low.header["model"]].ee  # the chain's model name, as its profile entry is keyed
    assert low.header["model"] == json.loads((tiny_kit / "ee.json").read_text())["model"]
    assert point.threshold == 0.0 and point.exit_fractions
    with pytest.raises(SystemExit):
        main(["run", "--strategy", "ee-hi", "--exit-thresholds", "1.5", "--input", "x"])
    assert "outside [0, 1]" in capsys.readouterr().err
    rc = main(["run", "--strategy", "ee-hi", "--ee-chain", str(tiny_kit / "ee.json"), "--exit-thresholds", "0.5,0.5",
               "--server", f"127.0.0.1:{server.port}", "--input", str(tiny_kit / "samples.npz")])
    assert rc == 2 and "1 early exit(s)" in capsys.readouterr().err


def test_cli_errors_say_what_is_missing(tiny_kit, tmp_path, capsys):
    from hi_runtime.agent.cli import main

    base = ["run", "--model", str(tiny_kit / "local_int8.tflite"), "--input", str(tiny_kit / "samples.npz")]
    assert main(base + ["--strategy", "hi", "--decider", str(tiny_kit / "decider.json")]) == 2
    assert "--server" in capsys.readouterr().err
    assert main(base) == 2
    assert "--strategy" in capsys.readouterr().err
    assert main(["run", "--strategy", "local", "--model", str(tmp_path / "none.tflite"),
                 "--input", str(tiny_kit / "samples.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base + ["--strategy", "local", "--input", "nowhere:x"]) == 2
    assert "cannot read input" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "camera" in capsys.readouterr().out


def test_cli_registers_the_serial_bridge_when_present(monkeypatch, capsys):
    import importlib.util
    import sys
    import types

    from hi_runtime.agent.cli import build_parser, main

    if importlib.util.find_spec("hi_runtime.agent.serial_bridge") is None:  # absent: no serial subcommand
        assert " serial " not in build_parser().format_help()
    fake = types.ModuleType("hi_runtime.agent.serial_bridge")

    def register_cli(sub):
        p = sub.add_parser("serial", help="fake serial bridge")
        p.add_argument("--port")
        p.set_defaults(func=lambda a: print(f"serial on {a.port}") or 0)

    fake.register_cli = register_cli
    monkeypatch.setitem(sys.modules, "hi_runtime.agent.serial_bridge", fake)
    assert "serial" in build_parser().format_help()
    assert main(["serial", "--port", "/dev/ttyACM0"]) == 0
    assert "serial on /dev/ttyACM0" in capsys.readouterr().out


def test_cli_with_tls_and_key_and_with_a_wrong_key(tiny_kit, tmp_path, capsys):
    pytest.importorskip("cryptography")
    from hi_runtime.agent.cli import main
    from offload_server.server import run_server_in_thread

    cert, key = self_signed_cert(tmp_path)
    secret = b"agent-test-key-0123456789abcdef"
    (tmp_path / "good.key").write_bytes(secret + b"\n")
    (tmp_path / "bad.key").write_bytes(b"not-the-right-key-0123456789abcd")
    cfg = server_config(tiny_kit / "server.onnx", tls_cert=str(cert), tls_key=str(key), auth_key=secret.decode())
    base = ["run", "--strategy", "remote", "--model", str(tiny_kit / "local_int8.tflite"),
            "--input", str(tiny_kit / "samples.npz"), "--limit", "10", "--no-progress", "--tls",
            "--tls-ca", str(cert), "--latency-budget-ms", "3000"]
    with run_server_in_thread(cfg) as handle:
        srv = ["--server", f"127.0.0.1:{handle.port}"]
        good = tmp_path / "good.json"
        assert main(base + srv + ["--key-file", str(tmp_path / "good.key"), "--summary-json", str(good)]) == 0
        assert json.loads(good.read_text())["degraded"] == 0
        bad = tmp_path / "bad.json"
        assert main(base + srv + ["--key-file", str(tmp_path / "bad.key"), "--summary-json", str(bad)]) == 0
        assert json.loads(bad.read_text())["degraded"] == 10  # answered locally, flagged
        assert "authentication" in capsys.readouterr().err


def _stand_in_link(answer, free_slots: int):
    """An offload client class for the Offloader's client_factory whose infer awaits ``answer(tensor)``."""

    class StandInLink:
        connected = False

        def __init__(self, *a, **kw):
            self.free_slots = free_slots

        async def connect(self):
            self.connected = True

        async def infer(self, tensor, model_id, **kw):
            return await answer(tensor)

        async def close(self):
            self.connected = False

    return StandInLink


def test_local_inference_proceeds_while_an_offload_is_in_flight(tiny_kit, data):
    """Pipelining: with a slow link (40 ms per offload) and a slow local model (40 ms), HI over samples
    that arrive faster than either (burst) and all offload overlaps the two, instead of paying both per
    sample."""
    import asyncio

    from hi_runtime.offload_client import InferResult

    x, y = data
    n = 10
    events = {"local": [], "offload": []}

    async def slow_answer(tensor):
        t = time.perf_counter()
        await asyncio.sleep(0.04)
        events["offload"].append((t, time.perf_counter()))
        return InferResult(request_id=1, class_id=7, top_k=[], server_timings={}, round_trip_s=0.04)

    SlowLink = _stand_in_link(slow_answer, free_slots=3)

    clf = Classifier(open_backend(tiny_kit / "local_int8.tflite"))
    fast = clf.classify_one

    def slow_classify(xq):
        t = time.perf_counter()
        time.sleep(0.04)
        out = fast(xq)
        events["local"].append((t, time.perf_counter()))
        return out

    clf.classify_one = slow_classify
    clf.direct_io = lambda: None  # the agent takes the general path, through the slow stand-in
    decider = Decider.load(tiny_kit / "decider.json").with_threshold(0.999999)  # offload (almost) everything
    off = Offloader(OffloadConfig(endpoints=[Endpoint("127.0.0.1", 1)], latency_budget_ms=5000, max_inflight=3),
                    client_factory=SlowLink)
    agent = Agent(AgentConfig(strategy="hi", latency_budget_ms=5000, arrival="burst", progress=False),
                  classifier=clf, decider=decider, offloader=off)
    t = time.perf_counter()
    try:
        agent.run(ArraySource(x[:n], y[:n]))
    finally:
        agent.close()
    wall = time.perf_counter() - t
    offloaded = [r for r in agent.records if r.offloaded]
    assert len(offloaded) >= n - 1 and all(r.final_class == 7 for r in offloaded)
    overlaps = sum(1 for a, b in events["local"] for c, d in events["offload"] if a < d and c < b)
    assert overlaps >= n // 2, "local inference should run while offloads are in flight"
    assert wall < 0.8 * n * (0.04 + 0.04)
    assert sorted(r.sample_id for r in agent.records) == list(range(n))  # delivered in completion order


def _shipped(repo_root: Path, *names: str) -> Path:
    d = repo_root / "models" / "cifar10"
    missing = [n for n in names if not (d / n).exists()]
    if missing:
        pytest.skip(f"shipped artifacts not built yet: {missing} (see docs/training.md, docs/decider.md)")
    return d


def test_shipped_resnet8_and_decider_through_the_agent(repo_root):
    """The shipped model and decider, run by the agent on the shipped demo sample: the agent's exact int8
    decisions equal the decider's own, and its classes equal a direct invoke."""
    d = _shipped(repo_root, "resnet8_int8.tflite", "decider_resnet8.json", "demo_samples.npz")
    from hi_runtime.agent.inputs import load_npz

    src = load_npz(d / "demo_samples.npz")
    clf = Classifier(open_backend(d / "resnet8_int8.tflite"))
    dec = Decider.load(d / "decider_resnet8.json")
    agent = Agent(AgentConfig(strategy="local", progress=False), classifier=clf, decider=dec)
    summary = agent.run(src)
    direct = Classifier(open_backend(d / "resnet8_int8.tflite")).predict(src.images)
    assert [r.final_class for r in agent.records] == direct.classes.tolist()
    accept = dec.accept_int8(direct.raw, *clf.output_spec.quant)
    np.testing.assert_allclose([r.decider_score for r in agent.records], dec.score(direct.probs), rtol=1e-12)
    assert (np.array([r.decider_score for r in agent.records]) >= dec.threshold).tolist() == accept.tolist()
    assert summary.accuracy > 0.7  # ResNet-8 on JPEG CIFAR-10 scores about 0.83 (model card)


@pytest.mark.slow
def test_real_demo_on_the_shipped_models(repo_root, tmp_path, capsys):
    d = _shipped(repo_root, "resnet8_int8.tflite", "decider_resnet8.json", "server.onnx", "demo_samples.npz")
    from hi_runtime.agent.cli import main

    assert main(["demo", "--models-dir", str(d), "--out", str(tmp_path / "demo"), "--no-progress"]) == 0
    s = {x["strategy"]: x for x in json.loads((tmp_path / "demo" / "summary.json").read_text())}
    assert s["hi"]["samples"] == s["local"]["samples"] == 500


def test_shipped_ee_chain_through_the_agent_matches_the_exporters_runner(repo_root):
    """ee-hi on the shipped EE ResNet-8 chain (no server needed: the offloads degrade to the local
    answer): exits, classes and offload decisions equal the chain run by training.early_exit's own
    SegmentRunner (same default kernels)."""
    d = _shipped(repo_root, "ee_resnet8.json", "demo_samples.npz")
    from hi_runtime.early_exit import SegmentChain, run_chain
    from hi_runtime.agent.inputs import load_npz
    from hi_runtime.backends import ChainRunner

    src = load_npz(d / "demo_samples.npz").limit(150)
    chain = ChainRunner(d / "ee_resnet8.json")
    off = offloader_for(free_port(), latency_budget_ms=50.0, cooldown_s=60.0)  # nobody listens
    agent = Agent(AgentConfig(strategy="ee-hi", latency_budget_ms=50.0, progress=False), chain=chain, offloader=off)
    try:
        agent.run(src)
    finally:
        agent.close()
    ref_chain = SegmentChain.load(d / "ee_resnet8.json")
    runner = ChainRunner(ref_chain, "litert", reference=False)
    q = chain.input_spec
    for r, img in zip(agent.records, src.images):
        res = run_chain(ref_chain, runner, q.quantize(img[None]))
        assert (r.exit_index, r.local_class, r.offloaded) == (res.exit_index, res.predicted_class, res.offload)
        assert r.final_class == r.local_class and r.degraded == r.offloaded


def test_cli_refuses_a_decider_fitted_for_another_model_unless_forced(tiny_kit, repo_root, tmp_path, capsys):
    """The shipped ResNet-8 decider records the file it was fitted for: on another model it is a one-line
    error with the fix; --force-decider turns it into a warning."""
    from hi_runtime.agent.cli import main

    shipped = repo_root / "models" / "cifar10" / "decider_resnet8.json"
    base = ["run", "--strategy", "local", "--model", str(tiny_kit / "local_int8.tflite"), "--decider", str(shipped),
            "--input", str(tiny_kit / "samples.npz"), "--limit", "5", "--no-progress"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "does not fit local_int8.tflite" in err and "--force-decider" in err and "hi-train decider" in err
    assert main(base + ["--force-decider"]) == 0
    assert "warning: --force-decider" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", ["local", "hi"])
def test_direct_loop_gives_the_general_loops_records(tiny_kit, data, tmp_path, strategy):
    """The closed loop on direct I/O (kept samples as tuples, records made when delivered) and the general
    loop answer the same samples identically: every logged field but the timings, in the same order, with
    the same decider scores; offloaded samples (hi) go to the server on both."""
    import asyncio

    from hi_runtime.offload_client import InferResult

    x, y = data
    n = 60

    async def instant_answer(tensor):
        await asyncio.sleep(0)
        return InferResult(request_id=1, class_id=int(tensor.reshape(-1)[0]) % 10, top_k=[],
                           server_timings={"total_us": 100}, round_trip_s=0.001)

    InstantLink = _stand_in_link(instant_answer, free_slots=4)

    def run(direct: bool):
        clf = Classifier(open_backend(tiny_kit / "local_int8.tflite"))
        decider = Decider.load(tiny_kit / "decider.json").with_threshold(0.7)
        off = None
        if strategy == "hi":
            off = Offloader(OffloadConfig(endpoints=[Endpoint("127.0.0.1", 1)], latency_budget_ms=5000),
                            client_factory=InstantLink)
        agent = Agent(AgentConfig(strategy=strategy, latency_budget_ms=5000, progress=False),
                      classifier=clf, decider=decider, offloader=off)
        assert agent._direct is not None
        agent.direct_loop = direct
        log = tmp_path / f"{strategy}_{direct}.jsonl"
        try:
            with RecordWriter(log, default_header(model="m", strategy=strategy, server=None)) as w:
                agent.run(ArraySource(x[:n], y[:n]), w)
        finally:
            agent.close()
        rows = [json.loads(line) for line in log.read_text().splitlines()[1:]]
        return agent.records, rows

    direct_recs, direct_rows = run(True)
    general_recs, general_rows = run(False)
    assert len(direct_rows) == len(general_rows) == n
    timing = {f for f in SAMPLE_FIELDS if f.startswith("t_")}
    for a, b in zip(direct_rows, general_rows):
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
        assert (a["t_total_ms"] is None) == (b["t_total_ms"] is None) and a["t_local_ms"] > 0
    assert [r.sample_id for r in direct_recs] == list(range(n))
    if strategy == "hi":
        offloaded = [r for r in direct_recs if r.offloaded]
        assert 0 < len(offloaded) < n and all(r.server_class is not None for r in offloaded)
    assert all(r.decider_score is not None for r in direct_recs)
