"""``hi-bench report``: a Markdown or HTML report of runs, strategy comparisons and figures.

The report is built as a list of blocks (heading, paragraph, table, image) and rendered to either
format, so both always carry the same content. It says, next to every number, whether it was
measured by our runs, modeled (profile power x time), or quoted from the paper's profiles.
"""
from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from measurements.planner import (
    QoS,
    RunStats,
    best_strategy_table,
    candidates_for,
    ee_threshold_table,
    evaluate,
    format_threshold,
)
from measurements.plots import GridCell, plot_strategy_grid, plot_tradeoffs, points_from_candidates, points_from_metrics


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    headers: list
    rows: list


@dataclass
class Image:
    path: str  # relative to the report
    alt: str


@dataclass
class Report:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, block) -> None:
        self.blocks.append(block)

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if isinstance(b, Heading):
                out += ["#" * b.level + " " + b.text, ""]
            elif isinstance(b, Para):
                out += [b.text, ""]
            elif isinstance(b, Table):
                def cell(v) -> str:
                    return str(v).replace("|", "\\|").replace("\n", " ")
                out.append("| " + " | ".join(cell(h) for h in b.headers) + " |")
                out.append("|" + "---|" * len(b.headers))
                out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Image):
                out += [f"![{b.alt}]({b.path})", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        e = html.escape
        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{e(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}img{max-width:100%}</style>",
               "</head><body>", f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            if isinstance(b, Heading):
                out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
            elif isinstance(b, Para):
                out.append(f"<p>{e(b.text)}</p>")
            elif isinstance(b, Table):
                out.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b.headers) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in b.rows]
                out.append("</table>")
            elif isinstance(b, Image):
                out.append(f"<p><img src='{e(b.path)}' alt='{e(b.alt)}'></p>")
        out.append("</body></html>")
        return "\n".join(out)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


def _energy(value: float | None, modeled: bool, source: str | None = None) -> str:
    if value is None:
        return "?"
    tag = source or ("modeled" if modeled else "")
    return f"{value:.4f}" + (f" ({tag})" if tag else "")


def build_report(out_dir: Path, profiles: Sequence, runs: Sequence = (), stats: RunStats | None = None,
                 targets: Sequence[float] = (0.8, 0.85, 0.9), base_qos: QoS | None = None,
                 fmt: str = "md", title: str = "Hierarchical inference measurements",
                 run_device: str | None = None, today: str | None = None) -> Path:
    """Write ``report.md`` or ``report.html`` and its figures into ``out_dir``; return the report path.

    ``runs`` are ``(RunLog, RunMetrics)`` pairs from our own runs; ``stats`` are the statistics the
    planner uses (by default derived from ``runs``)."""
    if fmt not in ("md", "html"):
        raise ValueError(f"report format must be md or html, got {fmt!r}")
    out_dir = Path(out_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    base_qos = base_qos or QoS()
    stats = stats if stats is not None else (RunStats.from_runs(runs) if runs else RunStats())
    report = Report(title)
    report.add(Para(f"Generated {today or _dt.date.today().isoformat()} by hi-bench report. "
                    "Accuracy follows Eq. 1, latency Eq. 3 and energy Eq. 4. Energy marked 'measured' comes "
                    "from a power meter or RAPL, 'modeled' from a profile's power times measured time; "
                    "profile values of kind 'paper' are quoted from Behera et al. with their citation. "
                    "CIFAR-10 here is the JPEG (q75) re-encoding: accuracies are a few points below "
                    "pristine CIFAR-10."))

    report.add(Heading("Sources"))
    report.add(Table(["profile", "kind", "source"], [[p.id, p.kind, p.source] for p in profiles]))

    if runs:
        report.add(Heading("Our runs"))
        rows = []
        for log, m in runs:
            rows.append([log.path.name if log.path else "run", m.device or "?", m.model or "?", m.strategy or "?",
                         m.n, _pct(m.accuracy), _pct(m.offload_fraction), _num(m.latency_ms),
                         _num(m.latency_ms_measured), _energy(m.energy_mj, False, m.energy_source)])
        report.add(Table(["log", "device", "model", "strategy", "samples", "accuracy (Eq. 1)", "offloaded",
                          "latency ms (Eq. 3)", "measured mean ms", "energy mJ (Eq. 4)"], rows))

    qos = base_qos.with_accuracy(targets[0] if targets else None)
    run_points = points_from_metrics(runs, device=run_device) if runs else []
    points = list(run_points)
    for profile in profiles:
        report.add(Heading(f"Device {profile.id}"))
        candidates = candidates_for(profile, stats)
        evaluate(candidates, profile, qos)
        report.add(Para(f"Configurations under {qos.describe()}."))
        report.add(Table(["configuration", "dataset", "accuracy", "latency ms", "energy mJ", "verdict"],
                         [[c.label, c.dataset or "", _pct(c.accuracy), _num(c.latency_ms),
                           _energy(c.energy_mj, c.energy_modeled), c.verdict] for c in candidates]))
        points += points_from_candidates(candidates)

    report.add(Heading("Accuracy vs latency and energy per strategy and device"))
    for metric in ("latency", "energy"):
        figure = plot_tradeoffs(points, metric, figures / f"accuracy_vs_{metric}.png")
        if figure is None:
            report.add(Para(f"No configuration has a known {metric}: no accuracy-vs-{metric} figure."))
            continue
        report.add(Image(f"figures/{figure.name}", f"accuracy vs {metric} per strategy and device"))
        shown = {p.device for p in points if getattr(p, 'latency_ms' if metric == 'latency' else 'energy_mj') is not None}
        missing = sorted({p.id for p in profiles} - shown)
        if missing:
            report.add(Para(f"Not in the {metric} figure (no configuration with a known accuracy and {metric}): "
                            f"{', '.join(missing)}."))

    report.add(Heading("Best strategy per device (Table 5 form)"))
    rows = []
    grid = {}
    for row in best_strategy_table(profiles, targets, stats, base_qos=base_qos):
        best = row.best
        rows.append([row.device, _pct(row.target), best.label if best else "none",
                     _pct(best.accuracy) if best else "", _num(best.latency_ms) if best else "",
                     _energy(best.energy_mj, best.energy_modeled) if best else "", row.reason])
        grid[(row.device, f">= {100 * row.target:g}%")] = GridCell(
            best.label if best else "none", best.strategy if best else None)
    report.add(Table(["device", "min accuracy", "best", "accuracy", "latency ms", "energy mJ", "why"], rows))
    figure = plot_strategy_grid(list(dict.fromkeys(k[0] for k in grid)), list(dict.fromkeys(k[1] for k in grid)),
                                grid, figures / "best_strategy.png", "Best strategy per device and accuracy target")
    if figure is not None:
        report.add(Image(f"figures/{figure.name}", "best strategy per device and accuracy target"))

    ee_rows = ee_threshold_table(profiles, targets, stats, base_qos=base_qos)
    report.add(Heading("EE-HI thresholds (Table 6 form)"))
    if ee_rows:
        report.add(Table(["device", "model", "min accuracy", "threshold", "latency ms", "energy mJ", "evaluated"],
                         [[r["device"], r["model"], _pct(r["target"]),
                           "none" if r["threshold"] is None else format_threshold(r["threshold"]),
                           _num(r["candidate"].latency_ms) if r["candidate"] else "",
                           _energy(r["candidate"].energy_mj, r["candidate"].energy_modeled) if r["candidate"] else "",
                           f"{r['evaluated']} ({r['incomplete']} incomplete)"] for r in ee_rows]))
    else:
        report.add(Para("No EE-HI sweep was given (one EE-HI run log per threshold, with 'ee_threshold' in "
                        "its header), so no threshold table."))

    path = out_dir / ("report.md" if fmt == "md" else "report.html")
    path.write_text(report.to_markdown() if fmt == "md" else report.to_html(), encoding="utf-8")
    return path
