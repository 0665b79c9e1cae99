"""Per-sample log writer and summary: the fast JSON line parses back to the row (floats to 9 digits), the background writer keeps
order and reports failures, and the summary numbers are the ones recomputed from the records."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hi_runtime.records import (
    FLOAT_DIGITS,
    SAMPLE_FIELDS,
    RecordWriter,
    SampleRecord,
    default_header,
    json_line,
    summarize,
    summary_markdown,
    summary_text,
)

opt_int = st.none() | st.integers(-1, 10**6)
opt_float = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64)
records = st.builds(
    SampleRecord,
    sample_id=st.integers(0, 10**9) | st.text(max_size=20),
    strategy=st.sampled_from(["local", "remote", "hi", "ee-hi"]),
    local_class=opt_int, local_confidence=opt_float, exit_index=opt_int, decider_score=opt_float,
    offloaded=st.booleans(), server_class=opt_int, final_class=opt_int, degraded=st.booleans(), label=opt_int,
    t_preprocess_ms=st.floats(0, 1e6), t_local_ms=st.floats(0, 1e6), t_decide_ms=st.floats(0, 1e6),
    t_offload_ms=st.floats(0, 1e6), t_total_ms=st.floats(0, 1e6))


def _same(got, want) -> bool:
    """Equal; a float to FLOAT_DIGITS significant digits (what the log keeps; a whole number may be written
    without its '.0', as JSON has one number type and the log readers take floats)."""
    if type(want) is float:
        return type(got) in (int, float) and math.isclose(got, want, rel_tol=10.0 ** (1 - FLOAT_DIGITS),
                                                          abs_tol=1e-300)
    return got == want and type(got) is type(want)


@settings(max_examples=300, deadline=None)
@given(records)
def test_json_line_is_the_row_as_json(rec):
    line = json_line(rec)
    assert line.endswith("\n") and "\n" not in line[:-1]
    got = json.loads(line)
    assert list(got) == ["type", *SAMPLE_FIELDS] and got["type"] == "sample"
    for name, want in rec.as_row().items():
        assert _same(got[name], want), (name, got[name], want)


@given(st.integers(-128, 127), st.integers(0, 1000))
def test_int8_probabilities_and_timings_round_trip_exactly_enough(q, t_us):
    """Dequantized int8 softmax outputs (multiples of 1/256) come back bit for bit; a timing in ms keeps
    its microseconds."""
    conf = (q + 128) / 256
    rec = SampleRecord(1, "hi", 3, conf, None, None, False, None, 3, False, 3, t_local_ms=t_us / 1e3)
    row = json.loads(json_line(rec))
    assert row["local_confidence"] == conf and abs(row["t_local_ms"] - t_us / 1e3) < 1e-9
    assert json_line(rec) == json_line(rec)  # the cached template gives the same line again


def test_non_finite_floats_are_null():
    rec = SampleRecord(2, "hi", 3, float("nan"), None, float("inf"), False, None, 3, False, None)
    row = json.loads(json_line(rec))
    assert row["local_confidence"] is None and row["decider_score"] is None and row["local_class"] == 3


def test_numpy_scalars_are_written_as_plain_json():
    rec = SampleRecord(np.int64(3), "hi", np.int64(2), np.float32(0.5), None, np.float64(0.25), np.bool_(True),
                       np.int32(4), np.int64(4), np.bool_(False), np.int64(4))
    row = json.loads(json_line(rec))
    assert row["sample_id"] == 3 and row["offloaded"] is True and row["local_confidence"] == 0.5


@pytest.mark.parametrize("background", [True, False, "process"])
def test_writer_keeps_order_and_header(tmp_path, background):
    path = tmp_path / "log.jsonl"
    recs = [SampleRecord(i, "local", i % 10, 0.5, None, None, False, None, i % 10, False, i % 10) for i in range(500)]
    with RecordWriter(path, default_header(model="m", strategy="local", server=None), background=background) as w:
        for r in recs[:100]:
            w.write(r)
        w.write_many(recs[100:])
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and len(lines) == 501
    assert [json.loads(x)["sample_id"] for x in lines[1:]] == list(range(500))
    assert lines[1:] == [json_line(r).rstrip("\n") for r in recs]  # the same lines on every writer


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_process_writer_writes_what_the_inline_writer_writes(tmp_path, fmt):
    """The writer process formats the same bytes as the caller's thread would, in both formats, including
    string ids, nulls and flags."""
    recs = [SampleRecord(f"img_{i}.jpg" if i % 3 == 0 else i, "hi", i % 10, (i % 256) / 256, None,
                         None if i % 5 == 0 else i / 7, i % 4 == 0, 3 if i % 4 == 0 else None, i % 10, i % 8 == 0,
                         None if i % 6 == 0 else i % 10, t_local_ms=i / 3, t_total_ms=float(i), shed=i % 9 == 0)
            for i in range(300)]
    header = default_header(model="m", strategy="hi", server="127.0.0.1:1")
    texts = {}
    for mode in ("inline", "process"):
        path = tmp_path / f"{mode}.{fmt}"
        with RecordWriter(path, header, fmt, background=mode) as w:
            for k in range(0, 300, 64):
                w.write_many(recs[k:k + 64])
        texts[mode] = path.read_text()
    assert texts["inline"] == texts["process"] and texts["inline"].count("\n") >= 300


def test_process_writer_failure_is_one_line_from_close(tmp_path):
    w = RecordWriter(tmp_path / "log.jsonl", default_header(model="m", strategy="local", server=None),
                     background="process")
    w.write(SampleRecord(0, "local", 1, 1j, None, None, False, None, 1, False, None))  # no JSON for a complex
    with pytest.raises(OSError, match="log writer process failed: TypeError"):
        w.close()


def test_unknown_writer_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="log writer 'disk' unknown"):
        RecordWriter(tmp_path / "x.jsonl", {}, background="disk")


def test_background_write_failure_is_reported(tmp_path):
    path = tmp_path / "log.jsonl"
    w = RecordWriter(path, default_header(model="m", strategy="local", server=None), background=True)
    w._out.close()  # the file goes away under the writer (disk full, unplugged card ...)
    w.write(SampleRecord(0, "local", 1, 0.5, None, None, False, None, 1, False, None))
    with pytest.raises(OSError, match="writing the log"):
        w.close()


def test_summary_is_recomputed_from_records():
    recs = []
    for i in range(100):
        off = i % 4 == 0
        deg = i % 20 == 0
        recs.append(SampleRecord(i, "hi", i % 3, 0.5, None, 0.4, off, None if deg or not off else 1, 1 if off and not deg else i % 3,
                                 deg, 1, t_total_ms=float(i)))
    s = summarize(recs)
    assert s.samples == 100 and s.labelled == 100
    assert s.offload_ratio == 0.25 and s.degraded == 5
    expected_acc = np.mean([r.final_class == 1 for r in recs])
    assert s.accuracy == pytest.approx(expected_acc)
    assert s.local_accuracy == pytest.approx(np.mean([i % 3 == 1 for i in range(100)]))
    assert s.latency_mean_ms == pytest.approx(49.5) and s.latency_p50_ms == pytest.approx(49.5)
    assert s.latency_p99_ms == pytest.approx(np.percentile(np.arange(100.0), 99))
    md = summary_markdown([s])
    assert "| hi | 100 |" in md and "25.00%" in md
    assert "hi" in summary_text([s]) and "degraded" in summary_text([s])


def test_unlabelled_runs_have_no_accuracy():
    recs = [SampleRecord(i, "local", 1, 0.5, None, None, False, None, 1, False, None) for i in range(5)]
    s = summarize(recs)
    assert s.accuracy is None and s.labelled == 0
    assert "-" in summary_markdown([s])


def _reference_summary(recs):
    """The summary's counts by their definitions, one pass each (what summarize computes in one pass)."""
    lab = [r for r in recs if r.label is not None]
    by_server = [r.offloaded and not r.degraded and r.server_class is not None for r in recs]
    served = [r for r, s in zip(recs, by_server) if s and r.label is not None]
    local_right = sum(1 for r, s in zip(recs, by_server) if r.label is not None and not s
                      and r.local_class is not None and r.local_class == r.label)
    server_right = sum(1 for r in served if r.server_class == r.label)
    totals = [r.total_ms for r in recs if r.total_ms is not None]
    return {
        "samples": len(recs), "labelled": len(lab),
        "accuracy": (local_right + server_right) / len(lab) if lab else None,
        "offload_ratio": sum(r.offloaded for r in recs) / len(recs) if recs else 0.0,
        "degraded": sum(r.degraded for r in recs), "shed": sum(r.shed for r in recs),
        "latency_mean_ms": float(np.mean(totals)) if totals else None,
        "server_accuracy_offloaded": server_right / len(served) if served else None,
        "local_accuracy": (sum(r.local_class == r.label for r in lab) / len(lab)
                           if lab and all(r.local_class is not None for r in lab) else None),
    }


summary_records = st.lists(st.builds(
    SampleRecord, sample_id=st.integers(0, 10**6), strategy=st.just("hi"),
    local_class=st.none() | st.integers(0, 3), local_confidence=st.none() | st.floats(0, 1),
    exit_index=st.none() | st.integers(0, 2), decider_score=st.none(), offloaded=st.booleans(),
    server_class=st.none() | st.integers(0, 3), final_class=st.none() | st.integers(0, 3), degraded=st.booleans(),
    label=st.none() | st.integers(0, 3), t_preprocess_ms=st.none() | st.floats(0, 10),
    t_local_ms=st.none() | st.floats(0, 10), t_decide_ms=st.none() | st.floats(0, 10),
    t_offload_ms=st.none() | st.floats(0, 10), t_total_ms=st.none() | st.floats(0, 100), shed=st.booleans(),
    t_queue_ms=st.none() | st.floats(0, 10)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(summary_records)
def test_one_pass_summary_matches_the_definitions(recs):
    got = summarize(recs, "hi").as_dict()
    for key, want in _reference_summary(recs).items():
        if isinstance(want, float):
            assert got[key] == pytest.approx(want, rel=1e-12, abs=1e-12), key
        else:
            assert got[key] == want, key
