"""Every hi-bench user mistake: exit code 2, one line on stderr naming what was wrong and the fix, no
traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from measurements import cli
from measurements.logs import SampleRecord, write_jsonl


def _hi_log_without_model(folder: Path) -> Path:
    rec = SampleRecord(0, "hi", 1, 0.9, None, 0.9, False, None, 1, False, 1, 0.1, 0.5, 0.1, 0.0, 0.7)
    return write_jsonl(folder / "hi.jsonl", [rec], {"strategy": "hi"})


def cases(tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "notes.txt").write_text("not a run log\n")
    nolog = str(_hi_log_without_model(tmp))
    cfg = tmp / "config.json"
    cfg.write_text('{"format": "hi-ee-chain/2"}')
    return [
        (["plan", "--device", "rpi4", "--qos", "accuracy=1.5"], "did you mean 1.5%"),
        (["plan", "--device", "rpi4", "--qos", "accuracy=90"], "write 0.9 or 90%"),
        (["plan", "--device", "rpi4", "--qos", "speed=3"], "unknown QoS key"),
        (["plan", "--device", "rpi4", "--qos", "latency=-2"], "positive"),
        (["plan", "--device", "toaster"], "known profiles"),
        (["plan"], "--device is required"),
        (["plan", "--device", "rpi4", "--dataset", "mnist"], "no model for dataset"),
        (["plan", "--device", "rpi4", "--model", "huge"], "has no model 'huge'"),
        (["plan", "--device", "rpi4", "--link", "lora"], "has no link 'lora'"),
        (["plan", "--device", "rpi4", "--objective", "fast"], "invalid choice: 'fast'"),
        (["plan", "--device", "rpi4", "--runs", str(tmp / "missing.jsonl")], "does not exist"),
        (["plan", "--device", "rpi4", "--runs", nolog], "--run-model"),
        (["metrics", str(tmp / "missing.jsonl")], "does not exist"),
        (["metrics", str(tmp / "notes.txt")], "notes.txt"),
        (["compare", "--device", "rpi4", "--targets", "85"], "did you mean 85%"),
        (["report", "--out", str(tmp / "r"), "--format", "pdf"], "invalid choice: 'pdf'"),
        (["report", "--out", str(tmp / "r"), "--runs", str(tmp / "missing.jsonl")], "does not exist"),
        (["profile", "--model", str(tmp / "none.tflite"), "--out", str(tmp / "p.yaml"), "--rapl", "off"],
         "does not exist"),
        (["power", "--meter", "rapl"], "give --seconds"),
        (["paper", "--bogus"], "unrecognized arguments"),
        (["reproduce", "--data", str(tmp), "--models", str(tmp), "--out", str(tmp / "o")], "missing model files"),
        (["reproduce", "--data", str(tmp), "--server", "localhost", "--out", str(tmp / "o")], "--server"),
        (["frontier", str(tmp / "none.json")], "does not exist"),
        (["frontier", str(tmp / "notes.txt")], "is not JSON"),
        (["frontier", str(cfg)], "is not a hi-train thresholds result"),
        (["frontier", f"={cfg}"], "write LABEL=PATH"),
        (["frobnicate"], "invalid choice"),
    ]


def test_every_mistake_is_one_line_and_exit_2(tmp_path, capsys):
    failures = []
    for argv, message in cases(tmp_path):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if rc != 2 or "Traceback" in err or len(lines) != 1 or message not in lines[0] \
                or not lines[0].startswith("hi-bench") or "[]" in lines[0]:
            failures.append(f"{argv}: exit {rc}, stderr {err!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("argv", [["plan", "--device", "rpi4", "--qos", "accuracy=0.9"], ["paper"]])
def test_the_readme_commands_succeed(argv, capsys):
    assert cli.main(argv) == 0
    assert "Traceback" not in capsys.readouterr().err
