"""Static memory planning: one arena, offsets fixed at compile time from tensor lifetimes.

WHY: the device has tens of KB of RAM and no allocator. Every activation tensor lives from the step that
writes it to the last step that reads it. Tensors that may share bytes are merged into one *buffer* first:
  * RESHAPE outputs alias their input (same bytes, no copy);
  * an elementwise/row-wise step (ADD, fused conv+ADD residual, SOFTMAX, int requantize) writes over an
    input whose last reader is that step, unless the step reads that buffer elsewhere too.
Buffers are then placed greedily, largest first, at the lowest offset that does not overlap any buffer
whose lifetime intersects (the same strategy as TFLite Micro's GreedyMemoryPlanner, applied to fewer and
merged buffers). Model inputs/outputs are the caller's pointers and take no arena space.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .graph import Graph
from .lowering import Step

ALIGNMENT = 4  # int32/float tensors in the arena need 4-byte alignment; the arena itself is 16-aligned


@dataclass
class Buffer:
    members: list[int]
    size: int
    first: int  # first step that writes it
    last: int  # last step that reads it
    offset: int = -1


@dataclass
class Location:
    """Where a tensor's bytes are: a caller pointer (input/output), the arena, or flash (constant)."""

    kind: str  # "input", "output", "arena", "const"
    index: int = 0  # I/O position for input/output
    offset: int = 0  # byte offset (arena) or into the I/O buffer


@dataclass
class MemoryPlan:
    arena_size: int
    locations: dict[int, Location]
    buffers: list[Buffer] = field(default_factory=list)
    copies: list[tuple[int, int]] = field(default_factory=list)  # (step index, tensor) needing a copy out


def _align(x: int) -> int:
    return (x + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, keep: int, other: int) -> None:
        self.parent[self.find(other)] = self.find(keep)


def plan_memory(graph: Graph, steps: list[Step], allow_inplace: bool = True) -> MemoryPlan:
    inputs = {t: i for i, t in enumerate(graph.inputs)}
    outputs = {t: i for i, t in enumerate(graph.outputs)}
    locations: dict[int, Location] = {}
    for t in graph.tensors:
        if t.is_const:
            locations[t.index] = Location("const")
    for t, i in inputs.items():
        locations[t] = Location("input", i)
    for t, i in outputs.items():
        if t not in inputs:
            locations[t] = Location("output", i)

    # RESHAPE aliasing. A reshape whose output is a model output must copy (the caller owns that buffer),
    # unless its input is also produced straight into... we keep it simple and copy in that case.
    alias: dict[int, int] = {}
    for s in steps:
        if s.kind == "reshape":
            src = s.inputs[0]
            while src in alias:
                src = alias[src]
            if s.output in outputs:
                s.kind = "copy"
            else:
                alias[s.output] = src

    def root(t: int) -> int:
        while t in alias:
            t = alias[t]
        return t

    for t, src in alias.items():
        if src in locations:
            locations[t] = locations[src]

    # Lifetimes over steps for arena tensors (after resolving aliases).
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, s in enumerate(steps):
        if s.kind == "reshape":
            continue
        out = root(s.output)
        if out not in locations:
            first.setdefault(out, i)
            last[out] = max(last.get(out, i), i)
        for t in s.inputs:
            r = root(t)
            if r not in locations:
                last[r] = max(last.get(r, i), i)
                first.setdefault(r, i)

    uf = _UnionFind()
    for t in first:
        uf.find(t)
    if allow_inplace:
        for i, s in enumerate(steps):
            out = root(s.output)
            if out in locations:
                continue
            forbidden = {uf.find(root(t)) for t in s.inputs if t not in s.inplace_candidates}
            forbidden |= {uf.find(root(t)) for t in s.inplace_forbidden}
            for cand in s.inplace_candidates:
                c = root(cand)
                if c in locations:
                    continue
                group = uf.find(c)
                if group in forbidden or group == uf.find(out):
                    continue
                group_last = max(last[m] for m in first if uf.find(m) == group)
                group_size = max(graph.tensors[m].nbytes for m in first if uf.find(m) == group)
                if group_last == i and graph.tensors[out].nbytes <= group_size:
                    uf.union(group, out)
                    break

    groups: dict[int, list[int]] = {}
    for t in first:
        groups.setdefault(uf.find(t), []).append(t)
    buffers = [
        Buffer(
            members=sorted(m),
            size=_align(max(graph.tensors[t].nbytes for t in m)),
            first=min(first[t] for t in m),
            last=max(last[t] for t in m),
        )
        for m in groups.values()
    ]
    # Greedy placement: biggest first (ties: earliest first, then lowest tensor index, for determinism).
    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first, b.members[0])):
        live = sorted(
            (p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset
        )
        offset = 0
        for p in live:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        b.offset = offset
        placed.append(b)
    arena_size = max((b.offset + b.size for b in placed), default=0)
    for b in placed:
        for t in b.members:
            locations[t] = Location("arena", offset=b.offset)
    for t, src in alias.items():
        locations[t] = locations[root(src)]
    return MemoryPlan(arena_size=arena_size, locations=locations, buffers=sorted(placed, key=lambda b: b.offset))
