"""The model compiler end to end: MLPerf-Tiny-style ResNet-8, memory plan, errors, determinism, CLI, ARM build."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hi_firmware.compiler import CompileError, CompileOptions, compile_bytes, kernel_dir
from hi_firmware.compiler.graph import read_tflite_bytes

pytestmark = pytest.mark.firmware


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hi_compiler")


@pytest.fixture(scope="session")
def resnet8_mlperf(work_dir: Path) -> bytes:
    """MLPerf Tiny ResNet-8 architecture, random weights, converted int8 the MLPerf way (cached per session)."""
    from hi_firmware.compiler.testing import mlperf_tiny_resnet8_int8

    path = work_dir / "mlperf_resnet8_int8.tflite"
    if not path.exists():
        path.write_bytes(mlperf_tiny_resnet8_int8(seed=0))
    return path.read_bytes()


@pytest.fixture(scope="session")
def resnet8_host(resnet8_mlperf: bytes, work_dir: Path) -> Any:
    from hi_firmware.compiler.hostbuild import build_host_model

    return build_host_model(resnet8_mlperf, "mlperf_resnet8", work_dir, source_label="mlperf_resnet8_int8.tflite")


def test_mlperf_resnet8_io_is_mlperf_style(resnet8_mlperf: bytes) -> None:
    g = read_tflite_bytes(resnet8_mlperf)
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    assert x.dtype == "int8" and x.zero_point == -128 and x.shape == (1, 32, 32, 3)
    assert y.dtype == "int8" and y.zero_point == -128 and abs(y.scale - 1 / 256) < 1e-9
    assert g.operators[-1].opcode == "SOFTMAX"


def test_mlperf_resnet8_matches_tflite_micro(resnet8_mlperf: bytes, resnet8_host: Any) -> None:
    from hi_runtime.backends import TflmBackend

    hm, _ = resnet8_host
    ref = TflmBackend(resnet8_mlperf)
    rng = np.random.default_rng(7)
    for i in range(40):
        x = rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
        ours, theirs = hm.run(x)[0], ref.run_many(x)[0]
        assert np.array_equal(ours, theirs), f"sample {i}: ours {ours} tflite-micro {theirs}"


def test_mlperf_resnet8_matches_litert_reference(resnet8_mlperf: bytes, resnet8_host: Any, work_dir: Path) -> None:
    """Byte-exact against LiteRT BUILTIN_REF up to the logits' input; the full model within one LSB.

    (TFLite's and TFLite Micro's reference kernels disagree by one LSB on some FULLY_CONNECTED / SOFTMAX
    bytes; we follow TFLite Micro, checked byte for byte in the test above.)"""
    from hi_firmware.compiler.hostbuild import build_host_model
    from hi_runtime.backends import TFLiteBackend
    from hi_firmware.compiler.testing import litert_agreeing_prefix

    prefix = litert_agreeing_prefix(resnet8_mlperf)
    assert prefix is not None
    hm_prefix, _ = build_host_model(prefix, "mlperf_resnet8_prefix", work_dir)
    lr_prefix = TFLiteBackend(prefix, "litert", reference=True)
    hm, _ = resnet8_host
    lr = TFLiteBackend(resnet8_mlperf, "litert", reference=True)
    rng = np.random.default_rng(8)
    for i in range(20):
        x = rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
        assert np.array_equal(hm_prefix.run(x)[0], lr_prefix.run_many(x)[0].reshape(hm_prefix.outputs[0].shape)), i
        full = hm.run(x)[0].astype(int) - lr.run_many(x)[0].astype(int)
        assert np.abs(full).max() <= 1, f"sample {i}: full-model difference {full}"


def test_mlperf_resnet8_arena_under_40k_and_below_tflite_micro(resnet8_mlperf: bytes, resnet8_host: Any) -> None:
    from hi_runtime.backends import tflm_arena_bytes

    _, (_gen, _graph, plan) = resnet8_host
    tflm = tflm_arena_bytes(resnet8_mlperf)
    print(f"\nResNet-8 (MLPerf Tiny arch): hi-firmware arena {plan.arena_size} B, "
          f"tflite-micro (host build, 64-bit) minimal arena {tflm} B")
    assert plan.arena_size <= 40 * 1024
    assert tflm is not None and plan.arena_size < tflm


def test_fusion_and_inplace_are_what_save_the_memory(resnet8_mlperf: bytes) -> None:
    """Without the residual fusion the planner needs three 32x32x16 buffers at once (48 KiB)."""
    fused = compile_bytes(resnet8_mlperf, "a")[2].arena_size
    unfused = compile_bytes(resnet8_mlperf, "b", options=CompileOptions(fuse_residual_add=False))[2].arena_size
    naive = compile_bytes(resnet8_mlperf, "c", options=CompileOptions(fuse_residual_add=False, inplace=False))[2].arena_size
    assert fused == 32 * 32 * 16 * 2
    assert fused < unfused <= naive


def test_plan_never_overlaps_live_buffers(resnet8_mlperf: bytes) -> None:
    for opts in (CompileOptions(), CompileOptions(fuse_residual_add=False), CompileOptions(inplace=False)):
        _, _, plan = compile_bytes(resnet8_mlperf, "p", options=opts)
        bufs = plan.buffers
        for i, a in enumerate(bufs):
            assert a.offset % 4 == 0 and a.offset + a.size <= plan.arena_size
            for b in bufs[i + 1:]:
                lifetimes_meet = not (a.last < b.first or b.last < a.first)
                bytes_meet = not (a.offset + a.size <= b.offset or b.offset + b.size <= a.offset)
                assert not (lifetimes_meet and bytes_meet), (a, b)


def test_generated_code_is_deterministic(resnet8_mlperf: bytes) -> None:
    a = compile_bytes(resnet8_mlperf, "det")[0]
    b = compile_bytes(resnet8_mlperf, "det")[0]
    assert a.header == b.header and a.source == b.source


def test_residual_fusion_generates_a_fused_call(resnet8_mlperf: bytes) -> None:
    gen = compile_bytes(resnet8_mlperf, "fz")[0]
    assert gen.source.count("hi_nn_residual_t res;") == 3  # one per residual stack
    assert "hi_nn_add_s8" not in gen.source


def _keras_model_with(layer_fn: Any) -> bytes:
    import tensorflow as tf
    from hi_firmware.compiler.testing import convert_int8

    inp = tf.keras.Input((8, 8, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding="same")(inp)
    out = layer_fn(x)
    rep = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)
    return convert_int8(tf.keras.Model(inp, out), rep)


@pytest.mark.parametrize(
    "kind,opname",
    [("tanh", "TANH"), ("concat", "CONCATENATION")],
)
def test_unsupported_operator_error_names_op_and_model(kind: str, opname: str, tmp_path: Path) -> None:
    import tensorflow as tf

    if kind == "tanh":
        mb = _keras_model_with(lambda x: tf.keras.layers.Activation("tanh")(x))
    else:
        mb = _keras_model_with(lambda x: tf.keras.layers.Concatenate()([x, tf.keras.layers.Conv2D(2, 1)(x)]))
    model = tmp_path / f"has_{kind}.tflite"
    model.write_bytes(mb)
    with pytest.raises(CompileError) as err:
        compile_bytes(mb, "bad", source_label=model.name)
    assert opname in str(err.value) and model.name in str(err.value)

    from hi_firmware.cli import main

    rc = main(["compile", str(model), "--out", str(tmp_path / "gen")])
    assert rc == 2  # the input cannot work as given: one line, exit 2 (the CLI pattern), no output written
    assert not (tmp_path / "gen").exists()


def test_a_softmax_wider_than_the_int8_kernel_can_sum_is_refused() -> None:
    """4096 classes could overflow the kernel's Q12 sum of exps (as in TFLite Micro): refused by name."""
    import tensorflow as tf

    mb = _keras_model_with(lambda x: tf.keras.layers.Softmax()(
        tf.keras.layers.Dense(4096)(tf.keras.layers.Flatten()(x))))
    with pytest.raises(CompileError, match="softmax over 4096 classes.*4095"):
        compile_bytes(mb, "wide", source_label="wide.tflite")


def test_a_tensor_listed_twice_among_the_outputs_fills_both_buffers(work_dir: Path) -> None:
    """Keras Model(x, [a, a]) keeps both outputs; the tensor is planned into one buffer, copied to the other."""
    import tensorflow as tf

    from hi_firmware.compiler.hostbuild import build_host_model
    from hi_firmware.compiler.testing import convert_int8
    from hi_runtime.backends import TflmBackend

    inp = tf.keras.Input((5, 5, 3), batch_size=1)
    a = tf.keras.layers.Conv2D(4, 3, padding="same")(inp)
    mb = convert_int8(tf.keras.Model(inp, [a, a]), np.random.default_rng(0).normal(size=(8, 5, 5, 3)).astype(np.float32))
    g = read_tflite_bytes(mb)
    assert len(g.outputs) == 2 and g.outputs[0] == g.outputs[1]
    hm, _ = build_host_model(mb, "dup_outputs", work_dir)
    x = np.random.default_rng(1).integers(-128, 128, (1, 5, 5, 3), dtype=np.int8)
    ours, theirs = hm.run(x), TflmBackend(mb).run_many(x)
    for o, t in zip(ours, theirs):
        assert np.array_equal(o.reshape(-1), np.asarray(t).reshape(-1))


def test_unsupported_lstm_model_is_rejected_by_name() -> None:
    """A Keras LSTM converts to a WHILE loop over three subgraphs: the error names the ops and the model."""
    import tensorflow as tf

    inp = tf.keras.Input((6, 4), batch_size=1)
    out = tf.keras.layers.LSTM(5)(inp)
    mb = bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out)).convert())
    with pytest.raises(CompileError) as err:
        compile_bytes(mb, "lstm", source_label="lstm.tflite")
    msg = str(err.value)
    assert "lstm.tflite" in msg and "WHILE" in msg and "TANH" in msg


def test_float_model_error_names_tensor_type() -> None:
    import tensorflow as tf

    inp = tf.keras.Input((8, 8, 3), batch_size=1)
    out = tf.keras.layers.Conv2D(4, 3)(inp)
    mb = bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out)).convert())
    with pytest.raises(CompileError, match="float32.*INT8"):
        compile_bytes(mb, "f")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="not a valid TFLite"):
        compile_bytes(b"\x00" * 64, "g", source_label="garbage.tflite")


def test_reader_never_crashes_on_corrupted_models(resnet8_mlperf: bytes) -> None:
    """Mutated flatbuffers either parse into a graph or raise CompileError; never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = resnet8_mlperf

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), min_size=1, max_size=8),
           st.integers(8, len(base)))
    def check(edits: list[tuple[int, int]], cut: int) -> None:
        buf = bytearray(base[:cut])
        for pos, val in edits:
            if pos < len(buf):
                buf[pos] = val
        try:
            compile_bytes(bytes(buf), "fuzz")
        except CompileError:
            pass
        except Exception as exc:  # pragma: no cover - the failure we look for
            raise AssertionError(f"compiler raised {type(exc).__name__}: {exc}") from exc

    check()


def test_cli_compile_writes_files_and_header_api(resnet8_mlperf: bytes, tmp_path: Path) -> None:
    from hi_firmware.cli import main

    model = tmp_path / "r8.tflite"
    model.write_bytes(resnet8_mlperf)
    out = tmp_path / "generated" / "resnet8"
    assert main(["compile", str(model), "--out", str(out)]) == 0
    header = (out / "hi_model_resnet8.h").read_text()
    assert "int hi_model_resnet8_invoke(const int8_t *in, int8_t *out);" in header
    assert "#define HI_MODEL_RESNET8_INPUT_ZERO_POINT" in header
    assert "#define HI_MODEL_RESNET8_ARENA_SIZE 32768" in header
    assert (out / "hi_model_resnet8.c").exists()


def test_cli_help_lists_compile() -> None:
    exe = Path(sys.executable).parent / "hi-firmware"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "compile" in proc.stdout


def test_multi_output_model_names_outputs_by_tensor_name(work_dir: Path) -> None:
    """Early-exit segments return trunk features and exit scores: outputs are named, never positional."""
    import tensorflow as tf
    from hi_firmware.compiler.hostbuild import build_host_model
    from hi_runtime.backends import TflmBackend
    from hi_firmware.compiler.testing import convert_int8

    inp = tf.keras.Input((8, 8, 3), batch_size=1)
    feats = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="trunk")(inp)
    g = tf.keras.layers.GlobalAveragePooling2D()(feats)
    probs = tf.keras.layers.Softmax(name="exit_probs")(tf.keras.layers.Dense(10)(g))
    model = tf.keras.Model(inp, {"features": feats, "exit": probs})
    rep = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)
    mb = convert_int8(model, rep)
    hm, (gen, graph, _plan) = build_host_model(mb, "ee_seg", work_dir)
    names = [graph.tensors[t].name for t in graph.outputs]
    assert len(names) == 2
    from hi_firmware.compiler.emitter import c_identifier

    for n in names:
        assert f"*out_{c_identifier(n)}" in gen.header
        assert f'_NAME "{n}"' in gen.header
    ref = TflmBackend(mb)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.integers(-128, 128, (1, 8, 8, 3), dtype=np.int8)
        for a, b in zip(hm.run(x), ref.run_many(x)):
            assert np.array_equal(a, np.asarray(b).reshape(a.shape))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (make firmware-deps)")
def test_kernels_and_generated_model_cross_compile_for_cortex_m4(resnet8_mlperf: bytes, tmp_path: Path) -> None:
    """The DSP (SMLAD/SXTB16) path must at least compile for Cortex-M4F and actually use those instructions."""
    gen = compile_bytes(resnet8_mlperf, "resnet8")[0]
    gen.write(tmp_path)
    flags = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-std=c99",
             "-ffp-contract=off", "-Wall", "-Werror", "-c"]
    objs = []
    for src in [tmp_path / "hi_model_resnet8.c", *sorted(kernel_dir().glob("hi_nn_*.c"))]:
        obj = tmp_path / (src.stem + ".o")
        proc = subprocess.run(["arm-none-eabi-gcc", *flags, f"-I{kernel_dir()}", f"-I{tmp_path}", str(src), "-o", str(obj)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        objs.append(obj)
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(tmp_path / "hi_nn_conv.o")], capture_output=True, text=True, check=False).stdout
    assert "smlad" in dis and "sxtb16" in dis


def test_memory_bench_reports_our_arena_next_to_tflite_micro(resnet8_mlperf: bytes, tmp_path: Path) -> None:
    from measurements.bench_firmware_memory import main, measure, render

    row = measure(resnet8_mlperf, "mlperf_resnet8", "mlperf_resnet8")
    assert row.arena == 32768 and row.io == 32 * 32 * 3 + 10
    assert 0 < row.scratch <= 4096  # the conv strip path's static scratch (default budget)
    assert row.tflm_arena is not None and row.arena + row.scratch + row.io < row.tflm_arena
    assert row.const > 78_000  # ResNet-8 has ~78k int8 weights
    table = render([row])
    assert "mlperf_resnet8" in table and str(row.tflm_arena) in table
    model = tmp_path / "r8_int8.tflite"
    model.write_bytes(resnet8_mlperf)
    assert main([str(model), "--json", str(tmp_path / "mem.json")]) == 0
    assert '"arena": 32768' in (tmp_path / "mem.json").read_text()


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed (make firmware-deps)")
@pytest.mark.parametrize("extra", ["", "-DHI_NN_NO_DSP"], ids=["dsp", "portable"])
def test_resnet8_on_emulated_cortex_m4_matches_host(resnet8_mlperf: bytes, resnet8_host: Any, extra: str) -> None:
    """Both kernel paths, built for Cortex-M4F into the model bench (hi-firmware profile) and run in QEMU, give
    the host's (= tflite-micro's) bytes on 21 random inputs; the per-step counts add up to the invoke."""
    from hi_firmware.bench import profile_model

    rng = np.random.default_rng(21)
    xs = [[rng.integers(-128, 128, (1, 32, 32, 3)).astype(np.int8)] for _ in range(21)]
    prof = profile_model(resnet8_mlperf, xs, extra_cflags=extra)
    hm, _ = resnet8_host
    for i, row in enumerate(xs):
        assert np.array_equal(prof.outputs[i][0], hm.run(*row)[0]), i
    steps = sum(s.instructions for s in prof.steps)
    assert abs(steps - prof.instructions) <= 40 * (len(prof.steps) + 2)  # one SysTick tick per step at most
    conv = [s for s in prof.steps if s.kind.startswith("conv")]
    assert len(conv) == 9 and all(s.macs > 0 and s.instructions > 0 for s in conv)
    print(f"\nResNet-8 on emulated Cortex-M4 ({'portable' if extra else 'DSP'} path): "
          f"{prof.instructions / 1e6:.2f} M instructions")
    assert 1e6 < prof.instructions < (50e6 if extra else 20e6)


def test_names_from_the_model_are_escaped_in_the_generated_c(tmp_path):
    """Tensor and file names reach generated C (the _NAME macros, comments, the app's model version): a
    backslash, quote, '*/', '??' or non-ASCII name once broke the header (outside review, 2026-12-08).
    The host compiler must read each literal back to the same bytes, and each comment must stay closed."""
    import shutil
    import subprocess

    from hi_firmware.compiler.c_text import c_comment, c_string

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    names = ["serving_default_x/", "ends\\", 'q"uote', "a*/b", "??=trigraph", "caf\u00e9", "tab\there", ""]
    lines = ["#include <stdio.h>", "#include <string.h>"]
    lines += [f"/* {c_comment(n)} */" for n in names]
    lines.append("static const char *names[] = {" + ", ".join(c_string(n) for n in names) + "};")
    lines.append("int main(void) { for (unsigned i = 0; i < %d; i++) { fwrite(names[i], 1, strlen(names[i]), "
                 "stdout); putchar(0); } return 0; }" % len(names))
    src = tmp_path / "names.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "names"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-Wno-trigraphs", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [n.encode() for n in names]
