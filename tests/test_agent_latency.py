"""What hi-agent's latencies mean (issue: HI that beats remote, measured honestly).

Against a loopback stand-in server with a fixed delay D (tests/support/delay_server.py), on the tiny
kit's local model and decider:

* closed loop: mean latency = local + offload ratio x D (Eq. 3), within a stated tolerance;
* rate mode faster than the server can serve: latency shows the queueing, samples whose deadline cannot
  be met are shed (answered locally at once), none is lost;
* answers are stamped when they arrive, not when the loop next looks (a slow input source);
* with K > 1, requests overlap at the server;
* a server whose latency steps from 5 ms to 80 ms causes no degraded sample.
"""
from __future__ import annotations

import numpy as np
import pytest
from support.delay_server import DelayServer
from test_agent_kit import color_images, tiny_kit_fixture

from hi_runtime.agent.inputs import ArraySource, Sample
from hi_runtime.agent.offloader import Endpoint, OffloadConfig, Offloader
from hi_runtime.agent.strategies import Agent, AgentConfig
from hi_runtime.backends import Classifier, open_backend
from hi_runtime.decider import Decider

tiny_kit = tiny_kit_fixture
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def data():
    return color_images(80, seed=21)


def hi_agent(kit, port, *, threshold=None, budget_ms=2000.0, arrival="closed", k=4, **off):
    clf = Classifier(open_backend(kit / "local_int8.tflite"))
    dec = Decider.load(kit / "decider.json")
    if threshold is not None:
        dec = dec.with_threshold(threshold)
    offloader = Offloader(OffloadConfig(endpoints=[Endpoint("127.0.0.1", port)], latency_budget_ms=budget_ms,
                                        max_inflight=k, **off))
    return Agent(AgentConfig(strategy="hi", latency_budget_ms=budget_ms, arrival=arrival, progress=False),
                 classifier=clf, decider=dec, offloader=offloader)


def test_closed_loop_latency_is_eq3_local_plus_offload_ratio_times_d(tiny_kit, data):
    x, y = data
    d = 0.050
    with DelayServer(delay_s=d) as srv:
        agent = hi_agent(tiny_kit, srv.port)
        try:
            s = agent.run(ArraySource(x, y))
        finally:
            agent.close()
        assert srv.peak_concurrency == 1  # closed: one sample in the system at a time
    recs = agent.records
    assert len(recs) == len(x) and 0.1 < s.offload_ratio < 0.9 and s.degraded == 0 and s.shed == 0
    local = np.mean([r.on_device_ms for r in recs])
    off = [r for r in recs if r.offloaded]
    # Eq. 3 with the server's D: each offload costs D plus the loopback round trip and three thread
    # hand-offs (agent -> offloader loop -> server -> back), about 1 ms on an idle machine. Stated
    # tolerance: the mean latency is at least local + ratio x D, and the typical (median) offload exceeds
    # D by at most 20 ms; the mean is bounded through the accounting below, because on a 2-core machine
    # shared with training runs single thread wake-ups can take 100+ ms and would make a mean bound flaky.
    eq3 = local + s.offload_ratio * d * 1e3
    assert s.latency_mean_ms >= eq3
    assert np.median([r.t_offload_ms for r in off]) <= d * 1e3 + 20
    # no waiting inside the agent: latency = local + ratio x (offload time), to the microsecond
    assert s.latency_mean_ms == pytest.approx(local + s.offload_ratio * np.mean([r.t_offload_ms for r in off]),
                                              abs=0.05)
    assert all(r.t_total_ms >= d * 1e3 and r.t_offload_ms >= d * 1e3 for r in off)
    assert all(r.t_queue_ms < 5 for r in recs)  # closed: nobody waits for the device


def test_rate_mode_faster_than_the_server_queues_sheds_and_loses_nothing(tiny_kit, data):
    x, y = data
    d, budget = 0.020, 300.0
    with DelayServer(delay_s=d, capacity=1) as srv:  # serves one request at a time: 50 per second
        agent = hi_agent(tiny_kit, srv.port, threshold=0.999999, budget_ms=budget, arrival="rate:400")
        try:
            s = agent.run(ArraySource(x, y))
        finally:
            agent.close()
    recs = agent.records
    assert sorted(r.sample_id for r in recs) == list(range(len(x)))  # none lost
    assert all(r.final_class is not None for r in recs)
    assert s.offload_ratio > 0.9  # the decider wanted (almost) everything offloaded ...
    served = [r for r in recs if r.answered_by_server]
    shed = [r for r in recs if r.shed]
    assert shed and served, (len(shed), len(served))  # ... the server could serve only some in time
    assert all(r.final_class == r.local_class and r.server_class is None for r in shed)
    assert max(r.t_total_ms for r in served) > 3 * d * 1e3  # the queueing shows in the latency
    assert s.latency_p99_ms > 3 * d * 1e3
    # shed samples answer at once (their latency is the device's own queue), served ones made (about)
    # their deadline
    assert np.median([r.t_total_ms for r in shed]) < 0.5 * np.median([r.t_total_ms for r in served])
    assert max(r.t_total_ms for r in served) <= budget * 1.3
    # admitted samples that still missed their deadline (degraded): the estimate has no data for the first
    # few arrivals, and thread wake-ups on a loaded 2-core machine add noise; a handful at most
    assert s.degraded <= 0.15 * len(x)


def test_answers_are_stamped_when_they_arrive_not_when_the_loop_looks(tiny_kit, data):
    x, y = data
    d = 0.050
    with DelayServer(delay_s=d) as srv:
        agent = hi_agent(tiny_kit, srv.port, threshold=0.999999, arrival="rate:2")  # a sample every 500 ms
        try:
            agent.run(ArraySource(x[:5], y[:5]))
        finally:
            agent.close()
    off = [r for r in agent.records if r.offloaded and r.answered_by_server]
    assert off
    for r in off:
        # the 50 ms answer, not the loop's next look at the next arrival 500 ms later
        assert d * 1e3 <= r.t_total_ms < 400, r.t_total_ms
        # arrival -> answer is the parts: queue wait, the device's stages, then the offload; what is left
        # is the hand-over to the offloader (microseconds idle, a thread wake-up or two on a loaded machine)
        parts = r.t_queue_ms + r.on_device_ms + r.t_offload_ms
        assert parts <= r.t_total_ms + 0.01 and r.t_total_ms - parts < 25.0, (r.t_total_ms, parts)


def test_k_greater_than_one_overlaps_requests_at_the_server(tiny_kit, data):
    x, y = data
    for k in (1, 4):
        with DelayServer(delay_s=0.05) as srv:
            agent = hi_agent(tiny_kit, srv.port, threshold=0.999999, arrival="burst", k=k)
            try:
                agent.run(ArraySource(x[:16], y[:16]))
            finally:
                agent.close()
            # the server itself saw K requests at once (and never more): the direct evidence of overlap;
            # wall times are left to measurements/ (this machine's load would make them flaky here)
            assert srv.peak_concurrency == (1 if k == 1 else 4), (k, srv.peak_concurrency)
        assert sum(r.answered_by_server for r in agent.records) >= 12


class SteppingSource:
    """Samples; after ``at`` samples the server's delay steps to ``delay``."""

    def __init__(self, x, y, srv, at, delay):
        self.x, self.y, self.srv, self.at, self.delay = x, y, srv, at, delay
        self.total = len(x)

    def __iter__(self):
        for i in range(len(self.x)):
            if i == self.at:
                self.srv.delay_s = self.delay
            yield Sample(i, self.x[i], int(self.y[i]))


def test_a_server_slowing_from_5_to_80_ms_causes_no_degraded_sample(tiny_kit, data):
    x, y = data
    with DelayServer(delay_s=0.005) as srv:
        agent = hi_agent(tiny_kit, srv.port, threshold=0.999999)  # default budget semantics: 2 s here
        try:
            s = agent.run(SteppingSource(x[:40], y[:40], srv, at=25, delay=0.080))
        finally:
            agent.close()
    assert s.degraded == 0 and s.shed == 0
    late = [r for r in agent.records if r.sample_id >= 25 and r.offloaded]
    assert late and all(r.t_offload_ms >= 80 for r in late)
    assert agent.offloader.breaker_states() == {f"127.0.0.1:{srv.port}": "closed"}


# ---- interrupted runs (an outside review, 2026-12-07) ------------------------------------------------------

class _StopAfter:
    """An input source that raises KeyboardInterrupt (Ctrl-C) after ``n`` samples."""

    def __init__(self, x, y, n):
        self.x, self.y, self.n = x, y, n
        self.total, self.name = n, "stop-after"

    def __iter__(self):
        for i in range(self.n):
            yield Sample(i, self.x[i], int(self.y[i]))
        raise KeyboardInterrupt

    def close(self):
        pass


def test_ctrl_c_delivers_the_offloads_still_on_the_wire(tiny_kit, data):
    """At Ctrl-C the samples whose offload is in flight are answered (each has its deadline), not dropped."""
    x, y = data
    with DelayServer(delay_s=0.1) as srv:
        agent = hi_agent(tiny_kit, srv.port, threshold=0.99, arrival="rate:200", k=16)
        try:
            with pytest.raises(KeyboardInterrupt):
                agent.run(_StopAfter(x, y, 30))
        finally:
            agent.close()
    assert sorted(r.sample_id for r in agent.records) == list(range(30))
    assert any(r.offloaded and not r.degraded for r in agent.records)


def test_ctrl_c_with_an_answer_that_never_comes_is_answered_locally_not_waited_for_forever(tiny_kit, data):
    """A Ctrl-C that lands between handing a sample to the offloader and hearing back (its callback lost;
    here: a future that never completes) used to leave the cleanup waiting forever on a count that could
    not drain (outside review, 2026-12-08). Now the cleanup waits until the last deadline plus a grace,
    then answers such samples locally, flagged degraded: every sample is delivered once, and soon."""
    import concurrent.futures
    import time

    x, y = data

    class LostOffloader:
        def __init__(self):
            self.submitted = 0

        def submit(self, tensor, deadline):
            self.submitted += 1
            return concurrent.futures.Future()  # nobody will ever complete it

        def expected_wait_s(self):
            return None

        def close(self):
            pass

    clf = Classifier(open_backend(tiny_kit / "local_int8.tflite"))
    off = LostOffloader()
    agent = Agent(AgentConfig(strategy="hi", latency_budget_ms=100.0, arrival="rate:500", progress=False),
                  classifier=clf, decider=Decider.load(tiny_kit / "decider.json").with_threshold(1.0),
                  offloader=off)
    agent.SETTLE_GRACE_S = 0.2
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        agent.run(_StopAfter(x, y, 12))
    assert time.monotonic() - t0 < 10
    assert off.submitted == 12
    assert sorted(r.sample_id for r in agent.records) == list(range(12))
    assert all(r.offloaded and r.degraded and r.final_class == r.local_class for r in agent.records)
    assert "interrupted before the server answered" in agent.last_error


def test_an_interrupt_while_a_batch_is_written_never_repeats_it(tiny_kit, data):
    """A Ctrl-C inside the writer during a flush: the final flush does not write that batch again."""
    x, y = data

    class InterruptedWriter:
        def __init__(self):
            self.rows = []
            self.calls = 0

        def write_many(self, recs):
            self.calls += 1
            if self.calls == 1:  # Ctrl-C arrives while the first batch is being written
                raise KeyboardInterrupt
            self.rows += [r.sample_id for r in recs]

    clf = Classifier(open_backend(tiny_kit / "local_int8.tflite"))
    agent = Agent(AgentConfig(strategy="local", progress=False), classifier=clf)
    agent.SCORE_BATCH = 8  # several batches in the run
    writer = InterruptedWriter()
    with pytest.raises(KeyboardInterrupt):
        agent.run(ArraySource(x[:40], y[:40]), writer)
    ids = [r.sample_id for r in agent.records]
    assert len(ids) == len(set(ids)) and len(writer.rows) == len(set(writer.rows))


def test_the_log_writer_process_outlives_a_ctrl_c_sent_to_the_whole_process_group(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: the writer ignores it and writes every row."""
    import os
    import signal
    import time

    from hi_runtime.records import RecordWriter, SampleRecord, default_header

    path = tmp_path / "run.jsonl"
    writer = RecordWriter(path, default_header(model="m", strategy="local", server=None), background="process")
    assert os.getpgid(writer._proc.pid) != os.getpgid(0)  # outside the group a terminal's Ctrl-C reaches
    for i in range(25):
        writer.write(SampleRecord(sample_id=i, strategy="local", local_class=1, local_confidence=0.9,
                                  exit_index=None, decider_score=None, offloaded=False, server_class=None,
                                  final_class=1, degraded=False, label=None))
    time.sleep(0.5)  # started up: it ignores a SIGINT sent to it directly too
    os.kill(writer._proc.pid, signal.SIGINT)
    for i in range(25, 50):
        writer.write(SampleRecord(sample_id=i, strategy="local", local_class=1, local_confidence=0.9,
                                  exit_index=None, decider_score=None, offloaded=False, server_class=None,
                                  final_class=1, degraded=False, label=None))
    writer.close()  # raises if the process died
    assert sum('"type": "sample"' in line for line in path.read_text().splitlines()) == 50
