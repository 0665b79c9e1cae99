"""The resilient, pipelined offloader (hi_runtime.agent.offloader): deadlines, circuit breakers,
failover, hedging after the round-trip window, requests in flight per connection, admission estimates.

Failure modes are driven by fake connections (``World``); pipelining and timing by a real loopback
stand-in server with a fixed delay (tests/support/delay_server.py). Times are real but short."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from support.delay_server import DelayServer

from hi_runtime.agent.offloader import CircuitBreaker, Endpoint, OffloadConfig, Offloader
from hi_runtime.offload_client import (
    InferResult,
    OffloadAuthError,
    OffloadConnectionError,
    OffloadRequestError,
    OffloadServerError,
    OffloadTimeout,
)
from hi_runtime.protocol import ErrorCode

pytestmark = pytest.mark.timeout(60)
X = np.zeros((1, 32, 32, 3), np.uint8)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class World:
    """Fake servers by port. Modes: ok, down (connect refused), busy (BUSY error), bad (BAD_TENSOR),
    auth (wrong key), hang (never answers), slow:<seconds>, toolarge (the client refuses the request: over
    the server's max_frame)."""

    def __init__(self, modes: dict[int, str], max_connections: dict[int, int] | None = None) -> None:
        self.modes = dict(modes)
        self.max_connections = dict(max_connections or {})  # beyond it a connect gets BUSY (a server's limit)
        self.connects: list[int] = []
        self.requests: list[int] = []

    def factory(self, host, port, *, key=None, ssl_context=None, connect_timeout=2.0, client_name="",
                max_inflight=4, on_late=None):
        world = self

        class Client:
            connected = False
            free_slots = max_inflight

            async def connect(self):
                mode = world.modes[port]
                if mode == "down":
                    raise OffloadConnectionError(f"cannot connect to {host}:{port}: refused")
                if mode == "auth":
                    raise OffloadAuthError("server rejected authentication: bad proof (check the key)")
                if world.connects.count(port) >= world.max_connections.get(port, 1 << 30):
                    raise OffloadServerError(ErrorCode.BUSY, "too many connections", 0)
                world.connects.append(port)
                self.connected = True

            async def infer(self, tensor, model_id, *, layout="NHWC", quant=None, top_k=0, timeout=None):
                world.requests.append(port)
                mode = world.modes[port]
                if mode == "down":
                    self.connected = False
                    raise OffloadConnectionError("connection broke")
                if mode == "busy":
                    raise OffloadServerError(ErrorCode.BUSY, "queue full", 1)
                if mode == "bad":
                    raise OffloadServerError(ErrorCode.BAD_TENSOR, "wrong shape", 1)
                if mode == "toolarge":
                    raise OffloadRequestError("cannot offload this tensor: its request is 3100 bytes and "
                                              f"{host}:{port} accepts frames of at most 1024 bytes (its max_frame)")
                if mode == "hang" or (mode.startswith("slow:") and float(mode[5:]) > (timeout or 1e9)):
                    await asyncio.sleep(timeout)
                    raise OffloadTimeout("no answer within the timeout")
                delay = float(mode[5:]) if mode.startswith("slow:") else 0.0
                await asyncio.sleep(delay)
                return InferResult(request_id=1, class_id=port % 10, top_k=[], server_timings={"total_us": 5.0},
                                   round_trip_s=delay + 0.001)

            async def close(self):
                self.connected = False

        return Client()


def make(world: World, ports=(9001,), **kw) -> Offloader:
    kw.setdefault("latency_budget_ms", 500.0)
    cfg = OffloadConfig(endpoints=[Endpoint("127.0.0.1", p) for p in ports], **kw)
    return Offloader(cfg, client_factory=world.factory)


def test_endpoint_parse():
    assert Endpoint.parse("127.0.0.1:9000") == Endpoint("127.0.0.1", 9000)
    assert Endpoint.parse("[::1]:80") == Endpoint("::1", 80)
    assert str(Endpoint("::1", 80)) == "[::1]:80"
    for bad in ("localhost", "host:", ":9000", "h:0", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            Endpoint.parse(bad)
    with pytest.raises(ValueError, match="IPv6 address in brackets"):
        Endpoint.parse("host:80:90")  # was host "host:80", port 90: every offload then failed


def test_breaker_opens_half_opens_and_backs_off():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, cooldown_max_s=3.0, clock=clock)
    assert b.allow()
    b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.t += 0.99
    assert not b.allow()
    clock.t += 0.02
    assert b.allow() and b.state == "half-open"
    b.failure()  # trial failed: open again, twice as long
    assert b.state == "open" and b.cooldown == 2.0
    clock.t += 1.5
    assert not b.allow()
    clock.t += 0.6
    assert b.allow()
    b.failure()
    assert b.cooldown == 3.0  # capped
    clock.t += 3.1
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.cooldown == 1.0 and b.failures == 0


def test_half_open_admits_one_trial_at_a_time():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=1.0, cooldown_max_s=4.0, clock=clock)
    b.failure()
    opened = b.opened_at
    clock.t += 0.5
    b.failure()  # an attempt started before it opened reports late: the cool-down is not restarted
    assert b.state == "open" and b.opened_at == opened and b.cooldown == 1.0
    clock.t += 0.6
    assert b.allow() and b.state == "half-open"
    b.begin()  # the trial
    assert not b.allow()  # everyone else goes elsewhere (or stays local) meanwhile
    clock.t += 1.01  # a trial that never came back (cut by its deadline) frees the slot after a cool-down
    assert b.allow()
    b.begin()
    b.success()
    assert b.state == "closed" and b.allow()


def test_success_reuses_one_persistent_connection():
    world = World({9001: "ok"})
    off = make(world)
    try:
        outs = [off.offload(X) for _ in range(5)]
    finally:
        off.close()
    assert all(o.ok and o.class_id == 1 and o.endpoint == "127.0.0.1:9001" for o in outs)
    assert world.connects == [9001]  # persistent
    assert off.stats.answered == 5 and all(o.finished_at >= o.started_at for o in outs)


def test_deadline_bounds_an_offload_to_a_server_that_never_answers():
    world = World({9001: "hang"})
    off = make(world, latency_budget_ms=80.0, failure_threshold=100)
    try:
        t = time.monotonic()
        out = off.offload(X)
        took = time.monotonic() - t
    finally:
        off.close()
    assert not out.ok and ("latency budget" in out.error or "timeout" in out.error)
    assert 0.06 <= took <= 0.08 + 0.3, took  # never much longer than the budget (slack: a loaded 2-core machine)


def test_breaker_skips_a_dead_server_then_reconnects_when_it_returns():
    world = World({9001: "down"})
    off = make(world, failure_threshold=2, cooldown_s=0.1, cooldown_max_s=0.2, backoff_initial_ms=1,
               latency_budget_ms=1000)
    try:
        first = off.offload(X)
        assert not first.ok and "refused" in first.error
        assert off.breaker_states() == {"127.0.0.1:9001": "open"}
        t = time.monotonic()
        fast = off.offload(X)  # every breaker open: fails at once, at local speed
        # at once: not after the 1 s budget (slack for thread wake-ups on a loaded machine)
        assert not fast.ok and "circuit breaker is open" in fast.error and time.monotonic() - t < 0.3
        assert off.stats.skipped_all_open == 1
        world.modes[9001] = "ok"
        time.sleep(0.12)  # cool-down over: one trial (half-open) decides
        back = off.offload(X)
        assert back.ok and off.breaker_states() == {"127.0.0.1:9001": "closed"}
    finally:
        off.close()


def test_failover_to_secondary_and_back_after_cooldown():
    world = World({9001: "down", 9002: "ok"})
    off = make(world, ports=(9001, 9002), failure_threshold=1, cooldown_s=0.1, cooldown_max_s=0.1)
    try:
        out = off.offload(X)
        assert out.ok and out.endpoint == "127.0.0.1:9002" and off.stats.failovers >= 1
        world.modes[9001] = "ok"
        assert off.offload(X).endpoint == "127.0.0.1:9002"  # primary still cooling down
        time.sleep(0.12)
        assert off.offload(X).endpoint == "127.0.0.1:9001"  # back on the primary
    finally:
        off.close()


def test_busy_is_retried_elsewhere_but_a_bad_request_is_not():
    world = World({9001: "busy", 9002: "ok"})
    off = make(world, ports=(9001, 9002))
    try:
        out = off.offload(X)
        assert out.ok and out.endpoint == "127.0.0.1:9002"
        world.modes.update({9001: "bad", 9002: "ok"})
        world.requests.clear()
        out = off.offload(X)
        assert not out.ok and "BAD_TENSOR" in out.error
        assert world.requests == [9001]  # the request's own fault: no other server is bothered
    finally:
        off.close()


def test_a_request_over_the_servers_max_frame_fails_alone_and_keeps_the_connection_and_breaker():
    """The client refused to send it (it would have cost the connection): the sample falls back locally
    with the reason, no retry or failover repeats the refusal, the connection stays, and the breaker
    counts no failure, even as the half-open trial."""
    world = World({9001: "toolarge", 9002: "ok"})
    off = make(world, ports=(9001, 9002), failure_threshold=1)
    try:
        for _ in range(3):
            out = off.offload(X)
            assert not out.ok and "max_frame" in out.error and out.attempts == 1
        assert world.requests == [9001] * 3 and world.connects == [9001]
        assert off.breakers[off.config.endpoints[0]].state == CircuitBreaker.CLOSED
        b = CircuitBreaker(1, 1.0, 8.0, clock=FakeClock())
        b.failure()
        b.clock.t += 1.0
        assert b.allow()
        b.begin()
        assert not b.allow()  # the trial is claimed ...
        b.release()
        assert b.allow() and b.state == CircuitBreaker.HALF_OPEN  # ... and freed by a refused request
    finally:
        off.close()


def test_auth_failure_degrades_with_a_clear_reason():
    world = World({9001: "auth"})
    off = make(world)
    try:
        out = off.offload(X)
    finally:
        off.close()
    assert not out.ok and "authentication failed" in out.error and "check the key" in out.error


def test_a_slow_primary_is_hedged_on_the_secondary_but_not_abandoned():
    world = World({9001: "ok", 9002: "ok"})
    off = make(world, ports=(9001, 9002), hedge_factor=3.0, hedge_margin_ms=10.0, latency_budget_ms=2000)
    try:
        for _ in range(10):  # the primary's round-trip window: ~1 ms
            assert off.offload(X).endpoint == "127.0.0.1:9001"
        world.modes[9001] = "slow:0.5"
        t = time.monotonic()
        out = off.offload(X)
        took = time.monotonic() - t
        assert out.ok and out.endpoint == "127.0.0.1:9002" and off.stats.hedges == 1
        assert took < 0.3, took  # the hedge fired after ~3 x 1 ms + 10 ms, not after the primary's 0.5 s
        # one server only, the same step: the request simply waits (a slow server is not a dead one)
        solo = make(world, ports=(9001,), latency_budget_ms=2000)
        try:
            assert solo.offload(X).ok
        finally:
            solo.close()
    finally:
        off.close()


def test_a_server_that_never_answered_is_hedged_too():
    """A server with no round trip on record (a fresh one, or the breaker's trial of one that hung) is hedged
    after a quarter of the budget; it used to keep the sample waiting its whole budget, then degrade it,
    while a healthy replica was there (outside review, 2026-12-08)."""
    world = World({9001: "hang", 9002: "ok"})
    off = make(world, ports=(9001, 9002), latency_budget_ms=2000)
    try:
        out = off.offload(X)
        assert out.ok and out.endpoint == "127.0.0.1:9002" and off.stats.hedges == 1
        assert world.requests[:2] == [9001, 9002]
    finally:
        off.close()


def test_requests_are_pipelined_k_per_connection_against_a_real_server():
    took = {}
    with DelayServer(delay_s=0.05) as srv:
        for k, conns, want_peak in ((1, 1, 1), (4, 1, 4), (2, 2, 4)):
            srv.peak_concurrency = 0
            off = Offloader(OffloadConfig(endpoints=[Endpoint(srv.host, srv.port)], max_inflight=k,
                                          connections=conns, latency_budget_ms=5000))
            try:
                t = time.monotonic()
                futs = [off.submit(X + i) for i in range(8)]
                outs = [f.result(10) for f in futs]
                took[(k, conns)] = time.monotonic() - t
            finally:
                off.close()
            assert all(o.ok for o in outs)
            assert [o.class_id for o in outs] == [(i * 32 * 32 * 3) % 10 for i in range(8)]  # paired by id
            assert srv.peak_concurrency == want_peak, (k, conns, srv.peak_concurrency)
            assert took[(k, conns)] >= 0.05 * 8 / want_peak * 0.9  # never more than want_peak at once
    # (that they overlap is what the server's peak shows; wall-time ratios are measurements/' job)


def test_expected_wait_follows_round_trips_and_the_requests_ahead():
    with DelayServer(delay_s=0.03) as srv:
        off = Offloader(OffloadConfig(endpoints=[Endpoint(srv.host, srv.port)], max_inflight=1,
                                      latency_budget_ms=5000))
        try:
            assert off.expected_wait_s() is None  # nothing measured yet: admit
            for _ in range(5):
                off.offload(X)
            alone = off.expected_wait_s()
            assert 0.03 <= alone < 0.2
            futs = [off.submit(X) for _ in range(6)]
            time.sleep(0.01)
            queued = off.expected_wait_s()
            assert queued > alone + 3 * 0.02, (alone, queued)  # six ahead, one at a time
            [f.result(10) for f in futs]
        finally:
            off.close()


def test_a_refused_extra_connection_leaves_the_server_in_use():
    """--connections 2 against a server at its connection limit: the one connection it accepted serves."""
    world = World({9001: "ok"}, max_connections={9001: 1})
    off = make(world, connections=2)
    try:
        outs = [off.offload(X) for _ in range(4)]
    finally:
        off.close()
    assert all(o.ok for o in outs), [o.error for o in outs]
    assert off.breaker_states() == {"127.0.0.1:9001": "closed"}


def test_requests_waiting_for_a_slot_fail_over_when_the_connection_dies():
    """The primary (one request at a time) dies with one request on the wire and two waiting for the slot:
    all three are answered by the secondary, none is lost."""
    with DelayServer(delay_s=0.02, max_inflight=1, close_on_infer=True) as bad, DelayServer(delay_s=0.005) as good:
        off = Offloader(OffloadConfig([Endpoint("127.0.0.1", bad.port), Endpoint("127.0.0.1", good.port)],
                                      latency_budget_ms=3000))
        try:
            outs = [f.result(20) for f in [off.submit(X + i) for i in range(3)]]
        finally:
            off.close()
    assert [(o.ok, o.endpoint) for o in outs] == [(True, f"127.0.0.1:{good.port}")] * 3, [o.error for o in outs]


def test_a_request_given_up_by_its_caller_still_reports_its_late_answer():
    """A cancelled infer (a hedge that lost, the agent's deadline) is abandoned like a timed-out one: the
    answer that comes later reaches on_late, so the round-trip window learns the server's real pace."""
    from hi_runtime.offload_client import AsyncOffloadClient

    late: list[InferResult] = []

    async def scenario(port: int) -> None:
        client = AsyncOffloadClient("127.0.0.1", port, on_late=late.append)
        await client.connect()
        try:
            task = asyncio.ensure_future(client.infer(X, "m"))
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(100):
                if late:
                    break
                await asyncio.sleep(0.01)
        finally:
            await client.close()

    with DelayServer(delay_s=0.1) as srv:
        asyncio.run(scenario(srv.port))
    assert len(late) == 1 and late[0].round_trip_s >= 0.09
