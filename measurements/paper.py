"""The paper's Tables 5 and 6 rebuilt from its own printed numbers.

Behera et al. print the inputs (Tables 3, 4 and 7, the server accuracies, decider F1) in the device
profiles (``hi_runtime/profiles/``) and the results to compare with in ``paper_tables.json`` (a
copy of ../shared/paper/tables.json, the transcription of the printed tables).

**Table 5** is the planner (``measurements.planner.plan``) run per dataset, device and requirement,
with the paper's procedure: fix one requirement (accuracy >= 90% for CIFAR-10 / 80% for ImageNet-1K,
or latency / energy <= half of offloading one image), maximize the gains in the other two. HI needs an
operating point (HI accuracy, offloaded share) per model, and the paper prints only two (Table 7 for
ResNet-8; the Jetson headline claim for ResNet-18); the others are only plotted (Figs. 3-5). So each
cell is computed under two stated assumptions:

* ``A1`` (the profiles as shipped): HI with the two printed operating points, used for the same
  model on every device; HI with any other model has no operating point and is not a candidate.
* ``A2``: A1 plus an operating point for every other model: the offloaded share implied by Table 6
  (Eq. 3/4) for ResNet-56 and AlexNet on CIFAR-10 and ResNet-18's for the other ImageNet models, and
  the HI accuracy from Eq. 2 with the share of local errors the decider offloads taken from the
  printed point of the same dataset.

A cell whose answer differs between A1 and A2 depends on data the paper only plots: it is flagged.

**Table 6** is Eq. 3/4 with Tables 3/4: one offloaded share per model reproduces the HI columns; one
offloaded share and one mean on-device cost (a fraction of the full model's, the exits' saving) per
model reproduce the EE-HI columns. Both are least-squares fits over the three devices' times and
energies (six numbers per fit), so the fit can fail; the decider's own cost (t_LR, e_LR) is not
printed and is folded into the fit.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from hi_runtime.equations import expected_energy_mj, expected_latency_ms
from measurements.planner import (
    STRATEGY_EE_HI,
    STRATEGY_HI,
    STRATEGY_ON_DEVICE,
    STRATEGY_REMOTE,
    HIPoint,
    Plan,
    RunStats,
    plan,
)
from hi_runtime.device_profiles import DeviceProfile, load_profile
from hi_runtime.qos import HALF_OFFLOAD, QoS

TABLES_PATH = Path(__file__).resolve().parent / "paper_tables.json"

# Table 5's columns and rows, and the profile that stands for each of its devices. "Jetson Orin" is the
# 15 W mode: the mode of the paper's Jetson headline (RegNetY-32GF is printed for it only); the 7 W
# mode is computed beside it.
REQUIREMENTS = ("accuracy", "latency", "energy")
DATASETS = ("cifar10", "imagenet")
TABLE5_DEVICES = {"coral": "coral_micro", "rpi": "rpi4", "jetson": "jetson_orin_nano_15w"}
EXTRA_DEVICES = {"jetson_7w": "jetson_orin_nano_7w"}
ROW_NAMES = {"coral": "Coral Micro", "rpi": "Raspberry Pi", "jetson": "Jetson Orin (15 W)",
             "jetson_7w": "Jetson Orin 7 W (not in Table 5)"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "imagenet": "ImageNet-1K"}
PRINTED_NAMES = {
    "resnet8": "ResNet-8", "resnet56": "ResNet-56", "alexnet_cifar10": "AlexNet", "resnet18": "ResNet-18",
    "resnet50": "ResNet-50", "alexnet_imagenet": "AlexNet", "regnety32gf": "RegNetY-32GF", "lr_mnist": "LR",
}
# Table 6: model -> the profile model name and the devices (tables.json key -> profile id)
TABLE6_MODELS = {"resnet8": "resnet8", "resnet56": "resnet56", "alexnet": "alexnet_cifar10"}
TABLE6_DEVICES = {"rpi": "rpi4", "jetson_7w": "jetson_orin_nano_7w", "jetson_15w": "jetson_orin_nano_15w"}
ASSUMPTIONS = ("A1", "A2")


@lru_cache(maxsize=1)
def paper_tables() -> dict:
    """The paper's printed tables (``paper_tables.json``)."""
    return json.loads(TABLES_PATH.read_text(encoding="utf-8"))


def qos_for(requirement: str, dataset: str) -> QoS:
    """The paper's QoS (Sec. 3.3) with one requirement fixed."""
    if requirement == "accuracy":
        return QoS(min_accuracy=paper_tables()["qos"]["accuracy_min_pct"][dataset] / 100.0)
    if requirement == "latency":
        return QoS(max_latency=HALF_OFFLOAD)
    if requirement == "energy":
        return QoS(max_energy=HALF_OFFLOAD)
    raise ValueError(f"requirement must be one of {REQUIREMENTS}, got {requirement!r}")


def paper_label(p: Plan) -> str:
    """A recommendation in Table 5's words: "ResNet-8 + HI", "on device (ResNet-56)", "remote"."""
    c = p.best
    if c is None:
        return "none"
    name = PRINTED_NAMES.get(c.model or "", c.model or "")
    if c.strategy == STRATEGY_REMOTE:
        return "remote"
    if c.strategy == STRATEGY_HI:
        return f"{name} + HI"
    if c.strategy == STRATEGY_EE_HI:
        return f"{name} + EE-HI"
    if c.strategy == STRATEGY_ON_DEVICE:
        return f"on device ({name})"
    return c.label


# --- Eq. 2 and the assumption A2 ----------------------------------------------------------------


def offloaded_error_share(device_accuracy: float, offload: float, hi_accuracy: float, server_accuracy: float) -> float:
    """From one operating point, the share of the local model's errors that the decider offloads.

    Eq. 2: Acc_HI = (Acc_OD - eta_FN) + Acc_S * eta_off, where eta_FN is the share offloaded although
    the local answer was right (the identity only holds with that meaning: see hi_runtime.equations).
    So the offloaded local errors are eta_off - eta_FN, a share of the 1 - Acc_OD errors."""
    fn = device_accuracy + server_accuracy * offload - hi_accuracy
    errors = 1.0 - device_accuracy
    if not max(0.0, offload - errors) - 1e-12 <= fn <= offload + 1e-12:
        raise ValueError(f"operating point is not consistent with Eq. 2: eta_FN = {fn:.4f} must lie in "
                         f"[{max(0.0, offload - errors):.4f}, {offload:.4f}] (offloaded {offload:.4f}, "
                         f"local errors {errors:.4f})")
    return (offload - fn) / errors


def hi_accuracy_eq2(device_accuracy: float, offload: float, error_share: float, server_accuracy: float) -> float:
    """Eq. 2 for a decider that offloads ``error_share`` of the local errors (at most ``offload``)."""
    wrong_offloaded = min(error_share * (1.0 - device_accuracy), offload)
    fn = offload - wrong_offloaded
    return device_accuracy - fn + server_accuracy * offload


@dataclass(frozen=True)
class Assumed:
    """An operating point assumption A2 adds, with how it was derived."""

    model: str
    offload: float
    error_share: float
    offload_source: str
    share_source: str


def a2_points(fits: dict | None = None) -> dict[str, Assumed]:
    """The operating points A2 adds for models whose HI point the paper only plots."""
    fits = fits or table6_fits()
    t7 = paper_tables()["table7_mcu_resnet8_cifar10"]["arduino_nano33ble"]
    s_c10 = paper_tables()["server"]["cifar10"]["accuracy_pct"] / 100
    s_in = paper_tables()["server"]["imagenet"]["accuracy_pct"] / 100
    share_c10 = offloaded_error_share(t7["device_accuracy_pct"] / 100, t7["hi_offload_pct"] / 100,
                                      t7["hi_accuracy_pct"] / 100, s_c10)
    r18 = load_profile("jetson_orin_nano_15w").model("resnet18")
    share_in = offloaded_error_share(r18.accuracy.value, r18.decider.offload_fraction.value,
                                     r18.decider.hi_accuracy.value, s_in)
    c10 = f"Table 7's ResNet-8 point: the decider offloads {100 * share_c10:.1f}% of the local errors"
    inet = f"the ResNet-18 headline point: the decider offloads {100 * share_in:.1f}% of the local errors"
    out = {}
    for paper_model, name in (("resnet56", "resnet56"), ("alexnet", "alexnet_cifar10")):
        eta = fits[paper_model].hi_offload
        out[name] = Assumed(name, eta, share_c10, f"Table 6 via Eq. 3/4 ({100 * eta:.2f}% offloaded)", c10)
    eta18 = r18.decider.offload_fraction.value
    for name in ("resnet50", "alexnet_imagenet", "regnety32gf"):
        out[name] = Assumed(name, eta18, share_in, f"ResNet-18's share ({100 * eta18:.0f}%)", inet)
    return out


def assumption_stats(profile: DeviceProfile, assumption: str) -> RunStats:
    """The planner's extra inputs under an assumption (A1: none; A2: the points of ``a2_points``)."""
    stats = RunStats()
    if assumption == "A1":
        return stats
    if assumption != "A2":
        raise ValueError(f"assumption must be one of {ASSUMPTIONS}, got {assumption!r}")
    for name, a in a2_points().items():
        model = profile.models.get(name)
        if model is None or not model.accuracy.known or model.decider.hi_accuracy.known:
            continue
        server = profile.server_for(model.dataset)
        acc = hi_accuracy_eq2(model.accuracy.value, a.offload, a.error_share, server.accuracy.value)
        stats.for_model(name).hi = HIPoint(
            acc, a.offload, f"assumption A2: offloaded share from {a.offload_source}; HI accuracy by Eq. 2 with "
                            f"{a.share_source}")
    return stats


# --- Table 5 ------------------------------------------------------------------------------------


@dataclass
class Cell:
    dataset: str
    device: str  # Table 5's row name (coral, rpi, jetson, or an extra device)
    requirement: str
    paper: str | None
    results: dict = field(default_factory=dict)  # assumption -> Table 5 wording
    plans: dict = field(default_factory=dict)  # assumption -> Plan

    @property
    def flagged(self) -> bool:
        """The answer depends on data the paper only plots (the assumptions disagree)."""
        return len(set(self.results.values())) > 1

    @property
    def matches(self) -> dict:
        return {a: r == self.paper for a, r in self.results.items()}


def table5(assumptions: Sequence[str] = ASSUMPTIONS, extra_devices: bool = True) -> list[Cell]:
    """Every cell of Table 5 under each assumption (plus the Jetson 7 W mode beside it)."""
    printed = paper_tables()["table5_best_strategy"]
    devices = dict(TABLE5_DEVICES, **(EXTRA_DEVICES if extra_devices else {}))
    cells = []
    for dataset in DATASETS:
        for row, profile_id in devices.items():
            profile = load_profile(profile_id)
            stats = {a: assumption_stats(profile, a) for a in assumptions}
            for requirement in REQUIREMENTS:
                paper = printed[dataset].get(row, {}).get(requirement)
                cell = Cell(dataset, row, requirement, paper)
                for a in assumptions:
                    p = plan(profile, qos_for(requirement, dataset), stats[a], "auto", dataset=dataset)
                    cell.plans[a] = p
                    cell.results[a] = paper_label(p)
                cells.append(cell)
    return cells


# --- Table 6 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table6Fit:
    """The ratios Eq. 3/4 need to reproduce one model's Table 6 rows on all three devices."""

    model: str
    hi_offload: float  # eta_off of HI
    ee_offload: float  # eta_off of EE-HI
    ee_local: float  # mean on-device cost of EE-HI, as a fraction of the full model's (Table 4)
    rows: dict  # device -> {quantity: (paper, reproduced)}

    def errors(self) -> dict:
        """Relative error of every reproduced number, by (device, quantity)."""
        return {(d, q): rep / pap - 1.0 for d, r in self.rows.items() for q, (pap, rep) in r.items()}

    def max_error(self, quantities: Sequence[str] = ("hi_ms", "hi_mj", "ee_hi_ms", "ee_hi_mj")) -> float:
        return max(abs(e) for (d, q), e in self.errors().items() if q in quantities)


def _device_costs(model: str) -> dict:
    out = {}
    for key, profile_id in TABLE6_DEVICES.items():
        p = load_profile(profile_id)
        m = p.model(TABLE6_MODELS[model])
        link = p.link("wifi").for_dataset(m.dataset)
        out[key] = (m.latency_ms.value, m.energy_mj.value, link.latency_ms.value, link.energy_mj.value)
    return out


def fit_table6(model: str, hi_offload: float | None = None) -> Table6Fit:
    """Least-squares ratios for one model's rows (relative errors, all six times and energies), or
    ``hi_offload`` given (e.g. Table 7's printed 21.57% for ResNet-8) instead of fitted."""
    printed = paper_tables()["table6_ee_hi_vs_hi_at_90pct"][model]
    costs = _device_costs(model)
    rows_hi, rhs_hi, rows_ee = [], [], []
    for dev, (t, e, to, eo) in costs.items():
        r = printed[dev]
        rows_hi += [[to / r["hi_ms"]], [eo / r["hi_mj"]]]
        rhs_hi += [1 - t / r["hi_ms"], 1 - e / r["hi_mj"]]
        rows_ee += [[t / r["ee_hi_ms"], to / r["ee_hi_ms"]], [e / r["ee_hi_mj"], eo / r["ee_hi_mj"]]]
    if hi_offload is None:
        hi_offload = float(np.linalg.lstsq(np.array(rows_hi), np.array(rhs_hi), rcond=None)[0][0])
    local, ee_offload = (float(v) for v in np.linalg.lstsq(np.array(rows_ee), np.ones(len(rows_ee)), rcond=None)[0])
    rows = {}
    for dev, (t, e, to, eo) in costs.items():
        r = printed[dev]
        rows[dev] = {
            "hi_ms": (r["hi_ms"], expected_latency_ms(t, to, hi_offload)),
            "hi_mj": (r["hi_mj"], expected_energy_mj(e, eo, hi_offload)),
            "ee_hi_ms": (r["ee_hi_ms"], expected_latency_ms(local * t, to, ee_offload)),
            "ee_hi_mj": (r["ee_hi_mj"], expected_energy_mj(local * e, eo, ee_offload)),
        }
    return Table6Fit(model, hi_offload, ee_offload, local, rows)


@lru_cache(maxsize=1)
def _fits() -> tuple:
    return tuple((m, fit_table6(m)) for m in TABLE6_MODELS)


def table6_fits() -> dict[str, Table6Fit]:
    return dict(_fits())


# --- text ---------------------------------------------------------------------------------------


def format_table5(cells: Sequence[Cell]) -> str:
    assumptions = list(cells[0].results) if cells else []
    head = f"{'dataset':<9} {'device':<10} {'requirement':<11} {'paper':<22} " + " ".join(
        f"{'planner ' + a:<22}" for a in assumptions)
    lines = [head, "-" * len(head)]
    for c in cells:
        marks = " ".join(f"{c.results[a] + ('' if c.paper is None or c.results[a] == c.paper else ' (differs)'):<22}"
                         for a in assumptions)
        flag = "  FLAGGED: depends on HI points the paper only plots" if c.flagged else ""
        lines.append(f"{c.dataset:<9} {c.device:<10} {c.requirement:<11} {c.paper or '(not in Table 5)':<22} "
                     f"{marks}{flag}")
    return "\n".join(lines)


def format_table6(fits: dict[str, Table6Fit]) -> str:
    lines = [f"{'model':<9} {'device':<11} {'HI ms paper/Eq.3':>17} {'HI mJ paper/Eq.4':>17} "
             f"{'EE-HI ms paper/Eq.3':>20} {'EE-HI mJ paper/Eq.4':>20}"]
    for model, fit in fits.items():
        for dev, r in fit.rows.items():
            cells = [f"{r[q][0]:.2f} / {r[q][1]:.2f}" for q in ("hi_ms", "hi_mj", "ee_hi_ms", "ee_hi_mj")]
            lines.append(f"{model:<9} {dev:<11} {cells[0]:>17} {cells[1]:>17} {cells[2]:>20} {cells[3]:>20}")
        lines.append(f"{'':<9} implied: HI offloads {100 * fit.hi_offload:.2f}%; EE-HI offloads "
                     f"{100 * fit.ee_offload:.2f}% at {100 * fit.ee_local:.1f}% of the full model's on-device cost; "
                     f"largest error {100 * fit.max_error():.1f}%")
    return "\n".join(lines)


# --- the headline claims ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    name: str
    paper: float  # the printed claim (a fraction or points)
    ours: float | None  # recomputed from the printed tables (None: not derivable from them)
    how: str


def headline_claims() -> list[Claim]:
    """The abstract's numbers recomputed from the printed tables (Table 6's HI rows are the HI costs)."""
    t = paper_tables()
    head = t["headlines"]
    t4, t6 = t["table4_on_device_int8"]["rpi"], t["table6_ee_hi_vs_hi_at_90pct"]
    r56, hi8 = t4["resnet56_cifar10"], t6["resnet8"]["rpi"]
    nano = t["table7_mcu_resnet8_cifar10"]["arduino_nano33ble"]
    ee56 = t6["resnet56"]["rpi"]
    return [
        Claim("HI vs the on-device model meeting the accuracy QoS: latency reduction",
              head["hi_vs_on_device_latency_reduction_max_pct"] / 100, 1 - hi8["hi_ms"] / r56["latency_ms"],
              "RPi, CIFAR-10: ResNet-8 + HI (Table 6, 3.82 ms) vs ResNet-56 on device (Table 4, 14.36 ms)"),
        Claim("HI vs the on-device model meeting the accuracy QoS: energy reduction",
              head["hi_vs_on_device_energy_reduction_max_pct"] / 100, 1 - hi8["hi_mj"] / r56["energy_mj"],
              "RPi, CIFAR-10: ResNet-8 + HI (Table 6, 12.55 mJ) vs ResNet-56 on device (Table 4, 55.59 mJ)"),
        Claim("HI accuracy gain over the on-device models, CIFAR-10 (points)",
              head["hi_accuracy_gain_points"]["cifar10"], nano["hi_accuracy_pct"] - r56["accuracy_pct"],
              "ResNet-8 + HI (Table 7, 95.75%) vs ResNet-56 on the RPi (Table 4, 93.53%)"),
        Claim("HI accuracy gain over the on-device models, ImageNet-1K (points)",
              head["hi_accuracy_gain_points"]["imagenet"], None,
              "not derivable: the ImageNet HI operating point behind it is only plotted (Figs. 3-5)"),
        Claim("EE-HI vs HI: latency reduction", head["ee_hi_vs_hi_latency_reduction_max_pct"] / 100,
              1 - ee56["ee_hi_ms"] / ee56["hi_ms"], "Table 6, ResNet-56 on the RPi: 6.13 ms vs 15.21 ms"),
        Claim("EE-HI vs HI: energy reduction", head["ee_hi_vs_hi_energy_reduction_max_pct"] / 100,
              1 - ee56["ee_hi_mj"] / ee56["hi_mj"], "Table 6, ResNet-56 on the RPi: 23.02 mJ vs 58.10 mJ"),
    ]


def format_claims(claims: Sequence[Claim]) -> str:
    lines = []
    for c in claims:
        points = "points" in c.name
        fmt = (lambda v: f"{v:.2f}") if points else (lambda v: f"{100 * v:.1f}%")
        ours = "n/a" if c.ours is None else fmt(c.ours)
        lines.append(f"{c.name}: paper {fmt(c.paper)}, from the tables {ours} ({c.how})")
    return "\n".join(lines)
