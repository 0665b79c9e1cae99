"""The model tier on Ray Serve (``backend: ray``): replicas that run batches, and the front door's side.

The device-facing front door (offload_server.server) keeps everything that touches devices: the framed
protocol, authentication, limits, the compat port, metrics and the per-request preprocessing that
validates tensors (so a bad request still fails alone with BAD_TENSOR). Only the model call moves: each
model becomes one Serve application (``<app_prefix>-<model id>``) whose replicas load the model file on
their node and cut batches with ``@serve.batch`` (``max_batch_size`` and ``max_queue_delay_us`` of the
model). Serve places replicas on the cluster's nodes (``ray_actor_options``: CPUs/GPUs per replica),
scales them (``num_replicas`` or ``autoscaling_config``) and restarts the ones that die.

Any number of front doors, one per node, share the applications: the first deploys, the others attach by
name (``ray.deploy: auto``). A request whose replica dies while it is in flight is re-sent ``ray.retries``
times (Serve routes it to a live replica; inference is idempotent); if that fails too, or the tier is
overloaded or slower than ``request_timeout_s``, the request gets a retryable ERROR (INTERNAL, BUSY) and
the device answers it locally. Nothing is lost silently.

Importing this module needs ``ray[serve]`` (the ``cluster`` extra); the server imports it only for
``backend: ray``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import re
import socket
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException

from offload_server.backends import InputSpec, load_backend
from offload_server.batcher import BatchOutcome, ModelBusy, ModelStopped, infer_batch
from offload_server.config import ConfigError, ModelConfig, RayConfig
from offload_server.logs import event
from offload_server.metrics import ServerMetrics
from offload_server.preprocess import Preprocessor

log = logging.getLogger("offload_server.ray_backend")

#: Errors meaning "the replica (or its node) went away", after which the same request may be re-sent.
_REPLICA_LOST: tuple[type[BaseException], ...] = (RayActorError, DeploymentUnavailableError)
_ready_timeout_s = 300.0  # how long a front door waits for an application another front door deploys


class ReplicaAnswer(NamedTuple):
    """A replica's answer to one forwarded micro-batch."""

    probs: np.ndarray  # [n, classes], one row per image of the micro-batch
    batch_size: int  # images in the model call the micro-batch ran in (micro-batches are merged)
    infer_s: float
    replica: str
    batch_no: int


def _images_in(items: list[np.ndarray]) -> int:
    """@serve.batch counts images, not calls: each call carries a micro-batch [n, H, W, C]."""
    return sum(int(item.shape[0]) for item in items)


class ModelReplica:
    """One Serve replica of a model: loads the file on its node and runs the batches ``@serve.batch`` cuts.

    Each call brings a front door's micro-batch; ``@serve.batch`` merges the micro-batches of all front
    doors up to ``max_batch_size`` images (waiting at most ``max_queue_delay_us``) into one model call. The
    call runs in a worker thread so the replica's event loop keeps collecting the next batch.
    """

    def __init__(self, model: dict[str, Any], max_batch_size: int, batch_wait_s: float) -> None:
        config = ModelConfig(**model)
        config.validate()  # the file must exist on this node: a clear error instead of a loader traceback
        self.backend = load_backend(config)
        self.pre = Preprocessor.build(config, self.backend.input)
        self.logits = config.output == "logits"
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(batch_wait_s)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hi-replica")
        pixels = np.zeros((1, self.pre.height, self.pre.width, self.pre.channels), np.float32)
        infer_batch(self.backend, self.pre, pixels, self.logits)  # warm up before taking traffic
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = socket.gethostname()
        self.batches = 0

    def describe(self) -> dict[str, Any]:
        spec = self.backend.input
        return {"shape": list(spec.shape), "dtype": spec.dtype.str, "quant": spec.quant,
                "description": self.backend.description, "replica": self.replica, "node": self.node,
                "pid": os.getpid()}

    # max_batch_size and the wait are replaced in __init__ from the model's config
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002, batch_size_fn=_images_in)
    async def infer(self, items: list[np.ndarray]) -> list[ReplicaAnswer]:
        pixels = items[0] if len(items) == 1 else np.concatenate(items)
        loop = asyncio.get_running_loop()
        probs, infer_s = await loop.run_in_executor(self._executor, infer_batch, self.backend, self.pre, pixels,
                                                    self.logits)
        self.batches += 1
        out, start = [], 0
        for item in items:
            out.append(ReplicaAnswer(probs[start : start + len(item)], len(pixels), infer_s, self.replica,
                                     self.batches))
            start += len(item)
        return out


def app_name(cfg: RayConfig, model_id: str) -> str:
    return f"{cfg.app_prefix}-{_safe(model_id)}"


def _safe(text: str) -> str:
    """Serve names use '#' and '/' as separators; model ids may hold any printable ASCII."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    if clean != text:
        clean += "-" + hashlib.sha1(text.encode()).hexdigest()[:6]
    return clean


def deployment_options(model: ModelConfig, cfg: RayConfig) -> dict[str, Any]:
    """Serve deployment options of a model (Serve versions deployments itself: deploying the same
    options again keeps the replicas, and a different replica count only scales)."""
    options: dict[str, Any] = {
        "name": f"model-{_safe(model.id)}",
        "ray_actor_options": dict(cfg.ray_actor_options),
        # a replica must hold a full batch plus the next one filling up, or batches never fill
        "max_ongoing_requests": cfg.max_ongoing_requests or 2 * model.max_batch_size,
        "max_constructor_retry_count": 3,  # a replica that cannot load its model fails the deploy soon
        "logging_config": {"log_level": "WARNING", "enable_access_log": False},
    }
    if cfg.health_check_period_s is not None:
        options["health_check_period_s"] = cfg.health_check_period_s
    if cfg.max_queued_requests != -1:
        options["max_queued_requests"] = cfg.max_queued_requests
    if cfg.autoscaling_config is not None:
        options["autoscaling_config"] = dict(cfg.autoscaling_config)
    else:
        options["num_replicas"] = cfg.num_replicas
    return options


def check_options(model: ModelConfig, cfg: RayConfig) -> None:
    """Let Serve itself validate the deployment options (autoscaling_config, ray_actor_options) now, so
    ``hi-server --check`` catches a bad value before any cluster is involved."""
    if cfg.autoscaling_config is not None:  # Serve ignores keys it does not know: a typo would never scale
        from ray.serve.config import AutoscalingConfig

        known = set(getattr(AutoscalingConfig, "model_fields", None) or AutoscalingConfig.__fields__)
        unknown = sorted(set(cfg.autoscaling_config) - known)
        if unknown:
            raise ConfigError(f"ray.autoscaling_config has unknown key(s) {unknown}; Serve knows {sorted(known)}")
    try:
        MODEL_DEPLOYMENT.options(**deployment_options(model, cfg))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"ray settings for model {model.id!r} are invalid: {_one_line(exc)}") from None


class RayCluster:
    """The front door's connection to Ray: joins (or starts) the cluster, deploys or attaches models."""

    def __init__(self, cfg: RayConfig) -> None:
        self.cfg = cfg
        self.started_ray = False
        self.apps: list[str] = []

    def connect(self) -> None:
        """Blocking. Reuses a Ray already initialized in this process (tests), else joins or starts one."""
        cfg = self.cfg
        if not ray.is_initialized():
            try:
                if cfg.address is None:
                    # Ray runs its workers at nice 15 by default; on one box the replicas are the server's
                    # main work and must not lose the CPU to the front door or anything else running there
                    os.environ.setdefault("RAY_worker_niceness", "0")
                    ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                             namespace=cfg.namespace)
                    self.started_ray = True
                else:
                    _check_reachable(cfg.address)
                    ray.init(address=cfg.address, logging_level=logging.WARNING, namespace=cfg.namespace)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = cfg.address or "a new local instance"
                raise ConfigError(f"cannot start or join Ray ({where}): {_one_line(exc)}; for a cluster run "
                                  "`ray start --head` on the head node and set ray.address: auto") from None
        try:
            serve.start(proxy_location="Disabled")  # devices reach the models through the front doors only
        except RayServeException as exc:
            raise ConfigError(f"cannot start Ray Serve: {_one_line(exc)}") from None

    def open_model(self, model: ModelConfig, metrics: ServerMetrics) -> RayModelRunner:
        """Blocking. Deploy the model's application (or attach to the running one) and describe it."""
        name = app_name(self.cfg, model.id)
        deploy = self.cfg.deploy
        status = _app_status(name)
        if deploy == "auto" and status == "DEPLOYING":  # another front door is deploying it right now
            status = _wait_running(name)
        if deploy == "always" or (deploy == "auto" and status != "RUNNING"):
            if not Path(model.path).is_file():
                raise ConfigError(f"model {model.id!r}: model file {model.path} does not exist on this node; "
                                  "deploy from a front door that has it, or set ray.deploy: never here")
            options = deployment_options(model, self.cfg)
            app = MODEL_DEPLOYMENT.options(**options).bind(
                dataclasses.asdict(model), model.max_batch_size, model.max_queue_delay_us / 1e6)
            started = time.perf_counter()
            try:
                handle = serve.run(app, name=name, route_prefix=None)
            except (RuntimeError, RayServeException, ValueError) as exc:
                raise ConfigError(f"Ray Serve could not deploy model {model.id!r}: {_cause(exc)}") from None
            event(log, "ray_model_deployed", model=model.id, app=name,
                  replicas=options.get("num_replicas"), autoscaling=options.get("autoscaling_config"),
                  seconds=round(time.perf_counter() - started, 2))
        else:
            if status is None:
                raise ConfigError(f"Serve application {name!r} is not running and ray.deploy is 'never': "
                                  "start the front door that deploys it first (ray.deploy: auto)")
            handle = serve.get_app_handle(name)
            event(log, "ray_model_attached", model=model.id, app=name, status=status)
        self.apps.append(name)
        info = handle.describe.remote().result(timeout_s=120)
        return RayModelRunner(model, self.cfg, handle, info, metrics)

    def replica_count(self, model_id: str) -> int:
        """Running replicas of a model's deployment (for health and tests)."""
        status = serve.status().applications.get(app_name(self.cfg, model_id))
        if status is None:
            return 0
        total = 0
        for dep in status.deployments.values():
            total += int(dep.replica_states.get("RUNNING", 0))
        return total

    def unserved(self, model_ids: list[str], max_age_s: float = 1.0) -> list[str] | None:
        """The models with no RUNNING replica (health: a front door with nothing behind it is not "ok");
        None when Serve cannot be asked. Blocking (a controller call), so cached for ``max_age_s``: the
        health endpoint is polled by load balancers."""
        now = time.monotonic()
        cached = getattr(self, "_unserved", None)
        if cached is not None and now - cached[0] < max_age_s:
            return cached[1]
        try:
            answer: list[str] | None = [m for m in model_ids if self.replica_count(m) == 0]
        except Exception:  # noqa: BLE001 - the controller or GCS is gone: that is the answer
            answer = None
        self._unserved = (now, answer)
        return answer

    def close(self) -> None:
        """Blocking. Delete this front door's applications only if it owns the cluster (or was told to)."""
        if not ray.is_initialized():  # already gone (Serve calls would start a new local Ray)
            return
        if self.started_ray:
            # the local cluster is this process's own: shutting it down ends its applications too, in seconds,
            # where serve.delete waits out Serve's graceful stop of a hung replica (20 s each) or a dead GCS
            ray.shutdown()
            return
        if self.cfg.keep_app_on_stop is False:  # joined a cluster: its applications stay unless told otherwise
            for name in self.apps:
                try:
                    serve.delete(name)
                except Exception as exc:  # noqa: BLE001 - best effort while stopping
                    event(log, "ray_delete_failed", logging.WARNING, app=name, error=repr(exc))


@dataclass
class _Waiting:
    pixels: np.ndarray
    future: asyncio.Future[BatchOutcome]
    enqueued: float


class RayModelRunner:
    """The front door's view of one model on Ray Serve: submit a request, get its BatchOutcome.

    Requests are forwarded as micro-batches, so a loaded front door makes one Ray call per batch instead of
    one per image (a Ray call costs milliseconds of CPU on each side). Without a backlog nothing waits: a
    request leaves at once while fewer than ``max_inflight_batches`` calls are open; only while that many
    are, newly arrived requests gather into the next call (up to ``max_batch_size``), the way the
    in-process batcher fills its next batch while one runs.
    """

    def __init__(self, model: ModelConfig, cfg: RayConfig, handle: Any, info: dict[str, Any],
                 metrics: ServerMetrics) -> None:
        self.model_id = model.id
        self.cfg = cfg
        self.handle = handle
        self.metrics = metrics
        self.max_batch_size = model.max_batch_size
        replicas = (cfg.autoscaling_config or {}).get("max_replicas") or cfg.num_replicas or 1
        self.max_inflight_batches = cfg.max_inflight_batches or max(2, 2 * int(replicas))
        quant = info.get("quant")
        self.input = InputSpec(shape=tuple(int(d) for d in info["shape"]), dtype=np.dtype(info["dtype"]),
                               quant=(float(quant[0]), int(quant[1])) if quant else None)
        self.description = f"{info['description']} on Ray Serve ({app_name(cfg, model.id)})"
        self._stopping = False
        self._queue: deque[_Waiting] = deque()
        self._inflight = 0
        self._calls: set[asyncio.Task] = set()
        self._seen_batches: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def submit(self, pixels: np.ndarray) -> BatchOutcome:
        """Forward one request; the caller bounds the time (request_timeout_s) by cancelling this."""
        if self._stopping:
            raise ModelStopped(f"model {self.model_id} is shutting down")
        limit = self.cfg.max_queued_requests
        if limit != -1 and sum(not w.future.done() for w in self._queue) >= limit:
            # the front door holds the backlog (Serve sees at most max_inflight_batches calls from it, so
            # its own queue limit is hardly ever reached): the limit is enforced here
            raise ModelBusy(f"model {self.model_id}: {limit} requests already wait for a replica "
                            "(ray.max_queued_requests)")
        future: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(pixels, future, time.perf_counter()))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        """Send queued requests while there is room for another call (no timers: nothing waits idly)."""
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < self.max_inflight_batches:
            batch: list[_Waiting] = []
            while self._queue and len(batch) < self.max_batch_size:
                item = self._queue.popleft()
                if not item.future.done():  # timed out or its client went away: not worth sending
                    batch.append(item)
            if not batch:
                return
            self._inflight += 1
            task = loop.create_task(self._call(batch))
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task) -> None:
        self._calls.discard(task)
        self._inflight -= 1
        self._dispatch()

    async def _call(self, batch: list[_Waiting]) -> None:
        pixels = np.stack([item.pixels for item in batch])
        try:
            answer = await self._forward(pixels, batch)
        except Exception as exc:  # noqa: BLE001 - every request of the call gets the failure
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        if answer is None:  # every request of the call was cancelled
            return
        self._observe_batch(answer)
        now = time.perf_counter()
        for i, item in enumerate(batch):
            if not item.future.done():
                queue_s = max(0.0, now - item.enqueued - answer.infer_s)
                self.metrics.queue_seconds.labels(self.model_id).observe(queue_s)
                item.future.set_result(BatchOutcome(np.asarray(answer.probs[i]), answer.batch_size, queue_s,
                                                    answer.infer_s, answer.replica))

    async def _forward(self, pixels: np.ndarray, batch: list[_Waiting]) -> ReplicaAnswer | None:
        """One Ray call, re-sent up to ``ray.retries`` times if its replica died (inference is idempotent)."""
        attempt = 0
        while True:
            response = self.handle.infer.remote(pixels)
            waiter = asyncio.ensure_future(_await(response))
            # stop waiting (and take the call out of Serve's queues) once nobody waits for its answers
            while not waiter.done():
                waiting = [item.future for item in batch if not item.future.done()]
                if not waiting:
                    waiter.add_done_callback(_retrieve)  # its RequestCancelledError is expected: not a log line
                    waiter.cancel()
                    response.cancel()
                    return None
                await asyncio.wait([waiter, *waiting], return_when=asyncio.FIRST_COMPLETED)
            try:
                return waiter.result()
            except asyncio.CancelledError:
                return None
            except BackPressureError as exc:
                raise ModelBusy(f"the model tier is overloaded: {_one_line(exc)}") from None
            except _REPLICA_LOST as exc:
                if attempt >= self.cfg.retries:
                    raise RuntimeError(f"replica lost and {attempt} retr{'y' if attempt == 1 else 'ies'} "
                                       f"failed: {type(exc).__name__}") from None
                attempt += 1
                self.metrics.retries.labels(self.model_id).inc(len(batch))
                event(log, "ray_request_retried", logging.WARNING, model=self.model_id, attempt=attempt,
                      requests=len(batch), error=type(exc).__name__)
            except RayTaskError as exc:  # the model itself failed: deterministic, not worth re-sending
                raise RuntimeError(_one_line(exc.cause if getattr(exc, "cause", None) else exc)) from None

    def _observe_batch(self, answer: ReplicaAnswer) -> None:
        """Batch metrics once per batch this front door saw (several of its calls may share one batch)."""
        key = (answer.replica, answer.batch_no)
        if key in self._seen_batches:
            return
        self._seen_batches[key] = None
        if len(self._seen_batches) > 4096:
            self._seen_batches.popitem(last=False)
        self.metrics.batch_size.labels(self.model_id).observe(answer.batch_size)
        self.metrics.inference_seconds.labels(self.model_id).observe(answer.infer_s)

    async def stop(self) -> None:
        """No new requests; the calls already out are answered (the server waits for its connections)."""
        self._stopping = True
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=30)


async def _await(response: Any) -> Any:
    return await response


def _retrieve(task: asyncio.Future) -> None:
    """Consume a cancelled call's outcome (asyncio logs an exception nobody retrieved as a traceback)."""
    if not task.cancelled():
        task.exception()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """``ray.address: HOST:PORT`` with nothing listening there makes ray.init retry for minutes; a plain TCP
    connect says so in seconds ("auto" and ray:// fail fast on their own)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"cannot join Ray at {address}: nothing answers there ({exc.strerror or exc}); start the "
                          "head with `ray start --head` or fix ray.address") from None


def _app_status(name: str) -> str | None:
    status = serve.status().applications.get(name)
    return None if status is None else str(getattr(status.status, "value", status.status))


def _wait_running(name: str) -> str | None:
    deadline = time.monotonic() + _ready_timeout_s
    status = _app_status(name)
    while status == "DEPLOYING" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _app_status(name)
    return status


def _one_line(exc: object) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):  # Serve validates its options with pydantic
        return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
    return " ".join(str(exc).split())[:400]


def _cause(exc: BaseException) -> str:
    """The useful part of a failed deploy: the replica's own error (e.g. a ConfigError) if it is quoted."""
    text = str(exc)
    match = re.search(r"ConfigError: (.+)", text)
    return _one_line(match.group(1) if match else text)


#: The Serve deployment; options (replicas, resources, version) are set per model in RayCluster.open_model.
MODEL_DEPLOYMENT = serve.deployment(ModelReplica)
