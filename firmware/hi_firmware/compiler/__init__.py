"""The hi-firmware ahead-of-time model compiler: TFLite INT8 flatbuffer -> C99 calling firmware/lib/hi_nn.

Pipeline: graph.read_tflite (flatbuffer -> IR) -> lowering.lower_graph (kernel steps, constants, fusion) ->
planner.plan_memory (static arena offsets) -> emitter.emit (hi_model_NAME.h/.c).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .emitter import GeneratedModel, emit, sha256_of
from .graph import CompileError, Graph, read_tflite_bytes
from .lowering import CONV_SCRATCH_BUDGET, lower_graph
from .planner import MemoryPlan, plan_memory

__all__ = ["CompileError", "CompileOptions", "CompileResult", "compile_bytes", "compile_model", "kernel_dir"]


@dataclass
class CompileOptions:
    fuse_residual_add: bool = True  # fold ADD into the producing conv's output stage
    inplace: bool = True  # let elementwise steps overwrite an input whose lifetime ends there
    # Largest static scratch (bytes) a conv's strip path may use; convs that need more read OHWI in place.
    scratch_budget: int = CONV_SCRATCH_BUDGET


@dataclass
class CompileResult:
    generated: GeneratedModel
    graph: Graph
    plan: MemoryPlan
    files: list[Path]


def kernel_dir() -> Path:
    """firmware/lib/hi_nn (the kernels the generated code calls), wherever the firmware sources are."""
    from ..paths import firmware_dir

    return firmware_dir() / "lib" / "hi_nn"


def compile_bytes(buf: bytes, name: str, source_label: str = "<bytes>",
                  options: CompileOptions | None = None) -> tuple[GeneratedModel, Graph, MemoryPlan]:
    options = options or CompileOptions()
    graph = read_tflite_bytes(buf, model_name=source_label)
    try:
        steps = lower_graph(graph, fuse_residual_add=options.fuse_residual_add, scratch_budget=options.scratch_budget)
        plan = plan_memory(graph, steps, allow_inplace=options.inplace)
        gen = emit(graph, steps, plan, name, source_label, sha256_of(buf))
    except CompileError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        # Inconsistent shapes/quantization in a (possibly hand-edited) model: report, never crash.
        raise CompileError(f"model {source_label} cannot be compiled: {type(exc).__name__}: {exc}") from exc
    return gen, graph, plan


def compile_model(model_path: str | Path, out_dir: str | Path, name: str | None = None,
                  options: CompileOptions | None = None) -> CompileResult:
    model_path = Path(model_path)
    if not model_path.exists():
        raise CompileError(f"model file {model_path} does not exist")
    name = name or Path(out_dir).name
    gen, graph, plan = compile_bytes(model_path.read_bytes(), name, model_path.name, options)
    files = gen.write(Path(out_dir))
    return CompileResult(gen, graph, plan, files)
