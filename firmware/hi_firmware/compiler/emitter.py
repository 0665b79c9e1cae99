"""Emit deterministic C99 for a lowered, planned model: hi_model_NAME.h and hi_model_NAME.c.

WHY deterministic: generated code is committed (firmware/generated/) and reviewed as a diff, so the same
model must always give byte-identical files (no timestamps, no dict-order or path dependence).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .c_text import c_comment, c_string
from .graph import Graph, Tensor
from .lowering import Step, step_macs
from .planner import MemoryPlan

_C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "float32": "float", "int32": "int32_t", "int16": "int16_t"}


@dataclass(frozen=True)
class StepSummary:
    """What one kernel step is, for profiles (HI_MODEL_STEP_HOOK(index) runs after it)."""

    index: int
    kind: str
    opcode: str
    output: str
    macs: int  # multiply-accumulates (0 for steps without any)
    hooked: bool  # HI_MODEL_STEP_HOOK runs after it (not for RESHAPE aliases and output copies)


@dataclass
class GeneratedModel:
    name: str
    header: str
    source: str
    arena_size: int
    scratch_size: int  # conv strip scratch (static, besides the arena; 0 when no conv uses the strip path)
    flash_bytes: int  # constant data emitted (weights, biases, multipliers, parameter structs excluded)
    input_names: list[str]
    output_names: list[str]
    steps: list[StepSummary] = field(default_factory=list)

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        h = out_dir / f"hi_model_{self.name}.h"
        c = out_dir / f"hi_model_{self.name}.c"
        h.write_text(self.header)
        c.write_text(self.source)
        return [h, c]


def c_identifier(name: str) -> str:
    """Tensor names like 'StatefulPartitionedCall:0' become 'statefulpartitionedcall_0'."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if not s:
        s = "tensor"
    if s[0].isdigit():
        s = "t_" + s
    return s


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


def _c_array(ctype: str, name: str, data: np.ndarray, per_line: int = 24) -> str:
    flat = np.asarray(data).reshape(-1)
    if ctype == "float":
        items = [repr(float(np.float32(v))) + "f" for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i: i + per_line]) for i in range(0, len(items), per_line)] or ["0"]
    body = ",\n  ".join(lines)
    return f"static const {ctype} {name}[{max(len(flat), 1)}] HI_MODEL_ALIGN = {{\n  {body}\n}};\n"


def _float_literal(x: float) -> str:
    return repr(float(np.float32(x))) + "f"


def _struct(fields: list[tuple[str, object]]) -> str:
    parts = []
    for k, v in fields:
        if isinstance(v, (list, tuple)):
            parts.append(f".{k} = {{{', '.join(str(int(e)) for e in v)}}}")
        elif isinstance(v, float):
            parts.append(f".{k} = {_float_literal(v)}")
        else:
            parts.append(f".{k} = {v}")
    return "{" + ", ".join(parts) + "}"


_CONV_FIELDS = ("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
                "stride_w", "dil_h", "dil_w", "pad_h", "pad_w", "input_offset", "output_offset", "act_min",
                "act_max", "strip_w", "acc_q30")
_DW_FIELDS = ("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "depth_multiplier", "k_h", "k_w",
              "stride_h", "stride_w", "dil_h", "dil_w", "pad_h", "pad_w", "input_offset", "output_offset",
              "act_min", "act_max")
_ADD_FIELDS = ("input1_offset", "input2_offset", "output_offset", "left_shift", "input1_multiplier",
               "input1_shift", "input2_multiplier", "input2_shift", "output_multiplier", "output_shift",
               "act_min", "act_max")
_POOL_FIELDS = ("batches", "in_h", "in_w", "channels", "out_h", "out_w", "filter_h", "filter_w", "stride_h",
                "stride_w", "pad_h", "pad_w", "act_min", "act_max")


def emit(graph: Graph, steps: list[Step], plan: MemoryPlan, name: str, source_label: str,
         model_sha256: str) -> GeneratedModel:
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise ValueError(f"model name '{name}' must be a C identifier (letters, digits, underscores)")
    up = name.upper()
    pre = f"hi_model_{name}"
    arena = f"{pre}_arena"
    scratch = f"{pre}_scratch"
    scratch_size = max([int(s.params.get("scratch_bytes", 0)) for s in steps if s.kind == "conv"] or [0])

    in_ids = _unique([c_identifier(graph.tensors[t].name) for t in graph.inputs])
    out_ids = _unique([c_identifier(graph.tensors[t].name) for t in graph.outputs])
    in_params = ["in"] if len(in_ids) == 1 else [f"in_{n}" for n in in_ids]
    out_params = ["out"] if len(out_ids) == 1 else [f"out_{n}" for n in out_ids]

    def ctype(t: Tensor) -> str:
        if t.dtype not in _C_TYPES:
            raise ValueError(f"tensor '{t.name}' of type {t.dtype} cannot be an activation")
        return _C_TYPES[t.dtype]

    def ptr(tensor_index: int, as_type: str, const: bool) -> str:
        loc = plan.locations[tensor_index]
        q = "const " if const else ""
        if loc.kind == "input":
            base = in_params[loc.index]
        elif loc.kind == "output":
            base = out_params[loc.index]
        elif loc.kind == "arena":
            base = f"({arena} + {loc.offset})"
        else:
            raise ValueError(f"tensor {graph.tensors[tensor_index].name} has no runtime location")
        return f"({q}{as_type} *)({q}void *){base}"

    # ---- header -------------------------------------------------------------------------------------
    h: list[str] = []
    guard = f"HI_MODEL_{up}_H"
    h.append(f"/* Generated by `hi-firmware compile` from {c_comment(source_label)} (sha256 {model_sha256[:16]}). "
             "Do not edit. */")
    h.append(f"#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n")
    h.append('#ifdef __cplusplus\nextern "C" {\n#endif\n')
    h.append("/* Bytes of RAM the model needs besides the caller's input/output buffers (one static arena). */")
    h.append(f"#define HI_MODEL_{up}_ARENA_SIZE {plan.arena_size}")
    h.append("/* Bytes of static scratch the convolutions share (widened input rows; not part of the arena). */")
    h.append(f"#define HI_MODEL_{up}_SCRATCH_SIZE {scratch_size}")
    h.append(f"#define HI_MODEL_{up}_NUM_INPUTS {len(graph.inputs)}")
    h.append(f"#define HI_MODEL_{up}_NUM_OUTPUTS {len(graph.outputs)}\n")

    def io_macros(kind: str, ident: str, t: Tensor) -> None:
        p = f"HI_MODEL_{up}_{kind}_{ident.upper()}"
        h.append(f"/* {kind.lower()}put tensor \"{c_comment(t.name)}\" */")
        h.append(f"#define {p}_NAME {c_string(t.name)}")
        h.append(f"#define {p}_TYPE_{t.dtype.upper()} 1")
        h.append(f"#define {p}_SIZE {t.num_elements}")
        h.append(f"#define {p}_BYTES {t.nbytes}")
        h.append(f"#define {p}_RANK {len(t.shape)}")
        h.append(f"#define {p}_DIMS {{{', '.join(str(d) for d in t.shape)}}}")
        if t.scales.size:
            h.append(f"#define {p}_SCALE {_float_literal(t.scale)}")
            h.append(f"#define {p}_ZERO_POINT ({t.zero_point})")
        h.append("")

    for ident, t in zip(in_ids, graph.inputs):
        io_macros("IN", ident, graph.tensors[t])
    for ident, t in zip(out_ids, graph.outputs):
        io_macros("OUT", ident, graph.tensors[t])
    if len(graph.inputs) == 1:
        h.append("/* Single input: position-free aliases. */")
        for suffix in ("SIZE", "BYTES", "SCALE", "ZERO_POINT", "DIMS", "RANK"):
            if suffix in ("SCALE", "ZERO_POINT") and not graph.tensors[graph.inputs[0]].scales.size:
                continue
            h.append(f"#define HI_MODEL_{up}_INPUT_{suffix} HI_MODEL_{up}_IN_{in_ids[0].upper()}_{suffix}")
    if len(graph.outputs) == 1:
        h.append("/* Single output: position-free aliases. */")
        for suffix in ("SIZE", "BYTES", "SCALE", "ZERO_POINT", "DIMS", "RANK"):
            if suffix in ("SCALE", "ZERO_POINT") and not graph.tensors[graph.outputs[0]].scales.size:
                continue
            h.append(f"#define HI_MODEL_{up}_OUTPUT_{suffix} HI_MODEL_{up}_OUT_{out_ids[0].upper()}_{suffix}")
    h.append("")
    sig_args = [f"const {ctype(graph.tensors[t])} *{p}" for t, p in zip(graph.inputs, in_params)]
    sig_args += [f"{ctype(graph.tensors[t])} *{p}" for t, p in zip(graph.outputs, out_params)]
    signature = f"int {pre}_invoke({', '.join(sig_args)})"
    h.append("/* Runs the model once. Returns 0 on success, a negative hi_nn error code otherwise.")
    h.append(" * Inputs and outputs are caller-owned and must not overlap. Not reentrant (one static arena). */")
    h.append(signature + ";\n")
    h.append("/* Same call with inputs/outputs as arrays in the order of the NUM_INPUTS/NUM_OUTPUTS macros above;")
    h.append(" * for generic runners (host tests, serial bridge). */")
    h.append(f"int {pre}_invoke_generic(const void *const *inputs, void *const *outputs);\n")
    h.append('#ifdef __cplusplus\n}\n#endif\n')
    h.append(f"#endif /* {guard} */\n")

    # ---- source -------------------------------------------------------------------------------------
    def scratch_arg(p: dict) -> str:
        return f"{scratch}, {scratch_size}" if p.get("scratch_bytes", 0) else "NULL, 0"

    consts: list[str] = []
    body: list[str] = []
    flash = 0
    for si, s in enumerate(steps):
        op = graph.operators[s.op_index]
        tag = f"s{si}"
        out_t = graph.tensors[s.output]
        comment = f"  /* step {si}: {s.kind} (TFLite op #{s.op_index} {op.opcode}) -> \"{c_comment(out_t.name)}\" */"
        body.append(comment)
        for cname in sorted(s.consts):
            arr = s.consts[cname]
            ct = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t"}[arr.dtype]
            consts.append(_c_array(ct, f"{tag}_{cname}", arr))
            flash += arr.nbytes
        p = s.params
        if s.kind == "conv":
            consts.append(f"static const hi_nn_conv_params_t {tag}_p = {_struct([(k, p[k]) for k in _CONV_FIELDS])};\n")
            res = "NULL"
            if "residual" in p:
                consts.append(
                    f"static const hi_nn_add_params_t {tag}_add = "
                    f"{_struct([(k, p['residual'][k]) for k in _ADD_FIELDS])};\n"
                )
                body.append(f"  {{\n    hi_nn_residual_t res;\n    res.data = {ptr(p['residual_tensor'], 'int8_t', True)};")
                body.append(f"    res.add = {tag}_add;\n    res.conv_is_input2 = {p['residual_conv_is_input2']};")
                res = "&res"
                body.append(
                    f"    rc = hi_nn_conv_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {tag}_filter, "
                    f"{tag + '_bias' if p['has_bias'] else 'NULL'}, {tag}_bias_folded, {tag}_mult, {tag}_shift, "
                    f"{ptr(s.output, 'int8_t', False)}, {res}, {scratch_arg(p)});\n  }}"
                )
            else:
                body.append(
                    f"  rc = hi_nn_conv_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {tag}_filter, "
                    f"{tag + '_bias' if p['has_bias'] else 'NULL'}, {tag}_bias_folded, {tag}_mult, {tag}_shift, "
                    f"{ptr(s.output, 'int8_t', False)}, NULL, {scratch_arg(p)});"
                )
        elif s.kind == "dwconv":
            consts.append(f"static const hi_nn_dwconv_params_t {tag}_p = {_struct([(k, p[k]) for k in _DW_FIELDS])};\n")
            body.append(
                f"  rc = hi_nn_depthwise_conv_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {tag}_filter, "
                f"{tag + '_bias' if p['has_bias'] else 'NULL'}, {tag}_bias_folded, {tag}_mult, {tag}_shift, "
                f"{ptr(s.output, 'int8_t', False)});"
            )
        elif s.kind == "fc":
            fields = [(k, p[k]) for k in ("batches", "in_depth", "out_depth", "output_offset", "act_min",
                                          "act_max", "per_channel")]
            consts.append(f"static const hi_nn_fc_params_t {tag}_p = {_struct(fields)};\n")
            body.append(
                f"  rc = hi_nn_fully_connected_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {tag}_weights, "
                f"{tag}_bias_folded, {tag}_mult, {tag}_shift, {ptr(s.output, 'int8_t', False)});"
            )
        elif s.kind in ("add", "add_broadcast"):
            consts.append(f"static const hi_nn_add_params_t {tag}_p = {_struct([(k, p[k]) for k in _ADD_FIELDS])};\n")
            a, b = s.inputs
            if s.kind == "add":
                body.append(
                    f"  rc = hi_nn_add_s8(&{tag}_p, {ptr(a, 'int8_t', True)}, {ptr(b, 'int8_t', True)}, "
                    f"{ptr(s.output, 'int8_t', False)}, {out_t.num_elements});"
                )
            else:
                for k in ("in1_shape", "in2_shape", "out_shape"):
                    consts.append(f"static const int32_t {tag}_{k}[6] = {{{', '.join(str(v) for v in p[k])}}};\n")
                body.append(
                    f"  rc = hi_nn_add_broadcast_s8(&{tag}_p, {tag}_in1_shape, {tag}_in2_shape, {tag}_out_shape, "
                    f"{ptr(a, 'int8_t', True)}, {ptr(b, 'int8_t', True)}, {ptr(s.output, 'int8_t', False)});"
                )
        elif s.kind in ("avg_pool", "max_pool"):
            consts.append(f"static const hi_nn_pool_params_t {tag}_p = {_struct([(k, p[k]) for k in _POOL_FIELDS])};\n")
            body.append(
                f"  rc = hi_nn_{s.kind}_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {ptr(s.output, 'int8_t', False)});"
            )
        elif s.kind == "mean":
            fields = [(k, p[k]) for k in ("num_dims", "in_shape", "reduce", "input_zero_point", "output_zero_point",
                                          "multiplier", "shift")]
            consts.append(f"static const hi_nn_mean_params_t {tag}_p = {_struct(fields)};\n")
            body.append(f"  rc = hi_nn_mean_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {ptr(s.output, 'int8_t', False)});")
        elif s.kind == "pad":
            fields = [(k, p[k]) for k in ("in_shape", "before", "after", "pad_value")]
            consts.append(f"static const hi_nn_pad_params_t {tag}_p = {_struct(fields)};\n")
            body.append(f"  rc = hi_nn_pad_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {ptr(s.output, 'int8_t', False)});")
        elif s.kind == "softmax":
            fields = [(k, p[k]) for k in ("outer", "depth", "input_multiplier", "input_left_shift", "diff_min")]
            consts.append(f"static const hi_nn_softmax_params_t {tag}_p = {_struct(fields)};\n")
            body.append(f"  rc = hi_nn_softmax_s8(&{tag}_p, {ptr(s.inputs[0], 'int8_t', True)}, {ptr(s.output, 'int8_t', False)});")
        elif s.kind == "quantize_f32":
            body.append(
                f"  rc = hi_nn_quantize_f32({ptr(s.inputs[0], 'float', True)}, {ptr(s.output, 'int8_t', False)}, "
                f"{p['out_type']}, {p['n']}, {_float_literal(p['scale'])}, {p['zero_point']});"
            )
        elif s.kind == "requantize":
            body.append(
                f"  rc = hi_nn_requantize({ptr(s.inputs[0], 'int8_t', True)}, {p['in_type']}, "
                f"{ptr(s.output, 'int8_t', False)}, {p['out_type']}, {p['n']}, {p['in_zero_point']}, "
                f"{p['out_zero_point']}, {p['multiplier']}, {p['shift']});"
            )
        elif s.kind == "dequantize":
            body.append(
                f"  rc = hi_nn_dequantize({ptr(s.inputs[0], 'int8_t', True)}, {p['in_type']}, "
                f"{ptr(s.output, 'float', False)}, {p['n']}, (double){_float_literal(p['scale'])}, {p['zero_point']});"
            )
        elif s.kind == "reshape":
            body.append("  /* no code: the output aliases the input's bytes */")
            continue
        elif s.kind == "copy":
            body.append(
                f"  memcpy({ptr(s.output, 'int8_t', False)}, {ptr(s.inputs[0], 'int8_t', True)}, {p['nbytes']});"
            )
            continue
        else:
            raise ValueError(f"no emitter for step kind {s.kind}")
        body.append("  if (rc != HI_NN_OK) return rc;")
        body.append(f"  HI_MODEL_STEP_HOOK({si});")

    # Outputs not written in place need a copy: a model input returned as an output (identity models), and
    # a tensor listed twice among the outputs (Keras Model(x, [a, a])), which lives in one output buffer.
    for oi, t in enumerate(graph.outputs):
        if t in graph.inputs:
            ii = graph.inputs.index(t)
            body.append(f"  memcpy({out_params[oi]}, {in_params[ii]}, {graph.tensors[t].nbytes});")
        elif plan.locations[t].kind == "output" and plan.locations[t].index != oi:
            body.append(f"  memcpy({out_params[oi]}, {out_params[plan.locations[t].index]}, {graph.tensors[t].nbytes});")

    c: list[str] = []
    c.append(f"/* Generated by `hi-firmware compile` from {c_comment(source_label)} (sha256 {model_sha256[:16]}). "
             "Do not edit.")
    c.append(f" * {len(steps)} kernel steps, arena {plan.arena_size} bytes, scratch {scratch_size} bytes, "
             f"constant data {flash} bytes. */")
    c.append(f'#include "hi_model_{name}.h"\n\n#include <stddef.h>\n#include <string.h>\n\n#include "hi_nn.h"\n')
    c.append("#if defined(__GNUC__)\n#define HI_MODEL_ALIGN __attribute__((aligned(4)))\n#define HI_MODEL_ARENA_ALIGN __attribute__((aligned(16)))\n#else\n#define HI_MODEL_ALIGN\n#define HI_MODEL_ARENA_ALIGN\n#endif")
    c.append("/* Profiling: define HI_MODEL_STEP_HOOK(step) to run code after every kernel step (e.g. read a cycle counter). */")
    c.append("#ifndef HI_MODEL_STEP_HOOK\n#define HI_MODEL_STEP_HOOK(step) ((void)0)\n#endif")
    c.append("/* Boards may place the arena in a specific RAM section by defining HI_MODEL_ARENA_SECTION. */")
    c.append("#ifndef HI_MODEL_ARENA_SECTION\n#define HI_MODEL_ARENA_SECTION\n#endif\n")
    c.append(f"static int8_t {arena}[{max(plan.arena_size, 4)}] HI_MODEL_ARENA_ALIGN HI_MODEL_ARENA_SECTION;\n")
    if scratch_size:
        c.append(f"static int8_t {scratch}[{scratch_size}] HI_MODEL_ARENA_ALIGN HI_MODEL_ARENA_SECTION;\n")
    c.extend(consts)
    c.append(signature + " {")
    c.append("  int rc = HI_NN_OK;")
    c.extend(body)
    c.append("  (void)rc;\n  return HI_NN_OK;\n}\n")
    gen_in = ", ".join(
        f"(const {ctype(graph.tensors[t])} *)inputs[{i}]" for i, t in enumerate(graph.inputs)
    )
    gen_out = ", ".join(f"({ctype(graph.tensors[t])} *)outputs[{i}]" for i, t in enumerate(graph.outputs))
    c.append(f"int {pre}_invoke_generic(const void *const *inputs, void *const *outputs) {{")
    c.append(f"  return {pre}_invoke({gen_in}, {gen_out});\n}}\n")
    return GeneratedModel(
        name=name,
        header="\n".join(h),
        source="\n".join(c),
        arena_size=plan.arena_size,
        scratch_size=scratch_size,
        flash_bytes=flash,
        input_names=[graph.tensors[t].name for t in graph.inputs],
        output_names=[graph.tensors[t].name for t in graph.outputs],
        steps=[StepSummary(si, s.kind + ("+add" if "residual" in s.params else ""), graph.operators[s.op_index].opcode,
                           graph.tensors[s.output].name,
                           step_macs(s), s.kind not in ("reshape", "copy")) for si, s in enumerate(steps)],
    )


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
