"""Prometheus metrics and the HTTP endpoint (/metrics, /healthz) of hi-server.

Each server owns its registry, so several servers in one process (tests, the benchmark) do not mix their
numbers. The endpoint is prometheus-client's WSGI app on a small threaded wsgiref server.
"""
from __future__ import annotations

import json
import threading
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hi_server_requests", "INFER requests answered", ["model", "outcome"], registry=r)
        self.errors = Counter("hi_server_errors", "ERROR frames sent, by code", ["code"], registry=r)
        self.batch_size = Histogram("hi_server_batch_size", "Requests per model call", ["model"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.queue_seconds = Histogram("hi_server_queue_seconds", "Time a request waited for its batch",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram("hi_server_inference_seconds", "Duration of one batched model call",
                                           ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("hi_server_request_seconds", "INFER received -> answer sent",
                                         ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.connections = Gauge("hi_server_connections", "Open device connections", ["port"], registry=r)
        self.connections_total = Counter("hi_server_connections_opened", "Device connections accepted",
                                         ["port"], registry=r)
        self.inflight = Gauge("hi_server_inflight_requests", "Requests accepted and not yet answered", registry=r)
        self.auth_failures = Counter("hi_server_auth_failures", "Failed authentications", registry=r)
        self.refused = Counter("hi_server_connections_refused", "Connections refused with BUSY, by reason",
                               ["reason"], registry=r)
        self.replica_requests = Counter("hi_server_replica_requests", "Requests answered, by the replica that "
                                        "ran them ('local' in-process)", ["model", "replica"], registry=r)
        self.retries = Counter("hi_server_backend_retries", "Requests re-sent after their replica failed",
                               ["model"], registry=r)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line each
        pass


class MetricsHttpServer:
    """Serves /metrics (Prometheus text format) and /healthz (JSON; 503 while not serving) in a thread."""

    def __init__(self, metrics: ServerMetrics, health: Callable[[], dict[str, object]], host: str, port: int) -> None:
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path in ("/healthz", "/health"):
                status = health()
                code = "200 OK" if status.get("status") == "ok" else "503 Service Unavailable"
                body = json.dumps(status).encode()
                start_response(code, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            if path == "/metrics":
                return metrics_app(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        self._httpd = make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.host = host
        self.port = self._httpd.server_port
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hi-server-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
