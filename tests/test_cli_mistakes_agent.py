"""hi-agent answers each user mistake of the command-line sweep with one ``hi-agent SUB: error: ...`` line
naming the flag and the fix, exit code 2, never a traceback; a machine without Bluetooth is one line, exit 1.

In process and fast: toy inputs are made in tmp_path; the shipped demo sample and resnet8 model are read
where a mistake is only found after they load (the input and the server flags)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hi_runtime.agent.cli import main

pytestmark = pytest.mark.timeout(120)

NOISE = ("hi-agent: local model ",)  # the backend announcement, printed before the input and server flags


@pytest.fixture()
def toys(tmp_path: Path) -> Path:
    """The sweep's scratch inputs, made small: files of the wrong kind, a folder, an empty key."""
    (tmp_path / "adir.json").mkdir()
    (tmp_path / "adir.tflite").mkdir()
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "text.npz").write_text("not numpy\n")
    (tmp_path / "pic.npz").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200))  # a JPEG's start
    (tmp_path / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200))
    np.save(tmp_path / "one.npy", np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "single.npz").write_bytes((tmp_path / "one.npy").read_bytes())  # an .npy named .npz
    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}], dtype=object))  # needs pickle to read
    np.savez(tmp_path / "noimg.npz", pixels=np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "empty.key").write_bytes(b"  \n")
    (tmp_path / "bad.yaml").write_text("{{{ not: yaml: [\n")
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    np.savez(tmp_path / "four.npz", images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.zeros(4, np.int64))
    np.savez(tmp_path / "gray.npz", images=np.zeros((4, 32, 32, 1), np.uint8))
    np.savez(tmp_path / "none.npz", images=np.zeros((0, 32, 32, 3), np.uint8))
    (tmp_path / "model.tflite").write_bytes(b"TFL3 precious weights")
    return tmp_path


def call(argv: list[str]) -> int:
    """``main`` as the entry point runs it: argparse's refusals exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def error_line(capsys) -> str:
    """The one line on stderr besides known log noise; it must be an ``error:`` line, with no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(NOISE)]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert "error" in lines[0]
    return lines[0]


REMOTE = ["run", "--strategy", "remote", "--server", "127.0.0.1:9", "--input", "demo", "--limit", "3",
          "--no-progress"]
LOCAL = ["run", "--strategy", "local", "--input", "demo", "--limit", "3", "--no-progress"]
SERIAL = ["serial", "--port", "/dev/does-not-exist-hi", "--input", "npz:x.npz"]

# (sweep try, argv with {t} = the toys folder, a phrase the error line must contain)
MISTAKES = [
    ("060", LOCAL + ["--log", "{t}/adir.json"], "--log {t}/adir.json is a folder"),
    ("060b", LOCAL + ["--summary-json", "{t}/adir.json"], "--summary-json {t}/adir.json is a folder"),
    ("064", REMOTE + ["--tls", "--tls-ca", "{t}/nope.pem"], "--tls-ca {t}/nope.pem does not exist"),
    ("064b", REMOTE + ["--tls", "--tls-ca", "{t}/emptydir"], "--tls-ca {t}/emptydir is a folder"),
    ("064c", REMOTE + ["--tls", "--tls-ca", "{t}/ca.pem"], "holds no PEM certificate"),
    ("068", ["demo", "--samples", "{t}/text.npz", "--limit", "3", "--out", "{t}/demo1"],
     "--samples: {t}/text.npz is not an .npz archive"),
    ("072", ["demo", "--make-samples", "{t}/nope", "--samples", "{t}/ms.npz"], "--make-samples: CIFAR-10 path"),
    ("074", ["demo", "--samples", "{t}/emptydir", "--limit", "3", "--out", "{t}/demo6"],
     "--samples {t}/emptydir is a folder"),
    ("075", ["demo", "--max-inflight", "0", "--limit", "3", "--out", "{t}/demo7"], "--max-inflight: 0 must be >= 1"),
    ("085", ["gateway", "--ble", "--server", "127.0.0.1:9", "--scan-seconds", "-1"], "--scan-seconds: -1 must be > 0"),
    ("086", ["gateway", "--ble", "--server", "127.0.0.1:9", "--max-devices", "0"], "--max-devices: 0 must be >= 1"),
    ("047", LOCAL[:-3] + ["--limit", "-5"], "--limit: -5 must be >= 1"),
    ("048", LOCAL + ["--offset", "-1"], "--offset: -1 must be >= 0"),
    ("073", ["demo", "--limit", "-3", "--out", "{t}/demo8"], "--limit: -3 must be >= 1"),
    ("063", REMOTE + ["--key-file", "{t}/empty.key"], "--key-file {t}/empty.key is empty"),
    ("056", ["run", "--qos", "accuracy=0.9", "--qos-candidates", "{t}/bad.yaml", "--input", "demo"],
     "--qos-candidates {t}/bad.yaml is not valid YAML: line 1, column 14"),
    ("057", ["run", "--qos", "accuracy=0.9", "--qos-candidates", "{t}/fake.jpg", "--input", "demo"],
     "--qos-candidates {t}/fake.jpg is not a text file"),
    ("069", ["demo", "--samples", "{t}/nope.npz", "--limit", "3", "--out", "{t}/demo2"],
     "--samples {t}/nope.npz does not exist; make it with `hi-agent demo --make-samples"),
    ("071", ["demo", "--server-model", "nope.onnx", "--limit", "3", "--out", "{t}/demo4"],
     "--server-model nope.onnx is not in"),
    ("035", LOCAL + ["--model", "{t}/adir.tflite"], "--model {t}/adir.tflite is a folder"),
    ("039", LOCAL[:4] + ["npz:{t}/text.npz"], "--input: {t}/text.npz is not an .npz archive"),
    ("042", LOCAL[:4] + ["npz:{t}/pic.npz"], "--input: {t}/pic.npz is not an .npz archive"),
    ("042b", LOCAL[:4] + ["npz:{t}/objects.npz"], "{t}/objects.npz is not an .npz archive"),
    ("042c", LOCAL[:4] + ["npz:{t}/single.npz"], "is a single .npy array"),
    ("042d", LOCAL[:4] + ["npz:{t}/emptydir"], "{t}/emptydir is a folder, not an .npz file"),
    ("049", LOCAL[:4] + ["cifar10:{t}/emptydir:tset"], "unknown split 'tset'"),
    ("076", SERIAL + ["--baud", "-9600"], "--baud: -9600 must be >= 1"),
    ("077", SERIAL + ["--timeout", "-1"], "--timeout: -1 must be > 0"),
    ("077b", REMOTE + ["--connections", "0"], "--connections: 0 must be >= 1"),
    # outputs that would destroy an input, each other, or a file that is not a log (review, 2026-12-08)
    ("r5a", LOCAL[:4] + ["npz:{t}/four.npz", "--log", "{t}/four.npz"], "--log {t}/four.npz is the file --input reads"),
    ("r5b", LOCAL + ["--log", "{t}/same.jsonl", "--summary-json", "{t}/same.jsonl"],
     "--summary-json and --log name the same file"),
    ("r5c", LOCAL + ["--log", "{t}/model.tflite"], "--log {t}/model.tflite exists and is not a hi-agent log"),
    ("r5d", LOCAL + ["--summary-json", "{t}/bad.yaml"], "exists and is not a hi-agent summary json"),
    ("r6", LOCAL[:4] + ["npz:{t}/gray.npz"], "images are 32x32x1 (HxWxC), the model takes 32x32x3"),
    ("r7", REMOTE + ["--latency-budget-ms", "nan"], "'nan' is not a finite number"),
    ("r10a", LOCAL + ["--offset", "100000"], "--offset 100000 is past the end of demo_samples.npz (500 samples)"),
    ("r10b", LOCAL[:4] + ["npz:{t}/none.npz"], "none.npz holds no samples"),
    ("r9", SERIAL, "--input: npz file x.npz does not exist"),  # found before the port is opened
    ("r10c", ["run", "--strategy", "remote", "--server", "host:80:90", "--input", "demo", "--limit", "3"],
     "has more than one ':'"),
]


@pytest.mark.parametrize("argv, phrase", [(a, p) for _, a, p in MISTAKES], ids=[i for i, _, _ in MISTAKES])
def test_a_mistake_is_one_error_line_with_exit_2(toys, capsys, argv, phrase):
    argv = [a.replace("{t}", str(toys)) for a in argv]
    assert call(argv) == 2
    line = error_line(capsys)
    assert line.startswith(f"hi-agent {argv[0]}: error: ")
    assert phrase.replace("{t}", str(toys)) in line


def test_an_unknown_split_lists_the_valid_ones(toys, capsys):
    assert call(LOCAL[:4] + [f"cifar10:{toys / 'emptydir'}:tset"]) == 2
    assert "use one of train, val, test, trainval" in error_line(capsys)


def test_a_readable_npz_still_loads(toys):
    from hi_runtime.agent.inputs import open_input

    np.savez(toys / "ok.npz", images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.arange(4))
    assert [s.label for s in open_input(f"npz:{toys / 'ok.npz'}", limit=2, offset=1)] == [1, 2]


def test_gateway_without_bluez_is_one_line_exit_1(monkeypatch, capsys):
    """No BLE adapter / no BlueZ D-Bus is the machine's failure, not the command line's: exit 1, one line."""
    pytest.importorskip("bleak")
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the BlueZ check is Linux-only")
    import bleak.backends.bluezdbus.manager as bluez

    async def no_dbus():
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(bluez, "get_global_bluez_manager", no_dbus)
    assert call(["gateway", "--ble", "--server", "127.0.0.1:9", "--address", "AA:BB:CC:DD:EE:FF"]) == 1
    assert "no BLE adapter is available" in error_line(capsys)


def test_gateway_log_folder_is_named(tmp_path, capsys):
    pytest.importorskip("bleak")
    assert call(["gateway", "--ble", "--server", "127.0.0.1:9", "--log", str(tmp_path)]) == 2
    assert f"--log {tmp_path} is a folder" in error_line(capsys)


def test_threshold_is_a_fraction(capsys):
    from hi_runtime.agent.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--strategy", "local", "--threshold", "90", "--input", "demo", "--limit", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threshold" in err[0] and "if you meant 90%, write 0.9" in err[0], err
