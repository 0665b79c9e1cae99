"""`hi-firmware gen-app`: compile the model (or every segment of an early-exit chain) and write the
application configuration hi_app_config.c that fills hi_app_t (firmware/include/hi_app.h).

WHY one generated file: the segment count, which generated output is the features and which the scores
(TFLite may reorder outputs, so they are resolved by tensor name), the exit bounds and the decider integers
all come from the shipped artifacts through the ONE Python implementation (hi_runtime.decider,
hi_runtime.early_exit); the C side only compares integers.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .compiler.c_text import c_string
from .decider_header import header_model_name, write_decider_header
from .errors import UsageError

if TYPE_CHECKING:
    from hi_runtime.decider import OutputSpec


@dataclass
class SegmentInfo:
    """One compiled segment and how the pipeline calls it."""

    name: str
    model_path: Path
    num_outputs: int
    scores_output: int
    features_output: int  # -1 when the segment has no features output
    features_bytes: int
    features_quant: tuple[float, int]
    next_input_quant: tuple[float, int]
    scores_quant: tuple[float, int]
    exit_bound: int
    arena_bytes: int
    flash_bytes: int
    scratch_bytes: int = 0
    offload_bound: int | None = None  # three-way policy: offload here iff max(q) - zp < bound (None: never)


@dataclass
class AppInfo:
    """What gen-app produced (also written as app.json beside the sources)."""

    out_dir: Path
    segments: list[SegmentInfo]
    input_shape: tuple[int, int, int]
    input_quant: tuple[float, int]
    num_classes: int
    decider: dict | None
    model_version: str
    model_id: str
    sources: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the user (e.g. a decider bound to no model)

    def to_dict(self) -> dict:
        return {
            "format": "hi-firmware-app/1",
            "segments": [{"name": s.name, "model": str(s.model_path), "num_outputs": s.num_outputs,
                          "scores_output": s.scores_output, "features_output": s.features_output,
                          "features_bytes": s.features_bytes, "scores_quant": list(s.scores_quant),
                          "exit_bound": s.exit_bound, "offload_bound": s.offload_bound, "arena_bytes": s.arena_bytes, "flash_bytes": s.flash_bytes,
                          "scratch_bytes": s.scratch_bytes}
                         for s in self.segments],
            "input_shape": list(self.input_shape),
            "input_quant": list(self.input_quant),
            "num_classes": self.num_classes,
            "decider": self.decider,
            "model_version": self.model_version,
            "model_id": self.model_id,
        }


def _c_ident(text: str) -> str:
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", text)
    return ident if re.match(r"[A-Za-z_]", ident) else f"m_{ident}"


def _float_c(x: float, suffix: str = "") -> str:
    r = repr(float(x))
    if "e" not in r and "." not in r and "inf" not in r and "nan" not in r:
        r += ".0"
    return r + suffix


def _compile(model_path: Path, name: str, out_dir: Path):
    from hi_firmware.compiler import CompileError, compile_model

    try:
        return compile_model(model_path, out_dir / "models" / name, name=name)
    except CompileError as exc:
        raise UsageError(f"cannot compile {model_path}: {exc}") from exc


def _tensor_quant(t, what: str = "tensor") -> tuple[float, int]:
    """The (scale, zero point) of an int8 tensor the board code reads: scores, features, a segment's input.
    Anything but int8 is refused: the generated app holds them in int8_t buffers, so uint8 scores (which the
    TFLite converter allows) would be misread (255 as -1) and the device would report the wrong class."""
    if t.dtype != "int8":
        raise UsageError(f"{what} '{t.name}' is {t.dtype}; the firmware pipeline reads int8 tensors only (convert "
                         "with inference_input_type and inference_output_type tf.int8)")
    if t.scales.size == 0:
        raise UsageError(f"tensor '{t.name}' is not quantized; the firmware runs full-integer INT8 models only")
    return float(t.scale), int(t.zero_point)


ENGINES = ("compiled", "tflm")


def _load_decider(path: Path):
    """A decider JSON (hi-train decider) as a Decider; an unreadable or malformed file is one line."""
    from hi_runtime.decider import Decider, DeciderError

    try:
        return Decider.load(path)
    except DeciderError as exc:
        raise UsageError(f"--decider: {exc}") from None


def _load_chain(path: Path):
    """An early-exit chain JSON as a SegmentChain; a file that is not one is one line naming --chain."""
    from hi_runtime.early_exit import EarlyExitError, SegmentChain

    try:
        return SegmentChain.load(path)
    except EarlyExitError as exc:
        raise UsageError(f"--chain: {exc}") from None


def _final_output(model: Path | None, chain_obj) -> tuple[Path | None, OutputSpec]:
    """The file and output the final decider sees: the model's single output, or the chain's final scores
    (whose file is the chain's single-file model, when the chain names one that exists; None: no file)."""
    from hi_runtime.decider import OutputSpec

    if model is not None:
        from hi_firmware.compiler.graph import CompileError, read_tflite_bytes

        try:
            g = read_tflite_bytes(model.read_bytes(), model_name=model.name)
        except CompileError as exc:
            raise UsageError(f"cannot compile {model}: {exc}") from None
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise UsageError(f"{model} has {len(g.inputs)} inputs and {len(g.outputs)} outputs; a single model needs "
                             "one of each (use --chain for early-exit segments)")
        t = g.tensors[g.outputs[0]]
        scale, zp = _tensor_quant(t, "the scores output")
        return model, OutputSpec("int8_scores", scale, zp, t.name)
    last = chain_obj.segments[-1]
    single = (chain_obj.single_model or {}).get("file")
    path = chain_obj.path.parent / single if single and chain_obj.path is not None else None
    q = last.scores_quant
    return (path if path is not None and path.is_file() else None,
            OutputSpec("int8_scores", q.scale, q.zero_point, last.scores))


def check_decider_binding(dec, decider_path: Path, model: Path | None, output: OutputSpec,
                          force: bool) -> list[str]:
    """A decider only fits the model (and output) it was fitted for, as in hi-agent: a mismatch is a
    UsageError naming the fix unless ``force``; returns the warnings to show (forced mismatches, or a decider
    that records no model, which cannot be checked)."""
    from hi_runtime.decider import DeciderModelMismatch

    if dec.model is None:
        return [(f"{decider_path.name} records no model it was fitted for; refit it with `hi-train decider` so "
                 "a mismatch can be caught")]
    try:
        problems = dec.check_model(model, output, force=force, name=f"--decider {decider_path}",
                                   force_hint="--force-decider")
    except DeciderModelMismatch as exc:
        raise UsageError(str(exc)) from None
    return [f"--force-decider: {'; '.join(problems)}"] if problems else []


def _check_chain_quant(ch, chain: Path) -> None:
    """The exit bounds are computed from the chain JSON's scores quantization and the device dequantizes with
    the segment files': a stale or edited JSON would make the device exit where hi-agent does not."""
    import math

    from hi_firmware.compiler.graph import read_tflite_bytes

    for k, spec in enumerate(ch.segments):
        try:
            g = read_tflite_bytes(Path(spec.file).read_bytes(), model_name=Path(spec.file).name)
        except OSError as exc:
            raise UsageError(f"--chain {chain}: segment {k} file {spec.file}: {exc}") from None
        outputs = {g.tensors[t].name: g.tensors[t] for t in g.outputs}
        t = outputs.get(spec.scores)
        if t is None:
            continue  # named by the compile step's own check, with the outputs listed
        scale, zp = _tensor_quant(t, f"segment {k}'s scores output")
        q = spec.scores_quant
        if zp != q.zero_point or not math.isclose(scale, q.scale, rel_tol=1e-6):
            raise UsageError(f"--chain {chain}: segment {k}'s scores quantization in the JSON ({q.scale:g}, "
                             f"{q.zero_point}) is not its file's ({scale:g}, {zp}) in {Path(spec.file).name}; "
                             "re-export the chain (`hi-train early-exit` or `hi-train split-ee`)")


def check_header_binding(header: Path, model: Path | None, force: bool) -> list[str]:
    """An exported header names the model file it was made for (no hash): a different name is refused as
    for a decider JSON (the model may have been renamed: --force-decider)."""
    fitted = header_model_name(header)
    if fitted is None or model is None or fitted == model.name:
        return []
    problem = f"it was exported for {fitted}, not {model.name}"
    if force:
        return [f"--force-decider: {problem}"]
    raise UsageError(f"--decider {header} does not fit {model.name}: {problem}. Export one for it with `hi-train "
                     f"decider --model {model} --data ...`, drop --decider, or force it with --force-decider")


def generate_app(out_dir: Path, *, model: Path | None = None, chain: Path | None = None,
                 decider: Path | None = None, no_decider: bool = False, model_id: str = "",
                 model_version: str | None = None, engine: str = "compiled",
                 force_decider: bool = False) -> AppInfo:
    """Compile the model(s) into out_dir/models/NAME and write out_dir/hi_app_config.c.

    engine "compiled" (default): the project's generated C + hi_nn kernels. "tflm": the upstream TensorFlow
    Lite Micro interpreter on the same .tflite bytes (src/common/hi_engine_tflm.cpp; single models only).
    The inputs (model or chain, decider and its binding to the model) are checked before out_dir is
    touched, so a mistake leaves nothing half-written; ``force_decider`` uses a decider fitted for another
    model (a warning in AppInfo.warnings instead of the error)."""
    if (model is None) == (chain is None):
        raise UsageError("give exactly one of --model MODEL.tflite or --chain CHAIN.json")
    if engine not in ENGINES:
        raise UsageError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "tflm" and chain is not None:
        raise UsageError("--engine tflm runs single models only; early-exit chains need the compiled engine")
    if len(model_id.encode()) > 32 or any(not 0x21 <= ord(c) <= 0x7E or c in '"\\' for c in model_id):
        raise UsageError(f"model id {model_id!r} must be at most 32 printable ASCII characters without spaces, "
                         "quotes or backslashes (it is written into C)")
    if model_version is not None and (not model_version or any(not 0x21 <= ord(c) <= 0x7E or c in '"\\'
                                                               for c in model_version)):
        raise UsageError(f"model version {model_version!r} must be printable ASCII without spaces, quotes or "
                         "backslashes (it is written into C)")
    ch = None
    if model is not None:
        model = Path(model)
        if not model.exists():
            raise UsageError(f"model {model} does not exist; train and export it with `hi-train model ... --export int8`")
    else:
        from hi_runtime.early_exit import EarlyExitError

        chain = Path(chain)
        ch = _load_chain(chain)
        try:
            bounds = ch.policy.exit_bounds_int8(ch.scores_quants())
            offload_bounds = ch.policy.offload_bounds_int8(ch.scores_quants())
        except EarlyExitError as exc:
            raise UsageError(f"--chain {chain}: {exc}") from exc
    if ch is not None:
        _check_chain_quant(ch, chain)
    warnings: list[str] = []
    user_decider = None
    if decider is not None and not no_decider:
        decider = Path(decider)
        final_model, final_output = _final_output(model, ch)
        if decider.suffix != ".h":
            user_decider = _load_decider(decider)
            warnings += check_decider_binding(user_decider, decider, final_model, final_output, force_decider)
        else:
            warnings += check_header_binding(decider, final_model, force_decider)
        if final_model is None and ch is not None:  # the chain's single model is not beside it: no hash
            recorded = user_decider.model.file if user_decider is not None and user_decider.model is not None \
                else header_model_name(decider) if decider.suffix == ".h" else None
            expected = (ch.single_model or {}).get("file")
            if recorded and expected and recorded != expected:
                problem = f"it was fitted for {recorded}, and the chain's model is {expected}"
                if not force_decider:
                    raise UsageError(f"--decider {decider} does not fit {chain}: {problem}; fit one with `hi-train "
                                     "decider --model ... --output final_scores`, or force it with --force-decider")
                warnings.append(f"--force-decider: {problem}")
            elif recorded and not expected:
                warnings.append(f"{chain.name} names no single model file, so --decider {decider.name} (fitted for "
                                f"{recorded}) cannot be checked against it")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir / "models", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    segments: list[SegmentInfo] = []
    decider_obj = None
    if model is not None:
        name = _c_ident(model.stem)
        res = _compile(model, name, out_dir)
        g = res.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise UsageError(f"{model} has {len(g.inputs)} inputs and {len(g.outputs)} outputs; a single model needs "
                             "one of each (use --chain for early-exit segments)")
        first_in = g.tensors[g.inputs[0]]
        scores_t = g.tensors[g.outputs[0]]
        segments.append(SegmentInfo(name, model, 1, 0, -1, 0, (1.0, 0), (1.0, 0), _tensor_quant(scores_t, "the scores output"), 0,
                                    res.generated.arena_size, res.generated.flash_bytes, res.generated.scratch_size))
        version_default = model.stem
    else:
        assert ch is not None and chain is not None
        decider_obj = ch.policy.decider
        first_in = None
        for k, spec in enumerate(ch.segments):
            name = _c_ident(f"{chain.stem}_s{k}")
            res = _compile(spec.file, name, out_dir)
            g = res.graph
            out_names = [g.tensors[t].name for t in g.outputs]
            if spec.scores not in out_names:
                raise UsageError(f"segment {k} ({spec.file}) has no output named {spec.scores!r}; outputs: {out_names}")
            scores_i = out_names.index(spec.scores)
            feat_i = -1
            feat_bytes = 0
            fq = (1.0, 0)
            last = k == len(ch.segments) - 1
            if not last:
                if spec.features not in out_names:
                    raise UsageError(f"segment {k} ({spec.file}) has no output named {spec.features!r}; "
                                     f"outputs: {out_names}")
                feat_i = out_names.index(spec.features)
                ft = g.tensors[g.outputs[feat_i]]
                feat_bytes = ft.num_elements
                fq = _tensor_quant(ft, f"segment {k}'s features output")
            if k == 0:
                first_in = g.tensors[g.inputs[0]]
            else:  # this segment's input quantization is the previous one's "next input"
                prev = segments[-1]
                prev.next_input_quant = _tensor_quant(g.tensors[g.inputs[0]], f"segment {k}'s input")
                if g.tensors[g.inputs[0]].num_elements != prev.features_bytes:
                    raise UsageError(f"segment {k} input has {g.tensors[g.inputs[0]].num_elements} elements but segment "
                                     f"{k - 1} features have {prev.features_bytes}")
            st = g.tensors[g.outputs[scores_i]]
            segments.append(SegmentInfo(name, spec.file, len(out_names), scores_i, feat_i, feat_bytes, fq, fq,
                                        _tensor_quant(st, f"segment {k}'s scores output"), bounds[k] if not last else 0,
                                        res.generated.arena_size, res.generated.flash_bytes,
                                        res.generated.scratch_size, offload_bounds[k] if not last else None))
        version_default = chain.stem
    assert first_in is not None
    if first_in.dtype != "int8" or len(first_in.shape) != 4 or first_in.shape[0] != 1:
        raise UsageError(f"the model input must be int8 [1, H, W, C]; got {first_in.dtype} {list(first_in.shape)}")
    in_quant = _tensor_quant(first_in)
    h, w, c = (int(d) for d in first_in.shape[1:])
    num_classes = None
    # every exit has the same number of classes; take it from the compiled graphs' scores outputs
    from hi_firmware.compiler.graph import read_tflite_bytes

    for s in segments:
        gg = read_tflite_bytes(s.model_path.read_bytes(), model_name=s.model_path.name)
        n = gg.tensors[gg.outputs[s.scores_output]].num_elements
        if num_classes is not None and n != num_classes:
            raise UsageError(f"segment {s.name} has {n} classes but an earlier exit has {num_classes}")
        num_classes = n
    assert num_classes is not None
    if no_decider:
        dec_block = None
    elif decider is not None:
        dec_block = write_decider_header(decider, segments[-1].scores_quant, out_dir, decider_obj=user_decider)
    elif decider_obj is not None:
        dec_block = write_decider_header(None, segments[-1].scores_quant, out_dir, decider_obj=decider_obj)
    else:
        dec_block = None
    if model_version is None:
        model_version = "ic01" if (h, w, c, num_classes) == (32, 32, 3, 10) else version_default
    info = AppInfo(out_dir, segments, (h, w, c), in_quant, num_classes, dec_block, model_version, model_id,
                   warnings=warnings)
    if engine == "tflm":
        shutil.rmtree(out_dir / "models", ignore_errors=True)
        data = Path(model).read_bytes()
        rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
        (out_dir / "hi_app_tflm_model.c").write_text(
            f"/* Generated by `hi-firmware gen-app --engine tflm` from {Path(model).name}; do not edit. */\n"
            "#include <stddef.h>\n\n"
            "#if defined(__GNUC__)\n__attribute__((aligned(16)))\n#endif\n"
            f"const unsigned char hi_app_tflm_model[{len(data)}] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
            f"const size_t hi_app_tflm_model_len = {len(data)};\n")
    else:
        (out_dir / "hi_app_tflm_model.c").unlink(missing_ok=True)
    (out_dir / "hi_app_config.c").write_text(_render_config(info, engine))
    (out_dir / "app.json").write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    info.sources = sorted(out_dir.glob("models/*/*.c")) + [out_dir / "hi_app_config.c"]
    return info


def _render_config(info: AppInfo, engine: str = "compiled") -> str:
    tflm = engine == "tflm"
    h, w, c = info.input_shape
    n_in = h * w * c
    lines = [
        "/* Generated by `hi-firmware gen-app`; do not edit. Rebuild with hi-firmware build. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        '#include "hi_app.h"',
        '#include "hi_decider.h"',
        '#include "hi_exit_policy.h"',
    ]
    for s in info.segments:
        if not tflm:
            lines.append(f'#include "hi_model_{s.name}.h"')
    if tflm:
        lines += ["", "/* engine: TensorFlow Lite Micro (src/common/hi_engine_tflm.cpp, built with -DHI_ENGINE_TFLM=1) */",
                  "int hi_tflm_invoke_generic(const void *const *inputs, void *const *outputs);"]
    if info.decider:
        lines.append('#include "hi_app_decider.h"')
    lines += ["", f"#define HI_APP_INPUT_BYTES {n_in}", f"#define HI_APP_NUM_CLASSES {info.num_classes}", ""]
    # compile-time checks against the generated model headers
    first = info.segments[0].name.upper()
    if not tflm:
        lines.append(f"typedef char hi_app_check_input[(HI_MODEL_{first}_INPUT_BYTES == HI_APP_INPUT_BYTES) ? 1 : -1];")
        for s in info.segments:
            lines.append(f"typedef char hi_app_check_outputs_{s.name}[(HI_MODEL_{s.name.upper()}_NUM_OUTPUTS == "
                         f"{s.num_outputs}) ? 1 : -1];")
    lines += [
        "",
        "static int8_t g_input[HI_APP_INPUT_BYTES];",
        "static uint8_t g_db[HI_APP_INPUT_BYTES];",
        "static int8_t g_scores[HI_APP_NUM_CLASSES];",
    ]
    for k, s in enumerate(info.segments):
        if s.features_output >= 0:
            lines.append(f"static int8_t g_features_{k}[{s.features_bytes}];")
    if info.decider:
        lines.append("static hi_decider_t g_decider;")
    lines += ["", f"static const hi_segment_t g_segments[{len(info.segments)}] = {{"]
    for k, s in enumerate(info.segments):
        feat = f"g_features_{k}" if s.features_output >= 0 else "NULL"
        lines += [
            f"    {{/* segment {k}: {s.model_path.name} */",
            (f"     {'hi_tflm_invoke_generic' if tflm else f'hi_model_{s.name}_invoke_generic'}, {s.num_outputs}, "
             f"{s.features_output}, {s.scores_output},"),
            f"     {s.features_bytes}u, {feat},",
            f"     {_float_c(s.features_quant[0])}, {s.features_quant[1]},",
            f"     {_float_c(s.next_input_quant[0])}, {s.next_input_quant[1]},",
            f"     {_float_c(s.scores_quant[0])}, {s.scores_quant[1]},",
            (f"     {s.exit_bound}, {int(s.offload_bound is not None)}, "
             f"{0 if s.offload_bound is None else s.offload_bound}}},"),
        ]
    lines += ["};", ""]
    dec = "&g_decider" if info.decider else "NULL"
    lines += [
        "static const hi_pipeline_t g_pipeline = {",
        f"    g_segments, {len(info.segments)}, {dec}, HI_APP_NUM_CLASSES, g_scores,",
        f"    {h}, {w}, {c}, {_float_c(info.input_quant[0], 'f')}, {info.input_quant[1]}}};",
        "",
        "int hi_app_setup(hi_app_t *app) {",
        "  if (app == NULL) return -1;",
    ]
    if info.decider:
        p = info.decider["prefix"]
        lines.append(f"  if (hi_decider_init(&g_decider, {p}_TOP_K, {p}_ZERO_POINT, {p}_A, {p}_B) != 0) return -1;")
    lines += [
        "  app->pipeline = &g_pipeline;",
        "  app->input = g_input;",
        "  app->db = g_db;",
        "  app->db_capacity = HI_APP_INPUT_BYTES;",
        f"  app->model_version = {c_string(info.model_version)};",
        f"  app->model_id = {c_string(info.model_id)};",
        "  return hi_pipeline_check(&g_pipeline);",
        "}",
        "",
    ]
    return "\n".join(lines)
