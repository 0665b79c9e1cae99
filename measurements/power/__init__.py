"""Power and energy meters: bench analyzers over VISA (Voltech PM1000+, generic SCPI) and Linux RAPL.

All meters share :class:`measurements.power.base.PowerMeter` (instantaneous watts) or
:class:`measurements.power.base.EnergyCounter` (cumulative joules), so the benchmark harness can
integrate either into energy per inference the same way.
"""
from measurements.power.base import EnergyCounter, MeterError, PowerMeter, PowerSampler, PowerTrace

__all__ = ["EnergyCounter", "MeterError", "PowerMeter", "PowerSampler", "PowerTrace"]
