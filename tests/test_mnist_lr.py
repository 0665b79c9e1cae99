"""MNIST softmax regression on microcontrollers (the paper's Fig. 1): training and export with the input
scaling folded (no MUL), the shipped artifacts (card, TFLite, firmware C), INT8 accuracy with TFLite
Micro on the MNIST test set, the emulated Cortex-M4 byte-exact with TFLite Micro through the serial
protocol, and the planner saying HI is not needed on the paper's microcontrollers."""
from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
SHIPPED = REPO / "models" / "mnist" / "lr_mnist_int8.tflite"
CARD = REPO / "models" / "mnist" / "lr_mnist.json"
GENERATED = REPO / "models" / "mnist" / "firmware" / "lr_mnist_int8"
HAVE_QEMU = bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (gzipped) as the MNIST release stores it."""
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def tiny_mnist(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """Separable 28x28 'digits': class k lights a bar at row 2k (learnable by a linear model)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 3: 2 * k + 5, 4:24] = 255  # the full 0..255 range, as MNIST has
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def mnist_test_images(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from hi_runtime.datasets import load_dataset

    ds = load_dataset("mnist", MNIST, "test", progress=False)
    if n is None:
        return ds.images, ds.labels
    idx = np.linspace(0, len(ds.labels) - 1, n).astype(int)
    return ds.images[idx], ds.labels[idx]


def tflm_scores(model: Path, images: np.ndarray) -> np.ndarray:
    """Raw int8 outputs of TFLite Micro's reference interpreter (the firmware's ground truth)."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(model))
    out = []
    for img in images:
        interp.set_input((img.astype(np.int16) - 128).astype(np.int8).reshape(1, 28, 28, 1), 0)
        interp.invoke()
        out.append(interp.get_output(0).reshape(-1).copy())
    return np.stack(out)


# --- training and export -------------------------------------------------------------------------


def test_lr_folds_the_input_scaling_exactly():
    from training.models import build_model, fold_input_scaling

    model = build_model("lr", input_shape=(28, 28, 1))
    x = np.random.default_rng(1).integers(0, 256, (8, 28, 28, 1)).astype(np.float32)
    folded = fold_input_scaling(model)
    assert not any(layer.__class__.__name__ == "Rescaling" for layer in folded.layers)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_hi_train_lr_on_idx_files_exports_int8_without_mul(tmp_path, capsys):
    from training.cli import main

    data = tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "models" / "lr_tiny"
    rc = main(["model", "--arch", "lr", "--dataset", "mnist", "--data", str(data), "--epochs", "3",
               "--batch-size", "32", "--val-size", "100", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    card = json.loads(out.with_suffix(".json").read_text())
    int8 = next(a for a in card["artifacts"] if a["kind"] == "tflite int8 (device)")
    assert int8["ops"] == ["FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]  # no MUL: the 1/255 is in the weights
    assert (int8["input"]["scale"], int8["input"]["zero_point"]) == (1.0, -128)
    assert int8["test_accuracy"] > 0.9  # the bars are linearly separable
    assert card["training"]["config"]["augment"] is False  # no flips of digits
    assert card["params"] == 784 * 10 + 10 and card["macs"] == 784 * 10


def test_hi_train_usage_mistakes_are_one_line_exit_2(tmp_path, capsys):
    from training.cli import main

    data = tiny_mnist(tmp_path / "mnist", 60, 20)
    cases = [
        (["model", "--arch", "lenet", "--data", str(data), "--out", str(tmp_path / "x")], "invalid choice: 'lenet'"),
        (["model", "--arch", "lr", "--export", "int9", "--data", str(data), "--out", str(tmp_path / "x")],
         "unknown export kind"),
        (["export", "--keras", str(REPO / "models" / "cifar10" / "resnet8.keras"), "--dataset", "mnist",
          "--data", str(data), "--val-size", "10", "--out", str(tmp_path / "x")], "takes 32x32x3 images but the mnist"),
        (["decider", "--model", str(REPO / "models" / "cifar10" / "resnet8_int8.tflite"), "--dataset", "mnist",
          "--data", str(data), "--val-size", "10", "--out", str(tmp_path / "d")],
         "takes 32x32x3 images but the data is 28x28x1"),
        (["member", "--onnx", str(tmp_path / "none.onnx"), "--member", "a", "--data", str(data),
          "--out", str(tmp_path / "m")], "--onnx"),
    ]
    for argv, message in cases:
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("hi-train")]
        assert rc == 2, (argv, err)
        assert "Traceback" not in err and len(lines) == 1 and message in lines[0], err


# --- the shipped artifacts -----------------------------------------------------------------------


def test_shipped_card_meets_the_papers_qos():
    card = json.loads(CARD.read_text())
    int8 = next(a for a in card["artifacts"] if a["file"] == SHIPPED.name)
    assert int8["test_accuracy"] >= 0.90  # the paper's QoS for MNIST
    assert "MUL" not in int8["ops"]
    assert card["dataset"]["name"] == "mnist" and card["dataset"]["test_images"] == 10000
    assert card["training"]["command"].startswith("hi-train model --arch lr --dataset mnist")


@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="MNIST IDX files not on this machine")
def test_int8_accuracy_with_tflite_micro_on_the_mnist_test_set():
    images, labels = mnist_test_images()
    accuracy = float((tflm_scores(SHIPPED, images).argmax(1) == labels).mean())
    assert accuracy >= 0.90
    print(f"lr_mnist_int8 with TFLite Micro on the 10,000 MNIST test digits: {100 * accuracy:.2f}%")


def test_shipped_firmware_c_matches_a_fresh_compile(tmp_path):
    from hi_firmware.cli import main

    assert main(["compile", str(SHIPPED), "--out", str(tmp_path / "lr_mnist_int8")]) == 0
    for name in ("hi_model_lr_mnist_int8.c", "hi_model_lr_mnist_int8.h"):
        assert (tmp_path / "lr_mnist_int8" / name).read_bytes() == (GENERATED / name).read_bytes(), name


# --- the emulated Cortex-M4 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def qemu_elf(tmp_path_factory):
    if not HAVE_QEMU:
        pytest.skip("needs arm-none-eabi-gcc + libnewlib-arm-none-eabi and qemu-system-arm")
    from hi_firmware.cli import main

    build = tmp_path_factory.mktemp("lr_qemu")
    assert main(["build", "--board", "qemu-m4", "--model", str(SHIPPED), "--no-decider",
                 "--build-dir", str(build)]) == 0
    return build / "hi_qemu_m4.elf"


def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    if (MNIST / "t10k-images-idx3-ubyte.gz").exists():
        images, labels = mnist_test_images(n)
        return images[..., None] if images.ndim == 3 else images, labels
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n)


def test_emulated_cortex_m4_is_byte_exact_with_tflite_micro(qemu_elf):
    from hi_firmware import boards

    from hi_runtime.agent.serial_bridge import SerialDevice

    images, labels = _images(150)
    want = tflm_scores(SHIPPED, images)
    with boards.run_qemu(qemu_elf) as qemu, SerialDevice.open(qemu.url, timeout=60) as board:
        board.sync()
        config = board.config()
        assert config.input_shape == (28, 28, 1) and not config.has_decider
        got = []
        for i, img in enumerate(images):
            board.load(img)
            outcome = board.run_hi(i + 1)
            assert not outcome.local.offload and outcome.offload is None  # no decider: HI not needed
            got.append(outcome.local.scores)
    got = np.stack(got)
    mismatches = np.flatnonzero((got != want).any(axis=1))
    assert mismatches.size == 0, f"{mismatches.size} of {len(images)} differ, first {mismatches[:5]}"
    print(f"lr_mnist_int8 on QEMU mps2-an386: {len(images)} digits byte-exact with TFLite Micro, "
          f"accuracy {100 * float((got.argmax(1) == labels).mean()):.1f}% on them")


def test_instructions_per_inference(qemu_elf):
    from hi_firmware import boards
    from hi_firmware.qemu import QEMU_INSTRUCTIONS_PER_US

    from hi_runtime.agent.serial_bridge import SerialDevice

    runs = 500
    counts = []
    for _ in range(2):
        with boards.run_qemu(qemu_elf, icount=True) as qemu, SerialDevice.open(qemu.url, timeout=120) as board:
            board.sync()
            board.load(_images(1)[0][0])
            laps, _ = board.infer(runs, 1, timeout=300)
            counts.append((laps[1] - laps[0]) * QEMU_INSTRUCTIONS_PER_US / runs)
    assert abs(counts[0] - counts[1]) <= 2 * QEMU_INSTRUCTIONS_PER_US / runs
    assert 7840 < counts[0] < 200_000  # at least one instruction per MAC, far below ResNet-8's 26.6 M
    print(f"lr_mnist_int8: {counts[0]:.0f} instructions per inference on QEMU mps2-an386 (Cortex-M4F, -icount 0)")


# --- the planner ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["arduino_nano33ble", "esp32"])
def test_the_planner_says_hi_is_not_needed_for_mnist_on_the_mcus(device, capsys):
    from measurements.cli import main

    assert main(["plan", "--device", device, "--dataset", "mnist", "--qos", "accuracy=0.9"]) == 0
    out = capsys.readouterr().out
    assert "recommended: on-device lr_mnist" in out
    assert "HI is not needed" in out
    # and for CIFAR-10 the same boards must offload: ResNet-8 takes 600-1230 ms there (Table 7)
    assert main(["plan", "--device", device, "--qos", "accuracy=0.9"]) == 0
    assert "recommended: remote" in capsys.readouterr().out
