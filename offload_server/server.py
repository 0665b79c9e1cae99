"""The asyncio edge server: accepts device connections, batches their requests per model, answers them.

This process is the device-facing front door. The models run in it (``backend: inprocess``, the default:
a DynamicBatcher per model on a thread pool) or on Ray Serve replicas (``backend: ray``,
offload_server.ray_backend), behind the same protocol, limits and metrics.

Use ``OffloadServer`` from async code (``await start()``, ``.port``, ``await stop()``) or
``run_server_in_thread(config)`` from blocking code (tests, hi-agent's offline demo, the benchmark).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offload_server.backends import Backend, load_backend
from offload_server.batcher import DynamicBatcher
from offload_server.config import ConfigError, ServerConfig
from offload_server.connection import CompatConnection, HiConnection, _ConnectionBase
from offload_server.logs import event
from offload_server.metrics import MetricsHttpServer, ServerMetrics
from offload_server.preprocess import Preprocessor
from offload_server.served_model import ServedModel

if TYPE_CHECKING:
    from offload_server.ray_backend import RayCluster

log = logging.getLogger("offload_server.server")


class OffloadServer:
    def __init__(self, config: ServerConfig) -> None:
        config.validate()
        self.config = config
        self.key: bytes | None = config.load_key()
        self.metrics = ServerMetrics()
        self.models: dict[str, ServedModel] = {}
        self.compat_model_id = config.compat_model or config.default_model_id
        self.state = "new"  # new -> serving -> stopping -> stopped
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[asyncio.Task, _ConnectionBase] = {}
        self._per_peer: dict[str, int] = {}  # open connections per client address (max_connections_per_peer)
        self._cancelled_on_stop = False
        self._executor: ThreadPoolExecutor | None = None
        self.ray: RayCluster | None = None
        self._http: MetricsHttpServer | None = None
        self.port: int = 0
        self.compat_port: int | None = None
        self.metrics_port: int | None = None
        self._started_at = 0.0
        self._stopped: asyncio.Event | None = None  # created in start(), on the serving loop

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._stopped = asyncio.Event()
        if cfg.backend == "ray":
            await self._start_ray_models()
        else:
            await self._start_local_models()
        for mc in cfg.models:
            served = self.models[mc.id]
            event(log, "model_loaded", model=mc.id, path=mc.path, backend=served.backend.description,
                  input_shape=list(served.backend.input.shape), input_dtype=str(served.backend.input.dtype),
                  max_batch_size=mc.max_batch_size, max_queue_delay_us=mc.max_queue_delay_us)
        tls = self._tls_context()
        # the TLS handshake comes before the protocol's own and before the connection caps count the
        # connection: it gets the same deadline (asyncio's default would hold a silent socket for 60 s)
        main = await asyncio.start_server(self._on_connect, cfg.host, cfg.port, ssl=tls,
                                          limit=min(cfg.max_frame, 1 << 20), backlog=1024,
                                          **({"ssl_handshake_timeout": cfg.handshake_timeout_s} if tls else {}))
        self._servers.append(main)
        self.port = main.sockets[0].getsockname()[1]
        if cfg.compat_port is not None:
            compat = await asyncio.start_server(self._on_compat_connect, cfg.compat_host or cfg.host,
                                                cfg.compat_port, backlog=256)
            self._servers.append(compat)
            self.compat_port = compat.sockets[0].getsockname()[1]
        if cfg.metrics_port is not None:
            self._http = MetricsHttpServer(self.metrics, self.health, cfg.metrics_host, cfg.metrics_port)
            self._http.start()
            self.metrics_port = self._http.port
        self.state = "serving"
        self._started_at = time.monotonic()
        event(log, "server_started", host=cfg.host, port=self.port, tls=tls is not None, auth=self.key is not None,
              compat_port=self.compat_port, metrics_port=self.metrics_port, models=sorted(self.models),
              default_model=cfg.default_model_id)

    async def _start_local_models(self) -> None:
        cfg = self.config
        self._executor = ThreadPoolExecutor(max_workers=cfg.executor_threads or len(cfg.models),
                                            thread_name_prefix="hi-infer")
        for mc in cfg.models:
            backend = load_backend(mc)
            pre = Preprocessor.build(mc, backend.input)
            batcher = DynamicBatcher(mc.id, backend, pre, self._executor, self.metrics,
                                     max_batch_size=mc.max_batch_size, max_queue_delay_us=mc.max_queue_delay_us,
                                     logits=mc.output == "logits")
            classes = await self._warm_up(mc.id, backend, pre)
            if (cfg.compat_port is not None and mc.id == self.compat_model_id and cfg.compat_reply_bytes == 1
                    and classes > 256):
                raise ConfigError(f"compat_model {mc.id!r} has {classes} classes, more than a 1-byte compat reply "
                                  "can carry: set compat_reply_bytes: 2")
            batcher.start()
            self.models[mc.id] = ServedModel(mc, backend, pre, batcher, cfg.request_timeout_s)

    async def _start_ray_models(self) -> None:
        """Join (or start) Ray, then deploy or attach every model; the blocking Ray calls run in a thread."""
        try:
            from offload_server.ray_backend import RayCluster
        except ImportError as exc:
            raise ConfigError(f"backend: ray needs Ray Serve ({exc}): pip install 'hi-runtime[cluster]', or use "
                              "backend: inprocess") from None

        cluster = RayCluster(self.config.ray)
        self.ray = cluster
        # ray.init installs a SIGTERM handler only from the main thread; the CLI sets its own afterwards
        try:
            cluster.connect()
            for mc in self.config.models:
                runner = await asyncio.to_thread(cluster.open_model, mc, self.metrics)
                self.models[mc.id] = ServedModel(mc, runner, Preprocessor.build(mc, runner.input), runner,
                                                 self.config.request_timeout_s)
        except BaseException:
            await asyncio.to_thread(cluster.close)  # a local Ray this process started must not outlive it
            raise

    async def _warm_up(self, model_id: str, backend: Backend, pre: Preprocessor) -> int:
        """One inference before serving, so the first device does not pay for lazy initialization; returns
        the model's number of classes."""
        import numpy as np

        pixels = np.zeros((1, pre.height, pre.width, pre.channels), np.float32)
        start = time.perf_counter()
        probs = await asyncio.get_running_loop().run_in_executor(self._executor, backend.predict,
                                                                 pre.to_model_input(pixels))
        event(log, "model_warm", model=model_id, seconds=round(time.perf_counter() - start, 4))
        return int(np.asarray(probs).shape[-1])

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return ctx

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, answer every request already received, then close."""
        if self.state in ("stopping", "stopped"):
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self.state = "stopping"
        event(log, "server_stopping", connections=len(self._connections))
        for server in self._servers:
            server.close()
        for conn in list(self._connections.values()):
            conn.stop_reading()
        tasks = list(self._connections)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_grace_s)
            self._cancelled_on_stop = True
            for task in pending:  # past the grace period: stop waiting for slow clients (or a slow model)
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for model in self.models.values():
            await model.runner.stop()
        if self.ray is not None:
            await asyncio.to_thread(self.ray.close)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        if self._http is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._http.stop)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.state = "stopped"
        assert self._stopped is not None
        self._stopped.set()
        event(log, "server_stopped")

    async def serve_forever(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # ---- connections --------------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._track(HiConnection(self, reader, writer), "protocol")

    async def _on_compat_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._track(CompatConnection(self, reader, writer), "compat")

    async def _track(self, conn: _ConnectionBase, label: str) -> None:
        if self.state != "serving":
            conn.writer.close()
            return
        cfg = self.config
        host = conn.peer_host
        refusal = None
        if len(self._connections) >= cfg.max_connections:
            refusal = ("max_connections", f"too many connections ({cfg.max_connections}); retry later")
        elif self._per_peer.get(host, 0) >= cfg.max_connections_per_peer:
            refusal = ("max_connections_per_peer", (f"too many connections from {host} "
                       f"({cfg.max_connections_per_peer}, max_connections_per_peer); close idle ones or retry later"))
        if refusal is not None:
            from hi_runtime import protocol as p

            event(log, "connection_refused", logging.WARNING, peer=conn.peer, reason=refusal[0])
            self.metrics.refused.labels(refusal[0]).inc()
            if isinstance(conn, HiConnection):
                await conn._send_quietly(p.Error(p.ErrorCode.BUSY, refusal[1]))
            await conn._close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = conn
        self._per_peer[host] = self._per_peer.get(host, 0) + 1
        self.metrics.connections.labels(label).inc()
        self.metrics.connections_total.labels(label).inc()
        try:
            await conn.run()
        except asyncio.CancelledError:
            if not self._cancelled_on_stop:
                raise
            conn.writer.close()  # cut off by stop() after the grace period: not an error of this task
        finally:
            self.metrics.connections.labels(label).dec()
            self._connections.pop(task, None)
            left = self._per_peer.get(host, 1) - 1
            if left > 0:
                self._per_peer[host] = left
            else:
                self._per_peer.pop(host, None)

    # ---- status -------------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """/healthz (called on the HTTP thread). On Ray, "ok" also needs a running replica per model: a
        front door whose model tier is gone would otherwise keep drawing devices from a load balancer."""
        status = "ok" if self.state == "serving" else self.state
        extra: dict[str, object] = {}
        if status == "ok" and self.ray is not None:
            unserved = self.ray.unserved(sorted(self.models))
            if unserved is None:
                status = "ray unreachable"
            elif unserved:
                status, extra = "no replicas", {"models_without_replicas": unserved}
        return {
            "status": status,
            "backend": self.config.backend,
            "models": sorted(self.models),
            "connections": len(self._connections),
            "uptime_s": round(time.monotonic() - self._started_at, 3) if self._started_at else 0.0,
            **extra,
        }


@dataclass
class ServerHandle:
    """A server running on its own event loop thread (see run_server_in_thread)."""

    server: OffloadServer
    host: str
    port: int
    compat_port: int | None
    metrics_port: int | None
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop (answers accepted requests); idempotent."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
        future.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


@contextlib.contextmanager
def run_server_in_thread(config: ServerConfig) -> Iterator[ServerHandle]:
    """Start a server on a background event loop for synchronous code; stops it on exit.

    Port 0 in the config picks a free ephemeral port; read it from ``handle.port``.
    """
    server = OffloadServer(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # report start errors (bad model, port in use) to the caller
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="hi-server-loop", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    handle = ServerHandle(server, config.host, server.port, server.compat_port, server.metrics_port, loop, thread)
    try:
        yield handle
    finally:
        handle.stop(timeout=config.shutdown_grace_s + 30)
