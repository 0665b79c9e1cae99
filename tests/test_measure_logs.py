"""The tolerant per-sample log reader (JSONL and CSV, the schema agreed with hi-agent)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from measurements.logs import (
    SAMPLE_FIELDS,
    LogFormatError,
    SampleRecord,
    parse_csv,
    parse_jsonl,
    read_run_log,
    write_jsonl,
)

ROW = {
    "type": "sample", "sample_id": 7, "strategy": "hi", "local_class": 3, "local_confidence": 0.61,
    "exit_index": None, "decider_score": 0.42, "offloaded": True, "server_class": 5, "final_class": 5,
    "degraded": False, "label": 5, "t_preprocess_ms": 0.1, "t_local_ms": 1.5, "t_decide_ms": 0.01,
    "t_offload_ms": 9.0, "t_total_ms": 10.61, "shed": False, "t_queue_ms": 0.0, "t_server_ms": 6.5,
}


def test_jsonl_with_header_and_extra_fields(tmp_path: Path):
    path = tmp_path / "run.jsonl"
    header = {"type": "header", "device": "rpi4", "model": "resnet8", "strategy": "hi", "ee_threshold": None}
    lines = [json.dumps(header), json.dumps({**ROW, "rssi_dbm": -61}), "", json.dumps({**ROW, "sample_id": 8})]
    path.write_text("\n".join(lines) + "\n")
    log = read_run_log(path)
    assert (log.device, log.model, log.strategy) == ("rpi4", "resnet8", "hi")
    assert len(log) == 2 and not log.problems
    first = log.records[0]
    assert first.offloaded is True and first.degraded is False
    assert first.server_class == 5 and first.exit_index is None
    assert first.extra == {"rssi_dbm": -61}
    assert first.on_device_ms == pytest.approx(1.61)


def test_truncated_and_foreign_lines_are_counted_not_fatal(tmp_path: Path):
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + '{"type": "sample", "sample_id": 2, "offl' + "\n"
                    + json.dumps({"type": "stats", "x": 1}) + "\n" + "[1, 2]\n"
                    + json.dumps({**ROW, "label": "cat"}) + "\n")
    log = read_run_log(path)
    assert len(log) == 1
    assert len(log.problems) == 4
    assert "not valid JSON" in log.problems[0]
    assert "integer" in log.problems[3] or "could not convert" in log.problems[3]


def test_empty_log_is_an_error(tmp_path: Path):
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"type": "header", "device": "x"}) + "\n")
    with pytest.raises(LogFormatError, match="no sample records"):
        read_run_log(path)
    with pytest.raises(FileNotFoundError, match="hi-agent"):
        read_run_log(tmp_path / "missing.jsonl")


def test_csv_same_columns_and_comment_header(tmp_path: Path):
    path = tmp_path / "run.csv"
    with path.open("w", newline="") as out:
        out.write("# device: esp32\n# model=resnet8\n")
        writer = csv.DictWriter(out, fieldnames=list(SAMPLE_FIELDS))
        writer.writeheader()
        row = {k: ROW[k] for k in SAMPLE_FIELDS}
        row.update(offloaded="true", degraded="0", exit_index="", server_class="5.0")
        writer.writerow(row)
        writer.writerow({k: "" for k in SAMPLE_FIELDS})  # blank row
    log = read_run_log(path)
    assert log.header == {"device": "esp32", "model": "resnet8"}
    assert len(log) == 1
    r = log.records[0]
    assert r.offloaded is True and r.degraded is False and r.exit_index is None and r.server_class == 5


def test_csv_without_the_key_columns_is_rejected():
    with pytest.raises(LogFormatError, match="missing"):
        parse_csv("a,b\n1,2\n")


def test_total_falls_back_to_the_sum_of_phases():
    record = parse_jsonl(json.dumps({**ROW, "t_total_ms": None})).records[0]
    assert record.total_ms == pytest.approx(0.1 + 1.5 + 0.01 + 9.0)


def test_unknown_extension_is_sniffed(tmp_path: Path):
    path = tmp_path / "run.log"
    path.write_text(json.dumps(ROW) + "\n")
    assert len(read_run_log(path)) == 1


optional_int = st.one_of(st.none(), st.integers(-5, 1000))
optional_float = st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False))
records = st.builds(
    SampleRecord,
    sample_id=st.one_of(st.integers(0, 10**6), st.text(alphabet="abc-_", min_size=1, max_size=8)),
    strategy=st.sampled_from(["local", "remote", "hi", "ee-hi"]),
    local_class=optional_int, local_confidence=optional_float, exit_index=optional_int,
    decider_score=optional_float, offloaded=st.booleans(), server_class=optional_int,
    final_class=optional_int, degraded=st.booleans(), label=optional_int,
    t_preprocess_ms=optional_float, t_local_ms=optional_float, t_decide_ms=optional_float,
    t_offload_ms=optional_float, t_total_ms=optional_float,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(records, min_size=1, max_size=8))
def test_jsonl_round_trip(tmp_path_factory, recs):
    path = tmp_path_factory.mktemp("rt") / "run.jsonl"
    write_jsonl(path, recs, header={"device": "d", "model": "m"})
    log = read_run_log(path)
    assert log.records == recs
    mixed = len({r.strategy for r in recs if r.strategy}) > 1  # reported: the metrics would mix them
    assert len(log.problems) == int(mixed) and all("strategies" in p for p in log.problems)


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=300))
def test_reader_never_crashes_on_garbage(text):
    log = parse_jsonl(text)
    assert isinstance(log.records, list)
    try:
        parse_csv(text)
    except LogFormatError:
        pass


def test_concatenated_runs_are_refused_and_mixed_strategies_reported(tmp_path: Path):
    a, b = tmp_path / "local.jsonl", tmp_path / "hi.jsonl"
    fields = {k: v for k, v in ROW.items() if k != "type"}
    rows = [SampleRecord(**{**fields, "sample_id": i}) for i in range(3)]
    write_jsonl(a, rows, header={"device": "d", "model": "m", "strategy": ROW["strategy"]})
    write_jsonl(b, rows, header={"device": "d", "model": "m", "strategy": "local"})
    both = tmp_path / "both.jsonl"
    both.write_text(a.read_text() + b.read_text())
    with pytest.raises(LogFormatError, match="more than one run"):
        read_run_log(both)
    assert read_run_log(b).problems and "strategies" in read_run_log(b).problems[0]  # rows say otherwise


def test_csv_header_values_the_writer_json_encodes_are_decoded():
    log = parse_csv("# device: 123\n# ee_threshold: null\n# ee_thresholds: [null, 0.8]\n# ee_flag: true\n"
                    + ",".join(SAMPLE_FIELDS) + "\n")
    assert log.header == {"device": "123", "ee_threshold": None, "ee_thresholds": [None, 0.8], "ee_flag": True}
