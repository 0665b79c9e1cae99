"""Exit placement: what an exit at each candidate layer costs, and the most it could ever save.

Training an exit branch takes from minutes (ResNet-8) to an hour (ResNet-56), and most placements can be
ruled out before any training. An exit after layer ``tap`` costs every sample the trunk up to ``tap`` plus
the branch (``exit_macs``), and every sample that continues pays the branch on top of the plain model
(``branch_macs``). If HI's offloaded share stays the same (EE-HI has to offload as many samples as HI to
reach HI's accuracy unless its final exit and decider are better than the plain model's), the most EE-HI
can save at a QoS target is reached when every sample is answered or offloaded at the exit, as the full
model would have answered it:

    bound = (full_ms - exit_ms) / hi_cost_ms

so a saving of ``target`` is possible only for an exit that costs at most
``full_ms - target * hi_cost_ms`` (``exit_budget_ms``). The bound needs no trained branch: a placement
whose bound is below the goal cannot reach it whatever the branch learns, and one above it still has to
learn to answer like the full model on the samples it keeps. Costs scale with MACs like the threshold
search's cost model (``training.thresholds.CostModel.from_macs``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.early_exit import build_early_exit_model


@dataclass(frozen=True)
class TapCost:
    tap: str
    exit_macs: int  # trunk up to the tap + the branch: what a sample leaving here costs
    branch_macs: int  # what a sample that continues pays on top of the plain model
    plain_macs: int  # the plain model (the reference the device time was measured on)

    @property
    def share(self) -> float:
        return self.exit_macs / self.plain_macs

    def exit_ms(self, full_ms: float) -> float:
        return full_ms * self.exit_macs / self.plain_macs


@dataclass(frozen=True)
class HIPoint:
    """HI's configuration at one QoS target, as a threshold search measured it on the test split."""

    qos: str
    accuracy: float
    cost_ms: float
    offload_ratio: float


def candidate_taps(arch: str, input_shape=(32, 32, 3), num_classes: int = 10) -> list[str]:
    """The residual block (or stage) outputs of ``arch`` before its last one: the layers a segment chain
    can cut at without crossing a skip connection (``training.early_exit``)."""
    from training.models import build_model

    names = [layer.name for layer in build_model(arch, num_classes=num_classes, input_shape=input_shape).layers
             if layer.name.endswith("_out")]
    return names[:-1]


def tap_costs(arch: str, taps: Sequence[str], *, branch_convs: int = 0, branch_width: int = 64,
              input_shape=(32, 32, 3), num_classes: int = 10, progress=None) -> list[TapCost]:
    """MACs of an exit at each tap (the branch as ``hi-train early-exit`` builds it)."""
    import keras

    from training.models import build_model, count_params_and_macs

    plain = count_params_and_macs(build_model(arch, num_classes=num_classes, input_shape=input_shape)).macs
    out = []
    for i, tap in enumerate(taps):
        model = build_early_exit_model(arch, exits=(tap,), num_classes=num_classes, input_shape=input_shape,
                                       branch_width=branch_width, branch_convs=[branch_convs])
        exit_macs = count_params_and_macs(keras.Model(model.inputs, model.outputs[0])).macs
        total = count_params_and_macs(model).macs
        out.append(TapCost(tap, exit_macs, total - plain, plain))
        if progress is not None:
            progress(i + 1, len(taps))
        keras.backend.clear_session()
    return out


def hi_points(search: dict[str, Any]) -> list[HIPoint]:
    """The HI rows of a ``hi-train thresholds`` result (``hi-thresholds/1``) with a test column."""
    out = []
    for row in search.get("rows", []):
        test = row.get("test")
        if row.get("policy") == "hi" and isinstance(test, dict) and "cost_ms" in test:
            out.append(HIPoint(str(row["qos"]), float(test["accuracy"]), float(test["cost_ms"]),
                               float(test.get("offload_ratio", 0.0))))
    return out


def saving_bound(exit_ms: float, full_ms: float, hi_cost_ms: float) -> float:
    """The most EE-HI can save against an HI configuration costing ``hi_cost_ms`` per sample with HI's
    offloads, for an exit costing ``exit_ms`` (the search's ``saving_bound_same_offloads`` too)."""
    return (full_ms - exit_ms) / hi_cost_ms


def exit_budget_ms(full_ms: float, hi: HIPoint, target: float) -> float:
    """The most an exit may cost for EE-HI to save ``target`` against ``hi`` (negative: no exit can)."""
    return full_ms - target * hi.cost_ms
