"""Measure this machine and write a device profile in the same format as the paper's profiles.

What is measured, and how:

* model latency: wall time of ``Interpreter.invoke()`` on a TFLite model (LiteRT), after warm-up,
  over random inputs of the model's own input type (the time of an INT8 model does not depend on the
  pixel values);
* model energy: only when a RAPL energy counter is readable (CPU package energy over the timed loop,
  divided by the number of invokes) or when the user gives the machine's power (then labeled
  modeled: power x measured time);
* early-exit chain (optional): each segment's ``invoke()`` timed the same way; exit k costs the sum of
  segments 1..k, the full model the sum of all (written as a second model, named as the chain's model);
* from hi-agent run logs (optional): offload latency (mean ``t_offload_ms`` of a remote run) and the
  server model's accuracy (remote run), the decider's operating point and run time (HI run), the local
  model's accuracy.

Every value written carries a citation naming the machine, the date and the method.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hi_runtime.device_profiles import (
    MISSING,
    SCHEMA,
    Cited,
    DeciderStats,
    DeviceProfile,
    ExitCosts,
    LinkCosts,
    ModelCosts,
    PowerDraw,
    ServerModel,
)


class ProfilingError(ValueError):
    """A model or option given to ``hi-bench profile`` cannot be profiled (a usage error)."""


def _sig(x: float, digits: int = 6) -> float:
    """Round to significant digits (sub-microsecond latencies must not round to zero)."""
    return float(f"{x:.{digits}g}")


@dataclass
class InvokeTiming:
    """Latency statistics of ``invoke()`` in milliseconds."""

    runs: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    min_ms: float
    energy_j: float | None = None
    samples_ms: list = field(default_factory=list, repr=False)
    loop_s: float | None = None  # wall time of the timed loop: the interval the energy counter covered


def _random_input(spec, rng: np.random.Generator) -> np.ndarray:
    shape = [int(d) if int(d) > 0 else 1 for d in spec.shape]
    if np.issubdtype(spec.dtype, np.integer):
        info = np.iinfo(spec.dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=spec.dtype)
    return (rng.random(size=shape) * 255.0).astype(spec.dtype)


def time_tflite_invoke(model_path: Path, runs: int = 200, warmup: int = 20, threads: int | None = 1,
                       energy_counter=None, clock: Callable[[], float] = time.perf_counter,
                       progress: bool = False) -> InvokeTiming:
    """Time ``invoke()``; with ``energy_counter`` (``read_energy_j()``) also the energy of the loop."""
    model_path = Path(model_path)
    if not model_path.exists():
        raise ProfilingError(f"model {model_path} does not exist; pass a .tflite file (e.g. models/cifar10/resnet8_int8.tflite)")
    if runs < 1:
        raise ProfilingError("--runs must be at least 1")
    from hi_runtime.backends import BackendError, open_backend

    try:  # the project's runner layer: LiteRT (tflite-runtime or tf.lite where that is what is installed)
        backend = open_backend(model_path, "auto", num_threads=threads)
    except BackendError as exc:
        raise ProfilingError(f"cannot load TFLite model {model_path}: {exc}") from exc
    rng = np.random.default_rng(0)
    inputs = [[_random_input(s, rng) for s in backend.inputs] for _ in range(min(runs, 16))]
    interp = backend.interp  # the invoke itself is timed, nothing around it
    for i in range(warmup):
        for spec, x in zip(backend.inputs, inputs[i % len(inputs)]):
            interp.set_tensor(spec.index, x)
        interp.invoke()
    iterator = range(runs)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"timing {model_path.name}", unit="invoke")
    samples = []
    energy_start = energy_counter.read_energy_j() if energy_counter is not None else None
    loop_start = clock()
    for i in iterator:
        for spec, x in zip(backend.inputs, inputs[i % len(inputs)]):
            interp.set_tensor(spec.index, x)
        start = clock()
        interp.invoke()
        samples.append((clock() - start) * 1000.0)
    loop_s = clock() - loop_start
    energy = None
    if energy_counter is not None:
        energy = energy_counter.read_energy_j() - energy_start
    ordered = sorted(samples)

    def pct(q: float) -> float:
        pos = (len(ordered) - 1) * q
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return InvokeTiming(runs, statistics.fmean(samples), pct(0.5), pct(0.95), ordered[0], energy, samples, loop_s)


def describe_machine() -> dict:
    return {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def card_accuracy(model_path: Path | None) -> Cited | None:
    """The test accuracy the model card next to ``model_path`` records for that file (hi-train writes a
    card per model: ``<name>.json`` or ``<name>.card.json`` with ``artifacts[].file/test_accuracy``), so
    a profile of our own models carries their accuracy even without a run log."""
    if model_path is None:
        return None
    model_path = Path(model_path)
    for card_path in sorted(model_path.parent.glob("*.json")):
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(card, dict) or "card_version" not in card:
            continue
        for art in card.get("artifacts") or []:
            if art.get("file") == model_path.name and art.get("test_accuracy") is not None:
                data = card.get("dataset") or {}
                where = f"{data.get('name', 'its')} test split ({data.get('test_images', '?')} images)"
                note = data.get("note") or None
                return Cited(float(art["test_accuracy"]), f"model card {card_path.name}: test accuracy of "
                             f"{model_path.name} on the {where}", None, note)
    return None


def build_measured_profile(
    profile_id: str,
    model_name: str,
    timing: InvokeTiming | None,
    *,
    dataset: str | None = "cifar10",
    model_path: Path | None = None,
    threads: int | None = 1,
    power_w: float | None = None,
    energy_source: str = "",
    runs: Sequence = (),
    link: str = "wifi",
    name: str | None = None,
    today: str | None = None,
    ee_model: str | None = None,
    ee_timings: Sequence[InvokeTiming] = (),
    ee_paths: Sequence[Path] = (),
) -> DeviceProfile:
    """Assemble a ``kind: measured`` profile. ``runs`` are ``(RunLog, RunMetrics)`` pairs; ``ee_timings``
    are the per-segment timings of an early-exit chain whose model is written as ``ee_model``."""
    today = today or _dt.date.today().isoformat()
    machine = describe_machine()
    where = f"hi-bench profile on {machine['hostname']} ({machine['machine']}), {today}"
    latency = energy = Cited(None, "not measured")
    if timing is not None:
        method = f"{where}: mean of {timing.runs} invoke() calls, {threads} thread(s), model {model_path}"
        mean_ms = _sig(timing.mean_ms)
        latency = Cited(mean_ms, method, "ms",
                        f"p50 {timing.p50_ms:.4f} ms, p95 {timing.p95_ms:.4f} ms, min {timing.min_ms:.4f} ms")
        if timing.energy_j is not None:
            energy = Cited(_sig(timing.energy_j * 1000.0 / timing.runs),
                           f"{where}: measured ({energy_source or 'energy counter'}) over the timed loop", "mJ")
        elif power_w is not None:
            energy = Cited(_sig(power_w * mean_ms),
                           f"{where}: modeled = {power_w:g} W (user-given) x measured latency", "mJ")
    compute_w = Cited(None, "not measured")
    if timing is not None and timing.energy_j is not None and timing.samples_ms:
        # the counter covered the whole loop (inputs set, the invokes, the progress bar): divide by that time
        busy_s = timing.loop_s if timing.loop_s else sum(timing.samples_ms) / 1000.0
        compute_w = Cited(_sig(timing.energy_j / busy_s),
                          f"{where}: measured ({energy_source or 'energy counter'}) energy / timed loop's time", "W")
    elif power_w is not None:
        compute_w = Cited(power_w, "user-given (--power-w), not measured", "W")

    decider = DeciderStats()
    accuracy = Cited(None, "not measured")
    links = {}
    servers = {}
    for log, metrics in runs:
        run_name = log.path.name if log.path else "run"
        cite = f"{where}: from run log {run_name} ({metrics.n} samples)"
        if metrics.strategy == "remote" and metrics.offload_ms is not None:
            links[link] = LinkCosts(latency_ms=Cited(
                _sig(metrics.offload_ms), cite + "; the device's round trip, server run time included", "ms"))
        if metrics.strategy == "remote" and metrics.server_accuracy_offloaded is not None:
            servers["server"] = ServerModel(
                name="server", dataset=dataset, accuracy=Cited(_sig(metrics.server_accuracy_offloaded), cite),
                latency_ms=Cited(None, f"not separate: included in links.{link}.latency_ms"))
        if metrics.local_accuracy is not None and not accuracy.known:
            accuracy = Cited(_sig(metrics.local_accuracy), cite)
        if metrics.strategy == "hi" and metrics.accuracy is not None:
            decide = [r.t_decide_ms for r in log.records if r.t_decide_ms is not None]
            f1 = metrics.confusion.f1_offload if metrics.confusion is not None else None
            decider = DeciderStats(
                f1=Cited(None if f1 is None else _sig(f1), cite + "; F1 with offload as the positive class"),
                offload_fraction=Cited(_sig(metrics.offload_fraction), cite),
                hi_accuracy=Cited(_sig(metrics.accuracy), cite),
                latency_ms=Cited(_sig(statistics.fmean(decide)), cite, "ms") if decide else Cited(None, "not logged"),
            )
    if not accuracy.known:
        accuracy = card_accuracy(model_path) or accuracy
    model = ModelCosts(name=model_name, dataset=dataset, latency_ms=latency, energy_mj=energy,
                       accuracy=accuracy, decider=decider)
    models = {model_name: model}
    if ee_timings:
        if not ee_model:
            raise ProfilingError("an early-exit chain's timings need the chain's model name")
        cum = np.cumsum([t.mean_ms for t in ee_timings])
        files = ", ".join(Path(p).name for p in ee_paths) or f"{len(ee_timings)} segments"
        method = (f"{where}: sum of per-segment means of {ee_timings[0].runs} invoke() calls, "
                  f"{threads} thread(s), segments {files}")
        # each segment's card accuracy is its exit's (the last segment's is the full model's)
        exit_acc = [card_accuracy(Path(p)) or Cited(None, "not in a model card") for p in ee_paths] or \
            [Cited(None, "not given")] * len(ee_timings)
        exits = tuple(ExitCosts(latency_ms=Cited(_sig(float(c)), f"{method} (segments 1..{k + 1})", "ms"),
                                accuracy=exit_acc[k] if k < len(exit_acc) else Cited(None, "not given"))
                      for k, c in enumerate(cum[:-1]))
        models[ee_model] = ModelCosts(name=ee_model, dataset=dataset, exits=exits,
                                      latency_ms=Cited(_sig(float(cum[-1])), method, "ms"),
                                      accuracy=exit_acc[-1] if len(exit_acc) == len(ee_timings) else MISSING)
    hardware = {k: v for k, v in machine.items() if v}
    hardware["threads"] = threads
    return DeviceProfile(
        id=profile_id,
        name=name or f"{machine['hostname']} ({machine['machine']})",
        kind="measured",
        source=where,
        notes=(f"schema {SCHEMA}; written by hi-bench profile",),
        power=PowerDraw(compute_w=compute_w),
        links=links,
        default_link=link,
        models=models,
        servers=servers,
        hardware=hardware,
    )
