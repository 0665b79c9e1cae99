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
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
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
    probs: np.ndarray
    batch_size: int
    infer_s: float
    replica: str
    batch_no: int


class ModelReplica:
    """One Serve replica of a model: loads the file on its node and runs the batches ``@serve.batch`` cuts.

    The batch runs in a worker thread so the replica's event loop keeps collecting the next batch.
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

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)  # replaced in __init__ from the config
    async def infer(self, items: list[np.ndarray]) -> list[ReplicaAnswer]:
        pixels = np.stack(items)
        loop = asyncio.get_running_loop()
        probs, infer_s = await loop.run_in_executor(self._executor, infer_batch, self.backend, self.pre, pixels,
                                                    self.logits)
        self.batches += 1
        return [ReplicaAnswer(probs[i], len(items), infer_s, self.replica, self.batches) for i in range(len(items))]


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
                    ray.init(num_cpus=cfg.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
                    self.started_ray = True
                else:
                    ray.init(address=cfg.address, logging_level=logging.WARNING)
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

    def close(self) -> None:
        """Blocking. Delete this front door's applications only if it owns the cluster (or was told to)."""
        if not ray.is_initialized():  # already gone (Serve calls would start a new local Ray)
            return
        keep = self.cfg.keep_app_on_stop
        if keep is None:
            keep = not self.started_ray
        if not keep:
            for name in self.apps:
                try:
                    serve.delete(name)
                except Exception as exc:  # noqa: BLE001 - best effort while stopping
                    event(log, "ray_delete_failed", logging.WARNING, app=name, error=repr(exc))
        if self.started_ray:
            ray.shutdown()


class RayModelRunner:
    """The front door's view of one model on Ray Serve: submit a request, get its BatchOutcome."""

    def __init__(self, model: ModelConfig, cfg: RayConfig, handle: Any, info: dict[str, Any],
                 metrics: ServerMetrics) -> None:
        self.model_id = model.id
        self.cfg = cfg
        self.handle = handle
        self.metrics = metrics
        quant = info.get("quant")
        self.input = InputSpec(shape=tuple(int(d) for d in info["shape"]), dtype=np.dtype(info["dtype"]),
                               quant=(float(quant[0]), int(quant[1])) if quant else None)
        self.description = f"{info['description']} on Ray Serve ({app_name(cfg, model.id)})"
        self._stopping = False
        self._seen_batches: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def submit(self, pixels: np.ndarray) -> BatchOutcome:
        """Forward one request; the caller bounds the time (request_timeout_s) by cancelling this."""
        if self._stopping:
            raise ModelStopped(f"model {self.model_id} is shutting down")
        start = time.perf_counter()
        attempt = 0
        while True:
            response = self.handle.infer.remote(pixels)
            try:
                answer: ReplicaAnswer = await response
                break
            except asyncio.CancelledError:
                response.cancel()  # timed out or the client went away: take it out of Serve's queues too
                raise
            except BackPressureError as exc:
                raise ModelBusy(f"the model tier is overloaded: {_one_line(exc)}") from None
            except _REPLICA_LOST as exc:
                if attempt >= self.cfg.retries:
                    raise RuntimeError(f"replica lost and {attempt} retr{'y' if attempt == 1 else 'ies'} "
                                       f"failed: {type(exc).__name__}") from None
                attempt += 1
                self.metrics.retries.labels(self.model_id).inc()
                event(log, "ray_request_retried", logging.WARNING, model=self.model_id, attempt=attempt,
                      error=type(exc).__name__)
            except RayTaskError as exc:  # the model itself failed: deterministic, not worth re-sending
                raise RuntimeError(_one_line(exc.cause if getattr(exc, "cause", None) else exc)) from None
        total = time.perf_counter() - start
        self._observe_batch(answer)
        return BatchOutcome(np.asarray(answer.probs), answer.batch_size, max(0.0, total - answer.infer_s),
                            answer.infer_s, answer.replica)

    def _observe_batch(self, answer: ReplicaAnswer) -> None:
        """Batch metrics once per batch this front door saw (several of its requests share one batch)."""
        key = (answer.replica, answer.batch_no)
        if key in self._seen_batches:
            return
        self._seen_batches[key] = None
        if len(self._seen_batches) > 4096:
            self._seen_batches.popitem(last=False)
        self.metrics.batch_size.labels(self.model_id).observe(answer.batch_size)
        self.metrics.inference_seconds.labels(self.model_id).observe(answer.infer_s)

    async def stop(self) -> None:
        self._stopping = True


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
