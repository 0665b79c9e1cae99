"""Resilient, pipelined offloading: how hi-agent reaches the edge servers.

The device must answer every sample even when the edge server or the network fails, must not waste its
latency budget on a server that is down, and must not take a slow but alive server for a dead one. So:

* **pipelined on the wire**: ``connections`` persistent connections per server (opened lazily, re-opened
  after a failure), each with up to ``max_inflight`` requests in flight (never more than the server's
  WELCOME allows); answers are paired with their requests by id, so they may return in any order. All of
  it runs on one asyncio loop in a background thread, so the caller's local inference of the next samples
  proceeds meanwhile;
* **deadlines, not fixed timeouts**: a sample's offload may take what is left of its latency budget
  (``latency_budget_ms`` from the sample's arrival), never more;
* **budgets that follow the network**: each server keeps a sliding window of its recent round trips. Once
  a request has waited longer than a high quantile of that window times a factor plus a margin, the next
  server is tried as well (a hedge; the first answer wins) — but the first request keeps waiting until
  the deadline, because a slow server that still answers within the budget is alive. Answers that come
  after their caller moved on still feed the window, so it learns a new normal quickly. A server with an
  empty window (no answer yet, e.g. the breaker's trial of one that hung) is hedged after a quarter of
  the budget;
* **admission control**: :meth:`Offloader.expected_wait_s` tells how long a new offload would take (a
  typical round trip plus the requests ahead times the recent gap between answers); the agent answers
  locally at once, flagged ``shed``, when that exceeds the sample's deadline;
* a **circuit breaker** per server: ``failure_threshold`` consecutive failures (connection errors,
  retryable server errors, deadlines passed without an answer) open it for a cool-down (doubling up to a
  cap); then one trial request (half-open) decides whether it is back. With every breaker open an offload
  fails at once, so a run with a dead server goes at local speed;
* **failover**: servers are tried in order (primary first), skipping those whose breaker is open; retries
  back off exponentially within the same deadline.

``submit()`` never raises for server or network trouble: its future's :class:`OffloadOutcome` has
``ok=False`` and the reason, and the caller keeps its local answer (flagged degraded).
"""
from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

# Server error codes worth trying elsewhere (overload, shutdown, internal); others (bad tensor, unknown
# model) are this request's fault and would fail on every server too.
_RETRYABLE_SERVER_ERRORS = {"BUSY", "SHUTTING_DOWN", "INTERNAL", "TIMEOUT"}
DEFAULT_BUDGET_MS = 1000.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``host:port`` (IPv6 as ``[addr]:port``)."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"server address {text!r} must be HOST:PORT, e.g. 127.0.0.1:9000")
        bracketed = host.startswith("[") and host.endswith("]")
        if ":" in host and not bracketed:
            raise ValueError(f"server address {text!r} has more than one ':'; write HOST:PORT, an IPv6 address "
                             "in brackets: [::1]:9000")
        return cls(host[1:-1] if bracketed else host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class OffloadConfig:
    """How to reach the servers and how hard to try. Times in seconds unless named ``_ms``."""

    endpoints: list[Endpoint]
    model_id: str = "cifar10"
    key: bytes | None = None
    ssl_context: object = None
    latency_budget_ms: float = DEFAULT_BUDGET_MS  # per sample, from its arrival: caps every wait
    connect_timeout: float = 1.0
    max_inflight: int = 4  # K: requests in flight per connection (bounded by the server's WELCOME)
    connections: int = 1  # connections per server
    min_attempt_ms: float = 2.0  # below this much remaining budget an attempt is not started
    max_attempts: int = 3  # per sample, across servers (a hedge counts as one)
    backoff_initial_ms: float = 2.0
    backoff_max_ms: float = 50.0
    failure_threshold: int = 2  # consecutive failures that open a server's breaker
    cooldown_s: float = 0.5  # first open period; doubles on each failed trial up to cooldown_max_s
    cooldown_max_s: float = 10.0
    rtt_window: int = 64  # recent round trips kept per server
    hedge_quantile: float = 0.99  # try the next server after q(window) * factor + margin ...
    hedge_factor: float = 3.0
    hedge_margin_ms: float = 20.0  # ... (the first request keeps waiting until the deadline)
    top_k: int = 0
    client_name: str = "hi-agent"

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("at least one server endpoint is needed to offload")
        if self.latency_budget_ms <= 0:
            raise ValueError(f"latency budget must be positive, got {self.latency_budget_ms} ms")
        if self.max_inflight < 1 or self.connections < 1:
            raise ValueError(f"max_inflight and connections must be at least 1, got {self.max_inflight} and "
                             f"{self.connections}")


class CircuitBreaker:
    """closed -> (threshold consecutive failures) -> open -> (cool-down) -> half-open (one trial) ->
    closed on success / open again with a doubled cool-down on failure.

    Half-open admits ONE attempt (:meth:`begin` claims it): the samples arriving meanwhile go to the other
    servers, or stay local, instead of all waiting on a server that may still be dead. A trial that ends
    without a verdict (cut by its sample's deadline, or a hedge that lost and never answered) frees the
    slot after one cool-down. Failures reported while open (attempts started before it opened) neither
    restart nor lengthen the cool-down."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(self, failure_threshold: int, cooldown_s: float, cooldown_max_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.base_cooldown = cooldown_s
        self.cooldown_max = max(cooldown_s, cooldown_max_s)
        self.clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.cooldown = cooldown_s
        self.opened_at = 0.0
        self.opens = 0
        self.trial_at: float | None = None  # when the half-open trial started (None: not claimed)

    def allow(self) -> bool:
        """Whether an attempt may start now (no side effect but the open -> half-open step)."""
        now = self.clock()
        if self.state == self.OPEN and now - self.opened_at >= self.cooldown:
            self.state, self.trial_at = self.HALF_OPEN, None
        if self.state == self.HALF_OPEN:
            return self.trial_at is None or now - self.trial_at >= self.cooldown
        return self.state == self.CLOSED

    def begin(self) -> None:
        """An attempt starts on this server; in half-open it is the trial."""
        if self.state == self.HALF_OPEN:
            self.trial_at = self.clock()

    def release(self) -> None:
        """An attempt ended with no verdict on the server (the request was refused before it was sent): a
        half-open trial it claimed is free again at once."""
        if self.state == self.HALF_OPEN:
            self.trial_at = None

    def success(self) -> None:
        self.state, self.failures, self.cooldown, self.trial_at = self.CLOSED, 0, self.base_cooldown, None

    def failure(self) -> None:
        if self.state == self.OPEN:
            return
        self.failures += 1
        if self.state == self.HALF_OPEN:
            self.cooldown = min(self.cooldown * 2, self.cooldown_max)
            self._open()
        elif self.failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self.state = self.OPEN
        self.opened_at = self.clock()
        self.opens += 1
        self.trial_at = None


class RttWindow:
    """Recent round trips of one server (seconds) and the recent gap between its answers.

    ``gap`` is a moving average of the time between consecutive answers while more requests were still
    outstanding: how fast this server works through this device's queue, whatever the pipelining."""

    def __init__(self, size: int) -> None:
        self.samples: deque[float] = deque(maxlen=max(4, size))
        self.gap: float | None = None
        self.last_answer_at: float | None = None  # when this server last answered anything

    def add(self, rtt_s: float, done_at: float, still_outstanding: int) -> None:
        self.samples.append(rtt_s)
        if still_outstanding > 0 and self.last_answer_at is not None:
            g = max(0.0, done_at - self.last_answer_at)
            self.gap = g if self.gap is None else 0.5 * self.gap + 0.5 * g
        self.last_answer_at = done_at

    def quantile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def typical(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


@dataclass
class OffloadOutcome:
    ok: bool
    class_id: int | None = None
    endpoint: str | None = None
    attempts: int = 0
    error: str | None = None
    t_ms: float = 0.0  # submit -> answer (or give-up): slot wait, network and server
    top_k: list = field(default_factory=list)
    server_timings: dict = field(default_factory=dict)
    started_at: float = 0.0  # clock() when submitted
    finished_at: float = 0.0  # clock() when the answer (or the give-up) was known


@dataclass
class OffloaderStats:
    requests: int = 0
    answered: int = 0
    failed: int = 0
    attempts: int = 0
    connects: int = 0
    failovers: int = 0  # attempts on another server than the first one tried (hedges included)
    hedges: int = 0  # of those, started while the first was still waiting
    skipped_all_open: int = 0
    late_answers: int = 0  # answers that came after their caller had moved on


class Offloader:
    """Offloads tensors to the first server that answers before each one's deadline (module docstring).

    Thread-safe: :meth:`submit` may be called from any thread; the work runs on this offloader's own event
    loop thread. ``client_factory`` builds one connection (default
    :class:`hi_runtime.offload_client.AsyncOffloadClient`); tests substitute fakes."""

    UNKNOWN_RTT_HEDGE = 0.25  # hedge a server with no round trip on record after this share of the budget

    def __init__(self, config: OffloadConfig, client_factory: Callable[..., object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if client_factory is None:
            from hi_runtime.offload_client import AsyncOffloadClient

            client_factory = AsyncOffloadClient
        self.config = config
        self.client_factory = client_factory
        self.clock = clock
        self.breakers = {ep: CircuitBreaker(config.failure_threshold, config.cooldown_s, config.cooldown_max_s,
                                            clock) for ep in config.endpoints}
        self.rtt = {ep: RttWindow(config.rtt_window) for ep in config.endpoints}
        self.stats = OffloaderStats()
        self.last_failure: dict[Endpoint, str] = {}  # why each server last failed (for messages)
        self.outstanding = 0  # offloads submitted and not finished (written on the loop thread only)
        self._starts: dict[int, float] = {}  # outstanding offloads' start times (loop thread only)
        self.oldest_start: float | None = None  # the oldest outstanding offload's start (read by any thread)
        self._clients: dict[Endpoint, list] = {ep: [None] * config.connections for ep in config.endpoints}
        self._locks: dict[tuple, asyncio.Lock] = {}
        self._retry_at: dict[tuple, float] = {}  # (endpoint, slot) -> when a refused extra connection is retried
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # ---- the loop thread ------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._start_lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    self._thread = threading.Thread(target=loop.run_forever, name="hi-offload", daemon=True)
                    self._thread.start()
                    self._loop = loop
        return self._loop

    def submit(self, tensor: np.ndarray, *, quant: tuple[float, int] | None = None, layout: str = "NHWC",
               deadline: float | None = None) -> Future:
        """Start offloading ``tensor`` (a batch of one); returns a future of its :class:`OffloadOutcome`.
        ``deadline`` is a ``clock()`` time (default: now + the latency budget)."""
        start = self.clock()
        if deadline is None:
            deadline = start + self.config.latency_budget_ms / 1e3
        return asyncio.run_coroutine_threadsafe(self.offload_async(tensor, quant=quant, layout=layout,
                                                                   deadline=deadline, start=start),
                                                self._ensure_loop())

    def offload(self, tensor: np.ndarray, *, quant: tuple[float, int] | None = None, layout: str = "NHWC",
                deadline: float | None = None) -> OffloadOutcome:
        """Blocking form of :meth:`submit` (the serial bridge answers one microcontroller at a time)."""
        return self.submit(tensor, quant=quant, layout=layout, deadline=deadline).result()

    def expected_wait_s(self) -> float | None:
        """How long an offload submitted now would probably take: a typical round trip of the first
        available server plus the requests already outstanding times its recent gap between answers
        (until a gap is measured, a whole round trip each: a server that serves one request at a time).
        The oldest outstanding request's age is a lower bound of the round trip, which is all there is
        to go by before the first answer. None while there is no evidence at all (admit)."""
        oldest = self.oldest_start
        age = self.clock() - oldest if oldest is not None else 0.0
        for ep in self.config.endpoints:
            if self.breakers[ep].state == CircuitBreaker.OPEN:
                continue
            w = self.rtt[ep]
            typical = max(w.typical() or 0.0, age)
            if typical <= 0.0:
                return None
            gap = w.gap if w.gap is not None else typical
            return typical + self.outstanding * gap
        return None

    def breaker_states(self) -> dict[str, str]:
        return {str(ep): b.state for ep, b in self.breakers.items()}

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_clients(), loop).result(timeout=5)
        except Exception as exc:  # noqa: BLE001 - closing broken connections must not mask anything
            log.debug("closing offload connections: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()

    async def _close_clients(self) -> None:
        for ep, slots in self._clients.items():
            for i, c in enumerate(slots):
                if c is not None:
                    await c.close()
                    slots[i] = None

    # ---- connections ----------------------------------------------------------------------------------

    async def _client(self, ep: Endpoint, remaining_s: float):
        """The connection to ``ep`` with the most free request slots, (re)connecting empty slots first.

        A slot that fails to (re)connect while another connection to ``ep`` is up is skipped, and left
        alone for one breaker cool-down (a server at its connection limit refuses the extra connection and
        still answers on the first); only when no connection is up does the connect error stand."""
        from hi_runtime.offload_client import OffloadConnectionError, OffloadError

        slots = self._clients[ep]

        def any_up() -> bool:
            return any(x is not None and x.connected for x in slots)

        refused: BaseException | None = None
        for i, c in enumerate(slots):
            if c is not None and c.connected:
                continue
            if self._retry_at.get((ep, i), 0.0) > self.clock() and any_up():
                continue
            lock = self._locks.setdefault((ep, i), asyncio.Lock())
            async with lock:
                c = slots[i]
                if c is not None and c.connected:
                    continue
                timeout = max(0.001, min(self.config.connect_timeout, remaining_s))
                c = self.client_factory(ep.host, ep.port, key=self.config.key,
                                        ssl_context=self.config.ssl_context, connect_timeout=timeout,
                                        client_name=self.config.client_name,
                                        max_inflight=self.config.max_inflight,
                                        on_late=lambda res, ep=ep: self._late(ep, res))
                try:
                    await c.connect()
                except (OffloadError, OSError) as exc:
                    if not any_up():
                        raise
                    refused = exc
                    self._retry_at[(ep, i)] = self.clock() + self.config.cooldown_s
                    log.info("offload server %s refused connection %d (%s); using the others", ep, i + 1, exc)
                    continue
                self.stats.connects += 1
                slots[i] = c
                self._retry_at.pop((ep, i), None)
                log.info("connected to offload server %s (connection %d)", ep, i + 1)
        live = [c for c in slots if c is not None and c.connected]  # another attempt may have dropped one
        if not live:
            raise OffloadConnectionError(f"no connection to {ep} is up" + (f" ({refused})" if refused else ""))
        return max(live, key=lambda c: c.free_slots)

    async def _drop(self, ep: Endpoint, client) -> None:
        slots = self._clients[ep]
        for i, c in enumerate(slots):
            if c is client:
                slots[i] = None
        try:
            await client.close()
        except Exception as exc:  # noqa: BLE001 - closing a broken socket must not mask the real failure
            log.debug("closing the connection to %s: %s", ep, exc)

    def _late(self, ep: Endpoint, res) -> None:
        """An answer after its caller gave up: the server is alive (only slow), so its breaker closes and its
        round-trip window learns the new normal, which admission control then plans with."""
        self.stats.late_answers += 1
        self.rtt[ep].add(res.round_trip_s, self.clock(), self.outstanding)
        self.breakers[ep].success()

    # ---- one offload ----------------------------------------------------------------------------------

    async def _attempt(self, ep: Endpoint, tensor: np.ndarray, quant, layout: str, deadline: float):
        client = await self._client(ep, deadline - self.clock())
        try:
            return await client.infer(tensor, self.config.model_id, layout=layout, quant=quant,
                                      top_k=self.config.top_k, timeout=max(0.001, deadline - self.clock()))
        except Exception as exc:
            from hi_runtime.offload_client import OffloadRequestError, OffloadServerError, OffloadTimeout

            if not isinstance(exc, (OffloadTimeout, OffloadServerError, OffloadRequestError)) or (
                    isinstance(exc, OffloadServerError) and exc.request_id == 0):
                await self._drop(ep, client)
            raise

    def _hedge_after(self, ep: Endpoint) -> float:
        """When to try the next server while ``ep`` still owes an answer: after its recent round trips'
        quantile x factor + margin; for a server that has not answered yet (first requests, or the breaker's
        trial of one that hung), after a quarter of the budget, so a hung server's trial does not cost a
        sample its whole budget while a replica could answer."""
        q = self.rtt[ep].quantile(self.config.hedge_quantile)
        if q is None:
            return self.config.latency_budget_ms / 1e3 * self.UNKNOWN_RTT_HEDGE
        return q * self.config.hedge_factor + self.config.hedge_margin_ms / 1e3

    async def offload_async(self, tensor: np.ndarray, *, quant=None, layout: str = "NHWC",
                            deadline: float | None = None, start: float | None = None) -> OffloadOutcome:
        """Offload on this loop (the agent's loop thread, or a caller already on the loop)."""
        start = self.clock() if start is None else start
        deadline = start + self.config.latency_budget_ms / 1e3 if deadline is None else deadline
        self.stats.requests += 1
        self.outstanding += 1
        key = self.stats.requests
        self._starts[key] = start
        if self.oldest_start is None:
            self.oldest_start = start
        try:
            out = await self._offload(tensor, quant, layout, deadline, start)
        except Exception as exc:  # noqa: BLE001 - the contract: never raise, report
            log.exception("offload failed unexpectedly")
            out = OffloadOutcome(ok=False, error=f"internal error: {exc!r}")
        finally:
            self.outstanding -= 1
            del self._starts[key]
            self.oldest_start = min(self._starts.values()) if self._starts else None
        out.started_at = start
        out.finished_at = self.clock()
        out.t_ms = (out.finished_at - start) * 1e3
        if out.ok:
            self.stats.answered += 1
        else:
            self.stats.failed += 1
        return out

    async def _offload(self, tensor, quant, layout: str, deadline: float, start: float) -> OffloadOutcome:
        from hi_runtime.offload_client import (
            OffloadAuthError,
            OffloadConnectionError,
            OffloadError,
            OffloadRequestError,
            OffloadServerError,
            OffloadTimeout,
        )

        cfg = self.config
        attempts, errors = 0, []
        active: dict[asyncio.Task, tuple[Endpoint, float]] = {}
        first_tried: Endpoint | None = None
        tried: set[Endpoint] = set()  # in this round: every server once, then back off and start over
        backoff = cfg.backoff_initial_ms / 1e3
        try:
            while True:
                now = self.clock()
                remaining = deadline - now
                busy = {ep for ep, _ in active.values()}
                candidates = [ep for ep in cfg.endpoints if ep not in busy and self.breakers[ep].allow()]
                if not active:
                    if not candidates:
                        if attempts == 0:
                            self.stats.skipped_all_open += 1
                        why = "; ".join(f"{ep}: {msg}" for ep, msg in self.last_failure.items())
                        errors.append("every server's circuit breaker is open" +
                                      (f" (last failures: {why})" if why else ""))
                        break
                    if remaining * 1e3 < cfg.min_attempt_ms or attempts >= cfg.max_attempts:
                        break
                    fresh = [c for c in candidates if c not in tried]
                    if not fresh:  # every server failed once in this round: back off, then a new round
                        await asyncio.sleep(min(backoff, max(0.0, remaining - cfg.min_attempt_ms / 1e3)))
                        backoff = min(backoff * 2, cfg.backoff_max_ms / 1e3)
                        tried.clear()
                        continue
                    ep = fresh[0]
                    candidates.remove(ep)
                    tried.add(ep)
                    if first_tried is None:
                        first_tried = ep
                    elif ep != first_tried:
                        self.stats.failovers += 1
                    attempts += 1
                    self.stats.attempts += 1
                    self.breakers[ep].begin()
                    active[asyncio.ensure_future(self._attempt(ep, tensor, quant, layout, deadline))] = (ep, now)
                wait = remaining
                hedge_ep = None
                candidates = [c for c in candidates if c not in tried]
                if len(active) == 1 and candidates and attempts < cfg.max_attempts:
                    (ep0, t0), = active.values()
                    after = self._hedge_after(ep0)
                    if t0 + after < deadline:
                        wait, hedge_ep = max(0.0, t0 + after - now), candidates[0]
                done, _ = await asyncio.wait(list(active), timeout=max(0.0, wait),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if hedge_ep is not None and self.clock() < deadline and self.breakers[hedge_ep].allow():
                        attempts += 1
                        self.stats.attempts += 1
                        self.stats.failovers += 1
                        self.stats.hedges += 1
                        tried.add(hedge_ep)
                        self.breakers[hedge_ep].begin()
                        active[asyncio.ensure_future(self._attempt(hedge_ep, tensor, quant, layout, deadline))] = (
                            hedge_ep, self.clock())
                        continue
                    for ep, t0 in active.values():  # the deadline passed: no server answered in time
                        self._missed_deadline(errors, ep, t0)
                    break
                for task in done:
                    ep, t0 = active.pop(task)
                    exc = task.exception()
                    if exc is None:
                        res = task.result()
                        self.breakers[ep].success()
                        self.rtt[ep].add(res.round_trip_s, self.clock(), self.outstanding - 1)
                        return OffloadOutcome(ok=True, class_id=int(res.class_id), endpoint=str(ep),
                                              attempts=attempts, top_k=list(res.top_k),
                                              server_timings=dict(res.server_timings))
                    if isinstance(exc, OffloadTimeout):
                        self._missed_deadline(errors, ep, t0)
                    elif isinstance(exc, OffloadRequestError):  # this sample cannot be sent: no retry helps
                        self.breakers[ep].release()
                        self._note(errors, ep, str(exc))
                        return OffloadOutcome(ok=False, attempts=attempts, error="; ".join(errors[-3:]))
                    elif isinstance(exc, OffloadAuthError):
                        self.breakers[ep].failure()
                        self._note(errors, ep, f"authentication failed ({exc})")
                    elif isinstance(exc, OffloadServerError):
                        name = _error_name(exc.code)
                        self._note(errors, ep, f"server error {name}: {exc.message}")
                        if name in _RETRYABLE_SERVER_ERRORS or exc.request_id == 0:
                            self.breakers[ep].failure()
                        else:
                            self.breakers[ep].success()  # the server is alive; this request is what it refused
                            return OffloadOutcome(ok=False, attempts=attempts, error="; ".join(errors[-3:]))
                    elif isinstance(exc, (OffloadConnectionError, OffloadError, OSError)):
                        self.breakers[ep].failure()
                        self._note(errors, ep, str(exc))
                    else:
                        raise exc
        finally:
            for task in active:  # a hedge that lost, or attempts cut by the deadline
                task.cancel()
                task.add_done_callback(_retrieve)
        if not errors:
            errors.append("latency budget exhausted before an attempt could start")
        return OffloadOutcome(ok=False, attempts=attempts, error="; ".join(errors[-3:]))

    def _missed_deadline(self, errors: list[str], ep: Endpoint, t0: float) -> None:
        """No answer before the deadline. If the server answered other requests meanwhile it is alive but
        behind (overload: admission control's job), which must not open its breaker; otherwise it counts
        as a failure."""
        last = self.rtt[ep].last_answer_at
        if last is not None and last > t0:
            self._note(errors, ep, "no answer within the latency budget (server alive but behind)")
        else:
            self.breakers[ep].failure()
            self._note(errors, ep, "no answer within the latency budget")

    def _note(self, errors: list[str], ep: Endpoint, message: str) -> None:
        errors.append(f"{ep}: {message}")
        self.last_failure[ep] = message


def _retrieve(task: asyncio.Task) -> None:
    """Consume an abandoned attempt's outcome (asyncio warns about exceptions nobody retrieved)."""
    if not task.cancelled():
        task.exception()


def _error_name(code: int) -> str:
    try:
        from hi_runtime.protocol import ErrorCode

        return ErrorCode(code).name
    except (ImportError, ValueError):
        return str(code)


def make_offloader(servers: Sequence[str], **kwargs) -> Offloader:
    """Convenience: ``make_offloader(["127.0.0.1:9000", "10.0.0.2:9000"], model_id=..., latency_budget_ms=...)``."""
    return Offloader(OffloadConfig(endpoints=[Endpoint.parse(s) for s in servers], **kwargs))
