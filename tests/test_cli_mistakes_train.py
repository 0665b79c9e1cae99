"""`hi-train` answers a user mistake with one line naming the flag and the fix, exit code 2, never a
traceback: numbers refused while parsing (counts, fractions, durations, comma lists), files of the wrong
kind (a JPEG named .keras, a text file named .tflite/.onnx, a plain model where an early-exit one belongs),
folders where a prefix or a file belongs. In process and fast: no training, toy inputs made here (and the
shipped models, read only)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "cifar10"
LOCAL = SHIPPED / "resnet8_int8.tflite"
CHAIN = SHIPPED / "ee_resnet8.json"
PLAIN_KERAS = SHIPPED / "resnet8.keras"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(200)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """Inputs of the wrong kind and a 60-image CIFAR-10-style image-folder tree (30 train, 30 test)."""
    from PIL import Image

    from hi_runtime.datasets import CIFAR10_CLASSES

    root = tmp_path_factory.mktemp("mistakes")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in CIFAR10_CLASSES:
            d = root / "data" / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    for name in ("pic.keras", "pic.tflite", "pic.onnx", "fake.jpg"):
        (root / name).write_bytes(JPEG)
    for name in ("text.tflite", "text.onnx", "text.json", "text.npz"):
        (root / name).write_text("just some text\n")
    with zipfile.ZipFile(root / "notkeras.keras", "w") as z:  # a zip, but no Keras archive
        z.writestr("notes.txt", "hello")
    with zipfile.ZipFile(root / "badconfig.keras", "w") as z:  # a Keras archive whose config is not JSON
        z.writestr("config.json", "not json")
        z.writestr("metadata.json", "{}")
    (root / "emptydir").mkdir()
    return root


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    monkeypatch.setenv("HI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")


def one_error_line(argv: list[str], capsys) -> str:
    """Run hi-train in process; it must exit 2 with exactly one stderr line that says error (argparse's
    own mistakes exit through SystemExit(2), the rest return 2)."""
    from training.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert rc == 2, err
    assert len(errors) == 1, err
    assert errors[0].startswith(f"hi-train {argv[0]}: error: "), errors[0]
    return errors[0]


def _sub(text: str, toy: Path) -> list[str]:
    return [a.replace("TOY", str(toy)) for a in text.split()]


DATA = "--data TOY/data --val-size 10"

# refused while the command line is parsed: (argv, phrase of the one error line)
PARSE_MISTAKES = [
    (f"model {DATA} --out TOY/m/x --epochs -1", "argument --epochs: -1 must be >= 1"),
    (f"model {DATA} --out TOY/m/x --batch-size 0", "argument --batch-size: 0 must be >= 1"),
    (f"model {DATA} --out TOY/m/x --distill-weight 2", "argument --distill-weight: 2 must be <= 1"),
    (f"model {DATA} --out TOY/m/x --distill-weight 0", "argument --distill-weight: 0 must be > 0"),
    (f"model {DATA} --out TOY/m/x --lr 0", "argument --lr: 0 must be > 0"),
    (f"model {DATA} --out TOY/m/x --label-smoothing 2", "argument --label-smoothing"),
    (f"model {DATA} --out TOY/m/x --temperature -1", "argument --temperature"),
    (f"model {DATA} --out TOY/m/x --split-seed -1", "argument --split-seed: -1 must be >= 0"),
    (f"model {DATA} --out TOY/m/x --limit-train -1", "argument --limit-train"),
    ("model --data TOY/data --val-size 0 --out TOY/m/x", "argument --val-size: 0 must be >= 1"),
    (f"early-exit {DATA} --out TOY/ee/x --epochs 3 --self-distill 1.5", "argument --self-distill"),
    (f"early-exit {DATA} --out TOY/ee/x --epochs-joint -1", "argument --epochs-joint"),
    (f"early-exit {DATA} --out TOY/ee/x --branch-width 0", "argument --branch-width"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --C -1", "argument --C: -1 must be > 0"),
    (f"decider --model {LOCAL} --data TOY/data --val-size -5 --out TOY/d/x", "argument --val-size: -5 must be >= 1"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --limit-val -3", "argument --limit-val: -3 must be >= 1"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --limit-test 0", "argument --limit-test"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --min-hi-accuracy 90", "if you meant 90%, write 0.9"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --max-offload 1.5", "argument --max-offload"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --threshold 2", "argument --threshold"),
    (f"decider --model {LOCAL} {DATA} --out TOY/d/x --offload-penalty -0.1", "argument --offload-penalty"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --step 0", "argument --step: 0 must be > 0"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --offload-step 2", "argument --offload-step"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --exit-ms 1,x", "argument --exit-ms: 'x'"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --exit-ms 1,-2", "argument --exit-ms"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --full-ms -1", "argument --full-ms"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --ref-macs 0", "argument --ref-macs"),
    ("placement --arch resnet8 --full-ms -1", "argument --full-ms: -1 must be > 0"),
    ("placement --arch resnet8 --branch-width 0", "argument --branch-width"),
    ("member --onnx x.onnx --member 1 --data x --out TOY/mb/x --split-seed -2", "argument --split-seed"),
    ("split-ee x.tflite --data x --out TOY/s/x --exit-threshold 1.5", "1.5 is not a max-softmax threshold"),
    ("split-ee x.tflite --data x --out TOY/s/x --exit-threshold 0.5,x", "argument --exit-threshold: 'x'"),
    ("split-ee x.tflite --data x --out TOY/s/x --calibration 0", "argument --calibration"),
]


@pytest.mark.parametrize("argv, phrase", PARSE_MISTAKES, ids=[a for a, _ in PARSE_MISTAKES])
def test_a_bad_number_is_refused_while_parsing(toy, capsys, argv, phrase):
    assert phrase in one_error_line(_sub(argv, toy), capsys)


# found before the data loads (no TensorFlow needed for most): (argv, phrase of the one error line)
FILE_MISTAKES = [
    (f"export --keras TOY/pic.keras {DATA} --out TOY/e/x", "--keras TOY/pic.keras is not a saved Keras model"),
    (f"export --keras TOY/text.tflite {DATA} --out TOY/e/x", "--keras TOY/text.tflite is not a saved Keras model"),
    (f"export --keras TOY/notkeras.keras {DATA} --out TOY/e/x", "--keras TOY/notkeras.keras is not a saved Keras"),
    (f"export --keras TOY/nope.keras {DATA} --out TOY/e/x", "--keras TOY/nope.keras does not exist"),
    (f"export --keras TOY/pic.keras {DATA} --out TOY/emptydir", "--out TOY/emptydir is a folder"),
    (f"early-exit --keras TOY/pic.keras {DATA} --out TOY/ee/x", "--keras TOY/pic.keras is not a saved Keras model"),
    (f"early-exit --init TOY/pic.keras {DATA} --out TOY/ee/x", "--init TOY/pic.keras is not a saved Keras model"),
    (f"early-exit --init TOY/emptydir {DATA} --out TOY/ee/x", "--init TOY/emptydir is not a saved Keras model"),
    (f"early-exit --restart-from TOY/pic.keras {DATA} --out TOY/ee/x --epochs 2",
     "--restart-from TOY/pic.keras is not a saved Keras model"),
    (f"early-exit --restart-from TOY/pic.keras {DATA} --out TOY/ee/x", "add --epochs N"),
    (f"early-exit {DATA} --out TOY/emptydir", "--out TOY/emptydir is a folder"),
    ("cards --models TOY/nope", "--models TOY/nope does not exist"),
    ("cards --models TOY/text.json", "--models TOY/text.json is not a folder"),
    ("decider --coefficients 1,2 --model TOY/pic.tflite --out TOY/d/dec", "--model TOY/pic.tflite cannot be loaded"),
    (f"decider --model TOY/text.tflite {DATA} --out TOY/d/dec", "--model TOY/text.tflite cannot be loaded"),
    (f"decider --model {LOCAL} {DATA} --out TOY/emptydir", "--out TOY/emptydir is a folder"),
    ((f"thresholds --chain {CHAIN} --server x.onnx --baseline-model TOY/pic.tflite --baseline-decider x.json "
      f"{DATA} --out TOY/t/t"), "--baseline-model TOY/pic.tflite is not a TFLite model"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/emptydir", "--out TOY/emptydir is a folder"),
    (f"thresholds --chain {CHAIN} --server x.onnx {DATA} --out TOY/t/t --exit-ms 1", "--exit-ms gives 1 time(s)"),
    ("member --onnx TOY/text.onnx --member 1 --data TOY/nope --out TOY/mb/x", "--onnx TOY/text.onnx is not an ONNX"),
    ("member --onnx TOY/fake.jpg --member 1 --data TOY/nope --out TOY/mb/x", "--onnx TOY/fake.jpg is not an ONNX"),
    ("split-ee TOY/text.tflite --data x --out TOY/emptydir", "--out TOY/emptydir is a folder"),
    ("member --onnx TOY/emptydir --member 1 --data x --out TOY/mb/x", "--onnx TOY/emptydir is a folder"),
    (f"split-ee {LOCAL} --data TOY/text.npz --out TOY/s/x", "--data: TOY/text.npz is not an .npz archive"),
]


@pytest.mark.parametrize("argv, phrase", FILE_MISTAKES, ids=[a for a, _ in FILE_MISTAKES])
def test_a_file_of_the_wrong_kind_is_named_by_its_flag(toy, capsys, argv, phrase):
    if str(LOCAL) in argv or str(CHAIN) in argv:
        _need(LOCAL, CHAIN)
    assert phrase.replace("TOY", str(toy)) in one_error_line(_sub(argv, toy), capsys)


# these load the toy data, a shipped model or TensorFlow first, then stop before any training
LATE_MISTAKES = [
    (f"decider --model {LOCAL} --server TOY/text.onnx {DATA} --out TOY/d/dec",
     "--server TOY/text.onnx cannot be loaded"),
    (f"decider --model {LOCAL} --data TOY/data --out TOY/d/dec", "pass --val-size between 1 and"),
    (f"thresholds --chain {CHAIN} --server TOY/text.onnx {DATA} --qos 0.8 --out TOY/t/t",
     "--server TOY/text.onnx cannot be loaded"),
    (f"early-exit --keras {PLAIN_KERAS} {DATA} --out TOY/ee/x --no-arena", "without exit branches"),
    (f"model {DATA} --out TOY/m/x --teacher TOY/text.json", "--teacher TOY/text.json cannot be loaded"),
    (f"early-exit {DATA} --out TOY/ee/x --teacher TOY/text.onnx", "--teacher TOY/text.onnx cannot be loaded"),
    (f"model {DATA} --out TOY/emptydir", "--out TOY/emptydir is a folder"),
    ("model --data TOY/fake.jpg --out TOY/m/x", "fake.jpg"),
    ("placement --arch resnet8 --out TOY/emptydir", "--out TOY/emptydir is a folder"),
]


@pytest.mark.parametrize("argv, phrase", LATE_MISTAKES, ids=[a for a, _ in LATE_MISTAKES])
def test_a_mistake_found_late_is_still_one_line(toy, capsys, argv, phrase):
    _need(LOCAL, CHAIN, PLAIN_KERAS)
    assert phrase.replace("TOY", str(toy)) in one_error_line(_sub(argv, toy), capsys)


def test_a_keras_archive_keras_cannot_read_is_named_by_its_flag(toy):
    """Past the cheap check (a zip with a config.json), Keras's own error becomes one line too."""
    from hi_runtime.cli_support import UsageError
    from training.cli_checks import load_keras

    with pytest.raises(UsageError) as exc:
        load_keras(toy / "badconfig.keras", "--keras")
    text = str(exc.value)
    assert text.startswith(f"--keras {toy / 'badconfig.keras'} is not a saved Keras model") and "\n" not in text


def _need(*paths: Path) -> None:
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shipped model(s) {', '.join(missing)} not in this checkout")
