"""hi-server with ``backend: ray``: the front door forwarding to Ray Serve replicas (issue 19).

One local Ray starts once for the whole test session (``ray_cluster``); one Serve deployment of a small
stand-in model with 2 CPU replicas serves the module. 50 simulated devices x 20 requests must get the
answers of the in-process backend; a replica killed while they offload must lose no request (each is
answered by the other replica, or with a retryable ERROR the device answers locally and flags) and Serve
must bring a replacement back. Skipped, with the reason, when ray[serve] is not installed (CI installs the
``cluster`` extra).
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install 'hi-runtime[cluster]'")

import ray
from ray import serve

from hi_runtime import protocol as p
from hi_runtime.offload_client import AsyncOffloadClient, InferResult, OffloadServerError
from offload_server.config import ModelConfig, RayConfig, ServerConfig
from offload_server.server import run_server_in_thread
from offload_server.standin import build_standin_onnx

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

#: answers a device turns into its own local answer (flagged), as hi_runtime.agent.offloader does
RETRYABLE = {p.ErrorCode.BUSY, p.ErrorCode.INTERNAL, p.ErrorCode.SHUTTING_DOWN, p.ErrorCode.TIMEOUT}
DEVICES, REQUESTS = 50, 20


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray, started once per test session (4 logical CPUs: 2 replicas + slack; 2 physical cores)."""
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin_onnx(tmp_path_factory.mktemp("ray-models") / "tiny.onnx", kind="linear", seed=5)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)


def _config(model_path: Path, backend: str, **ray_settings) -> ServerConfig:
    model = ModelConfig(id="tiny", path=str(model_path), max_batch_size=16, max_queue_delay_us=2000, num_threads=1)
    ray_cfg = RayConfig(**{"num_replicas": 2, "ray_actor_options": {"num_cpus": 1}, "app_prefix": "test",
                           "health_check_period_s": 1.0, **ray_settings})
    return ServerConfig(models=[model], port=0, backend=backend, ray=ray_cfg, log_level="WARNING",
                        max_connections_per_peer=1024)


@pytest.fixture(scope="module")
def ray_server(ray_cluster, model_path):
    with run_server_in_thread(_config(model_path, "ray", keep_app_on_stop=False)) as handle:
        yield handle


@pytest.fixture(scope="module")
def reference(model_path, images) -> dict[int, InferResult]:
    """The in-process backend's answer to every image (with top-3), the reference for the replicas."""
    with run_server_in_thread(_config(model_path, "inprocess")) as handle:
        answers = asyncio.run(_fleet(handle.port, images, devices=8, requests=8, order=lambda d, k: d * 8 + k))
    return {idx: outcome for idx, outcome in answers}


def _replica_counts(handle) -> dict[str, float]:
    out = {}
    for family in handle.server.metrics.registry.collect():
        if family.name == "hi_server_replica_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[s.labels["replica"]] = s.value
    return out


async def _fleet(port: int, images: np.ndarray, devices: int = DEVICES, requests: int = REQUESTS, order=None,
                 pace_s: float = 0.0, on_answer=None) -> list[tuple[int, object]]:
    """Simulated devices, each with its own connection, two requests in flight at a time. Returns
    (image index, RESULT or the ERROR code) per request; a request with neither is lost (the test fails)."""
    order = order or (lambda d, k: (d * 7 + k) % len(images))

    async def device(d: int) -> list[tuple[int, object]]:
        client = AsyncOffloadClient("127.0.0.1", port, client_name=f"dev{d}", max_inflight=2)
        await client.connect()
        out: list[tuple[int, object]] = []
        sem = asyncio.Semaphore(2)

        async def one(k: int) -> None:
            async with sem:
                idx = order(d, k)
                try:
                    outcome: object = await asyncio.wait_for(client.infer(images[idx], "tiny", top_k=3), 60)
                except OffloadServerError as exc:
                    outcome = exc.code
                out.append((idx, outcome))
                if on_answer is not None:
                    on_answer(outcome)
                if pace_s:
                    await asyncio.sleep(pace_s)

        await asyncio.gather(*[one(k) for k in range(requests)])
        await client.close()
        return out

    results = await asyncio.gather(*[device(d) for d in range(devices)])
    return [item for r in results for item in r]


def _same_answer(got: InferResult, want: InferResult) -> bool:
    return (got.class_id == want.class_id and [c for c, _ in got.top_k] == [c for c, _ in want.top_k]
            and np.allclose([s for _, s in got.top_k], [s for _, s in want.top_k], atol=1e-5))


def test_1000_requests_from_50_devices_match_the_in_process_backend(ray_server, images, reference) -> None:
    before = _replica_counts(ray_server)
    answers = asyncio.run(_fleet(ray_server.port, images, order=lambda d, k: (d * 8 + k) % 64))
    assert len(answers) == DEVICES * REQUESTS
    for idx, outcome in answers:
        assert isinstance(outcome, InferResult), outcome
        assert _same_answer(outcome, reference[idx]), (idx, outcome, reference[idx])
    served = {k: v - before.get(k, 0) for k, v in _replica_counts(ray_server).items()}
    assert sum(served.values()) == DEVICES * REQUESTS
    assert len([v for v in served.values() if v > 0]) == 2, served  # both replicas took load
    assert max(r.server_timings["batch_size"] for _, r in answers) > 1  # @serve.batch cut real batches
    assert "Ray Serve" in ray_server.server.models["tiny"].backend.description


def test_a_killed_replica_loses_no_request_and_comes_back(ray_server, images, reference) -> None:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith("SERVE_REPLICA::test-tiny#")]
    assert len(names) == 2, names
    victim = names[0]
    victim_id = victim.rsplit("#", 1)[1]
    original = {n.rsplit("#", 1)[1] for n in names}
    answered: dict[str, float | None] = {"n": 0, "killed_at": None}

    def on_answer(_outcome: object) -> None:
        answered["n"] += 1
        if answered["n"] == 150 and answered["killed_at"] is None:  # mid-run: 150 of 1000 answered
            answered["killed_at"] = time.monotonic()
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)

    before = _replica_counts(ray_server)
    answers = asyncio.run(_fleet(ray_server.port, images, pace_s=0.01, on_answer=on_answer))
    assert answered["killed_at"] is not None
    # nothing lost: every request has its answer, the replicas' (equal to the reference) or a retryable
    # ERROR that the device answers locally and flags
    assert len(answers) == DEVICES * REQUESTS
    local = 0
    for idx, outcome in answers:
        if isinstance(outcome, InferResult):
            assert _same_answer(outcome, reference[idx])
        else:
            assert outcome in RETRYABLE, outcome
            local += 1
    # only requests caught by the kill may end up local: a device has at most 2 in flight, so more than
    # 2 x DEVICES local answers means the tier kept failing after the kill instead of using the survivor
    assert local <= 2 * DEVICES, f"{local} of {len(answers)} answered locally"
    after = _replica_counts(ray_server)
    served = {k: after[k] - before.get(k, 0) for k in after}
    survivor = (original - {victim_id}).pop()
    assert served[survivor] > 0
    assert sum(served.values()) >= DEVICES * REQUESTS - local
    # Serve replaces the dead replica: a new replica id appears in the answers
    deadline = time.monotonic() + 120
    fresh: set[str] = set()
    while time.monotonic() < deadline and not fresh:
        asyncio.run(_fleet(ray_server.port, images, devices=4, requests=4))
        fresh = {k for k, v in _replica_counts(ray_server).items() if v > 0} - original
        time.sleep(0.5)
    assert fresh, "Serve did not bring a replacement replica back within 120 s"
    assert ray_server.server.ray.replica_count("tiny") == 2
    print(f"kill test: {local} of {len(answers)} answered locally (retryable errors), retries "
          f"{ray_server.server.metrics.registry.get_sample_value('hi_server_backend_retries_total', {'model': 'tiny'})}, "
          f"replacement {sorted(fresh)}")


def test_a_second_front_door_attaches_and_its_death_leaves_the_replicas(ray_server, model_path, images,
                                                                         reference) -> None:
    """Front doors scale too: another one (another node in production) attaches to the running deployment
    by name; stopping it does not take the deployment down for the first."""
    config = _config(model_path, "ray", deploy="never")
    with run_server_in_thread(config) as second:
        answers = asyncio.run(_fleet(second.port, images, devices=5, requests=10))
        assert all(_same_answer(o, reference[i]) for i, o in answers if isinstance(o, InferResult))
        assert all(isinstance(o, InferResult) for _, o in answers)
        running = {a["name"].rsplit("#", 1)[1] for a in ray.util.list_named_actors(all_namespaces=True)
                   if a["name"].startswith("SERVE_REPLICA::test-tiny#")}
        assert set(_replica_counts(second)) <= running  # the same replicas as the first front door's
        assert second.server.ray is not None and not second.server.ray.started_ray
    assert "test-tiny" in serve.status().applications  # still deployed
    answers = asyncio.run(_fleet(ray_server.port, images, devices=5, requests=5))
    assert all(isinstance(o, InferResult) for _, o in answers)


def test_runner_retries_a_request_whose_replica_died() -> None:
    """The retry path itself, without waiting for a real crash to hit a request in flight: the first
    call fails with ActorDiedError, the retry is answered; with no retries left the error is INTERNAL."""
    from ray.exceptions import ActorDiedError

    from offload_server.metrics import ServerMetrics
    from offload_server.ray_backend import RayModelRunner, ReplicaAnswer

    class FakeResponse:
        def __init__(self, outcome):
            self.outcome = outcome

        def __await__(self):
            async def go():
                if isinstance(self.outcome, BaseException):
                    raise self.outcome
                return self.outcome
            return go().__await__()

        def cancel(self):
            pass

    class FakeMethod:
        def __init__(self, outcomes):
            self.outcomes = list(outcomes)

        def remote(self, _pixels):
            return FakeResponse(self.outcomes.pop(0))

    class FakeHandle:
        def __init__(self, outcomes):
            self.infer = FakeMethod(outcomes)

    info = {"shape": [32, 32, 3], "dtype": "<f4", "quant": None, "description": "fake"}
    answer = ReplicaAnswer(np.full((1, 10), 0.1, np.float32), 3, 0.001, "r2", 1)
    metrics = ServerMetrics()
    runner = RayModelRunner(ModelConfig("m", "m.onnx"), RayConfig(retries=1), FakeHandle([ActorDiedError(), answer]),
                            info, metrics)
    outcome = asyncio.run(runner.submit(np.zeros((32, 32, 3), np.float32)))
    assert outcome.replica == "r2" and outcome.batch_size == 3
    assert metrics.registry.get_sample_value("hi_server_backend_retries_total", {"model": "m"}) == 1
    runner = RayModelRunner(ModelConfig("m", "m.onnx"), RayConfig(retries=1),
                            FakeHandle([ActorDiedError(), ActorDiedError()]), info, metrics)
    with pytest.raises(RuntimeError, match="replica lost"):  # infer_request answers it INTERNAL
        asyncio.run(runner.submit(np.zeros((32, 32, 3), np.float32)))


def test_front_door_records_queue_time_and_enforces_max_queued_requests() -> None:
    """A fake Serve handle (Ray is not started): every answered request adds to hi_server_queue_seconds, and
    beyond ray.max_queued_requests waiting requests the front door answers BUSY at once."""
    from offload_server.batcher import ModelBusy
    from offload_server.metrics import ServerMetrics
    from offload_server.ray_backend import RayModelRunner, ReplicaAnswer

    class SlowResponse:
        def __init__(self, n, delay):
            self.n, self.delay = n, delay

        def __await__(self):
            async def go():
                await asyncio.sleep(self.delay)
                return ReplicaAnswer(np.full((self.n, 10), 0.1, np.float32), self.n, 0.001, "r1", id(self))
            return go().__await__()

        def cancel(self):
            pass

    class Handle:
        def __init__(self, delay):
            self.infer = self
            self.delay = delay

        def remote(self, pixels):
            return SlowResponse(len(pixels), self.delay)

    info = {"shape": [32, 32, 3], "dtype": "<f4", "quant": None, "description": "fake"}
    model = ModelConfig("m", "m.onnx", max_batch_size=1)
    x = np.zeros((32, 32, 3), np.float32)

    async def answered_five(metrics):
        runner = RayModelRunner(model, RayConfig(), Handle(0.01), info, metrics)
        for _ in range(5):
            await runner.submit(x)

    metrics = ServerMetrics()
    asyncio.run(answered_five(metrics))
    assert metrics.registry.get_sample_value("hi_server_queue_seconds_count", {"model": "m"}) == 5

    async def burst():
        runner = RayModelRunner(model, RayConfig(max_queued_requests=2, max_inflight_batches=1), Handle(0.2), info,
                                ServerMetrics())
        return await asyncio.gather(*[runner.submit(x) for _ in range(10)], return_exceptions=True)

    results = asyncio.run(burst())
    busy = [r for r in results if isinstance(r, ModelBusy)]
    assert len(busy) == 7 and "max_queued_requests" in str(busy[0])  # 1 in the call, 2 waiting, 7 refused


def test_fleet_command_prints_1_vs_2_replica_throughput(ray_cluster, tmp_path, capsys) -> None:
    from measurements.cli import main

    code = main(["fleet", "--local", "ray", "--replicas", "1,2", "--standin", "linear", "--devices", "10",
                 "--arrival", "rate:20", "--offload-prob", "0.5", "--duration", "2", "--deadline-ms", "1000",
                 "--plot", str(tmp_path / "fleet.png"), "--json", str(tmp_path / "fleet.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "ray x1:" in out and "ray x2:" in out and "throughput by replica count" in out
    assert (tmp_path / "fleet.png").stat().st_size > 10_000
    import json

    rows = json.loads((tmp_path / "fleet.json").read_text())
    assert [r["label"] for r in rows] == ["ray x1", "ray x2"]
    assert len(rows[0]["replica_load"]) == 1 and len(rows[1]["replica_load"]) == 2
    for r in rows:
        assert r["frames"] == r["local"] + r["ok"] + r["shed"] + r["degraded"]
        assert r["ok"] > 0
    assert ray.is_initialized()  # the command did not stop the session's Ray


def test_autoscaling_config_deploys_and_serves(ray_cluster, model_path, images, reference) -> None:
    """autoscaling_config instead of num_replicas: Serve takes it (min 1, max 2 replicas) and serves."""
    config = _config(model_path, "ray", app_prefix="auto", keep_app_on_stop=False,
                     autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4})
    with run_server_in_thread(config) as handle:
        answers = asyncio.run(_fleet(handle.port, images, devices=4, requests=5))
        status = serve.status().applications["auto-tiny"]
        deployment = next(iter(status.deployments.values()))
    assert all(isinstance(o, InferResult) and _same_answer(o, reference[i]) for i, o in answers)
    assert 1 <= sum(deployment.replica_states.values()) <= 2
    assert "auto-tiny" not in serve.status().applications  # deleted on stop (keep_app_on_stop: false)


# ---- an outside review (2026-12-07): health without replicas, bounded teardown, typos, unreachable heads ----

def test_health_is_not_ok_when_a_models_replicas_are_gone(ray_cluster, model_path) -> None:
    """A front door whose Serve application vanished answered /healthz 200 "ok" while every request failed:
    a load balancer kept sending devices to it. Now it says which model has no replica (503)."""
    with run_server_in_thread(_config(model_path, "ray", app_prefix="gone", keep_app_on_stop=False,
                                      num_replicas=1)) as handle:
        assert handle.server.health()["status"] == "ok"
        serve.delete("gone-tiny")
        time.sleep(1.1)  # the health answer is cached for a second
        health = handle.server.health()
    assert health["status"] == "no replicas" and health["models_without_replicas"] == ["tiny"]


def test_cluster_teardown_and_join_without_a_live_cluster(monkeypatch) -> None:
    """A front door that started its own Ray shuts it down without serve.delete (which waits out a hung
    replica's graceful stop, or a dead GCS, for minutes); it passes its namespace to ray.init; a HOST:PORT
    with nothing listening is one line in seconds instead of minutes of retries; a typo inside
    autoscaling_config is refused (Serve ignores unknown keys, so the deployment would never scale)."""
    import socket

    from offload_server import ray_backend as rb
    from offload_server.config import ConfigError

    calls: list[tuple] = []
    monkeypatch.setattr(rb.ray, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(rb.ray, "init", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(rb.ray, "shutdown", lambda: calls.append(("shutdown",)))
    monkeypatch.setattr(rb.serve, "start", lambda **kw: None)
    monkeypatch.setattr(rb.serve, "delete", lambda name, **kw: calls.append(("delete", name)))
    own = rb.RayCluster(RayConfig(namespace="fleet-a"))
    own.connect()
    own.apps = ["hi-tiny"]
    own.close()
    assert calls[0][0] == "init" and calls[0][1]["namespace"] == "fleet-a" and calls[1:] == [("shutdown",)]

    with socket.socket() as s:  # a port nobody listens at
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calls.clear()
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"cannot join Ray at 127.0.0.1:{port}: nothing answers there"):
        rb.RayCluster(RayConfig(address=f"127.0.0.1:{port}")).connect()
    assert time.monotonic() - started < 10 and calls == []

    model = ModelConfig(id="tiny", path="unused.onnx")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['max_replica'\]"):
        rb.check_options(model, RayConfig(autoscaling_config={"min_replicas": 1, "max_replica": 8}))
    rb.check_options(model, RayConfig(autoscaling_config={"min_replicas": 1, "max_replicas": 8}))
