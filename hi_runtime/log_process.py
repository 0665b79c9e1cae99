"""The log-writer process of ``RecordWriter(background="process")``: formats and writes the per-sample log
on another core, so the device's thread only hands over raw values.

Why a process: formatting a JSON line costs a few microseconds of interpreted code per sample, a
noticeable share of a small model's invoke on the device's thread; a writer *thread* contends with the
device's thread for the interpreter lock (measured slower on two cores), while pickling the raw values of
a batch costs about a tenth of formatting them.

Wire format on standard input: frames of a 4-byte little-endian length and a pickled list of row tuples
(the values of ``records.SAMPLE_FIELDS`` in order). The parent writes the header before starting this
process; rows are appended. End of input (the parent closed the pipe, or died) flushes and exits 0, so a
crashed run keeps every row it handed over. A failure is one line on standard error and exit 1.

Run as ``python -m hi_runtime.log_process PATH FORMAT FLUSH_EVERY``; not a user command.
"""
from __future__ import annotations

import csv
import pickle
import signal
import sys

from hi_runtime.records import SampleRecord, json_line


def _read_exact(stream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def main(argv: list[str] | None = None) -> int:
    path, fmt, flush_every = (argv if argv is not None else sys.argv[1:])[:3]
    every = max(1, int(flush_every))
    # a terminal's Ctrl-C reaches the whole process group: it is the agent's to handle; this process ends
    # when its input does, after writing every row the agent sent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stream = sys.stdin.buffer
    try:
        with open(path, "a", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
            count = 0
            while True:
                head = _read_exact(stream, 4)
                if len(head) < 4:
                    return 0  # end of input: the parent closed the pipe (or is gone)
                body = _read_exact(stream, int.from_bytes(head, "little"))
                rows = pickle.loads(body)
                if writer is None:
                    out.write("".join(json_line(SampleRecord(*row)) for row in rows))
                else:
                    writer.writerows([("" if v is None else v) for v in row] for row in rows)
                before, count = count, count + len(rows)
                if count // every != before // every:
                    out.flush()
    except Exception as exc:  # noqa: BLE001 - one line for the parent to report
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main())
