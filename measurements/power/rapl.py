"""Linux RAPL energy counters through the powercap sysfs interface.

``/sys/class/powercap/intel-rapl:<n>`` (packages) and ``intel-rapl:<n>:<m>`` (sub-zones such as
core, uncore, dram) expose ``name``, ``energy_uj`` (a counter in microjoules that wraps at
``max_energy_range_uj``). AMD CPUs expose the same files under the ``intel-rapl`` name with recent
kernels. Reading ``energy_uj`` usually needs root since 2020 kernels (CVE-2020-8694); a permission
error says so.

RAPL measures the CPU package (and DRAM where present), not the whole machine: outputs built on it
are labeled "measured (RAPL package)". Containers and VMs usually have no powercap tree at all.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from measurements.power.base import MeterError

POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    max_energy_range_uj: int

    def read_uj(self) -> int:
        try:
            return int((self.path / "energy_uj").read_text().strip())
        except PermissionError as exc:
            raise MeterError(
                f"no permission to read {self.path / 'energy_uj'}; run as root or "
                "`sudo chmod o+r /sys/class/powercap/intel-rapl*/energy_uj`"
            ) from exc
        except (OSError, ValueError) as exc:
            raise MeterError(f"cannot read {self.path / 'energy_uj'}: {exc}") from exc


def find_zones(root: Path = POWERCAP_ROOT, include_subzones: bool = False,
               names: Sequence[str] | None = None) -> list[RaplZone]:
    """RAPL zones under ``root``. By default only top-level packages, since sub-zones are already
    included in their package's counter (summing both would count energy twice)."""
    if not root.exists():
        return []
    zones = []
    for path in sorted(root.glob("intel-rapl:*")):
        if not (path / "energy_uj").exists():
            continue
        is_subzone = path.name.count(":") > 1
        if is_subzone and not include_subzones:
            continue
        name = (path / "name").read_text().strip() if (path / "name").exists() else path.name
        if names is not None and name not in names:
            continue
        max_range_file = path / "max_energy_range_uj"
        max_range = int(max_range_file.read_text().strip()) if max_range_file.exists() else 0
        zones.append(RaplZone(path, name, max_range))
    return zones


def rapl_available(root: Path = POWERCAP_ROOT) -> bool:
    return bool(find_zones(root))


class RaplReader:
    """Cumulative energy in joules over the selected zones, unwrapping each counter.

    Each ``read_energy_j`` call compares every zone's counter with its previous reading; a smaller
    value means the counter wrapped, so ``max_energy_range_uj`` is added. Read at least once per wrap
    period (minutes at typical package power) for correct totals."""

    def __init__(self, root: Path = POWERCAP_ROOT, include_subzones: bool = False,
                 names: Sequence[str] | None = None) -> None:
        self.zones = find_zones(Path(root), include_subzones, names)
        if not self.zones:
            raise MeterError(
                f"no RAPL powercap zones under {root}; this machine (or container) does not expose "
                "RAPL, so energy must be modeled from a profile or measured with an external meter"
            )
        self._last = [zone.read_uj() for zone in self.zones]
        self._total_uj = 0

    @property
    def zone_names(self) -> list[str]:
        return [zone.name for zone in self.zones]

    def read_energy_j(self) -> float:
        for index, zone in enumerate(self.zones):
            now = zone.read_uj()
            delta = now - self._last[index]
            if delta < 0:
                if zone.max_energy_range_uj <= 0:
                    raise MeterError(f"{zone.path} counter went backwards and has no max_energy_range_uj")
                delta += zone.max_energy_range_uj
            self._total_uj += delta
            self._last[index] = now
        return self._total_uj / 1e6

    def close(self) -> None:
        pass
