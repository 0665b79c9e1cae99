"""RAPL reader on a fake powercap sysfs tree."""
from __future__ import annotations

from pathlib import Path

import pytest

from measurements.power.base import EnergyWindow, MeterError
from measurements.power.rapl import RaplReader, find_zones, rapl_available


def make_zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


def test_packages_only_by_default(tmp_path):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 100)
    make_zone(tmp_path, "intel-rapl:0:0", "core", 50)
    make_zone(tmp_path, "intel-rapl:1", "package-1", 200)
    (tmp_path / "intel-rapl").mkdir()  # the control-type folder has no energy_uj
    assert [z.name for z in find_zones(tmp_path)] == ["package-0", "package-1"]
    assert [z.name for z in find_zones(tmp_path, include_subzones=True)] == ["package-0", "core", "package-1"]
    assert [z.name for z in find_zones(tmp_path, names=["package-1"])] == ["package-1"]


def test_energy_accumulates_over_packages_and_unwraps(tmp_path):
    p0 = make_zone(tmp_path, "intel-rapl:0", "package-0", 900_000, max_uj=1_000_000)
    p1 = make_zone(tmp_path, "intel-rapl:1", "package-1", 10)
    reader = RaplReader(tmp_path)
    assert reader.read_energy_j() == 0.0
    set_energy(p0, 950_000)  # +50 mJ
    set_energy(p1, 20_010)  # +20 mJ
    assert reader.read_energy_j() == pytest.approx(0.070)
    set_energy(p0, 30_000)  # wrapped: +80 mJ
    assert reader.read_energy_j() == pytest.approx(0.150)


def test_energy_window(tmp_path):
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 1_000, max_uj=10_000_000)
    ticks = iter([10.0, 12.0])
    window = EnergyWindow(RaplReader(tmp_path), clock=lambda: next(ticks)).start()
    set_energy(zone, 3_001_000)
    assert window.stop() == pytest.approx(3.0)
    assert window.duration_s == pytest.approx(2.0)


def test_missing_tree_is_a_clear_error(tmp_path):
    assert not rapl_available(tmp_path / "nothing")
    with pytest.raises(MeterError, match="does not expose RAPL"):
        RaplReader(tmp_path / "nothing")


def test_unreadable_counter_says_how_to_fix(tmp_path, monkeypatch):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 5)
    original = Path.read_text

    def deny(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError("denied")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", deny)
    with pytest.raises(MeterError, match="run as root"):
        RaplReader(tmp_path)


def test_metered_block_and_power_command_on_fake_rapl(tmp_path, capsys):
    import json
    import sys

    from measurements import cli
    from measurements.logs import SampleRecord, write_jsonl
    from measurements.power.factory import MeteredBlock, parse_meter_spec

    zone = make_zone(tmp_path / "powercap", "intel-rapl:0", "package-0", 1_000_000, max_uj=10**12)
    with MeteredBlock(f"rapl:{tmp_path / 'powercap'}") as block:
        set_energy(zone, 1_500_000)
    assert block.result.energy_j == pytest.approx(0.5)
    assert block.result.source == "measured (RAPL package package-0)"

    log = write_jsonl(tmp_path / "run.jsonl", [SampleRecord(i, "local", 1, 0.9, None, None, False, None, 1, False, 1,
                                                            0.1, 1.0, 0.0, 0.0, 1.1) for i in range(4)])
    script = f"open({str(zone / 'energy_uj')!r}, 'w').write('3500000')"
    code = cli.main(["power", "--meter", f"rapl:{tmp_path / 'powercap'}", "--log", str(log), "--json",
                     "--", sys.executable, "-c", script])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["energy_j"] == pytest.approx(2.0) and out["energy_mj_per_inference"] == pytest.approx(500.0)
    assert parse_meter_spec("scpi:GPIB0::1::INSTR|READ:POW?").query == "READ:POW?"
    for bad in ("pm1000", "pm1000:GPIB0::1::INSTR|X?", "thermometer:1"):
        with pytest.raises(MeterError):
            parse_meter_spec(bad)
    assert cli.main(["power", "--meter", "rapl"]) == 2  # a usage mistake
    assert "--seconds" in capsys.readouterr().err
