"""Compile-time quantization math, mirroring what TFLite Micro computes in each kernel's Prepare().

WHY here and not in C: everything that depends only on the model (multipliers, shifts, activation bounds,
softmax scaling) is computed once by the compiler and emitted as constants, so the device does no double
arithmetic. Every function follows TFLite's quantization_util.cc / kernel_util.cc step by step, including
where it uses float versus double, because a one-ulp difference in a multiplier can change an output byte.
"""
from __future__ import annotations

import math

import numpy as np


def tflite_round(x: float) -> float:
    """std::round: half away from zero (Python's round() is half-to-even, which would differ on ties)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2^(shift - 31) with m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed > (1 << 31):
        raise ValueError(f"multiplier {real} rounds out of range")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return int(q_fixed), int(shift)


def activation_range(activation: str, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the bound is zero_point + round(f / scale), computed in float32."""

    def q(f: float) -> int:
        return zero_point + int(tflite_round(float(np.float32(f) / np.float32(scale))))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"fused activation {activation} is not supported for int8 kernels")


def per_channel_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float, channels: int) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: double(in) * double(filter[c]) / double(out), per channel.

    A per-tensor filter scale is broadcast over the channels, as TFLite does."""
    mults: list[int] = []
    shifts: list[int] = []
    for c in range(channels):
        fs = float(filter_scales[c] if filter_scales.size > 1 else filter_scales[0])
        m, s = quantize_multiplier(float(np.float32(input_scale)) * fs / float(np.float32(output_scale)))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def fc_per_tensor_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler: the input*filter product is taken in float32, then divided in double."""
    product = float(np.float32(input_scale) * np.float32(filter_scale))
    return quantize_multiplier(product / float(np.float32(output_scale)))


def add_params(s1: float, s2: float, s_out: float) -> dict[str, int]:
    """CalculateOpDataAdd for int8: left shift 20, inputs scaled by 1/(2*max scale)."""
    left_shift = 20
    s1d, s2d, sod = float(np.float32(s1)), float(np.float32(s2)), float(np.float32(s_out))
    twice_max = 2.0 * max(s1d, s2d)
    m1, sh1 = quantize_multiplier(s1d / twice_max)
    m2, sh2 = quantize_multiplier(s2d / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * sod))
    return {
        "left_shift": left_shift,
        "input1_multiplier": m1,
        "input1_shift": sh1,
        "input2_multiplier": m2,
        "input2_shift": sh2,
        "output_multiplier": mo,
        "output_shift": sho,
    }


def softmax_params(beta: float, input_scale: float) -> dict[str, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius with 5 integer bits (int8 softmax)."""
    integer_bits = 5
    max_real = float((1 << 31) - 1)
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * float(1 << (31 - integer_bits)), max_real)
    mult, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise ValueError("softmax input scale too small for the int8 softmax kernel")
    max_input_rescaled = (
        1.0 * ((1 << integer_bits) - 1) * float(1 << (31 - integer_bits)) / float(1 << left_shift)
    )
    diff_min = -math.floor(max_input_rescaled)
    return {"input_multiplier": mult, "input_left_shift": left_shift, "diff_min": diff_min}


def requantize_params(in_scale: float, out_scale: float) -> tuple[int, int]:
    """QUANTIZE between integer types: double(in) / double(out)."""
    return quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """MEAN: QuantizeMultiplier(in/out) with 1/count folded in as TFLite's QuantizedMeanOrSum does it.

    The fold shift is floor(log2(count)) capped at 32 and at 31 + shift, and the division truncates."""
    mult, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    if count <= 0:
        return mult, shift
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    return int((mult << fold) // count) if mult >= 0 else int(-((-mult << fold) // count)), shift - fold
