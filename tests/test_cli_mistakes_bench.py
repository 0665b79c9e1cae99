"""hi-bench user mistakes found by the CLI sweep: each is refused before any work (no server started, no
firmware built, no meter opened, no model timed) with exactly one line on stderr naming the flag and the fix,
exit code 2, never a traceback. The toy inputs are made in tmp_path; nothing here trains or loads a dataset
bigger than an empty folder."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from measurements import cli

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "cifar10" / "resnet8_int8.tflite"


def _toys(tmp: Path) -> dict[str, str]:
    (tmp / "text.json").write_text("not json, not a folder\n")
    (tmp / "text.tflite").write_text("a text file named like a model\n")
    (tmp / "emptydir").mkdir(exist_ok=True)
    return {"file": str(tmp / "text.json"), "model": str(tmp / "text.tflite"), "empty": str(tmp / "emptydir"),
            "missing": str(tmp / "nope"), "under_file": str(tmp / "text.json" / "sub"), "out": str(tmp / "o")}


# (argv built from the toy paths, phrase the one error line must contain)
CASES: dict[str, tuple[Callable[[dict], list[str]], str]] = {
    # agent: counts, backend, a model file that cannot be loaded, a missing sample file
    "metrics-energy": (lambda t: ["metrics", "--energy-j", "-5", t["file"]], "--energy-j: -5 must be >= 0"),
    "frontier-folder": (lambda t: ["frontier", t["empty"]], "emptydir is a folder"),
    "agent-n-0": (lambda t: ["agent", "-n", "0", "--rounds", "1"], "--num-samples: 0 must be >= 1"),
    "agent-rounds-negative": (lambda t: ["agent", "-n", "5", "--rounds", "-1"], "--rounds: -1 must be >= 1"),
    "agent-threads-0": (lambda t: ["agent", "--threads", "0"], "--threads: 0 must be >= 1"),
    "agent-backend": (lambda t: ["agent", "--backend", "foo", "-n", "5", "--rounds", "1"], "invalid choice: 'foo'"),
    "agent-bad-model": (lambda t: ["agent", "--model", t["model"], "-n", "5", "--rounds", "1"],
                        "--model: litert could not load"),
    "agent-missing-samples": (lambda t: ["agent", "--samples", t["missing"] + ".npz", "-n", "5", "--rounds", "1"],
                              "--samples"),
    # power: the arguments are checked before the meter is opened (this machine may have no RAPL)
    "power-meter": (lambda t: ["power", "--meter", "nope", "--seconds", "1"], "unknown meter spec 'nope'"),
    "power-seconds": (lambda t: ["power", "--meter", "rapl", "--seconds", "-1"], "--seconds: -1 must be > 0"),
    "power-interval": (lambda t: ["power", "--meter", "rapl", "--seconds", "1", "--interval", "0"],
                       "--interval: 0 must be > 0"),
    "power-log-missing": (lambda t: ["power", "--meter", "rapl", "--seconds", "1", "--log", t["missing"]],
                          "--log"),
    "power-log-folder": (lambda t: ["power", "--meter", "rapl", "--seconds", "1", "--log", t["empty"]],
                         "is a folder"),
    "power-no-command": (lambda t: ["power", "--meter", "rapl", "--", t["missing"]], "not found"),
    # firmware: --data checked before the firmware is built
    "firmware-data": (lambda t: ["firmware", "--samples", "5", "--data", t["missing"], "--no-layers",
                                 "--build-dir", t["out"]], "--data"),
    "firmware-runs": (lambda t: ["firmware", "--runs", "0"], "--runs: 0 must be >= 1"),
    # --out: a folder for paper and report, a file for profile
    "paper-out-file": (lambda t: ["paper", "--out", t["file"]], "--out"),
    "paper-out-uncreatable": (lambda t: ["paper", "--out", t["under_file"]], "--out"),
    "report-out-file": (lambda t: ["report", "--out", t["file"], "--device", "rpi4"], "--out"),
    "profile-out-folder": (lambda t: ["profile", "--model", str(SHIPPED_MODEL), "--runs", "5", "--out", t["empty"],
                                      "--no-progress"], "give a file's path"),
    "profile-power": (lambda t: ["profile", "--model", str(SHIPPED_MODEL), "--power-w", "-3", "--out",
                                 t["out"] + ".yaml"], "--power-w: -3 must be > 0"),
    "profile-runs": (lambda t: ["profile", "--model", str(SHIPPED_MODEL), "--runs", "0", "--out",
                                t["out"] + ".yaml"], "--runs: 0 must be >= 1"),
    "profile-run-log": (lambda t: ["profile", "--model", str(SHIPPED_MODEL), "--runs", "5", "--run-log",
                                   t["missing"] + ".jsonl", "--out", t["out"] + ".yaml", "--no-progress"],
                        "--run-log: run log"),
    # reproduce: every flag checked before the loopback server starts
    "reproduce-thresholds": (lambda t: ["reproduce", "--data", t["empty"], "--ee-thresholds", "1.5,x", "--out",
                                        t["out"]], "exit threshold 1.5 is outside [0, 1]"),
    "reproduce-data-missing": (lambda t: ["reproduce", "--data", t["missing"], "--out", t["out"]],
                               "--data: CIFAR-10 path"),
    "reproduce-data-empty": (lambda t: ["reproduce", "--data", t["empty"], "--out", t["out"]],
                             "--data: no 'test' split"),
    "reproduce-targets": (lambda t: ["reproduce", "--data", t["empty"], "--targets", "90", "--out", t["out"]],
                          "did you mean 90%"),
    "compare-targets": (lambda t: ["compare", "--device", "rpi4", "--targets", "0.8,x"], "--targets"),
    # plan: a --profiles-dir that is not a folder of profiles is named as such
    "plan-profiles-missing": (lambda t: ["plan", "--device", "rpi4", "--profiles-dir", t["missing"]],
                              "--profiles-dir: "),
    "plan-profiles-empty": (lambda t: ["plan", "--device", "rpi4", "--profiles-dir", t["empty"]],
                            "has no profile YAML files"),
    "plan-profiles-file": (lambda t: ["plan", "--device", "rpi4", "--profiles-dir", t["file"]], "is a file"),
}


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse refuses while parsing
        return int(exc.code)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mistake_is_one_line_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    build, phrase = CASES[case]
    argv = build(_toys(tmp_path))
    rc = _run(argv)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert rc == 2, (argv, rc, err)
    assert "Traceback" not in err, err
    assert len(errors) == 1 and errors[0].startswith(f"hi-bench {argv[0]}: error: "), err
    assert phrase in errors[0], errors[0]


def test_paper_out_is_created_and_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A valid --out still works: the folder is made up front and the tables land in it."""
    out = tmp_path / "new" / "paper"
    assert cli.main(["paper", "--out", str(out)]) == 0
    assert (out / "table5.json").is_file() and (out / "table6.json").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("module,argv,phrase", [
    ("bench_agent", ["-n", "0"], "--num-samples: 0 must be >= 1"),
    ("bench_firmware", ["--samples", "3", "--data", "/nonexistent-cifar"], "--data /nonexistent-cifar"),
])
def test_standalone_mains_say_it_in_one_line(module: str, argv: list[str], phrase: str,
                                             capsys: pytest.CaptureFixture) -> None:
    """``python -m measurements.bench_agent`` / ``bench_firmware`` keep their own prog name."""
    import importlib

    main = importlib.import_module(f"measurements.{module}").main
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{module}: error: ") and phrase in lines[0], err
