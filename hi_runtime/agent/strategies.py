"""The per-sample logic of the four strategies, and the loop that runs them over an input source.

* ``local``  - the on-device model answers every sample.
* ``remote`` - every sample is offloaded; if the server does not answer in time the local model (when one
  is loaded) answers instead, flagged degraded.
* ``hi``     - the local model answers; the decider (exact int8 form on int8 models, the same integers as
  the firmware) accepts its answer or offloads the sample.
* ``ee-hi``  - the early-exit segment chain runs until an exit's confidence passes its threshold; at the
  final exit the decider accepts or offloads.

Offloads are pipelined (bounded by ``max_inflight``): a sample that goes to the server waits on the
offload worker thread while the next samples' local inference proceeds; records are still emitted in
sample order. When an offload fails (timeout, server down, every breaker open) the local answer is final
and the record says ``degraded``: no sample is ever dropped.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hi_runtime.backends import ChainRunner, Classifier
from hi_runtime.agent.inputs import InputSource, Sample
from hi_runtime.records import STRATEGIES, RecordWriter, SampleRecord, Summary, summarize

log = logging.getLogger(__name__)

NEEDS_SERVER = ("remote", "hi", "ee-hi")


class StrategyError(ValueError):
    """A strategy lacks what it needs (model, decider, chain, server) or a QoS config is unusable."""


# ---------------------------------------------------------------------------------------------------
# QoS: strategy choice from requirements
# ---------------------------------------------------------------------------------------------------

@dataclass
class QosConfig:
    """What the application needs. ``strategy: auto`` picks, among ``candidates`` (measured accuracy and
    mean latency per strategy, e.g. from ``hi-bench metrics`` on earlier runs), the lowest-latency one
    that meets ``min_accuracy`` and fits ``latency_budget_ms``. The budget also bounds every offload."""

    strategy: str = "auto"
    min_accuracy: float | None = None
    latency_budget_ms: float = 100.0
    decider_threshold: float | None = None
    candidates: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> QosConfig:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise StrategyError(f"QoS config {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise StrategyError(f"QoS config {path} is not valid YAML: {exc}") from exc
        known = {"strategy", "min_accuracy", "latency_budget_ms", "decider_threshold", "candidates"}
        unknown = set(data) - known
        if unknown:
            raise StrategyError(f"QoS config {path}: unknown keys {sorted(unknown)}; allowed {sorted(known)}")
        qos = cls(**data)
        if qos.strategy != "auto" and qos.strategy not in STRATEGIES:
            raise StrategyError(f"QoS config {path}: strategy {qos.strategy!r} is not auto or one of {STRATEGIES}")
        return qos

    def choose(self, available: Sequence[str]) -> str:
        """The strategy to run, among those whose artifacts are ``available``."""
        if self.strategy != "auto":
            return self.strategy
        if self.min_accuracy is None:
            raise StrategyError("QoS strategy auto needs min_accuracy (and measured candidates)")
        ok = []
        for name, c in self.candidates.items():
            if name not in STRATEGIES:
                raise StrategyError(f"QoS candidate {name!r} is not one of {STRATEGIES}")
            if "accuracy" not in c or "latency_ms" not in c:
                raise StrategyError(f"QoS candidate {name!r} needs measured accuracy and latency_ms")
            if name in available and c["accuracy"] >= self.min_accuracy and c["latency_ms"] <= self.latency_budget_ms:
                ok.append((float(c["latency_ms"]), -float(c["accuracy"]), name))
        if not ok:
            raise StrategyError(
                f"no strategy meets accuracy >= {self.min_accuracy} within {self.latency_budget_ms} ms among the "
                f"measured candidates {self.candidates} (available here: {list(available)})")
        return min(ok)[2]


# ---------------------------------------------------------------------------------------------------
# The agent loop
# ---------------------------------------------------------------------------------------------------

@dataclass
class AgentConfig:
    strategy: str = "hi"
    latency_budget_ms: float = 100.0
    max_inflight: int = 4
    progress: bool = True


@dataclass
class _Pending:
    record: SampleRecord
    t0: float
    image: np.ndarray
    future: object = None
    score_input: np.ndarray | None = None  # probabilities whose decider score is still to be logged


class Agent:
    """Runs one strategy over samples. ``offloader`` is a ResilientOffloader (or None for ``local``).

    The decision itself (accept or offload) is made per sample on the hot path, with the decider's exact
    int8 form when the model's output is int8. The decider *score* is only logged, so it is computed for
    batches of records just before they are written (one vectorized call instead of one per sample);
    ``t_decide_ms`` therefore measures the decision, not the logging.
    """

    SCORE_BATCH = 64  # records scored and written together ...
    FLUSH_S = 0.5  # ... or after this long, so a live source (camera) is logged promptly

    def __init__(self, config: AgentConfig, *, classifier: Classifier | None = None, decider=None,
                 chain: ChainRunner | None = None, offloader=None) -> None:
        s = config.strategy
        if s not in STRATEGIES:
            raise StrategyError(f"unknown strategy {s!r}; choose one of {', '.join(STRATEGIES)}")
        if s in ("local", "hi") and classifier is None:
            raise StrategyError(f"strategy {s} needs a local model (--model)")
        if s == "hi" and decider is None:
            raise StrategyError("strategy hi needs a decider (--decider, the JSON written by hi-train decider)")
        if s == "ee-hi" and chain is None:
            raise StrategyError("strategy ee-hi needs an early-exit chain (--ee-chain, e.g. models/cifar10/ee_resnet8.json)")
        if s in NEEDS_SERVER and offloader is None:
            raise StrategyError(f"strategy {s} offloads: give at least one server (--server HOST:PORT)")
        self.config = config
        self.classifier = classifier
        self.chain = chain
        self.offloader = offloader
        self.decider = decider
        self._int8_decider = None
        if decider is not None and classifier is not None:
            self._int8_decider = _int8_form(decider, classifier.output_spec)
        self._score_decider = chain.chain.policy.decider if s == "ee-hi" and chain is not None else decider
        self._score_quant = None  # quantization of the EE chain's final scores (set when first seen)
        self.worker = None
        if offloader is not None and s in NEEDS_SERVER:
            from hi_runtime.agent.offloader import OffloadWorker

            self.worker = OffloadWorker(offloader, config.max_inflight)
        self.records: list[SampleRecord] = []
        self.last_error: str | None = None

    # ---- per-sample stages --------------------------------------------------------------------------

    def _local(self, sample: Sample, pending: _Pending) -> None:
        """Preprocess + local model + decision; fills the local fields and timings of the record."""
        clf = self.classifier
        assert clf is not None
        rec = pending.record
        t = time.perf_counter()
        x = clf.preprocess(sample.image)
        t1 = time.perf_counter()
        raw, cls, conf = clf.classify_one(x)
        t2 = time.perf_counter()
        rec.local_class = rec.final_class = cls
        rec.local_confidence = conf
        rec.t_preprocess_ms = (t1 - t) * 1e3
        rec.t_local_ms = (t2 - t1) * 1e3
        if self.decider is not None:  # a local run with a decider logs its score too (offline HI analysis)
            if self._int8_decider is not None:
                accept = bool(self._int8_decider.accept(raw)[0])
            else:
                accept = bool(self.decider.accept(clf.output_spec.dequantize(raw))[0])
            if rec.strategy == "hi":
                rec.offloaded = not accept
            rec.t_decide_ms = (time.perf_counter() - t2) * 1e3
            pending.score_input = raw  # raw output scores; dequantized in batches for the logged score

    def _early_exit(self, sample: Sample, pending: _Pending) -> None:
        chain = self.chain
        assert chain is not None
        rec = pending.record
        t = time.perf_counter()
        x = chain.preprocess(sample.image)
        t1 = time.perf_counter()
        chain.segment_time = 0.0
        res = chain.run(x)
        t2 = time.perf_counter()
        rec.t_preprocess_ms = (t1 - t) * 1e3
        rec.t_local_ms = chain.segment_time * 1e3
        rec.local_class = int(res.predicted_class)
        rec.local_confidence = float(res.confidence)
        rec.exit_index = int(res.exit_index)
        rec.offloaded = bool(res.offload)
        # decision time: the policy's own work (chain wall time minus the segment invokes)
        rec.t_decide_ms = ((t2 - t1) - chain.segment_time) * 1e3
        rec.final_class = rec.local_class
        if self._score_decider is not None and res.exit_index == chain.chain.num_exits - 1:
            scores = np.asarray(res.scores).reshape(1, -1)
            seg = chain.chain.segments[-1]
            pending.score_input = scores
            self._score_quant = seg.scores_quant

    def _fallback_local(self, pending: _Pending) -> None:
        """Remote strategy, server failed: answer locally if a local model is loaded."""
        if self.classifier is None:
            return
        rec = pending.record
        self._local(Sample(rec.sample_id, pending.image, rec.label), pending)

    # ---- loop ---------------------------------------------------------------------------------------

    def process(self, sample: Sample) -> _Pending:
        """Start one sample; returns a pending entry (its record completes when the offload ends)."""
        t0 = time.perf_counter()
        s = self.config.strategy
        rec = SampleRecord(sample_id=sample.sample_id, strategy=s, local_class=None, local_confidence=None,
                           exit_index=None, decider_score=None, offloaded=s == "remote", server_class=None,
                           final_class=None, degraded=False, label=sample.label)
        pending = _Pending(rec, t0, sample.image)
        if s in ("local", "hi"):
            self._local(sample, pending)
        elif s == "ee-hi":
            self._early_exit(sample, pending)
        if rec.offloaded:
            assert self.worker is not None
            deadline = self.worker.offloader.clock() + self.config.latency_budget_ms / 1e3 - (
                time.perf_counter() - t0)
            pending.future = self.worker.submit(np.ascontiguousarray(sample.image[None]), deadline=deadline)
        else:
            rec.t_total_ms = (time.perf_counter() - t0) * 1e3
        return pending

    def _finish(self, pending: _Pending) -> _Pending:
        rec = pending.record
        if pending.future is None:
            return pending
        out = pending.future.result()
        rec.t_offload_ms = out.t_ms
        end = time.perf_counter()
        if out.ok:
            rec.server_class = out.class_id
            rec.final_class = out.class_id
        else:
            rec.degraded = True
            self.last_error = out.error
            if rec.strategy == "remote":
                self._fallback_local(pending)
                end = time.perf_counter()
        rec.t_total_ms = (end - pending.t0) * 1e3
        return pending

    def _score_probs(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores (int8 or float) of the decided output to probabilities for the decider score."""
        if not np.issubdtype(raw.dtype, np.integer):
            return raw.astype(np.float64)
        if self.config.strategy == "ee-hi":
            return self._score_quant.dequantize(raw)
        assert self.classifier is not None
        return self.classifier.output_spec.dequantize(raw).astype(np.float64)

    def run(self, source: Iterable[Sample], writer: RecordWriter | None = None,
            on_record: Callable[[SampleRecord], None] | None = None, total: int | None = None) -> Summary:
        """Answer every sample of ``source`` in order; returns the summary (records in ``self.records``)."""
        if total is None and isinstance(source, InputSource):
            total = source.total
        bar = _progress(total, self.config.strategy) if self.config.progress else None
        queue: deque[_Pending] = deque()
        done: list[_Pending] = []
        counts = {"offloaded": 0, "degraded": 0}
        offloading = self.worker is not None
        last_flush = [time.perf_counter()]

        def flush() -> None:
            last_flush[0] = time.perf_counter()
            need = [p for p in done if p.score_input is not None]
            if need and self._score_decider is not None:
                scores = self._score_decider.score(self._score_probs(np.concatenate([p.score_input for p in need])))
                for p, score in zip(need, scores):
                    p.record.decider_score = float(score)
            for p in done:
                rec = p.record
                self.records.append(rec)
                counts["offloaded"] += rec.offloaded
                counts["degraded"] += rec.degraded
                if writer is not None:
                    writer.write(rec)
                if on_record is not None:
                    on_record(rec)
            if bar is not None and done:
                bar.update(len(done))
                bar.set_postfix(offload=f"{counts['offloaded'] / len(self.records):.0%}",
                                degraded=counts["degraded"], refresh=False)
            done.clear()

        def emit(p: _Pending) -> None:
            done.append(p)
            if len(done) >= self.SCORE_BATCH or time.perf_counter() - last_flush[0] > self.FLUSH_S:
                flush()

        try:
            for sample in source:
                if not offloading:
                    emit(self.process(sample))
                    continue
                if self.config.strategy == "remote":
                    # no local work to overlap: take the next sample when the previous answer is in, so
                    # a sample's latency starts when the link can serve it (a dataset streams faster than
                    # any sensor), not when it was read
                    while queue:
                        emit(self._finish(queue.popleft()))
                # hi / ee-hi: local inference of this sample proceeds while earlier offloads are in
                # flight; if it must offload too and max_inflight offloads are pending, submit waits
                queue.append(self.process(sample))
                while queue and (queue[0].future is None or queue[0].future.done()):
                    emit(self._finish(queue.popleft()))
            while queue:
                emit(self._finish(queue.popleft()))
        finally:
            flush()
            if bar is not None:
                bar.close()
        return summarize(self.records, self.config.strategy)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None
        elif self.offloader is not None:
            self.offloader.close()


def _int8_form(decider, output_spec):
    """The decider's exact integer form for this model's output quantization (compiled once, so the hot
    path is a dot product), or None when the output is float or the decider has no int8 form."""
    if not output_spec.quantized or not getattr(decider, "supports_int8", False):
        return None
    scale, zp = output_spec.quant
    if decider.int8 is not None and decider.int8.matches(scale, zp):
        return decider.int8
    if decider.int8 is not None:
        log.warning("decider's int8 form was exported for another output quantization; recompiling it for "
                    "scale %g, zero point %d", scale, zp)
    return decider.compile_int8(scale, zp)


def _progress(total: int | None, strategy: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"hi-agent {strategy}", unit="sample", leave=False, dynamic_ncols=True)
