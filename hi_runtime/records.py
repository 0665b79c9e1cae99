"""Per-sample run logs (JSONL or CSV) and the run summary.

The log schema is a contract with ``measurements/logs.py`` (hi-bench reads these files), so the column
list lives in one tuple here and every writer uses it:

* JSONL: first line ``{"type": "header", "device", "model", "strategy", "server", "started", ...}``, then one
  ``{"type": "sample", <SAMPLE_FIELDS>}`` object per sample.
* CSV: the header fields as ``# key: value`` comment lines, then a column row with exactly
  ``SAMPLE_FIELDS`` and one row per sample (null written as an empty cell).

Timings are milliseconds. ``t_total_ms`` is the wall time from the start of the sample's preprocessing to
the moment its final answer was known, so with pipelined offloads it includes the time the sample waited
for the offload worker; the other four are the time spent in each stage.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import operator
import os
import pickle
import platform
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import numpy as np

from hi_runtime.equations import (
    DeciderConfusion,
    expected_latency_ms,
    hi_accuracy,
    hi_accuracy_from_confusion,
)

STRATEGIES = ("local", "remote", "hi", "ee-hi")
SAMPLE_FIELDS: tuple[str, ...] = (
    "sample_id", "strategy", "local_class", "local_confidence", "exit_index", "decider_score", "offloaded",
    "server_class", "final_class", "degraded", "label",
    "t_preprocess_ms", "t_local_ms", "t_decide_ms", "t_offload_ms", "t_total_ms",
    "shed", "t_queue_ms", "t_server_ms",
)
TIMING_FIELDS = tuple(name for name in SAMPLE_FIELDS if name.startswith("t_") and name.endswith("_ms"))
LOG_FORMATS = ("jsonl", "csv")
LOG_WRITERS = ("inline", "thread", "process")  # where log lines are formatted: RecordWriter(background=...)


@dataclass(slots=True)
class SampleRecord:
    """One answered sample: the logged schema (field order = column order), for every writer (agent,
    serial bridge, BLE gateway) and every reader (hi-bench reads logs into the same class).

    Flags: ``degraded`` = the sample was meant for the server but the server or network failed, so the
    local answer is final; ``shed`` = admission control answered locally at once because the expected wait
    for the server already exceeded the sample's deadline (the server was not at fault).

    Timings in ms, ``None`` when the writer did not measure them: ``t_queue_ms`` arrival -> start of
    processing (waiting for the device); ``t_preprocess_ms``/``t_local_ms``/``t_decide_ms`` the device's
    stages; ``t_offload_ms`` the decision to offload -> the server's answer (wait for a slot on the wire,
    network and server); ``t_server_ms`` the server's own share of it (as the server reports it);
    ``t_total_ms`` arrival -> final answer, stamped when the answer arrived. ``extra`` keeps fields a
    reader found that the schema does not know (not written by the agent)."""

    sample_id: int | str | None
    strategy: str | None
    local_class: int | None
    local_confidence: float | None
    exit_index: int | None
    decider_score: float | None
    offloaded: bool
    server_class: int | None
    final_class: int | None
    degraded: bool
    label: int | None
    t_preprocess_ms: float | None = None
    t_local_ms: float | None = None
    t_decide_ms: float | None = None
    t_offload_ms: float | None = None
    t_total_ms: float | None = None
    shed: bool = False
    t_queue_ms: float | None = None
    t_server_ms: float | None = None
    extra: dict | None = field(default=None, compare=False, repr=False)

    def as_row(self) -> dict:
        return {name: getattr(self, name) for name in SAMPLE_FIELDS}

    @property
    def correct(self) -> bool | None:
        if self.label is None or self.final_class is None:
            return None if self.label is None else False
        return int(self.final_class) == int(self.label)

    @property
    def answered_by_server(self) -> bool:
        """The server's answer is final: offloaded, not degraded, and a server class arrived (a degraded
        sample falls back to the local answer, as the device does)."""
        return self.offloaded and not self.degraded and self.server_class is not None

    @property
    def on_device_ms(self) -> float | None:
        """Time spent on the device before any offload: preprocessing + local model + decider. ``None``
        only if all three are missing; a missing part counts as zero otherwise (a ``remote`` run has no
        local model, a ``local`` run no decider)."""
        a, b, c = self.t_preprocess_ms, self.t_local_ms, self.t_decide_ms
        if a is None and b is None and c is None:
            return None
        return float((a or 0.0) + (b or 0.0) + (c or 0.0))  # read once per record by every summary

    @property
    def total_ms(self) -> float | None:
        """Logged end-to-end time, or the sum of the parts when the writer left ``t_total_ms`` out."""
        if self.t_total_ms is not None:
            return self.t_total_ms
        parts = [self.t_queue_ms, self.t_preprocess_ms, self.t_local_ms, self.t_decide_ms, self.t_offload_ms]
        if all(p is None for p in parts):
            return None
        return float(sum(p for p in parts if p is not None))


def _json_default(value):
    """numpy scalars (np.int64, np.bool_) to Python ones; called by json only for types it cannot write."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"cannot log a {type(value).__name__}")


def default_header(*, model: str, strategy: str, server: str | None, device: str | None = None,
                   **extra) -> dict:
    """The header every log starts with; ``extra`` carries backend, decider, thresholds, budget..."""
    return {
        "type": "header",
        "device": device or f"{socket.gethostname()} ({platform.machine()}, {platform.system()})",
        "model": model,
        "strategy": strategy,
        "server": server,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


_LINE = '{"type": "sample", ' + ", ".join(f'"{name}": %s' for name in SAMPLE_FIELDS) + "}\n"
_FIELD_GETTER = operator.attrgetter(*SAMPLE_FIELDS)


def _json_value(v, _repr=float.__repr__, _int=int.__repr__, _finite=math.isfinite) -> str:
    """One value as json.dumps writes it (one function for every type: this runs per field per sample)."""
    if v is None:
        return "null"
    t = type(v)
    if t is float:
        return (f"%.{FLOAT_DIGITS}g" % v) if _finite(v) else "null"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return _int(v)
    if t is str:
        return json.dumps(v)
    return json.dumps(v, default=_json_default)


# The fields written as JSON integers (the rest of the nullable ones are floats); floats are written with
# 9 significant digits (FLOAT_DIGITS): int8-derived probabilities (multiples of 1/256) stay exact, a
# millisecond timing keeps far more than the clock's resolution, and %.9g costs a third of the shortest
# round-trip repr json.dumps uses, which was the largest part of a log line's cost on a device's thread.
FLOAT_DIGITS = 9
_INT_FIELDS = frozenset({"sample_id", "local_class", "exit_index", "server_class", "final_class", "label"})
_BOOL_FIELDS = ("offloaded", "degraded", "shed")
_NONES = (None,) * len(SAMPLE_FIELDS)
_LINE_TEMPLATES: dict[tuple, tuple[str, tuple[bool, ...]]] = {}


def _line_template(key: tuple) -> tuple[str, tuple[bool, ...]]:
    """The line template for one shape of record (which fields are null, the flags, the strategy): nulls,
    flags and the strategy are written into it, the other values fill ``%d``/``%.9g`` slots."""
    n = len(SAMPLE_FIELDS)
    nulls, flags, strategy = key[:n], key[n:n + len(_BOOL_FIELDS)], key[-1]
    flag_of = dict(zip(_BOOL_FIELDS, flags))
    parts, slots = [], []
    for name, null in zip(SAMPLE_FIELDS, nulls):
        if null:
            text, slot = "null", False
        elif name in flag_of:
            text, slot = ("true" if flag_of[name] else "false"), False
        elif name == "strategy":
            text, slot = json.dumps(strategy).replace("%", "%%"), False
        else:
            text, slot = ("%d" if name in _INT_FIELDS else f"%.{FLOAT_DIGITS}g"), True
        parts.append(f'"{name}": {text}')
        slots.append(slot)
    return '{"type": "sample", ' + ", ".join(parts) + "}\n", tuple(slots)


def _slow_json_line(record: SampleRecord) -> str:
    values = tuple(_json_value(v) for v in _FIELD_GETTER(record))
    return _LINE % values


def json_line(record: SampleRecord, _is=operator.is_, _compress=itertools.compress) -> str:
    """One JSONL sample line: ``json.loads`` of it gives the row (floats to ``FLOAT_DIGITS`` significant
    digits). Built from a template cached per shape of record, with no Python-level call per field (this
    runs once per sample on the device's thread); string sample ids, numpy scalars and non-finite floats
    take the general formatter."""
    values = _FIELD_GETTER(record)
    if type(values[0]) is not int:  # a string (or numpy) sample id: quoted by the general formatter
        return _slow_json_line(record)
    key = (*map(_is, values, _NONES), record.offloaded, record.degraded, record.shed, record.strategy)
    entry = _LINE_TEMPLATES.get(key)
    if entry is None:
        flags = key[len(SAMPLE_FIELDS):-1]
        if not all(type(v) is bool for v in flags) or not isinstance(record.strategy, (str, type(None))):
            return _slow_json_line(record)
        entry = _LINE_TEMPLATES[key] = _line_template(key)
    try:
        line = entry[0] % tuple(_compress(values, entry[1]))
    except TypeError:  # a value of an unexpected type: the general formatter decides
        return _slow_json_line(record)
    if "nan" in line or "inf" in line:  # no key contains either: a non-finite float, written as null
        return _slow_json_line(record)
    return line


class RecordWriter:
    """Writes the header then one record per sample. Use as a context manager.

    By default a record is serialized and written on the caller's thread (a template-built JSON line, a
    few us). ``background="process"`` moves the formatting to a writer process
    (:mod:`hi_runtime.log_process`): the caller pickles each batch's raw values (about a tenth of the cost
    of formatting them) into a pipe, and the process formats and appends them on another core; if the
    caller dies, the process still writes every row it was handed. ``background=True`` (or "thread")
    moves it to a writer thread instead: the caller hands
    over whole batches (:meth:`write_many`, one queue operation per batch) and the writer formats them one
    record at a time, yielding the interpreter lock after each, so the device's thread never waits more
    than one record's formatting for it; the formatting overlaps the next inferences (the interpreter
    releases the lock) on a second core. Records must not be changed after they are handed over. Lines
    are flushed every ``flush_every`` records (a crashed run keeps what it answered); a write error is
    raised by the next ``write`` or by ``close``.
    """

    _STOP = object()

    def __init__(self, path: str | Path, header: dict, fmt: str | None = None, *, flush_every: int = 64,
                 background: bool | str = False):
        mode = {True: "thread", False: "inline", None: "inline"}.get(background, background)  # type: ignore[call-overload]
        if mode not in LOG_WRITERS:
            raise ValueError(f"log writer {background!r} unknown; use one of {LOG_WRITERS}")
        self.mode = mode
        self.path = Path(path)
        self.fmt = fmt or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if self.fmt not in LOG_FORMATS:
            raise ValueError(f"log format {self.fmt!r} unknown; use one of {LOG_FORMATS}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._flush_every = max(1, flush_every)
        self._count = 0
        self._error: BaseException | None = None
        try:
            self._out: IO[str] = self.path.open("w", encoding="utf-8", newline="")
            self._write_header(header)
            if mode == "process":
                self._out.close()  # the header is written; the writer process appends the rows
        except OSError as exc:  # a full disk, a read-only file system: one line naming the log
            raise self._failure(exc.strerror or exc) from exc
        self._queue: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        if mode == "process":
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            # a session of its own: a terminal's Ctrl-C goes to the agent's process group, and the agent (which
            # handles it) then closes this process's input, so every row it sent is still written
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hi_runtime.log_process", str(self.path), self.fmt, str(self._flush_every)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                start_new_session=True)
        elif mode == "thread":
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._drain, name="hi-records", daemon=True)
            self._thread.start()

    def _failure(self, detail: object) -> OSError:
        """The one error every writer mode raises: names the log (the agent and the CLI report it as is)."""
        return OSError(f"writing the log {self.path} failed: {detail}")

    def _write_header(self, header: dict) -> None:
        header = {"type": "header", **{k: v for k, v in header.items() if k != "type"}}
        if self.fmt == "jsonl":
            self._out.write(json.dumps(header, default=str) + "\n")
            self._csv = None
        else:
            for key, value in header.items():
                if key != "type":
                    text = value if isinstance(value, str) else json.dumps(value, default=str)
                    self._out.write(f"# {key}: {text}\n")
            self._csv = csv.DictWriter(self._out, fieldnames=list(SAMPLE_FIELDS), lineterminator="\n")
            self._csv.writeheader()

    def write(self, record: SampleRecord) -> None:
        self.write_many((record,))

    def write_many(self, records: Sequence[SampleRecord]) -> None:
        if self._error is not None:
            raise self._failure(self._error) from self._error
        if self._proc is not None:
            data = pickle.dumps(list(map(_FIELD_GETTER, records)), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self._proc.stdin.write(len(data).to_bytes(4, "little") + data)  # type: ignore[union-attr]
                self._proc.stdin.flush()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError) as exc:
                try:  # the pipe broke because the process failed: give it a moment to exit and say why
                    self._proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    pass
                self._error = OSError(self._process_failure() or str(exc))
                raise self._failure(self._error) from exc
        elif self._queue is not None:
            self._queue.put(list(records))
        else:
            try:
                if self._csv is None:  # JSONL on the caller's thread: the batch's lines in one write
                    before = self._count
                    self._out.write("".join(map(json_line, records)))
                    self._count += len(records)
                    if self._count // self._flush_every != before // self._flush_every:
                        self._out.flush()
                else:
                    for record in records:
                        self._write_now(record)
            except OSError as exc:  # a full disk: one line naming the log, like the other writers
                self._error = exc
                raise self._failure(exc.strerror or exc) from exc

    def _write_now(self, record: SampleRecord) -> None:
        if self._csv is None:
            self._out.write(json_line(record))
        else:
            self._csv.writerow({k: ("" if v is None else v) for k, v in record.as_row().items()})
        self._count += 1
        if self._count % self._flush_every == 0:
            self._out.flush()

    def _drain(self) -> None:
        assert self._queue is not None
        yield_lock = time.sleep
        while True:
            batch = self._queue.get()
            if batch is self._STOP:
                return
            for record in batch:
                if self._error is None:
                    try:
                        self._write_now(record)
                    except Exception as exc:  # noqa: BLE001 - reported to the caller by write()/close()
                        self._error = exc
                yield_lock(0)  # let the device's thread take the interpreter lock between records

    def _process_failure(self) -> str | None:
        """The writer process's one error line, once it has exited with a failure."""
        proc = self._proc
        if proc is None or proc.poll() in (None, 0):
            return None
        text = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""  # type: ignore[union-attr]
        return f"the log writer process failed: {text.splitlines()[-1] if text else f'exit {proc.returncode}'}"

    def close(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            proc.wait()
            if proc.returncode != 0 and self._error is None:
                self._proc = proc
                self._error = OSError(self._process_failure() or f"exit {proc.returncode}")
                self._proc = None
            if proc.stderr is not None:
                proc.stderr.close()
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(self._STOP)
            self._thread.join()
            self._thread = None
        if not self._out.closed:
            try:
                self._out.close()
            except OSError as exc:  # the last buffered lines hit a full disk
                self._error = self._error or exc
        if self._error is not None:
            raise self._failure(self._error) from self._error

    def __enter__(self) -> RecordWriter:  # noqa: PYI034 - typing.Self needs Python 3.11; we support 3.9
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------

@dataclass
class Summary:
    """What a run achieved: the one summary of a list of records (hi-agent prints it, hi-bench builds its
    metrics on it). Fractions are in [0, 1]; accuracies count labelled samples only.

    ``accuracy`` is Eq. 1 (the server's class where it answered, the local class otherwise; a sample with
    neither counts as wrong); ``accuracy_eq2`` is Eq. 2 from the decider's confusion counts, reported only
    when every offloaded labelled sample was answered by the server (Eq. 2 models a working server).
    ``latency_*`` are over the logged end-to-end times; ``latency_eq3_ms`` is Eq. 3 from the mean
    on-device time and the mean offload time of the offloads actually sent: a shed sample (the decider
    offloaded it, admission control kept it local) pays no offload, so ``sent_ratio`` (offloaded and not
    shed) weighs the offload time, while ``offload_ratio`` stays the decider's share."""

    strategy: str
    samples: int
    labelled: int
    accuracy: float | None
    offload_ratio: float
    degraded: int
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    local_accuracy: float | None = None
    exits: dict = field(default_factory=dict)
    shed: int = 0
    latency_p95_ms: float | None = None
    accuracy_eq2: float | None = None
    server_accuracy_offloaded: float | None = None
    confusion: DeciderConfusion | None = None
    on_device_ms: float | None = None
    offload_ms: float | None = None
    latency_eq3_ms: float | None = None
    queue_ms: float | None = None
    sent_ratio: float | None = None  # offloaded and not shed: the offloads that paid the link (Eq. 3/4)

    def as_dict(self) -> dict:
        return asdict(self)


def confusion_counts(records: Iterable[SampleRecord]) -> DeciderConfusion | None:
    """Decider confusion over labelled records that have a local answer (``None`` if there are none);
    positive truth = the local answer is right, positive decision = accept locally."""
    tp = fp = fn = tn = 0
    for r in records:
        if r.label is None or r.local_class is None:
            continue
        right = int(r.local_class) == int(r.label)
        if r.offloaded:
            fn += right
            tn += not right
        else:
            tp += right
            fp += not right
    return DeciderConfusion(tp, fp, fn, tn) if tp + fp + fn + tn else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarize(records: Sequence[SampleRecord], strategy: str | None = None) -> Summary:
    n = len(records)
    strategy = strategy or (records[0].strategy if records else None) or "?"
    # one pass over the records (the summary of a long run is computed on the device, once per run)
    labelled = 0
    local_right = server_right = with_local = with_local_right = served = served_right = 0
    n_offloaded = n_sent = degraded = shed = tp = fp = fn = tn = 0
    eq2_shape = True  # every offloaded labelled sample was answered by the server (Eq. 2 applies)
    totals_l: list[float] = []
    on_device: list[float] = []
    offload_times: list[float] = []
    queue: list[float] = []
    exits: dict = {}
    for r in records:
        by_server = r.offloaded and not r.degraded and r.server_class is not None
        if r.label is not None:
            labelled += 1
            label = int(r.label)
            if r.local_class is not None:
                with_local += 1
                local_ok = int(r.local_class) == label
                with_local_right += local_ok
                if not by_server:
                    local_right += local_ok
                if r.offloaded:  # the decider's confusion (confusion_counts, in the same pass)
                    fn += local_ok
                    tn += not local_ok
                else:
                    tp += local_ok
                    fp += not local_ok
            if by_server:
                served += 1
                server_ok = int(r.server_class) == label
                served_right += server_ok
                server_right += server_ok
            elif r.offloaded:
                eq2_shape = False
        if r.offloaded:
            n_offloaded += 1
            if not r.shed:
                n_sent += 1
                if r.t_offload_ms is not None:
                    offload_times.append(r.t_offload_ms)
        degraded += bool(r.degraded)
        shed += bool(r.shed)
        total = r.total_ms
        if total is not None:
            totals_l.append(total)
        dev = r.on_device_ms
        if dev is not None:
            on_device.append(dev)
        if r.t_queue_ms is not None:
            queue.append(r.t_queue_ms)
        if r.exit_index is not None:
            exits[int(r.exit_index)] = exits.get(int(r.exit_index), 0) + 1
    accuracy = accuracy_eq2 = local_acc = server_acc = None
    confusion = None
    if labelled:
        accuracy = hi_accuracy(local_right, server_right, labelled)
        if with_local and with_local == labelled:
            local_acc = with_local_right / with_local
        if served:
            server_acc = served_right / served
        confusion = DeciderConfusion(tp, fp, fn, tn) if tp + fp + fn + tn else None
        if confusion is not None and confusion.n == labelled and eq2_shape:
            accuracy_eq2 = hi_accuracy_from_confusion(confusion, server_acc if server_acc is not None else 0.0)
    ratio = n_offloaded / n if n else 0.0
    sent_ratio = n_sent / n if n else 0.0
    totals = np.array(totals_l, dtype=np.float64)
    local_ms = _mean(on_device) if n and len(on_device) == n else None
    offload_ms = _mean(offload_times) if n_sent and len(offload_times) == n_sent else None
    eq3 = None
    if local_ms is not None and (offload_ms is not None or not n_sent):
        eq3 = expected_latency_ms(local_ms, offload_ms or 0.0, sent_ratio)

    def pct(q: float) -> float | None:
        return float(np.percentile(totals, q)) if totals.size else None

    return Summary(
        strategy=strategy,
        samples=n,
        labelled=labelled,
        accuracy=accuracy,
        offload_ratio=ratio,
        degraded=int(degraded),
        latency_mean_ms=float(totals.mean()) if totals.size else None,
        latency_p50_ms=pct(50),
        latency_p99_ms=pct(99),
        local_accuracy=local_acc,
        exits=dict(sorted(exits.items())),
        shed=int(shed),
        latency_p95_ms=pct(95),
        accuracy_eq2=accuracy_eq2,
        server_accuracy_offloaded=server_acc,
        confusion=confusion,
        on_device_ms=local_ms,
        offload_ms=offload_ms,
        latency_eq3_ms=eq3,
        queue_ms=_mean(queue) if queue else None,
        sent_ratio=sent_ratio,
    )


def is_run_log(path: str | Path) -> bool:
    """Whether ``path`` starts like a log :class:`RecordWriter` writes (a JSONL header line, or a CSV's
    ``# key: value`` lines): only such a file may be replaced by a new run's log."""
    with Path(path).open("rb") as f:
        head = f.read(64)
    return head.startswith(b'{"type": "header"') or head.startswith(b"# ")


def is_summary_json(path: str | Path) -> bool:
    """Whether ``path`` holds a summary :func:`write_summary_json` wrote."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "header" in data and "strategy" in data


def write_summary_json(path: str | Path, summary: Summary, header: dict) -> Path:
    """``--summary-json``: the run's summary with the log header that says how it was made, one file that
    scripts (CI, the role checks) read instead of parsing the printed table."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**summary.as_dict(), "header": header}, indent=2) + "\n")
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


SUMMARY_COLUMNS = ("strategy", "samples", "accuracy", "offloaded", "degraded", "shed", "mean ms", "p50 ms",
                   "p99 ms")


def summary_rows(summaries: Iterable[Summary]) -> list[list[str]]:
    return [[s.strategy, str(s.samples), _pct(s.accuracy), _pct(s.offload_ratio), str(s.degraded), str(s.shed),
             _ms(s.latency_mean_ms), _ms(s.latency_p50_ms), _ms(s.latency_p99_ms)] for s in summaries]


def summary_markdown(summaries: Iterable[Summary]) -> str:
    rows = summary_rows(summaries)
    head = ("| " + " | ".join(SUMMARY_COLUMNS) + " |\n|" + "|".join([" --- "] + [" ---: "] * (len(SUMMARY_COLUMNS) - 1))
            + "|\n")
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows)


def summary_text(summaries: Iterable[Summary], title: str = "hi-agent summary") -> str:
    """The summary as a table: rich when installed (a Pi may not have it), plain text otherwise."""
    summaries = list(summaries)
    rows = summary_rows(summaries)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(SUMMARY_COLUMNS)]
        lines = [title, "  ".join(c.ljust(w) for c, w in zip(SUMMARY_COLUMNS, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)
    table = Table(title=title)
    for i, col in enumerate(SUMMARY_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    buf = io.StringIO()
    Console(file=buf, width=110, force_terminal=False, color_system=None).print(table)
    return buf.getvalue().rstrip()
