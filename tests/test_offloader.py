"""Resilient offloader logic with scripted fake clients and a fake clock: breaker, deadlines, retries,
failover, automatic reconnection. (Against the real server: tests/test_offloader_server.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from hi_runtime.offload_client import (
    InferResult,
    OffloadAuthError,
    OffloadConnectionError,
    OffloadServerError,
    OffloadTimeout,
)
from hi_runtime.agent.offloader import CircuitBreaker, Endpoint, OffloadConfig, OffloadWorker, ResilientOffloader
from hi_runtime.protocol import ErrorCode


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(0.0, s)


class World:
    """Per-endpoint behaviour: 'ok', 'refuse' (connect fails), 'timeout' (infer times out after the given
    timeout), 'busy' (server error BUSY), 'bad' (BAD_TENSOR), 'auth'."""

    def __init__(self, clock: FakeClock, modes: dict[int, str]) -> None:
        self.clock = clock
        self.modes = dict(modes)
        self.connects: list[int] = []
        self.infers: list[int] = []

    def factory(self, host, port, *, key=None, ssl_context=None, connect_timeout=2.0, client_name=""):
        world = self

        class Client:
            connected = False

            def connect(self):
                world.connects.append(port)
                mode = world.modes[port]
                if mode == "refuse":
                    world.clock.t += 0.0001
                    raise OffloadConnectionError(f"cannot connect to {host}:{port}: refused")
                if mode == "auth":
                    raise OffloadAuthError("server rejected authentication")
                self.connected = True

            def infer(self, tensor, model_id, *, layout="NHWC", quant=None, top_k=0, timeout=None):
                world.infers.append(port)
                mode = world.modes[port]
                if mode == "timeout":
                    world.clock.t += timeout
                    raise OffloadTimeout("no answer")
                if mode == "refuse":  # went down after connecting
                    self.connected = False
                    raise OffloadConnectionError("server closed the connection")
                if mode == "busy":
                    raise OffloadServerError(int(ErrorCode.BUSY), "overloaded", 7)
                if mode == "bad":
                    raise OffloadServerError(int(ErrorCode.BAD_TENSOR), "wrong shape", 7)
                world.clock.t += 0.002
                return InferResult(request_id=1, class_id=port % 10, top_k=[], server_timings={})

            def close(self):
                self.connected = False

        return Client()


def make(world: World, ports=(9001,), **kw) -> ResilientOffloader:
    cfg = OffloadConfig(endpoints=[Endpoint("127.0.0.1", p) for p in ports], **kw)
    return ResilientOffloader(cfg, client_factory=world.factory, clock=world.clock, sleep=world.clock.sleep)


X = np.zeros((1, 32, 32, 3), np.uint8)


def test_endpoint_parse():
    assert Endpoint.parse("127.0.0.1:9000") == Endpoint("127.0.0.1", 9000)
    assert Endpoint.parse("[::1]:80") == Endpoint("::1", 80)
    assert str(Endpoint("::1", 80)) == "[::1]:80"
    for bad in ("localhost", "host:", ":9000", "h:0", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            Endpoint.parse(bad)


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


def test_success_reuses_one_persistent_connection():
    clock = FakeClock()
    world = World(clock, {9001: "ok"})
    off = make(world)
    outs = [off.offload(X) for _ in range(5)]
    assert all(o.ok and o.class_id == 1 and o.endpoint == "127.0.0.1:9001" for o in outs)
    assert world.connects == [9001]  # persistent
    assert off.stats.answered == 5


def test_timeout_is_the_remaining_budget_and_never_exceeds_it():
    clock = FakeClock()
    world = World(clock, {9001: "timeout"})
    off = make(world, latency_budget_ms=40.0, max_attempts=5, failure_threshold=100)
    start = clock.t
    out = off.offload(X)
    assert not out.ok and "timeout" in out.error
    assert clock.t - start <= 0.040 + 1e-9  # the budget bounds the whole offload, retries included
    deadline = clock.t + 0.010
    out = off.offload(X, deadline=deadline)
    assert not out.ok and clock.t <= deadline + 1e-9


def test_breaker_skips_dead_server_then_reconnects_when_it_returns():
    clock = FakeClock()
    world = World(clock, {9001: "refuse"})
    off = make(world, latency_budget_ms=50.0, failure_threshold=2, cooldown_s=1.0, max_attempts=2)
    first = off.offload(X)
    assert not first.ok and "refused" in first.error
    assert off.breaker_states() == {"127.0.0.1:9001": "open"}
    n = len(world.connects)
    for _ in range(10):  # breaker open: fail at once, no connection attempt, no time spent
        t = clock.t
        out = off.offload(X)
        assert not out.ok and "circuit breaker" in out.error and clock.t == t
    assert len(world.connects) == n
    world.modes[9001] = "ok"  # server back
    clock.t += 1.01
    out = off.offload(X)
    assert out.ok and out.class_id == 1
    assert off.breaker_states() == {"127.0.0.1:9001": "closed"}


def test_failover_to_secondary_and_back_after_cooldown():
    clock = FakeClock()
    world = World(clock, {9001: "refuse", 9002: "ok"})
    off = make(world, ports=(9001, 9002), failure_threshold=1, cooldown_s=0.5)
    out = off.offload(X)
    assert out.ok and out.endpoint == "127.0.0.1:9002" and out.attempts == 2
    assert off.stats.failovers == 1
    out = off.offload(X)  # primary's breaker open: straight to the secondary
    assert out.ok and out.endpoint == "127.0.0.1:9002" and out.attempts == 1
    world.modes[9001] = "ok"
    clock.t += 0.6
    out = off.offload(X)  # primary half-open trial succeeds: back to the primary
    assert out.ok and out.endpoint == "127.0.0.1:9001"


def test_busy_is_retried_elsewhere_but_a_bad_request_is_not():
    clock = FakeClock()
    world = World(clock, {9001: "busy", 9002: "ok"})
    off = make(world, ports=(9001, 9002))
    assert off.offload(X).endpoint == "127.0.0.1:9002"
    world.modes = {9001: "bad", 9002: "ok"}
    off2 = make(world, ports=(9001, 9002))
    out = off2.offload(X)
    assert not out.ok and "BAD_TENSOR" in out.error and out.attempts == 1
    assert off2.breaker_states()["127.0.0.1:9001"] == "closed"  # alive server, bad request


def test_auth_failure_degrades_with_a_clear_reason():
    clock = FakeClock()
    world = World(clock, {9001: "auth"})
    out = make(world).offload(X)
    assert not out.ok and "authentication" in out.error


def test_backoff_between_rounds_stays_inside_the_budget():
    clock = FakeClock()
    world = World(clock, {9001: "refuse"})
    off = make(world, latency_budget_ms=20.0, max_attempts=4, failure_threshold=10, backoff_initial_ms=4.0)
    start = clock.t
    out = off.offload(X)
    assert not out.ok and out.attempts >= 2
    assert clock.t - start <= 0.020 + 1e-9


def test_worker_bounds_inflight_and_never_raises():
    import threading

    gate = threading.Event()
    started = []

    class Slow:
        clock = staticmethod(lambda: 0.0)

        def offload(self, tensor, **kw):
            started.append(1)
            gate.wait(5)
            if tensor.sum() == 1:
                raise RuntimeError("bug")
            from hi_runtime.agent.offloader import OffloadOutcome

            return OffloadOutcome(ok=True, class_id=3)

        def close(self):
            pass

    worker = OffloadWorker(Slow(), max_inflight=2)
    f1 = worker.submit(X)
    bad = X.copy()
    bad[0, 0, 0, 0] = 1
    f2 = worker.submit(bad)
    blocked = threading.Event()

    def third():
        worker.submit(X)
        blocked.set()

    t = threading.Thread(target=third)
    t.start()
    assert not blocked.wait(0.2)  # two in flight: the third submit waits
    gate.set()
    assert blocked.wait(5)
    t.join(5)
    assert f1.result(5).ok and f1.result().class_id == 3
    r2 = f2.result(5)
    assert not r2.ok and "internal error" in r2.error
    worker.close()
