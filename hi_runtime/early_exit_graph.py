"""Single-file early-exit models with control flow: what their IF operators say.

Early-exit models built the paper's way are ONE graph: the trunk runs to the first exit, an IF operator
tests the exit's confidence (``max(scores) >= t``) and either returns that exit's scores with its index
(the *exit branch*) or runs the rest of the network (the *continue branch*, which may hold the next IF).
The model's outputs are the scores of the exit taken and the exit index. LiteRT executes IF; TFLite
Micro's firmware compiler does not, so such a model is either run whole (the agent, :class:`
hi_runtime.backends.SingleModelEarlyExit`) or split into a segment chain (``hi-train split-ee``).

:func:`analyze` reads that structure from the flatbuffer (no interpreter needed): per exit the subgraph
holding its trunk, the exit's scores tensor, its threshold when the comparison is with a plain constant,
which branch exits and which continues, and which tensors the continue branch takes from its parent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hi_runtime.early_exit import EarlyExitError
from hi_runtime.tflite_schema import constant, opcode_name, read_model, tensor_name

COMPARISONS = {"GREATER_EQUAL": ">=", "GREATER": ">", "LESS_EQUAL": "<=", "LESS": "<"}
_FLIPPED = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}  # t OP max  <=>  max FLIPPED t
_NEGATED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}  # not (max OP t)
# operators that pass a tensor's values through (or only re-encode them) between scores and comparison
_TRANSPARENT = ("DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CAST")


class EarlyExitGraphError(EarlyExitError):
    """The model is not a single-file early-exit model of the supported form (the message says why)."""


@dataclass(frozen=True)
class ExitLevel:
    """One non-final exit: the IF operator in ``subgraph`` that decides it."""

    subgraph: int
    if_op: int  # operator index in ``subgraph``
    scores: int  # tensor index (in ``subgraph``) of this exit's scores, as computed before any re-encoding
    threshold: float | None  # exit iff max(scores) >= threshold (a strict '>' is folded in, see below)
    comparison: str | None  # the model's own test, e.g. "max >= 0.8"; None if not a plain-constant test
    problem: str | None  # why the threshold could not be read (None when it could)
    exit_branch: int  # subgraph index of the branch returning this exit's scores
    continue_branch: int  # subgraph index of the branch running the rest of the network
    carried: tuple[tuple[int, int], ...]  # (continue-branch input tensor, parent tensor) pairs it reads


@dataclass(frozen=True)
class IfEarlyExitModel:
    """The exits of a single-file early-exit model, first to last."""

    levels: tuple[ExitLevel, ...]
    final_subgraph: int
    final_scores: int  # tensor index in ``final_subgraph``
    scores_output: int  # position among the main graph's outputs: the exit's scores
    index_output: int  # position among the main graph's outputs: the exit index

    @property
    def num_exits(self) -> int:
        return len(self.levels) + 1

    @property
    def thresholds(self) -> list[float | None]:
        return [lv.threshold for lv in self.levels]


def has_control_flow(data: bytes) -> bool:
    """Whether a .tflite file has more than one subgraph (IF/WHILE bodies), i.e. control flow."""
    return len(read_model(data).subgraphs) > 1


def _producers(sg) -> dict[int, int]:
    out = {}
    for i, op in enumerate(sg.operators or []):
        for t in op.outputs:
            out[int(t)] = i
    return out


def _through(model, sg, producers, t: int) -> int:
    """Follow ``t`` back through value-preserving operators (dequantize, reshape...)."""
    seen = set()
    while t in producers and t not in seen:
        seen.add(t)
        op = sg.operators[producers[t]]
        if opcode_name(model, op) not in _TRANSPARENT:
            break
        t = int(op.inputs[0])
    return t


def _num_elements(tensor) -> int:
    shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
    return int(np.prod(shape)) if shape else 1


def _the_if(model, k: int) -> tuple[int, object] | None:
    sg = model.subgraphs[k]
    ifs = [(i, op) for i, op in enumerate(sg.operators or []) if opcode_name(model, op) == "IF"]
    others = sorted({opcode_name(model, op) for op in sg.operators or []} & {"WHILE", "CALL_ONCE"})
    if others:
        raise EarlyExitGraphError(f"subgraph {k} uses {', '.join(others)}; only IF-based early exits are supported")
    if len(ifs) > 1:
        raise EarlyExitGraphError(f"subgraph {k} has {len(ifs)} IF operators; an early-exit model has one per "
                                  "exit, each in the continue branch of the one before")
    return ifs[0] if ifs else None


def _read_threshold(model, sg, producers, cond: int, exit_on_true: bool, where: str):
    """(scores tensor, threshold, comparison text, problem) of the IF condition ``cond``."""
    if cond not in producers:
        return None, None, None, f"{where}: the IF condition is not computed in the graph"
    op = sg.operators[producers[cond]]
    name = opcode_name(model, op)
    if name not in COMPARISONS:
        return None, None, None, f"{where}: the IF condition comes from {name}, not from a comparison with a constant"
    a, b = int(op.inputs[0]), int(op.inputs[1])
    ca, cb = constant(model, sg.tensors[a], dequantize=True), constant(model, sg.tensors[b], dequantize=True)
    if (ca is None) == (cb is None):
        return None, None, None, f"{where}: {name} does not compare a score with one constant"
    rel = COMPARISONS[name]
    if ca is not None:  # t OP max
        rel, value, other = _FLIPPED[rel], ca, b
    else:
        value, other = cb, a
    if value.size != 1:
        return None, None, None, f"{where}: the threshold constant has {value.size} values"
    src = _through(model, sg, producers, other)
    if src not in producers or opcode_name(model, sg.operators[producers[src]]) != "REDUCE_MAX":
        return None, None, None, f"{where}: the compared value is not the maximum of the exit's scores (REDUCE_MAX)"
    scores = _through(model, sg, producers, int(sg.operators[producers[src]].inputs[0]))
    t = float(np.asarray(value, dtype=np.float64).reshape(()))
    exit_rel = rel if exit_on_true else _NEGATED[rel]
    text = f"exit iff max(scores) {exit_rel} {t:.9g}"
    if exit_rel == ">=":
        return scores, t, text, None
    if exit_rel == ">":  # max > t  <=>  max >= the next double after t (the chain's rule is '>=')
        return scores, float(np.nextafter(t, math.inf)), text, None
    return scores, None, text, f"{where}: the model exits when the confidence is BELOW its threshold ({text})"


def _passthrough_inputs(model, k: int) -> set[int]:
    """Positions of a branch's inputs that it returns unchanged (possibly re-encoded) as an output."""
    sg = model.subgraphs[k]
    producers = _producers(sg)
    ins = [int(t) for t in sg.inputs]
    out = set()
    for o in sg.outputs:
        src = _through(model, sg, producers, int(o))
        if src in ins:
            out.add(ins.index(src))
    return out


def _scores_position(model, k: int, where: str) -> tuple[int, int]:
    """(position of the scores output, position of the exit-index output) of subgraph ``k``."""
    sg = model.subgraphs[k]
    outs = [int(t) for t in sg.outputs]
    if len(outs) != 2:
        raise EarlyExitGraphError(f"{where} has {len(outs)} outputs; a single-file early-exit model returns two: "
                                  "the scores of the exit taken and the exit index")
    sizes = [_num_elements(sg.tensors[t]) for t in outs]
    if min(sizes) != 1 or max(sizes) < 2:
        raise EarlyExitGraphError(f"{where}: outputs of {sizes} elements; expected the scores [1, classes] and a "
                                  "one-element exit index")
    index = sizes.index(1)
    return 1 - index, index


def _needed_inputs(model, k: int, outputs: list[int]) -> set[int]:
    """Input tensors of subgraph ``k`` that the given outputs depend on."""
    sg = model.subgraphs[k]
    producers = _producers(sg)
    ins = {int(t) for t in sg.inputs}
    needed, stack, seen = set(), list(outputs), set()
    while stack:
        t = stack.pop()
        if t < 0 or t in seen:
            continue
        seen.add(t)
        if t in ins:
            needed.add(t)
        if t in producers:
            op = sg.operators[producers[t]]
            stack.extend(int(x) for x in op.inputs)  # a nested IF's inputs include what its branches read
    return needed


def analyze(data: bytes, *, name: str = "the model") -> IfEarlyExitModel:
    """The exits of a single-file early-exit model; :class:`EarlyExitGraphError` says why a model is not
    one (no IF, outputs of another form, branches that both compute...)."""
    try:
        model = read_model(data)
    except ValueError as exc:
        raise EarlyExitGraphError(f"{name}: {exc}") from None
    if len(model.subgraphs) < 2 or _the_if(model, 0) is None:
        raise EarlyExitGraphError(f"{name} has no IF operator in its main graph: it is not a single-file "
                                  "early-exit model")
    scores_pos, index_pos = _scores_position(model, 0, name)
    levels: list[ExitLevel] = []
    k = 0
    while True:
        found = _the_if(model, k)
        if found is None:
            break
        i, op = found
        sg = model.subgraphs[k]
        where = f"{name}, exit {len(levels) + 1}"
        opts = op.builtinOptions
        then_k, else_k = int(opts.thenSubgraphIndex), int(opts.elseSubgraphIndex)
        computes = {b: _computes_scores(model, b) for b in (then_k, else_k)}
        if computes[then_k] == computes[else_k]:
            raise EarlyExitGraphError(f"{where}: cannot tell the exit branch (returns this exit's scores) from the "
                                      f"continue branch (computes further) among subgraphs {then_k} and {else_k}")
        cont_k, exit_k = (then_k, else_k) if computes[then_k] else (else_k, then_k)
        producers = _producers(sg)
        scores, t, text, problem = _read_threshold(model, sg, producers, int(op.inputs[0]), exit_k == then_k, where)
        if scores is None:  # the tensor the exit branch returns as its scores
            ex = model.subgraphs[exit_k]
            src = _through(model, ex, _producers(ex), int(ex.outputs[_scores_position(model, exit_k, where)[0]]))
            scores = _through(model, sg, producers, int(op.inputs[1 + [int(x) for x in ex.inputs].index(src)]))
        cont = model.subgraphs[cont_k]
        cont_scores_pos, _ = _scores_position(model, cont_k, f"{where}, continue branch")
        needed = _needed_inputs(model, cont_k, [int(cont.outputs[cont_scores_pos])])
        carried = tuple((int(bt), int(op.inputs[1 + j])) for j, bt in enumerate(cont.inputs) if int(bt) in needed)
        levels.append(ExitLevel(subgraph=k, if_op=i, scores=scores, threshold=t, comparison=text, problem=problem,
                                exit_branch=exit_k, continue_branch=cont_k, carried=carried))
        k = cont_k
        if len(levels) > len(model.subgraphs):
            raise EarlyExitGraphError(f"{name}: the IF branches form a cycle")
    final = model.subgraphs[k]
    pos, _ = _scores_position(model, k, f"{name}, final exit")
    final_scores = _through(model, final, _producers(final), int(final.outputs[pos]))
    return IfEarlyExitModel(levels=tuple(levels), final_subgraph=k, final_scores=final_scores,
                            scores_output=scores_pos, index_output=index_pos)


def _computes_scores(model, k: int) -> bool:
    """Whether branch ``k``'s scores output is computed by its own operators (not an input passed on)."""
    sg = model.subgraphs[k]
    try:
        pos, _ = _scores_position(model, k, f"subgraph {k}")
    except EarlyExitGraphError:
        return False
    src = _through(model, sg, _producers(sg), int(sg.outputs[pos]))
    return src not in {int(t) for t in sg.inputs}


def describe(ee: IfEarlyExitModel) -> str:
    """One line: the exits and their tests, e.g. for the agent's start-up message."""
    tests = [lv.comparison or "exit test not a plain constant" for lv in ee.levels]
    return f"{ee.num_exits} exits ({'; '.join(tests)})"



def output_names(data: bytes, *, name: str = "the model") -> tuple[str, str]:
    """(scores output name, exit-index output name) of a single-file early-exit model."""
    ee = analyze(data, name=name)
    main = read_model(data).subgraphs[0]
    names = [tensor_name(main.tensors[int(t)]) for t in main.outputs]
    return names[ee.scores_output], names[ee.index_output]
