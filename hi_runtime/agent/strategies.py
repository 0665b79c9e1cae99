"""The per-sample logic of the four strategies, and the loop that runs them over an input source.

* ``local``  - the on-device model answers every sample.
* ``remote`` - every sample is offloaded; if the server does not answer in time the local model (when one
  is loaded) answers instead, flagged degraded.
* ``hi``     - the local model answers; the decider (exact int8 form on int8 models, the same integers as
  the firmware) accepts its answer or offloads the sample.
* ``ee-hi``  - the early-exit segment chain runs until an exit's confidence passes its threshold; at the
  final exit the decider accepts or offloads.

Samples arrive by an arrival process (:mod:`hi_runtime.agent.arrivals`: closed, rate:<fps>, burst). The
device answers them in arrival order on the caller's thread; offloads go to the pipelined
:class:`~hi_runtime.agent.offloader.Offloader`, so later samples' local inference proceeds while earlier
ones are on the wire. Every latency runs from the sample's arrival to its final answer, stamped when the
answer arrives (on the offloader's thread), not when the loop next looks.

Delivery order: a record is delivered (written, counted, passed to ``on_record``) when its answer is
final, so records come in completion order; each carries its ``sample_id``. In a closed run that is the
arrival order. ``Agent.records`` holds them in that same order.

No sample is ever dropped: when an offload fails (server down, every breaker open, no answer within the
budget) the local answer is final and the record says ``degraded``; when admission control sees that an
offload could not make the sample's deadline, the local answer is final at once and the record says
``shed``.
"""
from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hi_runtime.agent.arrivals import Arrival
from hi_runtime.agent.inputs import ArraySource, InputSource, Sample
from hi_runtime.agent.offloader import DEFAULT_BUDGET_MS, OffloadOutcome
from hi_runtime.backends import ChainRunner, Classifier
from hi_runtime.qos import QoS
from hi_runtime.records import STRATEGIES, RecordWriter, SampleRecord, Summary, summarize

log = logging.getLogger(__name__)

NEEDS_SERVER = ("remote", "hi", "ee-hi")


class StrategyError(ValueError):
    """A strategy lacks what it needs (model, decider, chain, server) or a QoS config is unusable."""


# ---------------------------------------------------------------------------------------------------
# QoS: strategy choice from requirements (the one --qos grammar, hi_runtime.qos)
# ---------------------------------------------------------------------------------------------------

class _Candidate(BaseModel):
    """One strategy's measured result (e.g. from ``hi-agent run --summary-json`` or ``hi-bench``)."""

    model_config = ConfigDict(extra="ignore")
    accuracy: float = Field(ge=0.0, le=1.0)
    latency_ms: float = Field(gt=0.0)


def load_candidates(paths: Sequence[str | Path]) -> dict[str, dict]:
    """Measured candidates: YAML/JSON files that map ``strategy: {accuracy, latency_ms}``, or summaries
    written by ``hi-agent run --summary-json`` (strategy, accuracy, latency_mean_ms). Later files win."""
    import json

    import yaml
    from pydantic import ValidationError

    out: dict[str, dict] = {}
    for path in map(Path, paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StrategyError(f"--qos-candidates {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise StrategyError(f"--qos-candidates {path} is not a text file; give the YAML/JSON candidates or a "
                                "hi-agent --summary-json file") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except ValueError as exc:
            raise StrategyError(f"--qos-candidates {path} is not valid JSON: {exc}") from None
        except yaml.YAMLError as exc:
            raise StrategyError(f"--qos-candidates {path} is not valid YAML: {_yaml_problem(exc)}") from None
        if isinstance(data, dict) and "strategy" in data and "latency_mean_ms" in data:  # a run's summary
            data = {data["strategy"]: {"accuracy": data.get("accuracy"), "latency_ms": data["latency_mean_ms"]}}
        if not isinstance(data, dict) or not data:
            raise StrategyError(f"--qos-candidates {path}: expected 'strategy: {{accuracy, latency_ms}}' entries "
                                "or a hi-agent --summary-json file")
        for name, entry in data.items():
            base = str(name).split("@")[0]
            if base not in STRATEGIES:
                raise StrategyError(f"--qos-candidates {path}: {name!r} is not one of {', '.join(STRATEGIES)}")
            try:
                out[base] = _Candidate.model_validate(entry).model_dump()
            except ValidationError as exc:
                err = exc.errors()[0]
                raise StrategyError(f"--qos-candidates {path}: {name}.{'.'.join(map(str, err['loc']))}: "
                                    f"{err['msg']}") from None
    return out


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's error in one line (line, column, problem); its own message spans several with a caret."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def choose_strategy(qos: QoS, candidates: dict[str, dict], available: Sequence[str]) -> str:
    """The paper's rule: fix the given requirement, optimize the other. With an accuracy requirement, the
    lowest-latency available strategy that meets it (and any latency limit); with only a latency limit,
    the most accurate one within it. Limits must be numbers here (``half-offload`` needs a device profile:
    ``hi-bench plan`` answers that)."""
    from hi_runtime.qos import HALF_OFFLOAD

    if HALF_OFFLOAD in (qos.max_latency, qos.max_energy):
        raise StrategyError("--qos latency=half-offload needs the device's offload cost: ask `hi-bench plan "
                            "--device ...`, or give a number of ms here")
    if qos.max_energy is not None:
        raise StrategyError("hi-agent chooses by accuracy and latency; an energy limit needs `hi-bench plan`")
    if qos.min_accuracy is None and qos.max_latency is None:
        raise StrategyError("--qos needs accuracy=... or latency=... (e.g. --qos accuracy=0.88)")
    ok = [(name, c) for name, c in candidates.items() if name in available
          and (qos.min_accuracy is None or c["accuracy"] >= qos.min_accuracy)
          and (qos.max_latency is None or c["latency_ms"] <= qos.max_latency)]
    if not ok:
        raise StrategyError(f"no strategy meets {qos.describe()} among the measured candidates "
                            f"{ {k: v for k, v in candidates.items()} } (available here: {list(available)})")
    if qos.min_accuracy is not None:
        return min(ok, key=lambda nc: (nc[1]["latency_ms"], -nc[1]["accuracy"]))[0]
    return max(ok, key=lambda nc: (nc[1]["accuracy"], -nc[1]["latency_ms"]))[0]


# ---------------------------------------------------------------------------------------------------
# The agent loop
# ---------------------------------------------------------------------------------------------------

@dataclass
class AgentConfig:
    strategy: str = "hi"
    latency_budget_ms: float = DEFAULT_BUDGET_MS  # per sample, from its arrival to its final answer
    arrival: str | Arrival = "closed"
    admission: bool = True  # shed offloads whose expected wait already exceeds the sample's deadline
    progress: bool = True


class _Pending:
    """A sample in the system: its record, arrival time and image (slots: one is made per sample)."""

    __slots__ = ("record", "arrived", "image", "score_input", "needs_local", "answered")

    def __init__(self, record: SampleRecord, arrived: float, image: np.ndarray) -> None:
        self.record = record
        self.arrived = arrived
        self.image = image
        self.score_input: np.ndarray | None = None  # raw scores whose decider score is still to be logged
        self.needs_local = False  # remote strategy, server failed: answer locally on the device's thread
        self.answered = False  # the offloader's outcome is stamped on the record (set on its thread)


class Agent:
    """Runs one strategy over samples. ``offloader`` is an :class:`~hi_runtime.agent.offloader.Offloader`
    (or None for ``local``).

    The decision itself (accept or offload) is made per sample on the hot path, in plain integer
    arithmetic with the decider's exact int8 form when the model's output is int8. The decider *score* is
    only logged, so it is computed for batches of records just before they are written (one vectorized
    call instead of one per sample); ``t_decide_ms`` therefore measures the decision, not the logging.
    """

    SCORE_BATCH = 64  # records scored and written together ...
    FLUSH_S = 0.5  # ... or after this long, so a live source (camera) is logged promptly
    SETTLE_GRACE_S = 2.0  # after Ctrl-C: how long past the last deadline to wait for an outcome in flight

    def __init__(self, config: AgentConfig, *, classifier: Classifier | None = None, decider=None,
                 chain: ChainRunner | None = None, offloader=None,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        if config.latency_budget_ms <= 0:
            raise StrategyError(f"the latency budget must be positive, got {config.latency_budget_ms} ms")
        self.config = config
        self.arrival = Arrival.parse(config.arrival)
        self.classifier = classifier
        self.chain = chain
        self.offloader = offloader if s in NEEDS_SERVER else None
        self._owned_offloader = offloader
        self.decider = decider
        self.clock = clock
        self._accept_row = None  # the per-sample decision on raw scores as Python numbers
        if decider is not None and classifier is not None:
            form = _int8_form(decider, classifier.output_spec)
            if form is not None:
                self._accept_row = form.row_decider()
            else:
                spec = classifier.output_spec
                self._accept_row = lambda row: bool(decider.accept(spec.dequantize(np.asarray([row])))[0])
        self._direct = classifier.direct_io() if classifier is not None and s in ("local", "hi") else None
        self.direct_loop = True  # closed runs of local/hi on direct I/O take _run_direct (False: the general loop)
        out_quant = classifier.output_spec.quant if classifier is not None else None
        self._out_scale, self._out_zp = (out_quant if out_quant is not None else (None, 0))
        self._score_decider = chain.decider if s == "ee-hi" and chain is not None else decider
        self._score_quant = None  # quantization of the EE chain's final scores (set when first seen)
        self._budget_s = config.latency_budget_ms / 1e3
        self._strategy = s
        self._runs_model = s in ("local", "hi")
        self._runs_chain = s == "ee-hi"
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # answered offloads, from the offloader thread
        # offloads in flight, by id: an entry leaves when its answer is delivered. A dict, not a counter: a
        # Ctrl-C landing between the queue and the bookkeeping must not leave a count that never drains
        self._inflight: dict[int, _Pending] = {}
        self.records: list[SampleRecord] = []
        self.last_error: str | None = None
        self.log_error: str | None = None  # the per-sample log failed: logging stopped, answering did not
        self.sanity = LocalSanity(_num_classes(classifier, chain) if s != "remote" else None)

    # ---- per-sample stages (the device's thread) ------------------------------------------------------

    def _local(self, image: np.ndarray, pending: _Pending) -> None:
        """Preprocess + local model + decision; fills the local fields and timings of the record."""
        rec = pending.record
        perf = time.perf_counter
        direct = self._direct
        if direct is not None:  # straight into and out of the interpreter's buffers (Classifier.direct_io)
            t = perf()
            direct[0](image)
            t1 = perf()
            row = direct[1]()
            t2 = perf()
            top = max(row)
            cls = row.index(top)  # first maximum, like argmax
            conf = (top - self._out_zp) * self._out_scale if self._out_scale is not None else float(top)
            raw = row
        else:
            clf = self.classifier
            t = perf()
            x = clf.preprocess(image)
            t1 = perf()
            raw, row, cls, conf = clf.classify_one(x)
            t2 = perf()
        rec.local_class = rec.final_class = cls
        rec.local_confidence = conf
        rec.t_preprocess_ms = (t1 - t) * 1e3
        rec.t_local_ms = (t2 - t1) * 1e3
        if self._accept_row is not None:  # a local run with a decider logs its score too (offline HI analysis)
            accept = self._accept_row(row)
            if rec.strategy == "hi":
                rec.offloaded = not accept
            rec.t_decide_ms = (perf() - t2) * 1e3
            pending.score_input = raw  # raw output scores; dequantized in batches for the logged score

    def _early_exit(self, image: np.ndarray, pending: _Pending) -> None:
        chain = self.chain
        rec = pending.record
        t = time.perf_counter()
        x = chain.preprocess(image)
        t1 = time.perf_counter()
        chain.segment_time = 0.0
        res = chain.run(x)
        t2 = time.perf_counter()
        rec.t_preprocess_ms = (t1 - t) * 1e3
        rec.t_local_ms = chain.segment_time * 1e3
        rec.local_class = rec.final_class = int(res.predicted_class)
        rec.local_confidence = float(res.confidence)
        rec.exit_index = int(res.exit_index)
        rec.offloaded = bool(res.offload)
        # decision time: the policy's own work (chain wall time minus the segment invokes)
        rec.t_decide_ms = ((t2 - t1) - chain.segment_time) * 1e3
        if self._score_decider is not None and res.exit_index == chain.num_exits - 1:
            pending.score_input = np.asarray(res.scores).reshape(1, -1)
            self._score_quant = chain.final_scores_quant

    def _start(self, sample: Sample, arrived: float) -> _Pending | None:
        """Answer one sample locally, or hand it to the offloader. Returns the entry when its answer is
        final now, None when an offload is in flight (it comes back through ``self._done``)."""
        clock = self.clock
        s = self._strategy
        rec = SampleRecord(sample.sample_id, s, None, None, None, None, s == "remote", None, None, False,
                           sample.label, t_queue_ms=(clock() - arrived) * 1e3)
        pending = _Pending(rec, arrived, sample.image)
        if self._runs_model:
            self._local(sample.image, pending)
        elif self._runs_chain:
            self._early_exit(sample.image, pending)
        if not rec.offloaded:
            rec.t_total_ms = (clock() - arrived) * 1e3
            return pending
        return self._offload(sample, pending)

    def _offload(self, sample: Sample, pending: _Pending) -> _Pending | None:
        """Admission control, then the offloader; the entry if its answer is final now (shed), else None."""
        clock = self.clock
        rec, arrived = pending.record, pending.arrived
        deadline = arrived + self._budget_s
        if self.config.admission and (rec.local_class is not None or self.classifier is not None):
            wait = self.offloader.expected_wait_s()
            if wait is not None and clock() + wait > deadline:
                rec.shed = True  # the server could not answer in time: answer locally now
                if rec.local_class is None:
                    self._fallback_local(pending)
                rec.t_total_ms = (clock() - arrived) * 1e3
                return pending
        self._inflight[id(pending)] = pending  # first: an interrupt after this is settled by run()'s cleanup
        fut = self.offloader.submit(np.ascontiguousarray(sample.image[None]), deadline=deadline)
        fut.add_done_callback(lambda f, p=pending: self._answered(p, f))
        return None

    def _answered(self, pending: _Pending, fut) -> None:
        """The offloader's thread: the answer (or the give-up) is known now; stamp it and pass it on."""
        try:
            out = fut.result()
        except Exception as exc:  # noqa: BLE001 - the offloader never raises; a cancelled future still answers
            out = OffloadOutcome(ok=False, error=f"internal error: {exc!r}", finished_at=self.clock())
        self._stamp(pending, out)
        self._done.put(pending)

    def _stamp(self, pending: _Pending, out: OffloadOutcome) -> None:
        """Put an offload's outcome on the sample's record (a failure: degraded, answered locally)."""
        rec = pending.record
        rec.t_offload_ms = out.t_ms
        total_us = out.server_timings.get("total_us") if out.server_timings else None
        rec.t_server_ms = total_us / 1e3 if total_us is not None else None
        if out.ok:
            rec.server_class = rec.final_class = out.class_id
        else:
            rec.degraded = True
            self.last_error = out.error
            if rec.local_class is None:
                pending.needs_local = rec.strategy == "remote" and self.classifier is not None
        rec.t_total_ms = (out.finished_at - pending.arrived) * 1e3
        pending.answered = True

    def _fallback_local(self, pending: _Pending) -> None:
        """Remote strategy without an answer from the server: answer locally if a local model is loaded."""
        if self.classifier is None:
            return
        rec = pending.record
        keep = rec.offloaded
        self._local(pending.image, pending)
        rec.offloaded = keep

    # ---- the closed loop on direct I/O (local, hi) -----------------------------------------------------

    def _run_direct(self, source: Iterable[Sample], deliver: Callable, collect: Callable, done: list,
                    flush: Callable, last_flush: list) -> None:
        """The closed loop for ``local`` and ``hi`` on a model with direct I/O: per sample only the work
        that decides its answer (input in, invoke, output row out, the integer decision) and a tuple; the
        kept sample's record is built when its batch is delivered (:meth:`_kept_record`). An offloaded
        sample takes the general path from the decision on (record, admission control, the offloader),
        and the next sample starts after its answer. Same records as the general loop (tested)."""
        put, infer = self._direct  # type: ignore[misc]
        perf, clock = time.perf_counter, self.clock
        accept_row = self._accept_row
        hi = self._strategy == "hi"
        keep_entry, batch, every_s = done.append, self.SCORE_BATCH, self.FLUSH_S
        for sid, image, label in _id_image_label(source):
            arrived = clock()
            t0 = perf()
            put(image)
            t1 = perf()
            row = infer()
            t2 = perf()
            if accept_row is None:
                t3, keep = None, True
            else:
                keep = accept_row(row)
                t3 = perf()
            if keep or not hi:  # kept: delivered as a tuple (deliver(), inlined)
                answered = clock()
                keep_entry((sid, label, row, arrived, t0, t1, t2, t3, answered))
                if len(done) >= batch or answered - last_flush[1] > every_s:
                    flush()
                continue
            rec = self._kept_record((sid, label, row, arrived, t0, t1, t2, t3, None))
            rec.offloaded = True
            pending = _Pending(rec, arrived, image)
            pending.score_input = row
            p = self._offload(Sample(sid, image, label), pending)
            if p is not None:
                deliver(p)
            if self._inflight:
                collect(everything=True)  # closed: the next sample arrives after this answer

    def _kept_record(self, entry: tuple) -> SampleRecord:
        """The record of a sample answered on the direct path (see :meth:`_local` for the fields)."""
        sid, label, row, arrived, t0, t1, t2, t3, answered = entry
        top = max(row)
        cls = row.index(top)  # first maximum, like argmax
        conf = (top - self._out_zp) * self._out_scale if self._out_scale is not None else float(top)
        return SampleRecord(sid, self._strategy, cls, conf, None, None, False, None, cls, False,
                            label, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
                            None if t3 is None else (t3 - t2) * 1e3, None,
                            None if answered is None else (answered - arrived) * 1e3, False, 0.0, None)

    # ---- loop -----------------------------------------------------------------------------------------

    def _score_probs(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores (int8 or float) of the decided output to probabilities for the decider score."""
        if not np.issubdtype(raw.dtype, np.integer):
            return raw.astype(np.float64)
        if self.config.strategy == "ee-hi":
            return self._score_quant.dequantize(raw)
        return self.classifier.output_spec.dequantize(raw).astype(np.float64)

    def run(self, source: Iterable[Sample], writer: RecordWriter | None = None,
            on_record: Callable[[SampleRecord], None] | None = None, total: int | None = None) -> Summary:
        """Answer every sample of ``source`` under this agent's arrival process; returns the summary
        (records in ``self.records``, in delivery order)."""
        if total is None and isinstance(source, InputSource):
            total = source.total
        live = bool(getattr(source, "live", False))
        arrival = self.arrival if not live else Arrival("closed")
        bar = _progress(total, f"{self.config.strategy} ({arrival})") if self.config.progress else None
        done: list[_Pending] = []
        counts = {"offloaded": 0, "degraded": 0, "shed": 0}
        last_flush = [time.perf_counter(), self.clock()]  # the last flush, on both clocks

        kept_record = self._kept_record
        scored = self._accept_row is not None  # a direct-path sample's row is scored when a decider is loaded

        def flush() -> None:
            last_flush[0], last_flush[1] = time.perf_counter(), self.clock()
            recs, need, raw = [], [], []
            batch = done[:]
            done.clear()  # taken off before anything can be interrupted: a second flush never repeats it
            for p in batch:
                if type(p) is tuple:  # answered on the direct path: its record is made here
                    rec = kept_record(p)
                    if scored:
                        need.append(rec)
                        raw.append(p[2])
                else:
                    rec = p.record
                    if p.score_input is not None:
                        need.append(rec)
                        raw.append(p.score_input)
                recs.append(rec)
            if need and self._score_decider is not None:
                # [1, C] arrays, or rows as lists (direct I/O)
                arr = np.concatenate(raw) if isinstance(raw[0], np.ndarray) else np.asarray(
                    raw, dtype=self.classifier.output_spec.dtype)
                for rec, score in zip(need, self._score_decider.score(self._score_probs(arr)).tolist()):
                    rec.decider_score = score
            self.records.extend(recs)
            if writer is not None and self.log_error is None:
                try:
                    writer.write_many(recs)
                except OSError as exc:  # a full disk, a dead writer: keep answering, stop logging, say it once
                    self.log_error = str(exc)
                    log.warning("%s; logging stopped, the run goes on (its summary covers every sample)", exc)
            sanity = self.sanity
            sanity.count_many(recs)
            if on_record is not None:
                for rec in recs:
                    on_record(rec)
            sanity.check()
            if bar is not None:
                for rec in recs:
                    counts["offloaded"] += rec.offloaded
                    counts["degraded"] += rec.degraded
                    counts["shed"] += rec.shed
            if bar is not None and batch:
                bar.update(len(batch))
                bar.set_postfix(offload=f"{counts['offloaded'] / len(self.records):.0%}",
                                degraded=counts["degraded"], shed=counts["shed"], refresh=False)

        def deliver(p: _Pending) -> None:
            done.append(p)
            if len(done) >= self.SCORE_BATCH or time.perf_counter() - last_flush[0] > self.FLUSH_S:
                flush()

        def finish(p: _Pending) -> None:
            if p.needs_local:
                self._fallback_local(p)
                p.record.t_total_ms = (self.clock() - p.arrived) * 1e3
            deliver(p)

        def collect(block_until: float | None = None, everything: bool = False,
                    give_up_at: float | None = None) -> None:
            """Take answered offloads off the queue; wait until ``block_until`` (a clock time) or, with
            ``everything``, until none is outstanding (with ``give_up_at``, no later than that)."""
            while self._inflight:
                if everything and give_up_at is None:
                    timeout = None
                else:
                    until = give_up_at if everything else block_until
                    timeout = 0.0 if until is None else max(0.0, until - self.clock())
                    if everything and timeout == 0.0:
                        return
                try:
                    p = self._done.get(timeout=timeout) if timeout != 0.0 else self._done.get_nowait()
                except queue.Empty:
                    return
                if self._inflight.pop(id(p), None) is not None:  # else already settled by the cleanup
                    finish(p)
            if block_until is not None:
                left = block_until - self.clock()
                if left > 0:
                    time.sleep(left)

        def settle() -> None:
            """After Ctrl-C or an error: wait for the offloads in flight (each has its deadline; the
            offloader answers by then), then answer any whose outcome never arrived (an interrupt that
            landed between handing a sample to the offloader and hearing back) locally: no sample is lost,
            and no wait is unbounded."""
            if not self._inflight:
                return
            latest = max(p.arrived for p in self._inflight.values())
            collect(everything=True, give_up_at=latest + self._budget_s + self.SETTLE_GRACE_S)
            for key, p in list(self._inflight.items()):
                del self._inflight[key]
                if not p.answered:
                    self._stamp(p, OffloadOutcome(ok=False, error="the run was interrupted before the server "
                                                  "answered", finished_at=self.clock()))
                finish(p)

        start = self.clock()
        clock = self.clock
        paced = None if live or arrival.kind == "closed" else arrival.due
        pipelined = arrival.pipelined
        direct = self._direct is not None and self.direct_loop and paced is None and not pipelined
        try:
            if direct:
                self._run_direct(source, deliver, collect, done, flush, last_flush)
            for i, sample in enumerate(() if direct else source):
                if paced is None:
                    arrived = clock()
                else:
                    arrived = paced(i, start)
                    if arrived > clock():
                        collect(block_until=arrived)  # deliver answers while waiting for the next arrival
                p = self._start(sample, arrived)
                if p is not None:
                    deliver(p)
                if self._inflight:
                    if pipelined:
                        collect()
                    else:
                        collect(everything=True)  # closed: the next sample arrives after this answer
            collect(everything=True)
        finally:
            try:  # samples on the wire are delivered, not dropped (Ctrl-C, an error): each has its deadline
                settle()
            finally:
                flush()
            if bar is not None:
                bar.close()
        return summarize(self.records, self.config.strategy)

    def close(self) -> None:
        off, self._owned_offloader = self._owned_offloader, None
        if off is not None:
            off.close()


class LocalSanity:
    """Warns ONCE per run, off the per-sample path (records are counted as they are delivered), when the
    local answers cannot be right: on labeled input, accuracy near chance after a few hundred samples, or
    confidences above 1 (the output is logits, not probabilities). A model fed input it was not trained on
    runs without any error, so the warning names the usual causes and their fixes.

    "Near chance" (p = 1/classes): accuracy at most twice chance (for 10 classes 20%; for few classes at
    most a quarter of the way from chance to 100%), or not above chance by three binomial standard
    deviations. A wrongly normalized model typically answers one or a few classes: 10-15% on 10 classes."""

    MIN_LABELED = 300

    def __init__(self, num_classes: int | None) -> None:
        self.num_classes = num_classes
        self.labeled = 0
        self.correct = 0
        self.max_confidence = 0.0
        self.warnings: list[str] = []
        self._chance_warned = self._logits_warned = False

    def count_many(self, recs: Sequence[SampleRecord]) -> None:
        """:meth:`count` for a delivered batch, in one loop."""
        labeled = correct = 0
        top = self.max_confidence
        for rec in recs:
            local = rec.local_class
            if local is None:
                continue
            if rec.label is not None:
                labeled += 1
                correct += local == rec.label
            conf = rec.local_confidence
            if conf is not None and conf > top:
                top = conf
        self.labeled += labeled
        self.correct += correct
        self.max_confidence = top

    def count(self, rec: SampleRecord) -> None:
        if rec.local_class is None:
            return
        if rec.label is not None:
            self.labeled += 1
            self.correct += rec.local_class == rec.label
        if rec.local_confidence is not None and rec.local_confidence > self.max_confidence:
            self.max_confidence = rec.local_confidence

    @property
    def looks_like_logits(self) -> bool:
        return self.max_confidence > 1.0 + 1e-6

    def at_chance(self) -> bool:
        n, c = self.labeled, self.num_classes
        if not c or c < 2 or n < self.MIN_LABELED:
            return False
        p = 1.0 / c
        limit = max(min(2.0 * p, p + (1.0 - p) / 4.0), p + 3.0 * (p * (1.0 - p) / n) ** 0.5)
        return self.correct <= limit * n

    def check(self) -> None:
        if not self._logits_warned and self.looks_like_logits:
            self._logits_warned = True
            self._warn(f"the local model's confidence reached {self.max_confidence:.3g} > 1: its output is logits (or "
                       "another score), not probabilities. Classes are still its argmax, but exit thresholds and "
                       "deciders compare probabilities: export the model with a softmax at the end")
        if not self._chance_warned and self.at_chance():
            self._chance_warned = True
            n, c = self.labeled, self.num_classes
            logits = " (3) the output looks like logits (confidence > 1), not probabilities;" if self.looks_like_logits else ""
            self._warn(f"LOCAL ACCURACY IS NEAR CHANCE: {self.correct} of {n} labeled samples right "
                       f"({self.correct / n:.1%}; chance is {1 / c:.1%} for {c} classes). Likely causes: (1) input "
                       "normalization: the model was trained on other input than raw 0..255 pixels: give "
                       "--input-scale/--input-mean/--input-std/--input-layout (or a <model>.input.json sidecar); "
                       f"(2) class order: the input's labels follow another class order than the model's;{logits} "
                       "see docs/agent.md, 'Running other people's models'")

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        log.warning(msg)


def _num_classes(classifier: Classifier | None, chain) -> int | None:
    """Classes of the local model's answers (the scores' last dimension), None if unknown."""
    spec = classifier.output_spec if classifier is not None else getattr(chain, "scores_spec", None)
    if spec is None and chain is not None:
        backends = getattr(chain, "backends", None)
        segments = getattr(getattr(chain, "chain", None), "segments", None)
        if backends and segments:
            spec = backends[-1].output(segments[-1].scores)
    if spec is None or not spec.shape:
        return None
    return int(spec.shape[-1])


def _id_image_label(source: Iterable[Sample]):
    """(sample id, image, label) per sample; an in-memory source without making a Sample per image."""
    if type(source) is ArraySource:
        n = len(source.images)
        ids = source.ids if source.ids is not None else range(n)
        labels = [None] * n if source.labels is None else source.labels.tolist()
        return zip(ids, source.images, labels)
    return ((s.sample_id, s.image, s.label) for s in source)


def _int8_form(decider, output_spec):
    """The decider's exact integer form for this model's output quantization (compiled once, so the hot
    path is a few integer operations), or None when the output is float or the decider has no int8 form."""
    if not output_spec.quantized or not getattr(decider, "supports_int8", False):
        return None
    scale, zp = output_spec.quant
    if decider.int8 is not None and decider.int8.matches(scale, zp):
        return decider.int8
    if decider.int8 is not None:
        log.warning("decider's int8 form was exported for another output quantization; recompiling it for "
                    "scale %g, zero point %d", scale, zp)
    return decider.compile_int8(scale, zp)


def _progress(total: int | None, what: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"hi-agent {what}", unit="sample", leave=False, dynamic_ncols=True)
