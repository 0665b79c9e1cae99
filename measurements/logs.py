"""Tolerant reader for the per-sample run logs written by ``hi-agent`` and by the firmware bridges.

The schema is agreed with the agent helper (JSON lines, or CSV with the same columns)::

    sample_id, strategy ("local"|"remote"|"hi"|"ee-hi"), local_class, local_confidence,
    exit_index (int|null), decider_score (float|null), offloaded (bool), server_class (int|null),
    final_class, degraded (bool), label (int|null),
    t_preprocess_ms, t_local_ms, t_decide_ms, t_offload_ms, t_total_ms

A JSONL log may start with a header object ``{"type": "header", "device": ..., "model": ...,
"strategy": ..., ...}``; sample lines carry ``"type": "sample"`` (a line without ``type`` is taken as a
sample, so older or hand-written logs still load).

Why tolerant: logs come from several writers (Python agent, C firmware over a serial bridge, CSV
exports edited by hand). A benchmark must not die on one truncated last line or on a field the writer
added later, but it must also never silently invent data, so unknown fields are kept in ``extra``,
missing numbers stay ``None`` and every skipped line is counted and reported in ``problems``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The schema has one home, hi_runtime.records (the class every writer fills); this reader builds it.
from hi_runtime.records import SAMPLE_FIELDS, TIMING_FIELDS, SampleRecord

__all__ = ["SAMPLE_FIELDS", "TIMING_FIELDS", "LogFormatError", "RunLog", "SampleRecord", "read_run_log",
           "parse_jsonl", "parse_csv", "record_from_mapping", "write_jsonl"]

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_NULL = {"", "null", "none", "nan", "na", "n/a"}


class LogFormatError(ValueError):
    """A log could not be read at all (unknown format, no sample lines)."""


@dataclass
class RunLog:
    """A whole log: the optional header, the sample records and what could not be read."""

    path: Path | None
    header: dict
    records: list[SampleRecord]
    problems: list[str] = field(default_factory=list)

    @property
    def device(self) -> str | None:
        return self.header.get("device")

    @property
    def model(self) -> str | None:
        return self.header.get("model")

    @property
    def strategy(self) -> str | None:
        """The header's strategy, else the single strategy all records agree on, else ``None``."""
        if self.header.get("strategy"):
            return str(self.header["strategy"])
        found = {r.strategy for r in self.records if r.strategy}
        return found.pop() if len(found) == 1 else None

    def __len__(self) -> int:
        return len(self.records)


def model_key(logged: str | None) -> str | None:
    """The profile's name for the model a log names: hi-agent logs the file (``resnet8_int8.tflite``,
    ``models/cifar10/server.onnx``) while profiles key models by name (``resnet8``), so drop the folder,
    the extension and a trailing ``_int8``/``_float`` precision tag."""
    if not logged:
        return logged
    name = logged.replace("\\", "/").rsplit("/", 1)[-1]
    for ext in (".tflite", ".onnx", ".keras", ".json", ".h5"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    for tag in ("_int8", "_float", "_fp32", "_f32"):
        if name.endswith(tag):
            name = name[: -len(tag)]
            break
    return name


# --- field coercion ------------------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _NULL


def _to_int(value: Any) -> int | None:
    if _is_null(value):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    number = float(str(value).strip())
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(number)


def _to_float(value: Any) -> float | None:
    if _is_null(value):
        return None
    number = float(value if not isinstance(value, str) else value.strip())
    return None if math.isnan(number) else number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or text in _NULL:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _sample_id(value: Any) -> int | str | None:
    if _is_null(value):
        return None
    try:
        return _to_int(value)
    except ValueError:
        return str(value)


def record_from_mapping(row: dict) -> SampleRecord:
    """Build a record from one parsed JSON object or CSV row; raises ``ValueError`` on a bad value."""
    strategy = row.get("strategy")
    strategy = None if _is_null(strategy) else str(strategy).strip().lower()
    known = set(SAMPLE_FIELDS) | {"type"}
    return SampleRecord(
        sample_id=_sample_id(row.get("sample_id")),
        strategy=strategy,
        local_class=_to_int(row.get("local_class")),
        local_confidence=_to_float(row.get("local_confidence")),
        exit_index=_to_int(row.get("exit_index")),
        decider_score=_to_float(row.get("decider_score")),
        offloaded=_to_bool(row.get("offloaded")),
        server_class=_to_int(row.get("server_class")),
        final_class=_to_int(row.get("final_class")),
        degraded=_to_bool(row.get("degraded")),
        label=_to_int(row.get("label")),
        t_preprocess_ms=_to_float(row.get("t_preprocess_ms")),
        t_local_ms=_to_float(row.get("t_local_ms")),
        t_decide_ms=_to_float(row.get("t_decide_ms")),
        t_offload_ms=_to_float(row.get("t_offload_ms")),
        t_total_ms=_to_float(row.get("t_total_ms")),
        shed=_to_bool(row.get("shed")),
        t_queue_ms=_to_float(row.get("t_queue_ms")),
        t_server_ms=_to_float(row.get("t_server_ms")),
        extra={k: v for k, v in row.items() if k not in known and k is not None},
    )


# --- readers -------------------------------------------------------------------------------------


def _iter_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, exc


def parse_jsonl(text: str, path: Path | None = None) -> RunLog:
    """Parse JSON-lines text. Header lines are merged (a later header key overrides an earlier one)."""
    header: dict = {}
    records: list[SampleRecord] = []
    problems: list[str] = []
    for number, obj in _iter_jsonl(text.splitlines()):
        if isinstance(obj, json.JSONDecodeError):
            problems.append(f"line {number}: not valid JSON ({obj.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(obj).__name__}")
            continue
        kind = str(obj.get("type", "sample")).lower()
        if kind == "header":
            if records:  # hi-agent writes one run per file, its header first: this is a second run
                raise LogFormatError(f"{path or 'JSONL text'}: a header at line {number} after {len(records)} "
                                     "samples: the file holds more than one run (concatenated logs?); give each "
                                     "run its own file")
            header.update({k: v for k, v in obj.items() if k != "type"})
            continue
        if kind != "sample":
            problems.append(f"line {number}: ignored line of type {kind!r}")
            continue
        try:
            records.append(record_from_mapping(obj))
        except (TypeError, ValueError) as exc:
            problems.append(f"line {number}: {exc}")
    _check_one_strategy(header, records, problems)
    return RunLog(path=path, header=header, records=records, problems=problems)


def _check_one_strategy(header: dict, records: list[SampleRecord], problems: list[str]) -> None:
    """A run has one strategy: samples of several (or of another than the header's) are reported, since
    the metrics would mix them."""
    found = sorted({str(r.strategy) for r in records if r.strategy})
    claimed = header.get("strategy")
    if len(found) > 1 or (claimed and found and found != [str(claimed)]):
        problems.insert(0, f"samples of strategies {', '.join(found)} under a header saying {claimed or 'none'}: "
                           "the metrics mix them (one run per file)")


def _header_value(text: str) -> object:
    """A ``# key: value`` CSV header value as the writer meant it: the JSON it writes for None, booleans,
    lists and mappings (an EE-HI run's ``ee_thresholds: [null]``) decoded; anything else stays text (a
    device called 123 stays "123"; numbers are read where they are used)."""
    if text in ("null", "true", "false") or text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def parse_csv(text: str, path: Path | None = None) -> RunLog:
    """Parse CSV text with a column header row. Comment lines starting with ``#`` are skipped, except
    ``# key: value`` / ``# key=value`` lines before the column row, which become header fields (a CSV
    has no JSON header line, so writers may put device and model there)."""
    header: dict = {}
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not body:
                meta = stripped.lstrip("#").strip()
                for sep in (":", "="):
                    if sep in meta:
                        key, value = meta.split(sep, 1)
                        if key.strip():
                            header[key.strip()] = _header_value(value.strip())
                        break
            continue
        body.append(line)
    records: list[SampleRecord] = []
    problems: list[str] = []
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    if reader.fieldnames is None:
        raise LogFormatError(f"{path or 'CSV text'}: no column header row found")
    missing = [f for f in ("final_class", "offloaded") if f not in reader.fieldnames]
    if missing:
        raise LogFormatError(
            f"{path or 'CSV text'}: columns {missing} are missing; expected the hi-agent log columns "
            f"{', '.join(SAMPLE_FIELDS)}"
        )
    for number, row in enumerate(reader, start=2):
        if None in row:  # more cells than columns
            problems.append(f"row {number}: {len(row[None])} extra cell(s) ignored")
            row = {k: v for k, v in row.items() if k is not None}
        if all(_is_null(v) for v in row.values()):
            continue
        try:
            records.append(record_from_mapping(row))
        except (TypeError, ValueError) as exc:
            problems.append(f"row {number}: {exc}")
    _check_one_strategy(header, records, problems)
    return RunLog(path=path, header=header, records=records, problems=problems)


def read_run_log(path: str | Path) -> RunLog:
    """Read a ``.jsonl``/``.json``/``.ndjson`` or ``.csv`` run log.

    The format is chosen by extension, or by sniffing the first non-blank character when the
    extension is unknown. Raises :class:`LogFormatError` when nothing usable is in the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run log {path} does not exist; pass a log written by hi-agent --log")
    text = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        log = parse_jsonl(text, path)
    elif suffix == ".csv":
        log = parse_csv(text, path)
    else:
        first = next((c for c in text if not c.isspace()), "")
        log = parse_jsonl(text, path) if first == "{" else parse_csv(text, path)
    if not log.records:
        detail = f" ({log.problems[0]})" if log.problems else ""
        raise LogFormatError(f"{path}: no sample records could be read{detail}")
    return log


def write_jsonl(path: str | Path, records: Iterable[SampleRecord], header: dict | None = None) -> Path:
    """Write records in the agreed schema. Used by tests and by tools that convert firmware output;
    hi-agent has its own writer."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        if header is not None:
            out.write(json.dumps({"type": "header", **header}) + "\n")
        for record in records:
            row = {"type": "sample", **{name: getattr(record, name) for name in SAMPLE_FIELDS}}
            row.update(record.extra or {})
            out.write(json.dumps(row) + "\n")
    return path
