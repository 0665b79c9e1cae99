"""Power meter drivers against pyvisa-sim instruments (no hardware needed)."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

pytest.importorskip("pyvisa")
pytest.importorskip("pyvisa_sim")

from measurements.power.base import MeterError, PowerSampler, PowerTrace
from measurements.power.factory import open_meter
from measurements.power.scpi import ScpiPowerMeter, parse_number
from measurements.power.voltech import VoltechPM1000

# A PM1000+ as its manual describes it: selection commands without reply, :DSR? with the new-data bit
# (2) set, :FRD? answering the selected results in order (here power, voltage, current).
SIM_YAML = r"""
spec: "1.1"
devices:
  pm1000:
    eom:
      GPIB INSTR:
        q: "\n"
        r: "\n"
    error: ERROR
    dialogues:
      - q: "*IDN?"
        r: "Voltech,PM1000+,SIM0001,1.00"
      - q: ":SEL:CLR"
      - q: ":SEL:WAT"
      - q: ":SEL:VLT"
      - q: ":SEL:AMP"
      - q: ":DSE 2"
      - q: ":DSR?"
        r: "2"
      - q: ":FRD?"
        r: "2.512E+00,5.010E+00,5.014E-01"
  pm1000_idle:
    eom:
      GPIB INSTR:
        q: "\n"
        r: "\n"
    error: ERROR
    dialogues:
      - q: ":SEL:CLR"
      - q: ":SEL:WAT"
      - q: ":DSE 2"
      - q: ":DSR?"
        r: "0"
  pm1000_short:
    eom:
      GPIB INSTR:
        q: "\n"
        r: "\n"
    error: ERROR
    dialogues:
      - q: ":SEL:CLR"
      - q: ":SEL:WAT"
      - q: ":SEL:VLT"
      - q: ":DSE 2"
      - q: ":DSR?"
        r: "3"
      - q: ":FRD?"
        r: "1.5"
  generic:
    eom:
      USB INSTR:
        q: "\n"
        r: "\n"
    error: ERROR
    dialogues:
      - q: "*IDN?"
        r: "ACME,PowerMeter9,42,2.1"
      - q: "MEAS:POW?"
        r: "+3.300E+00 W"
      - q: "READ:POW?"
        r: "no data"
resources:
  GPIB0::8::INSTR:
    device: pm1000
  GPIB0::9::INSTR:
    device: pm1000_idle
  GPIB0::10::INSTR:
    device: pm1000_short
  USB0::0x1234::0x5678::SN42::INSTR:
    device: generic
"""


@pytest.fixture()
def sim_backend(tmp_path: Path) -> str:
    path = tmp_path / "meters.yaml"
    path.write_text(SIM_YAML)
    return f"{path}@sim"


def test_pm1000_reads_selected_results_in_order(sim_backend):
    meter = VoltechPM1000.open("GPIB0::8::INSTR", sim_backend, results=("WAT", "VLT", "AMP"), settle_s=0)
    try:
        assert meter.identify().startswith("Voltech,PM1000+")
        values = meter.read_results()
        assert values == pytest.approx({"power_w": 2.512, "voltage_v": 5.010, "current_a": 0.5014})
        assert meter.read_power_w() == pytest.approx(2.512)
    finally:
        meter.close()


def test_pm1000_power_is_always_selected_first(sim_backend):
    meter = VoltechPM1000.open("GPIB0::8::INSTR", sim_backend, results=("VLT", "AMP"), settle_s=0)
    assert meter.results == ["WAT", "VLT", "AMP"]
    assert meter.read_power_w() == pytest.approx(2.512)
    meter.close()


def test_pm1000_times_out_without_new_data(sim_backend):
    fake_time = itertools.count(0.0, 1.0)
    meter = VoltechPM1000.open("GPIB0::9::INSTR", sim_backend, settle_s=0, poll_s=0,
                               data_timeout_s=3.0, clock=lambda: next(fake_time))
    with pytest.raises(MeterError, match="no new data"):
        meter.read_power_w()


def test_pm1000_rejects_a_reply_with_too_few_values(sim_backend):
    meter = VoltechPM1000.open("GPIB0::10::INSTR", sim_backend, results=("WAT", "VLT"), settle_s=0)
    with pytest.raises(MeterError, match="returned 1 value"):
        meter.read_results()


def test_pm1000_rejects_unknown_result_names(sim_backend):
    with pytest.raises(MeterError, match="unsupported"):
        VoltechPM1000.open("GPIB0::8::INSTR", sim_backend, results=("XYZ",), settle_s=0)


def test_generic_scpi_meter_parses_units(sim_backend):
    with open_meter("scpi", "USB0::0x1234::0x5678::SN42::INSTR", sim_backend) as meter:
        assert meter.identify() == "ACME,PowerMeter9,42,2.1"
        assert meter.read_power_w() == pytest.approx(3.3)
        meter.power_query = "READ:POW?"
        with pytest.raises(MeterError, match="no number"):
            meter.read_power_w()


def test_silent_address_and_unknown_kind_are_clear_errors(sim_backend):
    nobody = open_meter("scpi", "GPIB0::99::INSTR", sim_backend, timeout_ms=200)
    with pytest.raises(MeterError, match="empty reply"):
        nobody.identify()
    with pytest.raises(MeterError, match="unknown meter kind"):
        open_meter("fluxmeter", "GPIB0::8::INSTR", sim_backend)


def test_sampler_integrates_the_simulated_meter(sim_backend):
    meter = ScpiPowerMeter.open("USB0::0x1234::0x5678::SN42::INSTR", sim_backend)
    ticks = itertools.count(0.0, 0.25)
    sampler = PowerSampler(meter, interval_s=0.001, clock=lambda: next(ticks))
    with sampler:
        pass
    trace = sampler.trace
    assert len(trace.watts) >= 2
    assert trace.mean_power_w() == pytest.approx(3.3)
    assert trace.energy_j() == pytest.approx(3.3 * trace.duration_s)


def test_sampler_reraises_meter_failures():
    class Broken:
        def read_power_w(self):
            raise OSError("cable pulled")

        def close(self):
            pass

    sampler = PowerSampler(Broken(), interval_s=0.001).start()
    with pytest.raises(MeterError, match="cable pulled"):
        sampler.stop()


def test_trace_trapezoid():
    trace = PowerTrace([0.0, 1.0, 3.0], [2.0, 4.0, 4.0])
    assert trace.energy_j() == pytest.approx(3.0 + 8.0)
    assert trace.mean_power_w() == pytest.approx(11.0 / 3.0)
    assert PowerTrace().mean_power_w() is None


@pytest.mark.parametrize("text,value", [("1.5", 1.5), ("+2.0E-03 W", 0.002), ("P=-3 W", -3.0), (" .5 ", 0.5)])
def test_parse_number(text, value):
    assert parse_number(text) == pytest.approx(value)


def test_metered_block_with_a_simulated_pm1000(sim_backend):
    from measurements.power.factory import MeteredBlock

    ticks = itertools.count(0.0, 0.5)
    with MeteredBlock("pm1000:GPIB0::8::INSTR", sim_backend, interval_s=0.001, settle_s=0,
                      clock=lambda: next(ticks)) as block:
        pass
    result = block.result
    assert result.source == "measured (Voltech PM1000+ GPIB0::8::INSTR)"
    assert result.mean_power_w == pytest.approx(2.512)
    assert result.energy_j == pytest.approx(2.512 * result.duration_s)
