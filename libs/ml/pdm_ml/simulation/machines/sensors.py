"""The published sensors of every asset type: units, noise, spans and physical floors."""

from __future__ import annotations

from dataclasses import dataclass

from pdm_ml.features import machining
from pdm_ml.simulation.machines.kinds import AssetType


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One published sensor. `span` is its typical operating spread (scales interference);
    `floor` its physical minimum; `measured` is False for computed values (counters, codes)
    that electrical interference cannot reach."""

    name: str
    unit: str
    noise_sd: float
    span: float
    floor: float = 0.0
    measured: bool = True


_C_FLOOR = -50.0  # °C: below any plant's ambient, keeps a spike physical

SENSORS: dict[AssetType, tuple[SensorSpec, ...]] = {
    "pump": (
        SensorSpec("vibration", "mm/s", 0.06, 1.0),
        SensorSpec("bearing_temperature", "°C", 0.3, 10.0, _C_FLOOR),
        SensorSpec("discharge_pressure", "bar", 0.05, 1.0),
        SensorSpec("flow", "m3/h", 1.5, 20.0),
        SensorSpec("motor_current", "A", 0.4, 8.0),
    ),
    "motor": (
        SensorSpec("vibration", "mm/s", 0.04, 0.6),
        SensorSpec("winding_temperature", "°C", 0.4, 10.0, _C_FLOOR),
        SensorSpec("current", "A", 0.3, 5.0),
        SensorSpec("speed", "rpm", 1.5, 60.0),
    ),
    "compressor": (
        SensorSpec("vibration", "mm/s", 0.1, 1.5),
        SensorSpec("discharge_temperature", "°C", 0.4, 8.0, _C_FLOOR),
        SensorSpec("discharge_pressure", "bar", 0.04, 0.5),
        SensorSpec("power", "kW", 0.8, 12.0),
    ),
    # AI4I: the generation rules carry the noise; values are not otherwise perturbed
    "milling": (
        SensorSpec(machining.SENSORS[0], "K", 0.0, 4.0, 200.0),  # air_temperature
        SensorSpec(machining.SENSORS[1], "K", 0.0, 4.0, 200.0),  # process_temperature
        SensorSpec(machining.SENSORS[2], "rpm", 0.0, 180.0),  # rotational_speed
        SensorSpec(machining.SENSORS[3], "Nm", 0.0, 10.0),  # torque
        SensorSpec(machining.SENSORS[4], "min", 0.0, 60.0, measured=False),  # tool_wear
        SensorSpec("quality_code", "", 0.0, 0.0, measured=False),  # 0/1/2 = L/M/H
    ),
}
#: Thermal time constants (s) of the lagged temperatures of rotating machines.
THERMAL_TAU_S: dict[str, float] = {
    "bearing_temperature": 1200.0,
    "winding_temperature": 1800.0,
    "discharge_temperature": 600.0,
}


def sensor_names(asset_type: AssetType) -> tuple[str, ...]:
    return tuple(s.name for s in SENSORS[asset_type])
