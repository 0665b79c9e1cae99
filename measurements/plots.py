"""Accuracy against latency and against energy, per device and strategy (the paper's Figures 3-5, 7).

Matplotlib with the Agg backend, so figures render on headless machines and in CI. Modeled energy
is drawn with hollow markers and says so in the legend, so it is never mistaken for a measurement.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

STRATEGY_STYLE = {
    "on-device": ("o", "tab:blue"),
    "local": ("o", "tab:blue"),
    "remote": ("s", "tab:red"),
    "hi": ("^", "tab:green"),
    "ee-hi": ("D", "tab:purple"),
}


@dataclass(frozen=True)
class TradeoffPoint:
    device: str
    strategy: str
    label: str
    accuracy: float
    latency_ms: float | None = None
    energy_mj: float | None = None
    energy_modeled: bool = False
    measured: bool = False  # from our own runs (True) or predicted from a profile (False)


def points_from_candidates(candidates: Iterable) -> list[TradeoffPoint]:
    """Planner candidates with a known accuracy become points (costs may be partly unknown)."""
    out = []
    for c in candidates:
        if c.accuracy is None or (c.latency_ms is None and c.energy_mj is None):
            continue
        out.append(TradeoffPoint(c.device, c.strategy, c.label, c.accuracy, c.latency_ms, c.energy_mj,
                                 c.energy_modeled, measured=False))
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
                                 m.energy_mj, m.energy_source == "modeled", measured=True))
    return out


def _axis(ax, points: Sequence[TradeoffPoint], attr: str, xlabel: str) -> bool:
    drawn = False
    values = []
    for p in points:
        x = getattr(p, attr)
        if x is None:
            continue
        marker, color = STRATEGY_STYLE.get(p.strategy, ("x", "tab:gray"))
        hollow = attr == "energy_mj" and p.energy_modeled
        # Our measured runs get a black outline; points predicted from a profile do not.
        ax.scatter([x], [100 * p.accuracy], marker=marker, s=70 if p.measured else 55,
                   facecolors="none" if hollow else color, edgecolors="black" if p.measured else color,
                   linewidths=1.4 if p.measured else 1.0,
                   label=p.label + (" [energy modeled]" if hollow else ""))
        values.append(x)
        drawn = True
    if drawn and min(values) > 0 and max(values) / min(values) > 50:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return drawn


def plot_device_tradeoffs(points: Sequence[TradeoffPoint], device: str, out_path: Path,
                          title: str | None = None) -> Path:
    """One PNG per device: accuracy vs latency (left) and vs energy (right)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    mine = [p for p in points if p.device == device]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _axis(left, mine, "latency_ms", "latency per inference (ms)")
    drawn = _axis(right, mine, "energy_mj", "device energy per inference (mJ)")
    handles, labels = left.get_legend_handles_labels()
    if drawn:
        h2, l2 = right.get_legend_handles_labels()
        for h, lab in zip(h2, l2):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    rows = -(-len(handles) // 3)
    bottom = 0.04 + 0.05 * rows if handles else 0.0
    fig.set_size_inches(11, 4.5 + 0.25 * rows)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(title or f"{device}: accuracy vs latency and energy (black outline: our runs)")
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
