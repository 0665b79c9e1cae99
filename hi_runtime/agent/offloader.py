"""Resilient offloading on top of :class:`~hi_runtime.offload_client.OffloadClient`.

The device must answer every sample even when the edge server or the network fails, and must not waste
its latency budget on a server that is down. So:

* one persistent connection per server, opened lazily and re-opened automatically after a failure;
* every attempt's timeout is what is left of the sample's latency budget (a deadline, not a fixed value),
  so an offload never takes longer than the sample may;
* retries with exponential backoff, within that same deadline;
* a circuit breaker per server: after ``failure_threshold`` consecutive failures the server is skipped for
  a cool-down (doubling up to a cap); then one trial request (half-open) decides whether it is back. With
  every breaker open an offload fails at once, so a run with a dead server goes at local speed;
* failover: servers are tried in order (primary first), skipping those whose breaker is open.

``offload()`` never raises for server/network trouble: it returns an :class:`OffloadOutcome` with
``ok=False`` and the reason, and the caller keeps its local answer (flagged degraded).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

# Server error codes worth trying elsewhere (overload, shutdown, internal); others (bad tensor, unknown
# model) are this request's fault and would fail on every server too.
_RETRYABLE_SERVER_ERRORS = {"BUSY", "SHUTTING_DOWN", "INTERNAL", "TIMEOUT"}


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
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class OffloadConfig:
    """How to reach the servers and how hard to try. Times in seconds unless named ``_ms``."""

    endpoints: list[Endpoint]
    model_id: str = "cifar10"
    key: bytes | None = None
    ssl_context: object = None
    latency_budget_ms: float = 100.0  # per sample, from the start of its processing
    connect_timeout: float = 1.0
    min_attempt_ms: float = 2.0  # below this much remaining budget an attempt is not started
    max_attempts: int = 3  # per sample, across servers
    backoff_initial_ms: float = 2.0
    backoff_max_ms: float = 50.0
    failure_threshold: int = 2  # consecutive failures that open a server's breaker
    cooldown_s: float = 0.5  # first open period; doubles on each failed trial up to cooldown_max_s
    cooldown_max_s: float = 10.0
    top_k: int = 0
    client_name: str = "hi-agent"

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("at least one server endpoint is needed to offload")
        if self.latency_budget_ms <= 0:
            raise ValueError(f"latency budget must be positive, got {self.latency_budget_ms} ms")


class CircuitBreaker:
    """closed -> (threshold consecutive failures) -> open -> (cool-down) -> half-open (one trial) ->
    closed on success / open again with a doubled cool-down on failure."""

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

    def allow(self) -> bool:
        if self.state == self.OPEN and self.clock() - self.opened_at >= self.cooldown:
            self.state = self.HALF_OPEN
        return self.state != self.OPEN

    def success(self) -> None:
        self.state, self.failures, self.cooldown = self.CLOSED, 0, self.base_cooldown

    def failure(self) -> None:
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


@dataclass
class OffloadOutcome:
    ok: bool
    class_id: int | None = None
    endpoint: str | None = None
    attempts: int = 0
    error: str | None = None
    t_ms: float = 0.0
    top_k: list = field(default_factory=list)
    server_timings: dict = field(default_factory=dict)
    finished_at: float = 0.0  # clock() when the answer (or the give-up) was known


@dataclass
class OffloaderStats:
    requests: int = 0
    answered: int = 0
    failed: int = 0
    attempts: int = 0
    connects: int = 0
    failovers: int = 0
    skipped_all_open: int = 0


class ResilientOffloader:
    """Offloads one tensor at a time with retries, breakers and failover. Not thread-safe by itself (the
    clients are not): :class:`OffloadWorker` runs it on one thread."""

    def __init__(self, config: OffloadConfig, client_factory: Callable[..., object] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if client_factory is None:
            from hi_runtime.offload_client import OffloadClient

            client_factory = OffloadClient
        self.config = config
        self.client_factory = client_factory
        self.clock = clock
        self.sleep = sleep
        self.breakers = {ep: CircuitBreaker(config.failure_threshold, config.cooldown_s, config.cooldown_max_s,
                                            clock) for ep in config.endpoints}
        self.clients: dict[Endpoint, object] = {}
        self.stats = OffloaderStats()
        self.last_failure: dict[Endpoint, str] = {}  # why each server last failed (for messages)

    # ---- connections --------------------------------------------------------------------------------

    def _client(self, ep: Endpoint, remaining_s: float):
        client = self.clients.get(ep)
        if client is not None and getattr(client, "connected", True):
            return client
        timeout = max(0.001, min(self.config.connect_timeout, remaining_s))
        client = self.client_factory(ep.host, ep.port, key=self.config.key, ssl_context=self.config.ssl_context,
                                     connect_timeout=timeout, client_name=self.config.client_name)
        client.connect()
        self.stats.connects += 1
        self.clients[ep] = client
        log.info("connected to offload server %s", ep)
        return client

    def _drop(self, ep: Endpoint) -> None:
        client = self.clients.pop(ep, None)
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken socket must not mask the real failure
                log.debug("closing the connection to %s: %s", ep, exc)

    def close(self) -> None:
        for ep in list(self.clients):
            self._drop(ep)

    def breaker_states(self) -> dict[str, str]:
        return {str(ep): b.state for ep, b in self.breakers.items()}

    # ---- offload ------------------------------------------------------------------------------------

    def offload(self, tensor: np.ndarray, *, quant: tuple[float, int] | None = None, layout: str = "NHWC",
                deadline: float | None = None) -> OffloadOutcome:
        """Classify ``tensor`` on the first server that answers before ``deadline`` (a ``clock()`` time;
        default: now + the latency budget). Never raises for server or network failures."""
        from hi_runtime.offload_client import (
            OffloadAuthError,
            OffloadConnectionError,
            OffloadError,
            OffloadServerError,
            OffloadTimeout,
        )

        cfg = self.config
        start = self.clock()
        deadline = start + cfg.latency_budget_ms / 1000.0 if deadline is None else deadline
        self.stats.requests += 1
        attempts, errors = 0, []
        backoff = cfg.backoff_initial_ms / 1000.0
        first_tried: Endpoint | None = None
        while attempts < cfg.max_attempts:
            candidates = [ep for ep in cfg.endpoints if self.breakers[ep].allow()]
            if not candidates:
                if attempts == 0:
                    self.stats.skipped_all_open += 1
                why = "; ".join(f"{ep}: {msg}" for ep, msg in self.last_failure.items())
                errors.append("every server's circuit breaker is open" + (f" (last failures: {why})" if why else ""))
                break
            progressed = False
            for ep in candidates:
                remaining = deadline - self.clock()
                if remaining * 1000.0 < cfg.min_attempt_ms or attempts >= cfg.max_attempts:
                    break
                if first_tried is None:
                    first_tried = ep
                elif ep != first_tried:
                    self.stats.failovers += 1
                attempts += 1
                self.stats.attempts += 1
                progressed = True
                breaker = self.breakers[ep]
                try:
                    client = self._client(ep, remaining)
                    res = client.infer(tensor, cfg.model_id, layout=layout, quant=quant, top_k=cfg.top_k,
                                       timeout=max(0.001, deadline - self.clock()))
                except OffloadTimeout as exc:
                    breaker.failure()
                    self._note(errors, ep, f"timeout ({exc})")
                    continue
                except (OffloadConnectionError, OSError) as exc:
                    self._drop(ep)
                    breaker.failure()
                    self._note(errors, ep, f"{exc}")
                    continue
                except OffloadAuthError as exc:
                    self._drop(ep)
                    breaker.failure()
                    self._note(errors, ep, f"authentication failed ({exc})")
                    continue
                except OffloadServerError as exc:
                    name = _error_name(exc.code)
                    self._note(errors, ep, f"server error {name}: {exc.message}")
                    if name in _RETRYABLE_SERVER_ERRORS or exc.request_id == 0:
                        breaker.failure()
                        if exc.request_id == 0:
                            self._drop(ep)
                        continue
                    breaker.success()  # the server is alive; this request is what it refused
                    return self._fail(start, attempts, errors)
                except OffloadError as exc:
                    self._drop(ep)
                    breaker.failure()
                    self._note(errors, ep, f"{exc}")
                    continue
                breaker.success()
                self.stats.answered += 1
                return OffloadOutcome(ok=True, class_id=int(res.class_id), endpoint=str(ep), attempts=attempts,
                                      t_ms=(self.clock() - start) * 1000.0, top_k=list(res.top_k),
                                      server_timings=dict(res.server_timings))
            remaining = deadline - self.clock()
            if not progressed or remaining * 1000.0 < cfg.min_attempt_ms or attempts >= cfg.max_attempts:
                break
            self.sleep(min(backoff, max(0.0, remaining - cfg.min_attempt_ms / 1000.0)))
            backoff = min(backoff * 2, cfg.backoff_max_ms / 1000.0)
        if not errors:
            errors.append("latency budget exhausted before an attempt could start")
        return self._fail(start, attempts, errors)

    def _note(self, errors: list[str], ep: Endpoint, message: str) -> None:
        errors.append(f"{ep}: {message}")
        self.last_failure[ep] = message

    def _fail(self, start: float, attempts: int, errors: list[str]) -> OffloadOutcome:
        self.stats.failed += 1
        return OffloadOutcome(ok=False, attempts=attempts, error="; ".join(errors[-3:]),
                              t_ms=(self.clock() - start) * 1000.0)


def _error_name(code: int) -> str:
    try:
        from hi_runtime.protocol import ErrorCode

        return ErrorCode(code).name
    except (ImportError, ValueError):
        return str(code)


class OffloadWorker:
    """Runs a :class:`ResilientOffloader` on one background thread so the caller's next samples' local
    inference proceeds while an offload is in flight. ``max_inflight`` bounds the queued offloads: a
    submit beyond it blocks until one finishes (bounded memory and bounded staleness)."""

    def __init__(self, offloader: ResilientOffloader, max_inflight: int = 4) -> None:
        self.offloader = offloader
        self.max_inflight = max(1, max_inflight)
        self._slots = threading.BoundedSemaphore(self.max_inflight)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hi-offload")

    def submit(self, tensor: np.ndarray, *, quant: tuple[float, int] | None = None, layout: str = "NHWC",
               deadline: float | None = None) -> Future[OffloadOutcome]:
        self._slots.acquire()

        def job() -> OffloadOutcome:
            try:
                out = self.offloader.offload(tensor, quant=quant, layout=layout, deadline=deadline)
            except Exception as exc:
                log.exception("offload worker failed")
                out = OffloadOutcome(ok=False, error=f"internal error: {exc!r}")
            try:
                out.finished_at = self.offloader.clock()
                return out
            finally:
                self._slots.release()

        return self._pool.submit(job)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.offloader.close()


def make_offloader(servers: Sequence[str], **kwargs) -> ResilientOffloader:
    """Convenience: ``make_offloader(["127.0.0.1:9000", "10.0.0.2:9000"], model_id=..., latency_budget_ms=...)``."""
    return ResilientOffloader(OffloadConfig(endpoints=[Endpoint.parse(s) for s in servers], **kwargs))
