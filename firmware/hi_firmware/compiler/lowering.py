"""Lower graph operators to kernel steps with every model-constant parameter precomputed.

WHY: a step is exactly one call into firmware/lib/hi_nn with its constant parameters (multipliers, shifts,
activation bounds, folded biases) already computed the way TFLite Micro's Prepare() computes them. The
emitter only prints steps and the planner only looks at which tensors a step reads and writes.
This is also where the residual ADD is fused into the convolution that produces one of its operands.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import quant
from .graph import CompileError, Graph, Operator, Tensor


@dataclass
class Step:
    kind: str
    op_index: int  # index of the (last) TFLite operator this step implements, for comments and errors
    inputs: list[int]  # activation tensors read (no constants)
    output: int
    params: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # arrays the emitter puts in flash
    # Inputs the output may share a buffer with when their lifetime ends here (elementwise / row-wise ops).
    inplace_candidates: list[int] = field(default_factory=list)
    # Inputs that must never share a buffer with the output (read at other positions than written).
    inplace_forbidden: list[int] = field(default_factory=list)
    alias_of: int | None = None  # RESHAPE: the output is the same bytes as this input


def _err(graph: Graph, op: Operator, msg: str) -> CompileError:
    return CompileError(f"model {graph.model_name}, operator #{op.index} {op.opcode}: {msg}")


def _expect_types(graph: Graph, op: Operator, tensors: list[Tensor], allowed: tuple[str, ...]) -> None:
    for t in tensors:
        if t.dtype not in allowed:
            raise _err(
                graph,
                op,
                f"tensor '{t.name}' has type {t.dtype}; only {', '.join(allowed)} is supported "
                "(convert the model with full-integer INT8 quantization)",
            )


def _same_padding(stride: int, dilation: int, in_size: int, filter_size: int, out_size: int) -> int:
    """TFLite ComputePaddingWithOffset: the leading padding (trailing gets the extra odd pixel)."""
    effective = (filter_size - 1) * dilation + 1
    total = (out_size - 1) * stride + effective - in_size
    return max(total, 0) // 2


def _nhwc(graph: Graph, op: Operator, t: Tensor) -> tuple[int, int, int, int]:
    if len(t.shape) != 4:
        raise _err(graph, op, f"tensor '{t.name}' must be 4-D NHWC, has shape {t.shape}")
    n, h, w, c = t.shape
    return int(n), int(h), int(w), int(c)


def _bias(graph: Graph, op: Operator, channels: int) -> np.ndarray | None:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = graph.tensors[op.inputs[2]]
        if b.data is None:
            raise _err(graph, op, "the bias must be a constant tensor")
        if b.dtype != "int32":
            raise _err(graph, op, f"bias '{b.name}' is {b.dtype}; int8 kernels need int32 bias")
        return b.data.astype(np.int64).reshape(channels)
    return None


def _wrap32(x: np.ndarray) -> np.ndarray:
    """int32 two's-complement wrap, as the C accumulator would."""
    return ((x.astype(np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


#: Default scratch budget (bytes) of the conv strip path; a model's scratch is the largest need of its convs.
CONV_SCRATCH_BUDGET = 4096
#: Must equal HI_NN_RES_LUT_BYTES in firmware/lib/hi_nn/hi_nn_conv.c: the fused residual ADD's operand tables.
RES_LUT_BYTES = 2 * 256 * 4
#: Must equal HI_NN_STRIP_MAX in firmware/lib/hi_nn/hi_nn_conv.h: the widest strip.
STRIP_MAX = 64


def conv_scratch_bytes(p: dict[str, Any], strip_w: int, has_residual: bool) -> int:
    """Scratch bytes of hi_nn_conv's strip path (hi_nn_conv_scratch_bytes in C computes the same)."""
    if strip_w <= 0:
        return 0
    groups = (p["in_c"] + 3) // 4
    pixels = (strip_w - 1) * p["stride_w"] + (p["k_w"] - 1) * p["dil_w"] + 1
    return (RES_LUT_BYTES if has_residual else 0) + p["k_h"] * groups * pixels * 8


def choose_strip(p: dict[str, Any], has_residual: bool, budget: int) -> int:
    """Output pixels per strip: the whole row when it fits the budget, else the widest multiple of 4
    (the tiled kernel's pixel block) that fits; 0 (read OHWI in place, no scratch) when not even that does."""
    if p["out_w"] <= STRIP_MAX and conv_scratch_bytes(p, p["out_w"], has_residual) <= budget:
        return int(p["out_w"])
    strip = min(p["out_w"] - 1, STRIP_MAX) // 4 * 4
    while strip >= 4 and conv_scratch_bytes(p, strip, has_residual) > budget:
        strip -= 4
    return strip if strip >= 4 else 0


def pack_strip_filter(filter_ohwi: np.ndarray) -> np.ndarray:
    """OHWI int8 weights in the strip path's order [oc][ky][channel group of 4][kx][4] (hi_nn_conv.h),
    channels zero-padded to a multiple of 4."""
    oc, kh, kw, ic = filter_ohwi.shape
    groups = (ic + 3) // 4
    w = np.zeros((oc, kh, kw, groups * 4), np.int8)
    w[..., :ic] = filter_ohwi
    return np.ascontiguousarray(w.reshape(oc, kh, kw, groups, 4).transpose(0, 1, 3, 2, 4)).reshape(-1)


def plan_conv_strips(steps: list[Step], budget: int = CONV_SCRATCH_BUDGET) -> None:
    """Choose each conv's path (after residual fusion, which changes its scratch need) and lay out its filter."""
    for s in steps:
        if s.kind != "conv":
            continue
        p = s.params
        strip = choose_strip(p, "residual" in p, budget)
        p["strip_w"] = strip
        p["scratch_bytes"] = conv_scratch_bytes(p, strip, "residual" in p)
        # every strip-path accumulator is bias_folded + sum w * x with int8 x (padding holds the zero point)
        bound = np.abs(s.consts["bias_folded"].astype(np.int64)) + 128 * np.abs(
            s.consts["filter"].reshape(p["out_c"], -1).astype(np.int64)).sum(axis=1)
        p["acc_q30"] = int(bool(strip > 0 and bound.max() < (1 << 30) - 1))
        if strip > 0:
            s.consts["filter"] = pack_strip_filter(s.consts["filter"])
            s.consts.pop("bias", None)  # only the in-place path's border pixels read the unfolded bias
            p["has_bias"] = False


def lower_conv(graph: Graph, op: Operator) -> Step:
    x, w, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, w, y], ("int8",))
    if w.data is None:
        raise _err(graph, op, "the filter must be a constant tensor")
    n, ih, iw, ic = _nhwc(graph, op, x)
    _, oh, ow, oc = _nhwc(graph, op, y)
    kc, kh, kw, kic = w.shape
    if kc != oc:
        raise _err(graph, op, f"filter has {kc} output channels, output tensor has {oc}")
    if kic != ic:
        raise _err(graph, op, f"grouped convolution (filter in-channels {kic} != input channels {ic}) is not supported")
    if np.any(w.zero_points != 0):
        raise _err(graph, op, "filter zero points must be 0 (symmetric int8 weights)")
    o = op.options
    pad_h = _same_padding(o["stride_h"], o["dilation_h"], ih, kh, oh) if o["padding"] == "SAME" else 0
    pad_w = _same_padding(o["stride_w"], o["dilation_w"], iw, kw, ow) if o["padding"] == "SAME" else 0
    mults, shifts = quant.per_channel_multipliers(x.scale, w.scales, y.scale, oc)
    act_min, act_max = quant.activation_range(o["activation"], y.scale, y.zero_point)
    bias = _bias(graph, op, oc)
    input_offset = -x.zero_point
    wsum = w.data.reshape(oc, -1).astype(np.int64).sum(axis=1)
    bias0 = bias if bias is not None else np.zeros(oc, np.int64)
    params = {
        "batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc, "k_h": kh, "k_w": kw,
        "stride_h": o["stride_h"], "stride_w": o["stride_w"], "dil_h": o["dilation_h"], "dil_w": o["dilation_w"],
        "pad_h": pad_h, "pad_w": pad_w, "input_offset": input_offset, "output_offset": y.zero_point,
        "act_min": act_min, "act_max": act_max, "has_bias": bias is not None,
    }
    consts = {
        # OHWI; plan_conv_strips re-lays it out for the strip path.
        "filter": w.data.astype(np.int8),
        "bias_folded": _wrap32(bias0 + input_offset * wsum),
        "mult": np.asarray(mults, np.int32),
        "shift": np.asarray(shifts, np.int32),
    }
    if bias is not None:
        consts["bias"] = _wrap32(bias)
    return Step("conv", op.index, [x.index], y.index, params, consts, inplace_forbidden=[x.index])


def lower_depthwise(graph: Graph, op: Operator) -> Step:
    x, w, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, w, y], ("int8",))
    if w.data is None:
        raise _err(graph, op, "the filter must be a constant tensor")
    n, ih, iw, ic = _nhwc(graph, op, x)
    _, oh, ow, oc = _nhwc(graph, op, y)
    _, kh, kw, kc = w.shape
    if kc != oc or oc % ic != 0:
        raise _err(graph, op, f"filter channels {kc} / output {oc} / input {ic} are inconsistent")
    if np.any(w.zero_points != 0):
        raise _err(graph, op, "filter zero points must be 0 (symmetric int8 weights)")
    o = op.options
    pad_h = _same_padding(o["stride_h"], o["dilation_h"], ih, kh, oh) if o["padding"] == "SAME" else 0
    pad_w = _same_padding(o["stride_w"], o["dilation_w"], iw, kw, ow) if o["padding"] == "SAME" else 0
    mults, shifts = quant.per_channel_multipliers(x.scale, w.scales, y.scale, oc)
    act_min, act_max = quant.activation_range(o["activation"], y.scale, y.zero_point)
    bias = _bias(graph, op, oc)
    input_offset = -x.zero_point
    wsum = w.data.reshape(kh * kw, oc).astype(np.int64).sum(axis=0)
    bias0 = bias if bias is not None else np.zeros(oc, np.int64)
    params = {
        "batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc, "depth_multiplier": oc // ic,
        "k_h": kh, "k_w": kw, "stride_h": o["stride_h"], "stride_w": o["stride_w"], "dil_h": o["dilation_h"],
        "dil_w": o["dilation_w"], "pad_h": pad_h, "pad_w": pad_w, "input_offset": input_offset,
        "output_offset": y.zero_point, "act_min": act_min, "act_max": act_max, "has_bias": bias is not None,
    }
    consts = {
        "filter": w.data.astype(np.int8).reshape(kh, kw, oc),
        "bias_folded": _wrap32(bias0 + input_offset * wsum),
        "mult": np.asarray(mults, np.int32),
        "shift": np.asarray(shifts, np.int32),
    }
    if bias is not None:
        consts["bias"] = _wrap32(bias)
    return Step("dwconv", op.index, [x.index], y.index, params, consts, inplace_forbidden=[x.index])


def lower_fc(graph: Graph, op: Operator) -> Step:
    x, w, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, w, y], ("int8",))
    if w.data is None:
        raise _err(graph, op, "the weights must be a constant tensor")
    if op.options.get("weights_format", 0) != 0:
        raise _err(graph, op, "shuffled FC weights are not supported")
    if np.any(w.zero_points != 0):
        raise _err(graph, op, "weight zero points must be 0 (symmetric int8 weights)")
    out_depth, in_depth = int(w.shape[0]), int(w.shape[1])
    if x.num_elements % in_depth:
        raise _err(graph, op, f"input of {x.num_elements} elements is not a multiple of the weights' depth {in_depth}")
    batches = x.num_elements // in_depth
    per_channel = w.scales.size > 1
    if per_channel:
        mults, shifts = quant.per_channel_multipliers(x.scale, w.scales, y.scale, out_depth)
    else:
        m, s = quant.fc_per_tensor_multiplier(x.scale, float(w.scales[0]), y.scale)
        mults, shifts = [m], [s]
    act_min, act_max = quant.activation_range(op.options["activation"], y.scale, y.zero_point)
    bias = _bias(graph, op, out_depth)
    bias0 = bias if bias is not None else np.zeros(out_depth, np.int64)
    wsum = w.data.astype(np.int64).sum(axis=1)
    params = {"batches": batches, "in_depth": in_depth, "out_depth": out_depth, "output_offset": y.zero_point,
                  "act_min": act_min, "act_max": act_max, "per_channel": int(per_channel)}
    consts = {
        "weights": w.data.astype(np.int8),
        "bias_folded": _wrap32(bias0 + (-x.zero_point) * wsum),
        "mult": np.asarray(mults, np.int32),
        "shift": np.asarray(shifts, np.int32),
    }
    return Step("fc", op.index, [x.index], y.index, params, consts, inplace_forbidden=[x.index])


def _right_align(shape: tuple[int, ...], dims: int = 6) -> list[int]:
    return [1] * (dims - len(shape)) + [int(d) for d in shape]


def lower_add(graph: Graph, op: Operator) -> Step:
    a, b, y = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    _expect_types(graph, op, [a, b, y], ("int8",))
    for t in (a, b):
        if t.data is not None:
            raise _err(graph, op, f"constant operand '{t.name}' is not supported; only activation + activation")
    params: dict[str, Any] = {"input1_offset": -a.zero_point, "input2_offset": -b.zero_point,
                                  "output_offset": y.zero_point}
    params.update(quant.add_params(a.scale, b.scale, y.scale))
    params["act_min"], params["act_max"] = quant.activation_range(op.options["activation"], y.scale, y.zero_point)
    if a.shape == b.shape == y.shape:
        return Step("add", op.index, [a.index, b.index], y.index, params, inplace_candidates=[a.index, b.index])
    if len(a.shape) > 6 or len(b.shape) > 6:
        raise _err(graph, op, "broadcast ADD supports at most 6 dimensions")
    params["in1_shape"] = _right_align(a.shape)
    params["in2_shape"] = _right_align(b.shape)
    params["out_shape"] = _right_align(y.shape)
    full = [t.index for t in (a, b) if t.shape == y.shape]
    other = [t.index for t in (a, b) if t.shape != y.shape]
    return Step("add_broadcast", op.index, [a.index, b.index], y.index, params,
                inplace_candidates=full, inplace_forbidden=other)


def lower_pool(graph: Graph, op: Operator) -> Step:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, y], ("int8",))
    n, ih, iw, c = _nhwc(graph, op, x)
    _, oh, ow, _ = _nhwc(graph, op, y)
    o = op.options
    pad_h = _same_padding(o["stride_h"], 1, ih, o["filter_h"], oh) if o["padding"] == "SAME" else 0
    pad_w = _same_padding(o["stride_w"], 1, iw, o["filter_w"], ow) if o["padding"] == "SAME" else 0
    act_min, act_max = quant.activation_range(o["activation"], y.scale, y.zero_point)
    params = {"batches": n, "in_h": ih, "in_w": iw, "channels": c, "out_h": oh, "out_w": ow, "filter_h": o["filter_h"],
                  "filter_w": o["filter_w"], "stride_h": o["stride_h"], "stride_w": o["stride_w"], "pad_h": pad_h,
                  "pad_w": pad_w, "act_min": act_min, "act_max": act_max}
    kind = "avg_pool" if op.opcode == "AVERAGE_POOL_2D" else "max_pool"
    return Step(kind, op.index, [x.index], y.index, params, inplace_forbidden=[x.index])


def lower_mean(graph: Graph, op: Operator) -> Step:
    x, axis_t, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, y], ("int8",))
    if axis_t.data is None:
        raise _err(graph, op, "the axis must be a constant tensor")
    nd = len(x.shape)
    if nd < 1 or nd > 6:
        raise _err(graph, op, f"input rank {nd} not supported (1..6)")
    reduce = [0] * nd
    for ax in np.asarray(axis_t.data).reshape(-1):
        ax = int(ax) + nd if int(ax) < 0 else int(ax)
        if not 0 <= ax < nd:
            raise _err(graph, op, f"axis {ax} out of range for rank {nd}")
        reduce[ax] = 1
    count = int(np.prod([d for d, r in zip(x.shape, reduce) if r], dtype=np.int64))
    mult, shift = quant.mean_multiplier(x.scale, y.scale, count)
    params = {"num_dims": nd, "in_shape": list(x.shape) + [1] * (6 - nd), "reduce": reduce + [0] * (6 - nd),
                  "input_zero_point": x.zero_point, "output_zero_point": y.zero_point, "multiplier": mult, "shift": shift}
    return Step("mean", op.index, [x.index], y.index, params, inplace_forbidden=[x.index])


def lower_pad(graph: Graph, op: Operator) -> Step:
    x, pads_t, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, y], ("int8", "uint8"))
    if pads_t.data is None:
        raise _err(graph, op, "the paddings must be a constant tensor")
    pads = np.asarray(pads_t.data).reshape(-1, 2).astype(int)
    nd = len(x.shape)
    if nd > 6 or pads.shape[0] != nd:
        raise _err(graph, op, f"paddings {pads.tolist()} do not match input rank {nd} (max 6)")
    pad_value = y.zero_point
    if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        cv = graph.tensors[op.inputs[2]]
        if cv.data is None:
            raise _err(graph, op, "the constant value must be a constant tensor")
        pad_value = int(np.asarray(cv.data).reshape(-1)[0])
    params = {"in_shape": _right_align(x.shape), "before": [0] * (6 - nd) + pads[:, 0].tolist(),
                  "after": [0] * (6 - nd) + pads[:, 1].tolist(), "pad_value": pad_value}
    return Step("pad", op.index, [x.index], y.index, params, inplace_forbidden=[x.index])


MAX_SOFTMAX_DEPTH = 4095  # each exp term is < 2^19 in the Q12 accumulator: 4096 of them can reach 2^31


def lower_softmax(graph: Graph, op: Operator) -> Step:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x, y], ("int8",))
    if abs(y.scale - 1.0 / 256) > 1e-9 or y.zero_point != -128:
        raise _err(graph, op, f"int8 softmax output must have scale 1/256 and zero point -128, got {y.scale}, {y.zero_point}")
    depth = int(x.shape[-1])
    if depth > MAX_SOFTMAX_DEPTH:
        raise _err(graph, op, f"a softmax over {depth} classes: the int8 kernel's sum of exps (12 integer bits, as "
                              f"TFLite Micro's) overflows beyond {MAX_SOFTMAX_DEPTH}; end the model in logits or a "
                              "float softmax")
    params = {"outer": x.num_elements // depth, "depth": depth}
    params.update(quant.softmax_params(op.options.get("beta", 1.0), x.scale))
    return Step("softmax", op.index, [x.index], y.index, params, inplace_candidates=[x.index])


def lower_quantize(graph: Graph, op: Operator) -> Step:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [y], ("int8", "uint8"))
    out_type = "HI_NN_TYPE_UINT8" if y.dtype == "uint8" else "HI_NN_TYPE_INT8"
    if x.dtype == "float32":
        params = {"n": x.num_elements, "out_type": out_type, "scale": float(np.float32(y.scale)), "zero_point": y.zero_point}
        return Step("quantize_f32", op.index, [x.index], y.index, params)
    _expect_types(graph, op, [x], ("int8", "uint8", "float32"))
    m, s = quant.requantize_params(x.scale, y.scale)
    params = {"n": x.num_elements, "in_type": "HI_NN_TYPE_UINT8" if x.dtype == "uint8" else "HI_NN_TYPE_INT8",
                  "out_type": out_type, "in_zero_point": x.zero_point, "out_zero_point": y.zero_point,
                  "multiplier": m, "shift": s}
    return Step("requantize", op.index, [x.index], y.index, params, inplace_candidates=[x.index])


def lower_dequantize(graph: Graph, op: Operator) -> Step:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _expect_types(graph, op, [x], ("int8", "uint8"))
    _expect_types(graph, op, [y], ("float32",))
    params = {"n": x.num_elements, "in_type": "HI_NN_TYPE_UINT8" if x.dtype == "uint8" else "HI_NN_TYPE_INT8",
                  "scale": float(np.float32(x.scale)), "zero_point": x.zero_point}
    return Step("dequantize", op.index, [x.index], y.index, params, inplace_forbidden=[x.index])


def lower_reshape(graph: Graph, op: Operator) -> Step:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if x.nbytes != y.nbytes:
        raise _err(graph, op, f"reshape changes the size ({x.nbytes} -> {y.nbytes} bytes); the model computes "
                   "shapes at run time: convert it with a fixed batch size (keras.Input(..., batch_size=1))")
    return Step("reshape", op.index, [x.index], y.index, {"nbytes": x.nbytes}, alias_of=x.index)


_LOWER = {
    "CONV_2D": lower_conv,
    "DEPTHWISE_CONV_2D": lower_depthwise,
    "FULLY_CONNECTED": lower_fc,
    "ADD": lower_add,
    "AVERAGE_POOL_2D": lower_pool,
    "MAX_POOL_2D": lower_pool,
    "MEAN": lower_mean,
    "PAD": lower_pad,
    "PADV2": lower_pad,
    "RESHAPE": lower_reshape,
    "SOFTMAX": lower_softmax,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
}


def lower_graph(graph: Graph, fuse_residual_add: bool = True,
                scratch_budget: int = CONV_SCRATCH_BUDGET) -> list[Step]:
    steps = []
    for op in graph.operators:
        if len(op.outputs) != 1:
            raise _err(graph, op, f"expected one output, got {len(op.outputs)}")
        steps.append(_LOWER[op.opcode](graph, op))
    if fuse_residual_add:
        steps = fuse_residual_adds(graph, steps)
    plan_conv_strips(steps, scratch_budget)
    return steps


def step_macs(step: Step) -> int:
    """Multiply-accumulates of one step (the work a kernel cannot avoid), for profiles."""
    p = step.params
    if step.kind == "conv":
        return p["batches"] * p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"] * p["in_c"]
    if step.kind == "dwconv":
        return p["batches"] * p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"]
    if step.kind == "fc":
        return p["batches"] * p["in_depth"] * p["out_depth"]
    return 0


def fuse_residual_adds(graph: Graph, steps: list[Step]) -> list[Step]:
    """Fold ADD(conv_out, r) into the conv's output stage when conv_out has no other reader.

    Requirements that keep this exact and safe: same-shape ADD, conv_out is neither a model output nor read
    by anything else, and r is already computed when the conv runs (so the fused step can run at the conv's
    position). The output may then overwrite r in place if r dies there (decided by the planner)."""
    producer = {s.output: i for i, s in enumerate(steps)}
    removed: set[int] = set()
    for ai, add in enumerate(steps):
        if add.kind != "add":
            continue
        best: tuple[int, int, int] | None = None  # (conv step index, conv operand slot, residual tensor)
        for slot in (0, 1):
            t, r = add.inputs[slot], add.inputs[1 - slot]
            ci = producer.get(t)
            if ci is None or ci in removed or steps[ci].kind != "conv" or "residual" in steps[ci].params:
                continue
            if t in graph.outputs or len(graph.consumers(t)) != 1 or t == r:
                continue
            ri = producer.get(r)
            if ri is not None and ri >= ci:
                continue  # the residual is computed after the conv: cannot run fused at the conv's position
            if best is None or ci > best[0]:
                best = (ci, slot, r)
        if best is None:
            continue
        ci, slot, r = best
        conv = steps[ci]
        conv.params["residual"] = dict(add.params)
        conv.params["residual_conv_is_input2"] = int(slot == 1)
        conv.params["residual_tensor"] = r
        conv.inputs = conv.inputs + [r]
        conv.output = add.output
        conv.op_index = add.op_index
        conv.inplace_candidates = [r]
        removed.add(ai)
    return [s for i, s in enumerate(steps) if i not in removed]
