"""The hierarchical-inference performance equations (Eq. 1-4 of Behera et al.), in one place.

Both the run metrics (``measurements.metrics``, computed from per-sample logs) and the planner
(``measurements.planner``, computed from device profiles) use these functions, so a strategy's
predicted and measured numbers can only differ by their inputs, never by their formula.

The paper's printed forms (arXiv:2407.11061, Sec. 3; transcribed in ../shared/paper/README.md), for N
samples, the decider's output LR_i (1: accept the device's answer dev_i, 0: offload and take the
server's ser_i) and the ground truth gt_i:

* Eq. 1: Acc_HI = (1/N) sum_i ( [LR_i = 1] [dev_i = gt_i] + [LR_i = 0] [ser_i = gt_i] )
* Eq. 2: Acc_HI = (Acc_OD - eta_FN) + Acc_S * eta_off, with Acc_OD the on-device model's accuracy,
  Acc_S the server's, eta_off the offloaded fraction and eta_FN the decider's false negatives as a
  fraction of N. The identity holds when a false negative is a sample offloaded although the device's
  answer was right (positive class "accept, the device is right", as in ``DeciderConfusion``): then
  Acc_OD - eta_FN is the share accepted and right. (The transcription's gloss of eta_FN, "accepted
  locally and wrong", does not satisfy it: read that way, Table 7's 95.75% HI accuracy at 21.57%
  offloaded would mean 12.6% of the samples accepted and wrong out of 12.9% local errors, decisions
  that give 87.1%, not 95.75%.) ``hi_accuracy_from_confusion`` uses the server's accuracy on the
  offloaded samples for Acc_S, which makes Eq. 2 equal Eq. 1 exactly.
* Eq. 3: Time_HI = t_dev_inf + t_LR + eta_off * t_off
* Eq. 4: Energy_HI = e_dev_inf + e_LR + eta_off * e_edge_off
* EE-HI: the same equations, with t_dev_inf and e_dev_inf the mean on-device cost over the exits the
  samples take (a function of the exit thresholds theta).

Here the local term of Eq. 3/4 is passed as one number (device inference plus decider: t_dev_inf +
t_LR), and t_off / e_edge_off is the cost of one offload as the device sees it (transfer and server
answer; the paper's Table 3). Units: ms and mJ (1 W x 1 ms = 1 mJ).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeciderConfusion:
    """Confusion counts of the offload decider, with "local answer is correct" as the positive truth
    and "accept locally" as the positive decision.

    * ``tp``: accepted and the local answer was right (the good case),
    * ``fp``: accepted but the local answer was wrong (HI's only unrecoverable error),
    * ``fn``: offloaded although the local answer was right (wasted offload),
    * ``tn``: offloaded and the local answer was wrong (the offload HI exists for).
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def offloaded(self) -> int:
        return self.fn + self.tn

    @property
    def offload_fraction(self) -> float:
        return self.offloaded / self.n if self.n else 0.0

    @staticmethod
    def _f1(tp: int, fp: int, fn: int) -> float | None:
        denominator = 2 * tp + fp + fn
        return (2 * tp / denominator) if denominator else None

    @property
    def f1_accept(self) -> float | None:
        """F1 with "local answer correct, accept" as the positive class."""
        return self._f1(self.tp, self.fp, self.fn)

    @property
    def f1_offload(self) -> float | None:
        """F1 with "local answer wrong, offload" as the positive class (the roles of the cells swap:
        tn are the true positives, fn the false positives, fp the false negatives)."""
        return self._f1(self.tn, self.fn, self.fp)

    @property
    def decider_accuracy(self) -> float | None:
        return (self.tp + self.tn) / self.n if self.n else None


def hi_accuracy(local_correct_accepted: int, server_correct_offloaded: int, n: int) -> float:
    """Eq. 1: HI accuracy over all ``n`` samples (the sum of the two indicator products).

    ``local_correct_accepted`` counts samples kept on the device whose local answer was right,
    ``server_correct_offloaded`` counts offloaded samples the server answered right."""
    if n <= 0:
        raise ValueError("HI accuracy needs at least one labeled sample (n > 0)")
    if local_correct_accepted < 0 or server_correct_offloaded < 0:
        raise ValueError("correct counts cannot be negative")
    if local_correct_accepted + server_correct_offloaded > n:
        raise ValueError(
            f"{local_correct_accepted} + {server_correct_offloaded} correct answers exceed the {n} samples"
        )
    return (local_correct_accepted + server_correct_offloaded) / n


def hi_accuracy_from_confusion(confusion: DeciderConfusion, server_accuracy_offloaded: float) -> float:
    """Eq. 2: HI accuracy from the decider's confusion counts, (Acc_OD - eta_FN) + Acc_S * eta_off.

    Acc_OD - eta_FN = (tp + fn - fn) / N: accepted samples are right exactly when they are true
    positives; the offloaded samples (fn + tn) are right with the server's accuracy on them. With a
    perfect server this is 1 - fp / N: only confidently wrong local answers hurt."""
    if confusion.n <= 0:
        raise ValueError("HI accuracy needs a non-empty confusion matrix")
    if not 0.0 <= server_accuracy_offloaded <= 1.0:
        raise ValueError(f"server accuracy must be in [0, 1], got {server_accuracy_offloaded}")
    return (confusion.tp + server_accuracy_offloaded * confusion.offloaded) / confusion.n


def expected_latency_ms(local_ms: float, offload_ms: float, offload_fraction: float) -> float:
    """Eq. 3: Time_HI = (t_dev_inf + t_LR) + eta_off * t_off: the local latency every sample pays
    (preprocessing, local model or its early exits, decider) plus the offload fraction times the
    latency of one offload (transfer, server, reply)."""
    _check_fraction(offload_fraction)
    return local_ms + offload_fraction * offload_ms


def expected_energy_mj(local_mj: float, offload_mj: float, offload_fraction: float) -> float:
    """Eq. 4: Energy_HI = (e_dev_inf + e_LR) + eta_off * e_edge_off, the device's energy per inference
    with the same split as Eq. 3."""
    _check_fraction(offload_fraction)
    return local_mj + offload_fraction * offload_mj


def energy_mj(power_w: float, time_ms: float) -> float:
    """Energy is power times time; W x ms = mJ."""
    return power_w * time_ms


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"offload fraction must be in [0, 1], got {fraction}")
