"""Every command-line tool answers a user mistake with one line that names what was wrong and the fix,
exit code 2, and never a traceback (run as a user runs them: the installed entry points, in a
subprocess, from the repository root)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

# (command line, a phrase the error must contain)
MISTAKES = [
    ("hi-agent run --strategy hi --input demo", "--server"),
    ("hi-agent run --strategy local --model /nope.tflite --input demo", "does not exist"),
    ("hi-agent run --strategy local --input nowhere:x", "cannot read input"),
    ("hi-agent run --strategy hi --server localhost --input demo", "HOST:PORT"),
    ("hi-agent run --strategy local --input demo --arrival rate:-3", "positive"),
    ("hi-agent run --strategy local --input demo --arrival sometimes", "closed, rate"),
    ("hi-agent run --qos accuracy=1.5 --qos-candidates nope.yaml --input demo", "did you mean 1.5%"),
    ("hi-agent run --qos accuracy=0.9 --input demo", "--qos-candidates"),
    ("hi-agent run --strategy remote --server 127.0.0.1:8555 --key-file /nope.key --input demo", "--key-file"),
    # hi-agent serial checks its arguments before it opens the port: a bad --server is named as such
    ("hi-agent serial --port /dev/does-not-exist-hi --input npz:x.npz --server localhost", "--server"),
    ("hi-agent serial --port /dev/does-not-exist-hi --input npz:x.npz --decider /nope.json", "--decider"),
    ("hi-agent serial --port /dev/does-not-exist-hi --input demo --timeout 0.5", "/dev/does-not-exist-hi"),
    ("hi-agent demo --models-dir /nope", "--models-dir"),
    ("hi-agent demo --rate -1", "--rate"),
    ("hi-agent", "no command given; choose one of run"),  # no subcommand: the help, and one line, exit 2
    ("hi-bench", "no command given; choose one of metrics"),
    ("hi-server --config /nope.yaml", "does not exist"),
    ("hi-server --model cifar10", "ID=PATH"),
    ("hi-server --port abc --model a=b.onnx", "invalid int value"),
    ("hi-train model --arch nope --data x --out runs/cli-mistakes/y", "invalid choice"),
    ("hi-train decider --model /nope.tflite --data ../shared/datasets/cifar10-jpeg --out runs/cli-mistakes/y",
     "does not exist"),
    ("hi-train member --onnx /nope.onnx --member a --data x --out runs/cli-mistakes/y", "does not exist"),
    ("hi-train thresholds --chain models/cifar10/ee_resnet8.json --server models/cifar10/server_cpu.onnx "
     "--data ../shared/datasets/cifar10-jpeg --qos 1.5 --out runs/cli-mistakes/t", "did you mean 1.5%"),
    ("hi-train placement --arch resnet8 --target 20", "if you meant 20%, write 0.2"),
    ("hi-train placement --arch resnet8 --full-ms inf", "'inf' is not a finite number"),
    ("hi-train model --arch resnet8 --data x --out runs/cli-mistakes/m --lr nan", "'nan' is not a finite number"),
    ("hi-train early-exit --arch resnet8 --data x --out runs/cli-mistakes/ee --epochs 2 --loss-weights nan,1",
     "every weight must be a finite number"),
    ("hi-train decider --coefficients 1,2 --intercept nan --out runs/cli-mistakes/d", "'nan' is not a finite number"),
    ("hi-bench fleet --duration inf --server 127.0.0.1:1", "'inf' is not a finite number"),
    ("hi-train placement --arch resnet8 --hi README.md", "is not JSON"),
    ("hi-train placement --arch resnet8 --hi models/cifar10/ee_resnet8.json", "is not a hi-train thresholds result"),
    ("hi-train placement --arch resnet8 --hi models/cifar10/ee_resnet8_thresholds.json --full-ms 2", "--full-ms conflicts with --hi"),
    ("hi-train early-exit --arch nope --data x --out runs/cli-mistakes/ee", "invalid choice"),
    ("hi-train early-exit --arch lr --data x --out runs/cli-mistakes/ee", "--exits"),
    ("hi-train early-exit --arch resnet8 --loss-weights 0.5,0.5,1 --data x --out runs/cli-mistakes/ee",
     "--loss-weights gives 3"),
    ("hi-train early-exit --loss-weights 0.5,one --data x --out runs/cli-mistakes/ee", "--loss-weights"),
    ("hi-train early-exit --branch-convs 2,x --data x --out runs/cli-mistakes/ee", "--branch-convs"),
    ("hi-train early-exit --arch resnet56 --branch-convs 2 --data x --out runs/cli-mistakes/ee", "one count per branch"),
    ("hi-train early-exit --resume --data x --out runs/cli-mistakes/ee", "--resume"),
    ("hi-train early-exit --init /nope.keras --data x --out runs/cli-mistakes/ee", "--init /nope.keras"),
    ("hi-train early-exit --epochs 3 --init models/cifar10/resnet8.keras --data x --out runs/cli-mistakes/ee",
     "give one of them"),
    ("hi-train early-exit --keras /nope.keras --data x --out runs/cli-mistakes/ee", "--keras"),
    ("hi-bench plan --device nope --qos accuracy=0.9", "no profile"),
    ("hi-bench plan --device rpi4 --qos accuracy=1.5", "did you mean"),
    ("hi-firmware compile /nope.tflite --out runs/cli-mistakes/fw", "does not exist"),
    ("hi-firmware --firmware-dir /nope compile models/cifar10/resnet8_int8.tflite --out runs/cli-mistakes/fw",
     "sources.mk"),
    ("hi-firmware build --board nope", "invalid choice"),
]


@pytest.mark.parametrize("command, phrase", MISTAKES, ids=[c for c, _ in MISTAKES])
def test_a_user_mistake_is_one_line_and_exit_2(repo_root: Path, command: str, phrase: str | None):
    tool, *args = command.split()
    env = {**os.environ, "HI_AGENT_KEY": ""}
    out = subprocess.run([str(BIN / tool), *args], cwd=repo_root, env=env, capture_output=True, text=True,
                         timeout=180)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "Traceback" not in text, text
    if phrase is not None:
        errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1, out.stderr  # one line says what was wrong ...
        assert phrase in errors[0], errors[0]  # ... and names it


def test_the_shared_cli_pattern_turns_numbers_and_paths_into_one_line(tmp_path, capsys):
    """hi_runtime.cli_support, which every tool's main() goes through: a count below its minimum, a
    percentage where a fraction belongs, a value checked late, and a path that cannot be used as given are
    each one line and exit 2; a bug keeps its traceback."""
    import argparse

    from hi_runtime.cli_support import Parser, at_least, fraction, run

    def build():
        p = Parser(prog="tool")
        sub = p.add_subparsers(dest="command")
        c = sub.add_parser("go")
        c.add_argument("--n", type=at_least(1), default=1)
        c.add_argument("--period", type=at_least(0, float, exclusive=True), default=1.0)
        c.add_argument("--share", type=fraction, default=0.5)
        c.add_argument("--read", default=None)
        c.add_argument("--late", default=None)

        def go(args):
            if args.late:
                raise argparse.ArgumentTypeError(f"--late {args.late} is not a valid value")
            if args.read:
                Path(args.read).read_text()
            return 0 if args.n != 7 else 1 // 0  # n = 7: a bug

        c.set_defaults(func=go)
        return p

    def errors(argv):
        with pytest.raises(SystemExit) as exc:
            run(build(), argv, tool="tool")
        return exc.value.code

    assert run(build(), ["go", "--n", "3", "--share", "0.9"], tool="tool") == 0
    for bad, phrase in ((["--n", "0"], "0 must be >= 1"), (["--n", "x"], "'x' is not an integer"),
                        (["--period", "0"], "0 must be > 0"), (["--share", "90"], "if you meant 90%, write 0.9")):
        assert errors(["go", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and phrase in err[0], err
    cases = ((["--late", "q"], "--late q is not a valid value"),
             (["--read", str(tmp_path)], f"{tmp_path}: it is a folder, a file is needed"),
             (["--read", str(tmp_path / "nope.txt")], "nope.txt: it does not exist"))
    for argv, phrase in cases:
        assert run(build(), ["go", *argv], tool="tool") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"tool go: error: {err[0].split('error: ', 1)[1]}"] and phrase in err[0], err
    with pytest.raises(ZeroDivisionError):
        run(build(), ["go", "--n", "7"], tool="tool")


@pytest.mark.parametrize("module, argv, extra", [
    ("serial", ["hi_runtime.agent.cli", "serial", "--port", "socket://127.0.0.1:9", "--input", "demo", "--limit", "1"],
     "serial"),
    ("matplotlib", ["measurements.cli", "paper", "--out", "{tmp}/paper"], "measure"),
])
def test_a_role_without_an_optional_package_is_told_which_extra_to_install(module, argv, extra, tmp_path, capsys,
                                                                          monkeypatch):
    """A wheel installed with one role's extra lacks the others' packages: a command that needs one is one
    line naming the package and the extra (exit 2), not a ModuleNotFoundError traceback."""
    import importlib

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    main = importlib.import_module(argv[0]).main
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pip install 'hi-runtime[{extra}]'" in err[0] and "Traceback" not in err[0], err
