"""Eq. 1-4 on constructed per-sample logs."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hi_runtime.equations import (
    DeciderConfusion,
    expected_energy_mj,
    expected_latency_ms,
    hi_accuracy,
    hi_accuracy_from_confusion,
)
from measurements.logs import RunLog, SampleRecord
from hi_runtime.records import confusion_counts
from measurements.metrics import EnergyModel, compute_metrics, format_metrics


def rec(i, *, local, label, offloaded, server=None, degraded=False, exit_index=None, strategy="hi",
        pre=0.5, local_ms=1.2, decide=0.3, offload_ms=10.0):
    final = server if (offloaded and not degraded and server is not None) else local
    t_off = offload_ms if offloaded else 0.0
    return SampleRecord(
        sample_id=i, strategy=strategy, local_class=local, local_confidence=0.5, exit_index=exit_index,
        decider_score=0.5, offloaded=offloaded, server_class=None if degraded else server, final_class=final,
        degraded=degraded, label=label, t_preprocess_ms=pre, t_local_ms=local_ms, t_decide_ms=decide,
        t_offload_ms=t_off, t_total_ms=pre + local_ms + decide + t_off,
    )


def constructed_hi_log() -> RunLog:
    """10 samples: 6 accepted (5 right: TP=5, FP=1), 4 offloaded (local right on 1: FN=1, TN=3);
    the server answers 3 of the 4 offloaded samples right."""
    records = [rec(i, local=1, label=1, offloaded=False) for i in range(5)]
    records.append(rec(5, local=2, label=1, offloaded=False))
    records.append(rec(6, local=4, label=4, offloaded=True, server=4))
    records.append(rec(7, local=0, label=3, offloaded=True, server=3))
    records.append(rec(8, local=0, label=6, offloaded=True, server=6))
    records.append(rec(9, local=0, label=7, offloaded=True, server=8))
    return RunLog(path=None, header={"device": "rpi4", "model": "resnet8", "strategy": "hi"}, records=records)


def test_eq1_and_eq2_agree_on_the_constructed_run():
    m = compute_metrics(constructed_hi_log())
    assert m.confusion == DeciderConfusion(tp=5, fp=1, fn=1, tn=3)
    assert m.accuracy == pytest.approx(0.8)  # (5 local right + 3 server right) / 10
    assert m.accuracy_eq2 == pytest.approx(0.8)  # (5 + 0.75 * 4) / 10
    assert m.final_accuracy == pytest.approx(0.8)
    assert m.local_accuracy == pytest.approx(0.6)
    assert m.server_accuracy_offloaded == pytest.approx(0.75)
    assert m.offload_fraction == pytest.approx(0.4)
    assert m.confusion.f1_accept == pytest.approx(10 / 12)
    assert m.confusion.f1_offload == pytest.approx(6 / 8)


def test_eq3_latency():
    m = compute_metrics(constructed_hi_log())
    assert m.local_ms == pytest.approx(2.0)
    assert m.offload_ms == pytest.approx(10.0)
    assert m.latency_ms == pytest.approx(2.0 + 0.4 * 10.0)
    assert m.latency_ms_measured == pytest.approx(6.0)  # the logged totals agree with Eq. 3
    assert m.latency_ms_p50 == pytest.approx(2.0)
    assert m.latency_ms_p95 == pytest.approx(12.0)


def test_eq4_energy_modeled_and_measured():
    log = constructed_hi_log()
    modeled = compute_metrics(log, EnergyModel(compute_w=2.0, offload_w=1.0, source="test"))
    assert modeled.energy_mj == pytest.approx(2.0 * 2.0 + 0.4 * 1.0 * 10.0)
    assert modeled.energy_source == "modeled"
    per_offload = compute_metrics(log, EnergyModel(compute_w=2.0, offload_mj=5.0))
    assert per_offload.energy_mj == pytest.approx(4.0 + 0.4 * 5.0)
    measured = compute_metrics(log, EnergyModel(compute_w=2.0, offload_w=1.0), measured_energy_j=0.1)
    assert measured.energy_mj == pytest.approx(10.0)
    assert measured.energy_source == "measured"
    assert compute_metrics(log).energy_mj is None
    assert "modeled" in format_metrics(modeled) and "measured" in format_metrics(measured)


def test_degraded_samples_count_as_local_answers():
    log = constructed_hi_log()
    # sample 9 (local wrong, server wrong) and sample 7 (local wrong, server right) lose the server
    log.records[7] = rec(7, local=0, label=3, offloaded=True, server=3, degraded=True)
    m = compute_metrics(log)
    assert m.accuracy == pytest.approx(0.7)  # the server's right answer on sample 7 is lost
    assert m.final_accuracy == pytest.approx(0.7)
    assert m.accuracy_eq2 is None  # Eq. 2 assumes a working server
    assert m.degraded_fraction == pytest.approx(0.1)


def test_local_only_and_remote_only_runs():
    local = RunLog(None, {"strategy": "local"},
                   [rec(i, local=i % 2, label=0, offloaded=False, strategy="local", decide=0.0) for i in range(4)])
    m = compute_metrics(local)
    assert m.accuracy == pytest.approx(0.5) and m.offload_fraction == 0.0
    assert m.latency_ms == pytest.approx(1.7)
    remote = [SampleRecord(i, "remote", None, None, None, None, True, 3 if i else 2, 3 if i else 2, False, 3,
                           0.2, None, None, 8.0, 8.2) for i in range(4)]
    m = compute_metrics(RunLog(None, {}, remote))
    assert m.strategy == "remote"
    assert m.accuracy == pytest.approx(0.75)
    assert m.confusion is None and m.local_accuracy is None
    assert m.latency_ms == pytest.approx(0.2 + 8.0)


def test_exit_fractions_for_ee_hi():
    records = [rec(i, local=1, label=1, offloaded=False, exit_index=0 if i < 3 else 1, strategy="ee-hi")
               for i in range(4)]
    m = compute_metrics(RunLog(None, {}, records))
    assert m.exit_fractions == {0: 0.75, 1: 0.25}


def test_unlabeled_runs_have_no_accuracy_but_keep_costs():
    records = [rec(i, local=1, label=None, offloaded=False) for i in range(3)]
    m = compute_metrics(RunLog(None, {}, records))
    assert m.accuracy is None and m.n_labeled == 0
    assert m.latency_ms == pytest.approx(2.0)


def test_equation_guards():
    with pytest.raises(ValueError):
        hi_accuracy(3, 3, 5)
    with pytest.raises(ValueError):
        hi_accuracy(0, 0, 0)
    with pytest.raises(ValueError):
        expected_latency_ms(1.0, 1.0, 1.5)
    with pytest.raises(ValueError):
        hi_accuracy_from_confusion(DeciderConfusion(1, 0, 0, 0), 1.2)
    with pytest.raises(ValueError):
        EnergyModel(compute_w=1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.booleans(), st.integers(0, 2)),
                min_size=1, max_size=40))
def test_eq1_equals_eq2_for_any_working_server(samples):
    records = [rec(i, local=l, label=y, offloaded=o, server=s) for i, (l, y, o, s) in enumerate(samples)]
    m = compute_metrics(RunLog(None, {}, records))
    assert m.accuracy == pytest.approx(m.accuracy_eq2)
    assert m.accuracy == pytest.approx(m.final_accuracy)
    assert m.confusion == confusion_counts(records)
    assert m.latency_ms == pytest.approx(m.latency_ms_measured)


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 100), st.floats(0, 100), st.floats(0, 1))
def test_eq3_eq4_are_linear_in_the_offload_fraction(local, offload, rho):
    assert expected_latency_ms(local, offload, rho) == pytest.approx(local + rho * offload)
    assert expected_energy_mj(local, offload, 0.0) == pytest.approx(local)
    assert expected_energy_mj(local, offload, 1.0) == pytest.approx(local + offload)


def test_a_remote_runs_few_degraded_samples_are_no_local_accuracy():
    """The local model answered only the 2 samples the server missed: not the model's accuracy."""
    records = [rec(i, local=None, label=1, offloaded=True, server=1, strategy="remote") for i in range(8)]
    records += [rec(8 + i, local=1, label=1, offloaded=True, degraded=True, strategy="remote") for i in range(2)]
    m = compute_metrics(RunLog(path=None, header={"strategy": "remote"}, records=records))
    assert m.local_accuracy is None and m.accuracy == pytest.approx(1.0)


def test_a_shed_sample_pays_no_offload_in_eq3_and_eq4():
    """Admission control kept one of the four offloads local (shed): Eq. 3/4 weigh the three sent."""
    log = constructed_hi_log()
    shed = log.records[9]
    log.records[9] = dataclasses.replace(shed, shed=True, t_offload_ms=None, server_class=None,
                                         final_class=shed.local_class, t_total_ms=2.0)
    m = compute_metrics(log, EnergyModel(compute_w=2.0, offload_mj=30.0))
    assert m.offload_fraction == pytest.approx(0.4)  # the decider's share
    assert m.latency_ms == pytest.approx(expected_latency_ms(2.0, 10.0, 0.3))
    assert m.energy_mj == pytest.approx(expected_energy_mj(4.0, 30.0, 0.3))


def test_modeled_energy_charges_the_runs_own_dataset():
    records = [rec(i, local=1, label=1, offloaded=i < 5, server=1) for i in range(10)]
    model = EnergyModel(compute_w=2.0, offload_mj=27.67, offload_mj_by_dataset={"imagenet": 112.01},
                        model_datasets={"resnet18": "imagenet", "resnet8": "cifar10"})
    imagenet = compute_metrics(RunLog(None, {"model": "models/resnet18_int8.tflite", "strategy": "hi"}, records), model)
    cifar = compute_metrics(RunLog(None, {"model": "resnet8_int8.tflite", "strategy": "hi"}, records), model)
    assert imagenet.energy_mj == pytest.approx(expected_energy_mj(4.0, 112.01, 0.5))
    assert cifar.energy_mj == pytest.approx(expected_energy_mj(4.0, 27.67, 0.5))
