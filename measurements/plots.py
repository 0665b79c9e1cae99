"""Figures, one per question a reader asks (the paper's Figures 3-5 and Table 5):

* what accuracy does each strategy reach for its latency, per device (``plot_tradeoffs(..., "latency")``);
* the same against device energy, drawn only for devices whose energy is known (``"energy"``);
* which strategy is best per device and requirement (``plot_strategy_grid``, ``plot_table5_grid``).

A figure has no empty panel: a panel is drawn for each (device, dataset) that has a point to show, and
a figure with nothing to show is not written (the functions return ``None``). Accuracy is in percent,
latency in ms per inference (Eq. 3), energy in mJ per inference on the device (Eq. 4). Our measured
runs are drawn with a black outline and modeled energy (profile power x time) with hollow markers;
the legend lists those conventions only when the figure contains such points. Matplotlib with the
Agg backend, so figures render on headless machines and in CI.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STRATEGY_STYLE = {
    "on-device": ("o", "tab:blue"),
    "local": ("o", "tab:blue"),
    "remote": ("s", "tab:red"),
    "hi": ("^", "tab:green"),
    "ee-hi": ("D", "tab:purple"),
}
STRATEGY_NAMES = {"on-device": "on-device", "remote": "remote (offload all)", "hi": "HI", "ee-hi": "EE-HI"}
METRICS = {
    "latency": ("latency_ms", "latency per inference (ms, Eq. 3)"),
    "energy": ("energy_mj", "device energy per inference (mJ, Eq. 4)"),
}


@dataclass(frozen=True)
class TradeoffPoint:
    device: str
    strategy: str
    label: str
    accuracy: float  # a fraction; drawn in percent
    latency_ms: float | None = None
    energy_mj: float | None = None
    energy_modeled: bool = False
    measured: bool = False  # from our own runs (True) or predicted from a profile (False)
    dataset: str | None = None
    short: str = ""  # the annotation next to the marker (model, threshold)


def _short(model: str | None, threshold: float | None) -> str:
    text = model or ""
    if threshold is not None:
        from measurements.planner import format_threshold

        text += f" @{format_threshold(threshold)}"
    return text


def points_from_candidates(candidates: Iterable) -> list[TradeoffPoint]:
    """Planner candidates with a known accuracy and at least one known cost become points."""
    out = []
    for c in candidates:
        if c.accuracy is None or (c.latency_ms is None and c.energy_mj is None):
            continue
        out.append(TradeoffPoint(c.device, c.strategy, c.label, c.accuracy, c.latency_ms, c.energy_mj,
                                 c.energy_modeled, measured=False, dataset=c.dataset,
                                 short=_short(c.model, c.threshold)))
    return out


def points_from_metrics(runs: Iterable, device: str | None = None) -> list[TradeoffPoint]:
    """``(RunLog, RunMetrics)`` pairs become measured points (strategy ``local`` drawn as on-device)."""
    out = []
    for log, m in runs:
        if m.accuracy is None:
            continue
        strategy = "on-device" if m.strategy == "local" else (m.strategy or "?")
        label = " ".join(filter(None, [strategy, m.model, f"(run {log.path.name})" if log.path else "(run)"]))
        latency = m.latency_ms if m.latency_ms is not None else m.latency_ms_measured
        out.append(TradeoffPoint(device or m.device or "this machine", strategy, label, m.accuracy, latency,
                                 m.energy_mj, m.energy_source == "modeled", measured=True, dataset=None,
                                 short=log.path.stem if log.path else strategy))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, points: Sequence[TradeoffPoint], attr: str, xlabel: str, title: str) -> None:
    values = [getattr(p, attr) for p in points]
    for p, x in zip(points, values):
        marker, color = STRATEGY_STYLE.get(p.strategy, ("x", "tab:gray"))
        hollow = attr == "energy_mj" and p.energy_modeled
        ax.scatter([x], [100 * p.accuracy], marker=marker, s=64,
                   facecolors="none" if hollow else color,
                   edgecolors="black" if p.measured else color, linewidths=1.6 if p.measured else 1.0, zorder=3)
        if p.short:
            ax.annotate(p.short, (x, 100 * p.accuracy), xytext=(4, 3), textcoords="offset points", fontsize=6.5)
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 50:
        ax.set_xscale("log")
    accs = [100 * p.accuracy for p in points]
    pad = max(1.0, 0.08 * (max(accs) - min(accs)))
    ax.set_ylim(min(accs) - pad, max(accs) + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)


def _legend_handles(points: Sequence[TradeoffPoint], metric: str) -> list:
    from matplotlib.lines import Line2D

    handles = []
    for strategy in dict.fromkeys("on-device" if p.strategy == "local" else p.strategy for p in points):
        marker, color = STRATEGY_STYLE.get(strategy, ("x", "tab:gray"))
        handles.append(Line2D([], [], linestyle="none", marker=marker, color=color, markersize=7,
                              label=STRATEGY_NAMES.get(strategy, strategy)))
    if any(p.measured for p in points):
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="lightgray",
                              markeredgecolor="black", markeredgewidth=1.6, markersize=7,
                              label="black outline: our measured runs"))
    if any(not p.measured for p in points):
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="lightgray",
                              markeredgecolor="lightgray", markersize=7, label="no outline: from the device profile"))
    if metric == "energy" and any(p.energy_modeled for p in points):
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                              markeredgecolor="gray", markersize=7, label="hollow: energy modeled (power x time)"))
    return handles


def tradeoff_figure(points: Sequence[TradeoffPoint], metric: str, title: str | None = None):
    """The matplotlib figure of :func:`plot_tradeoffs` (``None`` when no point has ``metric``)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    attr, xlabel = METRICS[metric]
    groups: dict[tuple, list] = {}
    for p in points:
        if getattr(p, attr) is not None and p.accuracy is not None:
            groups.setdefault((p.device, p.dataset), []).append(p)
    if not groups:
        return None
    plt = _pyplot()
    n = len(groups)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    height = 3.9 * rows + 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, height), squeeze=False)
    for ax, ((device, dataset), pts) in zip(axes.flat, groups.items()):
        _panel(ax, pts, attr, xlabel, device + (f" ({dataset})" if dataset else ""))
    for ax in list(axes.flat)[n:]:
        ax.remove()  # never an empty panel
    drawn = [p for pts in groups.values() for p in pts]
    handles = _legend_handles(drawn, metric)
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(title or f"Accuracy vs {metric} per strategy and device")
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1 - 0.45 / height))
    return fig


def plot_tradeoffs(points: Sequence[TradeoffPoint], metric: str, out_path: Path,
                   title: str | None = None) -> Path | None:
    """Accuracy against ``metric`` ("latency" or "energy"), one panel per (device, dataset) with at
    least one point that has the metric; ``None`` (no file) when no point has it."""
    fig = tradeoff_figure(points, metric, title)
    if fig is None:
        return None
    plt = _pyplot()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


@dataclass(frozen=True)
class GridCell:
    text: str  # what the cell says (the recommendation)
    strategy: str | None  # colors the cell
    note: str = ""  # a second, smaller line (e.g. "paper: ...")
    flagged: bool = False  # hatched: depends on unprinted data


def plot_strategy_grid(rows: Sequence[str], cols: Sequence[str], cells: Mapping[tuple, GridCell], out_path: Path,
                       title: str, footnote: str = "") -> Path | None:
    """A table of recommendations, each cell colored by its strategy (``None`` when empty)."""
    if not rows or not cols:
        return None
    plt = _pyplot()
    from matplotlib.patches import Patch, Rectangle

    fig, ax = plt.subplots(figsize=(0.08 * max(len(r) for r in rows) + 2.7 * len(cols),
                                    0.9 + 0.55 * len(rows) + (0.4 if footnote else 0)))
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            cell = cells.get((row, col))
            if cell is None:
                continue
            color = STRATEGY_STYLE.get(cell.strategy or "", (None, "lightgray"))[1]
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=color, alpha=0.35, edgecolor="white",
                                   hatch="///" if cell.flagged else None))
            ax.text(j + 0.5, i + (0.42 if cell.note else 0.5), cell.text, ha="center", va="center", fontsize=8)
            if cell.note:
                ax.text(j + 0.5, i + 0.75, cell.note, ha="center", va="center", fontsize=6.5, color="dimgray")
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(cols))], cols)
    ax.set_yticks([i + 0.5 for i in range(len(rows))], rows)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    used = dict.fromkeys(c.strategy for c in cells.values() if c.strategy)
    handles = [Patch(facecolor=STRATEGY_STYLE.get(s, (None, "lightgray"))[1], alpha=0.35,
                     label=STRATEGY_NAMES.get(s, s)) for s in used]
    if any(c.flagged for c in cells.values()):
        handles.append(Patch(facecolor="white", edgecolor="gray", hatch="///", label="depends on unprinted data"))
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(handles), fontsize=8,
                  frameon=False)
    ax.set_title(title, fontsize=10, pad=24)
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=7, color="dimgray")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def plot_table5_grid(cells: Sequence, out_path: Path) -> Path | None:
    """The paper's Table 5 as the planner computes it (assumption A1), a note where the paper prints
    something else, and hatched cells where assumption A2 disagrees (``measurements.paper.Cell``)."""
    from measurements.paper import DATASET_NAMES, ROW_NAMES

    def row(c) -> str:
        return f"{DATASET_NAMES.get(c.dataset, c.dataset)}, {ROW_NAMES.get(c.device, c.device)}"

    rows = list(dict.fromkeys(row(c) for c in cells))
    cols = list(dict.fromkeys(c.requirement for c in cells))
    grid = {}
    for c in cells:
        first = next(iter(c.plans))
        best = c.plans[first].best
        notes = []
        if c.paper is not None and c.results[first] != c.paper:
            notes.append(f"paper: {c.paper}")
        if c.flagged:
            notes += [f"{a}: {r}" for a, r in c.results.items() if r != c.results[first]]
        grid[(row(c), c.requirement)] = GridCell(
            c.results[first], best.strategy if best else None, "; ".join(notes), c.flagged)
    return plot_strategy_grid(rows, cols, grid, out_path,
                              "Table 5 from the paper's printed numbers: best strategy per QoS requirement",
                              "accuracy >= 90% (CIFAR-10) / 80% (ImageNet-1K); latency, energy <= half of "
                              "offloading one image. Cells: the planner under assumption A1.")


def plot_frontier(series: Sequence, out_path: Path, title: str, footnote: str = "") -> Path | None:
    """Test accuracy against expected latency, one line per ``measurements.frontier.Series``: EE
    variants solid, HI baselines dashed gray, points in cost order; the log latency axis keeps a
    ResNet-8 chain (a few ms) and a ResNet-56 chain (tens of ms) readable side by side."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.2, 5.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    hi_styles = [("--", "^"), (":", "v"), ("-.", "s")]
    ee_i = hi_i = 0
    for s in drawn:
        pts = sorted(s.points, key=lambda p: p.cost_ms)
        xs, ys = [p.cost_ms for p in pts], [100 * p.accuracy for p in pts]
        if s.kind == "hi":
            line, marker = hi_styles[hi_i % len(hi_styles)]
            hi_i += 1
            ax.plot(xs, ys, linestyle=line, marker=marker, color="dimgray", markersize=5, label=s.label, zorder=2)
            top = max(pts, key=lambda p: (p.accuracy, -p.cost_ms))  # HI's operating point, for reference
            ax.annotate(f"{s.label}: {top.cost_ms:.2f} ms", (top.cost_ms, 100 * top.accuracy), xytext=(4, 4),
                        textcoords="offset points", fontsize=6.5, color="dimgray")
        else:
            color = colors[ee_i % len(colors)]
            ee_i += 1
            ax.plot(xs, ys, linestyle="-", marker="D", color=color, markersize=4, label=s.label, zorder=3)
    costs = [p.cost_ms for s in drawn for p in s.points if p.cost_ms > 0]
    if costs and max(costs) / min(costs) > 4:
        ax.set_xscale("log")
    ax.set_xlabel("expected latency per sample (ms, the search's cost model)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=6.5, color="dimgray")
    fig.tight_layout(rect=(0, 0.03 if footnote else 0, 1, 1))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
