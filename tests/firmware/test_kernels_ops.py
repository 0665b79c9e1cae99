"""Every hi_nn kernel against tflite-micro, one small single-purpose model per parameter combination.

Each case builds a tiny Keras model with random weights (and random biases, so the bias path is exercised),
converts it the standard way (full-integer INT8, representative data), compiles it with hi-firmware's
compiler, builds it with the host gcc and compares every output byte on random int8 inputs with the
tflite-micro interpreter. Converted models are cached per session (see _compiled)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

pytestmark = pytest.mark.firmware

N_SAMPLES = 12
# Dilated convolutions and Dense-on-3D only convert to a single CONV_2D with a static batch (else SPACE_TO_BATCH_ND / a
# run-time Tensordot shape computation appears). The other cases keep a dynamic batch on purpose: their
# Flatten shape side-chains (SHAPE/STRIDED_SLICE/PACK) must be pruned by the compiler.
FIXED_BATCH = ("conv3x3_dilation2", "dw3x3_dilation2", "reshape")


def _layers() -> Any:
    import tensorflow as tf

    return tf.keras.layers


def _init() -> dict[str, Any]:
    import tensorflow as tf

    return {"kernel_initializer": tf.keras.initializers.RandomNormal(stddev=0.3, seed=1),
                "bias_initializer": tf.keras.initializers.RandomNormal(stddev=0.5, seed=2)}


def _conv(filters: int, k: Any, **kw: Any) -> Callable:
    def f(x: Any) -> Any:
        args = _init()
        if not kw.get("use_bias", True):
            args.pop("bias_initializer")
        args.update(kw)
        return _layers().Conv2D(filters, k, **args)(x)
    return f


def _dw(k: Any, **kw: Any) -> Callable:
    def f(x: Any) -> Any:
        import tensorflow as tf

        return _layers().DepthwiseConv2D(
            k, depthwise_initializer=tf.keras.initializers.RandomNormal(stddev=0.3, seed=3),
            bias_initializer=tf.keras.initializers.RandomNormal(stddev=0.5, seed=4), **kw)(x)
    return f


def _seq(*fns: Callable) -> Callable:
    def f(x: Any) -> Any:
        for fn in fns:
            x = fn(x)
        return x
    return f


def _residual(x: Any) -> Any:
    a = _conv(8, 3, padding="same", activation="relu")(x)
    b = _conv(8, 3, padding="same")(a)
    return _layers().ReLU()(_layers().Add()([a, b]))


def _residual_wide(x: Any) -> Any:
    """72 channels, fused residual; compiled twice: strip path and (scratch budget 0) the in-place OHWI path."""
    a = _conv(72, 1, activation="relu")(x)
    b = _conv(72, 3, padding="same")(a)
    return _layers().Add()([b, a])


def _two_branch_add(x: Any) -> Any:
    a = _conv(6, 1)(x)
    b = _conv(6, 3, padding="same")(x)
    return _layers().Add()([a, b])


def _broadcast_add(x: Any) -> Any:
    import tensorflow as tf

    a = _conv(6, 3, padding="same")(x)
    g = _layers().GlobalAveragePooling2D(keepdims=True)(a)
    return _layers().Lambda(lambda t: tf.add(t[0], t[1]))([a, g])


def _mean_channels(x: Any) -> Any:
    import tensorflow as tf

    return _layers().Lambda(lambda t: tf.reduce_mean(t, axis=-1))(_conv(5, 3, padding="same")(x))


# name -> (input shape, body, converter io type, per-channel)
CASES: dict[str, tuple[tuple[int, ...], Callable, str, bool]] = {
    "conv3x3_s1_same_relu": ((8, 8, 3), _conv(8, 3, padding="same", activation="relu"), "int8", True),
    "conv3x3_s2_same_relu6": ((9, 9, 8), _seq(_conv(16, 3, strides=2, padding="same"), lambda x: _layers().ReLU(6.0)(x)), "int8", True),
    "conv1x1_valid_oddc": ((6, 6, 5), _conv(7, 1), "int8", True),
    "conv5x5_s2_valid_rect": ((9, 7, 4), _conv(6, 5, strides=2), "int8", True),
    "conv3x3_dilation2": ((10, 10, 4), _conv(6, 3, padding="same", dilation_rate=2), "int8", True),
    "conv3x1_s12_nobias": ((8, 8, 4), _conv(5, (3, 1), strides=(1, 2), padding="same", use_bias=False), "int8", True),
    "conv3x3_wide_oddc": ((7, 7, 80), _conv(5, 3, padding="same", activation="relu"), "int8", True),
    "conv3x3_wide_oddc_inplace": ((7, 7, 80), _conv(5, 3, padding="same", activation="relu"), "int8", True),
    "add_residual_wide": ((5, 7, 8), _residual_wide, "int8", True),
    "add_residual_wide_inplace": ((5, 7, 8), _residual_wide, "int8", True),
    "conv3x3_s1_wide_rows": ((6, 21, 12), _conv(6, 3, padding="same"), "int8", True),
    "conv1x1_s1_strip8": ((3, 19, 8), _conv(9, 1, activation="relu"), "int8", True),
    "conv1x1_s2_residual": ((8, 18, 8), _seq(_conv(8, 1, activation="relu"), lambda x: _layers().Add()(
        [_conv(16, 1, strides=2)(x), _conv(16, 3, strides=2, padding="same")(x)])), "int8", True),
    "conv3x3_per_tensor": ((8, 8, 3), _conv(8, 3, padding="same", activation="relu"), "int8", False),
    "dw3x3_m1_same_relu": ((8, 8, 6), _dw(3, padding="same", activation="relu"), "int8", True),
    "dw3x3_m2_s2_valid": ((9, 9, 4), _dw(3, strides=2, depth_multiplier=2), "int8", True),
    "dw3x3_dilation2_per_tensor": ((10, 10, 4), _dw(3, padding="same", dilation_rate=2), "int8", False),
    "fc_flatten_softmax": ((4, 4, 3), _seq(lambda x: _layers().Flatten()(x), lambda x: _layers().Dense(10, **_init())(x), lambda x: _layers().Softmax()(x)), "int8", True),
    "fc_relu_no_softmax": ((12,), lambda x: _layers().Dense(9, activation="relu", **_init())(x), "int8", True),
    "add_residual_fused": ((8, 8, 3), _residual, "int8", True),
    "add_two_branch": ((6, 6, 4), _two_branch_add, "int8", True),
    "add_broadcast": ((6, 6, 4), _broadcast_add, "int8", True),
    "maxpool2_valid": ((8, 8, 4), _seq(_conv(4, 3, padding="same"), lambda x: _layers().MaxPooling2D(2)(x)), "int8", True),
    "maxpool3_s2_same": ((9, 9, 4), _seq(_conv(4, 1), lambda x: _layers().MaxPooling2D(3, 2, padding="same")(x)), "int8", True),
    "avgpool3_s1_same": ((7, 7, 4), _seq(_conv(4, 1), lambda x: _layers().AveragePooling2D(3, 1, padding="same")(x)), "int8", True),
    "avgpool2_valid": ((8, 6, 4), _seq(_conv(4, 1), lambda x: _layers().AveragePooling2D(2)(x)), "int8", True),
    "mean_global": ((6, 6, 3), _seq(_conv(8, 3, padding="same"), lambda x: _layers().GlobalAveragePooling2D()(x)), "int8", True),
    "mean_keepdims": ((5, 7, 3), _seq(_conv(8, 3, padding="same"), lambda x: _layers().GlobalAveragePooling2D(keepdims=True)(x)), "int8", True),
    "mean_channels": ((6, 6, 3), _mean_channels, "int8", True),
    "pad_zero": ((6, 6, 3), _seq(lambda x: _layers().ZeroPadding2D(((1, 2), (0, 3)))(x), _conv(4, 3)), "int8", True),
    "reshape": ((4, 4, 4), _seq(_conv(4, 1), lambda x: _layers().Reshape((8, 8))(x), lambda x: _layers().Dense(3, **_init())(x)), "int8", True),
    "float_io_quant_dequant": ((6, 6, 3), _seq(_conv(4, 3, padding="same"), lambda x: _layers().Flatten()(x), lambda x: _layers().Dense(5, **_init())(x)), "float32", True),
    "uint8_io_requantize": ((6, 6, 3), _seq(_conv(4, 3, padding="same"), lambda x: _layers().Flatten()(x), lambda x: _layers().Dense(5, **_init())(x), lambda x: _layers().Softmax()(x)), "uint8", True),
}

_CACHE: dict[str, tuple[bytes, Any]] = {}


def _build_case(name: str) -> bytes:
    import tensorflow as tf
    from hi_firmware.compiler.testing import convert_int8

    shape, body, io_type, per_channel = CASES[name]
    tf.keras.utils.set_random_seed(abs(hash(name)) % 1000)
    inp = tf.keras.Input(shape, batch_size=1 if name.startswith(FIXED_BATCH) else None)
    model = tf.keras.Model(inp, body(inp))
    rng = np.random.default_rng(0)
    rep = rng.normal(0.0, 1.0, (24, *shape)).astype(np.float32)
    if not per_channel:
        import tensorflow as tf2

        conv = tf2.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf2.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rep[i: i + 1]] for i in range(len(rep)))
        conv.target_spec.supported_ops = [tf2.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf2.int8
        conv.inference_output_type = tf2.int8
        conv._experimental_disable_per_channel = True
        return bytes(conv.convert())
    return convert_int8(model, rep, io_type=io_type)


def case_options(name: str) -> Any:
    """Compile options of a case: "_inplace" cases get no scratch, so every conv reads OHWI in place."""
    from hi_firmware.compiler import CompileOptions

    return CompileOptions(scratch_budget=0) if name.endswith("_inplace") else CompileOptions()


def _compiled(name: str, work: Path) -> tuple[bytes, Any]:
    from hi_firmware.compiler.hostbuild import build_host_model

    if name not in _CACHE:
        mb = _build_case(name)
        hm, info = build_host_model(mb, f"k_{name}", work, source_label=f"{name}.tflite", options=case_options(name))
        _CACHE[name] = (mb, (hm, info))
    return _CACHE[name]


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hi_nn_ops")


def _random_inputs(spec: Any, rng: np.random.Generator) -> np.ndarray:
    if spec.dtype == "float32":
        return rng.normal(0.0, 1.5, spec.shape).astype(np.float32)
    if spec.dtype == "uint8":
        return rng.integers(0, 256, spec.shape, dtype=np.uint8)
    return rng.integers(-128, 128, spec.shape, dtype=np.int8)


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_tflite_micro(case: str, work_dir: Path) -> None:
    from hi_runtime.backends import TflmBackend

    mb, (hm, (_gen, _graph, _plan)) = _compiled(case, work_dir)
    ref = TflmBackend(mb)
    rng = np.random.default_rng(42)
    for i in range(N_SAMPLES):
        xs = [_random_inputs(s, rng) for s in hm.inputs]
        ours = hm.run(*xs)
        theirs = ref.run_many(*xs)
        for o, t, spec in zip(ours, theirs, hm.outputs):
            assert o.dtype == t.dtype, f"{case}: output {spec.name} dtype {o.dtype} vs {t.dtype}"
            if o.dtype == np.float32:
                assert np.array_equal(o.view(np.int32), np.asarray(t, np.float32).reshape(o.shape).view(np.int32)), \
                    f"{case} sample {i}: float output bits differ"
            else:
                diff = np.flatnonzero(o.reshape(-1) != np.asarray(t).reshape(-1))
                assert diff.size == 0, (
                    f"{case} sample {i}: {diff.size} bytes differ, first at {diff[0]}: "
                    f"ours {o.reshape(-1)[diff[0]]} tflm {np.asarray(t).reshape(-1)[diff[0]]}"
                )


EMULATED = sorted(c for c in CASES if c.startswith(("conv", "add", "dw", "fc")))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed (make firmware-deps)")
def test_ops_on_emulated_cortex_m4_match_tflite_micro(work_dir: Path) -> None:
    """The same cases built for Cortex-M4F (DSP kernels: the assembly tiles, SMLAD paths) and run in QEMU
    through the model bench: every output byte equals tflite-micro's on the same random inputs."""
    from hi_firmware.bench import profile_model
    from hi_runtime.backends import TflmBackend

    for case in EMULATED:
        mb, (hm, _info) = _compiled(case, work_dir)
        rng = np.random.default_rng(7)
        xs = [[_random_inputs(spec, rng) for spec in hm.inputs] for _ in range(N_SAMPLES)]
        prof = profile_model(mb, xs, options=case_options(case))
        ref = TflmBackend(mb)
        for i, row in enumerate(xs):
            for o, t in zip(prof.outputs[i], ref.run_many(*row)):
                assert np.array_equal(o.reshape(-1).view(np.uint8), np.asarray(t, o.dtype).reshape(-1).view(np.uint8)), \
                    f"{case} sample {i}: the emulated Cortex-M4 differs from tflite-micro"


def test_cases_cover_every_supported_operator(work_dir: Path) -> None:
    """The case table must exercise every operator the compiler claims to support."""
    from hi_firmware.compiler.graph import SUPPORTED_OPS

    seen: set[str] = set()
    sources = []
    for case in sorted(CASES):
        _, (_hm, (gen, graph, _plan)) = _compiled(case, work_dir)
        seen |= {op.opcode for op in graph.operators}
        sources.append(gen.source)
    # Both conv code paths (strip and in-place OHWI), each with a fused residual, are covered; the strip path
    # with 8-pixel blocks, 4-pixel blocks and a C tail (strip widths), 3x3 and 1x1, strides 1 and 2.
    assert any(".strip_w = 0" in src for src in sources)
    assert any("hi_nn_residual_t res;" in src and ".strip_w = 0" in src for src in sources)
    assert any("hi_nn_residual_t res;" in src and ".strip_w = 0" not in src for src in sources)
    strips = {int(w) for src in sources for w in re.findall(r"\.strip_w = (\d+)", src)}
    assert any(w >= 8 for w in strips) and any(w % 8 >= 4 for w in strips) and any(w % 4 for w in strips)
    geometries = {m for src in sources for m in re.findall(r"\.k_w = (\d), \.stride_h = \d, \.stride_w = (\d)", src)}
    assert {("3", "1"), ("3", "2"), ("1", "1"), ("1", "2")} <= geometries
    missing = set(SUPPORTED_OPS) - seen - {"PADV2"}  # the converter emits PAD, never PADV2, for zero padding
    assert not missing, f"no test case produces {sorted(missing)}"
