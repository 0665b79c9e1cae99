"""hi-firmware answers each user mistake the CLI sweep found with one line naming the flag and the fix, exit
code 2, no traceback, and before anything is written (in-process: main([...]) with toy inputs in tmp_path)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hi_firmware.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "cifar10"
MODEL = SHIPPED / "resnet8_int8.tflite"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(64)


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """main's exit code (argparse's own errors exit through SystemExit) and its stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], err
    return lines[0]


@pytest.fixture()
def toys(tmp_path: Path) -> dict[str, str]:
    """The wrong kinds of input: a text file, a JPEG, a JSON list, an empty folder, an x86-64 ELF."""
    (tmp_path / "text.json").write_text("hello world\n")
    (tmp_path / "fake.jpg").write_bytes(JPEG)
    (tmp_path / "fake.h").write_bytes(JPEG)
    (tmp_path / "list.json").write_text(json.dumps([1, 2, 3]))
    (tmp_path / "emptydir").mkdir()
    elf = bytearray(64)
    elf[:7] = b"\x7fELF\x02\x01\x01"  # 64-bit, little-endian
    elf[18:20] = (62).to_bytes(2, "little")  # EM_X86_64
    (tmp_path / "x86.elf").write_bytes(bytes(elf))
    names = {"text": "text.json", "jpeg": "fake.jpg", "header": "fake.h", "jlist": "list.json",
             "emptydir": "emptydir", "x86": "x86.elf", "out": "out"}
    return {k: str(tmp_path / v) for k, v in names.items()}


CASES = [
    # try 276: --out names a file
    (["compile", str(MODEL), "--out", "{text}"], "--out {text} is a file"),
    (["compile", str(MODEL), "--out", "{text}/sub"], "which is a file"),
    # try 279: MODEL is a folder
    (["compile", "{emptydir}", "--out", "{out}"], "MODEL {emptydir} is a folder"),
    (["compile", str(MODEL), "--out", "{out}", "--name", "a b"], "--name 'a b' is not a C identifier"),
    (["compile", str(MODEL), "--out", "{out}/9x"], "give --name"),
    (["compile", str(MODEL), "--out", "{out}", "--scratch-budget", "-1"], "--scratch-budget"),
    # try 283: decider and chain files that are not what they claim
    (["gen-app", "--decider", "{jpeg}", "--out", "{out}"], "--decider: decider file {jpeg} is not text"),
    (["gen-app", "--decider", "{jlist}", "--out", "{out}"], "must be an object"),
    (["gen-app", "--decider", "{emptydir}", "--out", "{out}"], "--decider {emptydir} is a folder"),
    (["gen-app", "--decider", "{header}", "--out", "{out}"], "is not a text file"),
    (["gen-app", "--decider", "{text}", "--no-decider", "--out", "{out}"], "not allowed with"),
    (["gen-app", "--chain", "{jpeg}", "--out", "{out}"], "--chain: chain file {jpeg} is not text"),
    (["gen-app", "--chain", "{jlist}", "--out", "{out}"], "not a chain object"),
    (["gen-app", "--chain", "{emptydir}", "--out", "{out}"], "--chain {emptydir} is a folder"),
    (["gen-app", "--model", "{emptydir}", "--out", "{out}"], "--model {emptydir} is a folder"),
    # tries 285 and 291: output folders that are files
    (["gen-app", "--model", str(MODEL), "--out", "{text}"], "--out {text} is a file"),
    (["build", "--board", "qemu-m4", "--model", str(MODEL), "--build-dir", "{text}"],
     "--build-dir {text} is a file"),
    # tries 297, 298 and 300: run-qemu's image and port
    (["run-qemu", "--elf", "{text}"], "is not an ELF image"),
    (["run-qemu", "--elf", "{emptydir}"], "--elf {emptydir} is a folder"),
    (["run-qemu", "--elf", "{x86}"], "ELF for another machine"),
    (["run-qemu", "--elf", "{jpeg}", "--port", "-1"], "not a TCP port"),
    (["run-qemu", "--elf", "{out}/missing.elf", "--port", "70000"], "not a TCP port"),
    (["run-qemu", "--port", "abc"], "not a port number"),
    (["run-qemu", "--pty", "--port", "5000"], "drop one"),
    # profile: checked before the QEMU run
    (["profile", "{emptydir}"], "MODEL {emptydir} is a folder"),
    (["profile", str(MODEL), "--json", "{emptydir}"], "--json {emptydir} is a folder"),
    (["profile", str(MODEL), "--json", "{out}/nope/p.json"], "is not a folder"),
    (["profile", str(MODEL), "--samples", "0"], "--samples"),
]


@pytest.mark.parametrize("argv,says", CASES, ids=[f"{a[0]}-{says[:24]}" for a, says in CASES])
def test_a_mistake_is_one_line_exit_2(argv: list[str], says: str, toys: dict[str, str], capsys) -> None:
    code, err = _run([a.format(**toys) for a in argv], capsys)
    assert code == 2, err
    assert says.format(**toys) in _one_error(err)
    assert not Path(toys["out"]).exists()  # refused before anything was written


# --- a decider fitted for another model (try 284) ------------------------------------------------------

needs_shipped = pytest.mark.skipif(not (SHIPPED / "decider_resnet56.json").exists(), reason="shipped models missing")


@needs_shipped
@pytest.mark.parametrize("argv", [
    ["gen-app", "--decider", str(SHIPPED / "decider_resnet56.json")],
    ["gen-app", "--model", str(MODEL), "--decider", str(SHIPPED / "decider_resnet56.h")],
    ["gen-app", "--chain", str(SHIPPED / "ee_resnet8.json"), "--decider", str(SHIPPED / "decider_resnet8.json")],
    ["build", "--board", "host", "--decider", str(SHIPPED / "decider_resnet56.json")],
], ids=["json", "header", "chain", "build"])
def test_a_decider_for_another_model_is_refused(argv: list[str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = argv + (["--out", str(out)] if argv[0] == "gen-app" else ["--build-dir", str(out)])
    code, err = _run(argv, capsys)
    assert code == 2, err
    line = _one_error(err)
    assert "does not fit" in line and "--force-decider" in line
    assert not out.exists()


@needs_shipped
def test_force_decider_uses_it_with_a_warning(tmp_path: Path, capsys) -> None:
    code, err = _run(["gen-app", "--decider", str(SHIPPED / "decider_resnet56.json"), "--force-decider",
                      "--out", str(tmp_path / "app")], capsys)
    assert code == 0, err
    assert err.startswith("warning: --force-decider: it was fitted for resnet56_int8.tflite")
    assert (tmp_path / "app" / "hi_app_decider.h").is_file()


@needs_shipped
@pytest.mark.parametrize("argv", [
    ["gen-app"],  # the shipped model with its shipped decider
    ["gen-app", "--decider", str(SHIPPED / "decider_resnet8.h")],
    ["gen-app", "--chain", str(SHIPPED / "ee_resnet8.json"), "--decider", str(SHIPPED / "decider_ee_resnet8.json")],
], ids=["default", "header", "chain"])
def test_a_decider_for_the_model_is_used_silently(argv: list[str], tmp_path: Path, capsys) -> None:
    code, err = _run(argv + ["--out", str(tmp_path / "app")], capsys)
    assert code == 0 and err == "", err
    assert (tmp_path / "app" / "hi_app_config.c").is_file()


def test_port_zero_still_means_a_free_port() -> None:
    from hi_firmware.boards import tcp_port

    assert tcp_port("0") == 0 and tcp_port("65535") == 65535


@needs_shipped
def test_a_decider_bound_to_no_model_is_used_with_a_warning(tmp_path: Path, capsys) -> None:
    from hi_runtime.decider import Decider

    Decider.max_softmax(0.5).save(tmp_path / "unbound.json")
    code, err = _run(["gen-app", "--model", str(MODEL), "--decider", str(tmp_path / "unbound.json"),
                      "--out", str(tmp_path / "app")], capsys)
    assert code == 0, err
    assert err.startswith("warning: unbound.json records no model it was fitted for") and err.count("\n") == 1


# --- gen-app inputs an outside review found slipping through (2026-12-07) ---------------------------------

@needs_shipped
def test_a_chain_json_whose_quantization_is_not_its_files_is_refused(tmp_path: Path, capsys) -> None:
    """The device would compute its exit bounds from the JSON and dequantize with the file's zero point."""
    chain = json.loads((SHIPPED / "ee_resnet8.json").read_text())
    for seg in chain["segments"]:
        seg["file"] = str(SHIPPED / seg["file"])
    chain["single_model"] = None
    chain["segments"][0]["scores_quant"]["zero_point"] = 0  # stale: the file says -128
    (tmp_path / "stale.json").write_text(json.dumps(chain))
    shutil.copy(SHIPPED / "decider_ee_resnet8.json", tmp_path)
    code, err = _run(["gen-app", "--chain", str(tmp_path / "stale.json"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "scores quantization in the JSON" in _one_error(err)
    assert not (tmp_path / "out").exists()


@needs_shipped
def test_a_chain_whose_model_file_is_absent_still_names_a_mismatched_decider(tmp_path: Path, capsys) -> None:
    chain = json.loads((SHIPPED / "ee_resnet8.json").read_text())
    for seg in chain["segments"]:
        seg["file"] = str(SHIPPED / seg["file"])
    (tmp_path / "moved.json").write_text(json.dumps(chain))  # its single model is not beside it here
    shutil.copy(SHIPPED / "decider_ee_resnet8.json", tmp_path)
    code, err = _run(["gen-app", "--chain", str(tmp_path / "moved.json"), "--decider",
                      str(SHIPPED / "decider_resnet8.json"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "does not fit" in _one_error(err)


@pytest.mark.parametrize("flag,value", [("--model-id", 'cifar"10'), ("--model-id", "cifar\\x41"),
                                        ("--model-version", "v1\\n")])
def test_names_written_into_c_take_no_quotes_or_backslashes(flag: str, value: str, tmp_path: Path, capsys) -> None:
    code, err = _run(["gen-app", "--model", str(MODEL), flag, value, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "written into C" in _one_error(err)


@needs_shipped
def test_an_exported_header_named_like_the_core_decider_still_builds(tmp_path: Path) -> None:
    """`hi-train decider --out DIR/decider` exports prefix HI_DECIDER, whose hi_decider_accept would clash
    with the core's hi_decider.h: gen-app renames it to the app's prefix."""
    from hi_firmware.decider_header import write_decider_header

    from hi_runtime.decider import Decider

    header = tmp_path / "decider.h"
    header.write_text(Decider.load(SHIPPED / "decider_resnet8.json").to_c_header(prefix="HI_DECIDER"))
    info = write_decider_header(header, (1 / 256, -128), tmp_path)
    text = (tmp_path / "hi_app_decider.h").read_text()
    assert info["prefix"] == "HI_APP_DECIDER" and "hi_app_decider_accept" in text
    assert "HI_DECIDER_" not in text and "hi_decider_accept" not in text
