"""Failure modes: which machines suffer them, how fast they progress by severity, and what
they do to each sensor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from pdm_ml.simulation.machines.kinds import (
    FAILURE_MODES,
    SEVERITY_LEVELS,
    AssetType,
    FailureMode,
    SeverityLevel,
    _asset_type,
)

#: Which failure modes a machine type can suffer (the physics it has sensors for).
ALLOWED_MODES: dict[AssetType, tuple[FailureMode, ...]] = {
    "pump": ("bearing_degradation", "motor_overheating", "sensor_interference", "seal_leak"),
    "motor": ("bearing_degradation", "motor_overheating", "sensor_interference"),
    "compressor": (
        "bearing_degradation",
        "motor_overheating",
        "sensor_interference",
        "seal_leak",
    ),
    "milling": ("tool_wear", "sensor_interference"),
}
#: Not failures of the machine: ground truth says so and they never reach `failed`.
NON_FAILURE_MODES: frozenset[FailureMode] = frozenset({"sensor_interference"})
#: Sensor that interference hits unless told otherwise (the long, unshielded cable).
DEFAULT_INTERFERENCE_SENSOR: dict[AssetType, str] = {
    "pump": "vibration",
    "motor": "vibration",
    "compressor": "vibration",
    "milling": "torque",
}


@dataclass(frozen=True, slots=True)
class SeverityProfile:
    """Time from injection to failure (the ramp) and the size of the effect at failure;
    for interference: the time to full intensity and the burst amplitude in spans."""

    time_to_failure: timedelta
    magnitude: float
    burst_amplitude: float
    burst_start_p: float


SEVERITIES: dict[SeverityLevel, SeverityProfile] = {
    "low": SeverityProfile(timedelta(hours=72), 0.8, 0.3, 0.02),
    "medium": SeverityProfile(timedelta(hours=24), 0.9, 0.6, 0.04),
    "high": SeverityProfile(timedelta(hours=6), 1.0, 1.0, 0.08),
    "critical": SeverityProfile(timedelta(hours=1), 1.15, 1.5, 0.15),
}
#: Degradation d = (elapsed / ramp) ** exponent: a long quiet P-F interval, then the knee.
DEGRADATION_EXPONENT: dict[FailureMode, float] = {
    "bearing_degradation": 3.0,
    "motor_overheating": 1.5,
    "sensor_interference": 1.0,
    "tool_wear": 2.0,
    "seal_leak": 2.0,
}


@dataclass(frozen=True, slots=True)
class Effect:
    """What a failure does to one sensor at full degradation and magnitude 1: value x
    (1 + relative), + offset (temperatures: on the steady-state target, so the reading
    follows through the thermal lag), and a random jitter of sd `jitter` x value."""

    relative: float = 0.0
    offset: float = 0.0
    jitter: float = 0.0


#: mode -> asset type -> sensor -> effect. Milling tool wear itself is not an effect: while
#: `tool_wear` is active the tool is not changed and its wear follows the degradation curve
#: from its wear at injection to `TOOL_FAILURE_WEAR` (see `worn_tool`).
EFFECTS: dict[FailureMode, dict[AssetType, dict[str, Effect]]] = {
    "bearing_degradation": {
        # vibration x6 at failure: beyond ISO 10816 zone D for every class in the fleet
        "pump": {
            "vibration": Effect(5.0, jitter=0.25),
            "bearing_temperature": Effect(offset=30.0),
            "motor_current": Effect(0.03),
        },
        "motor": {
            "vibration": Effect(5.0, jitter=0.25),
            "winding_temperature": Effect(offset=12.0),
            "current": Effect(0.03),
        },
        "compressor": {
            "vibration": Effect(5.0, jitter=0.25),
            "discharge_temperature": Effect(offset=10.0),
            "power": Effect(0.03),
        },
    },
    "motor_overheating": {
        # losses grow with current (I²R); the temperature follows the current
        "pump": {"motor_current": Effect(0.2), "bearing_temperature": Effect(offset=50.0)},
        "motor": {"current": Effect(0.2), "winding_temperature": Effect(offset=70.0)},
        "compressor": {"power": Effect(0.15), "discharge_temperature": Effect(offset=45.0)},
    },
    "seal_leak": {
        # leaked flow never reaches the discharge; the pump runs further out on its curve
        "pump": {
            "discharge_pressure": Effect(-0.4),
            "flow": Effect(-0.3),
            "motor_current": Effect(0.08),
        },
        # the compressor runs loaded longer to make up the leak and recompresses hot air
        "compressor": {
            "discharge_pressure": Effect(-0.3),
            "power": Effect(0.15),
            "discharge_temperature": Effect(offset=8.0),
        },
    },
    "tool_wear": {
        # a dull tool needs more cutting force and makes more heat
        "milling": {
            "torque": Effect(0.4),
            "process_temperature": Effect(offset=5.0),
        },
    },
    "sensor_interference": {},
}


def allowed_modes(asset_type: str) -> tuple[FailureMode, ...]:
    return ALLOWED_MODES[_asset_type(asset_type)]


def check_mode(asset_type: str, mode: str) -> FailureMode:
    """`mode` if a machine of `asset_type` can suffer it, else a ValueError naming the modes."""
    allowed = allowed_modes(asset_type)
    if mode not in allowed:
        what = "unknown failure mode" if mode not in FAILURE_MODES else "failure mode"
        raise ValueError(
            f"{what} {mode!r} does not apply to a {asset_type}; allowed modes: {list(allowed)}"
        )
    return cast(FailureMode, mode)


def check_severity(severity: str) -> SeverityLevel:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; one of {list(SEVERITY_LEVELS)}")
    return cast(SeverityLevel, severity)


def degradation(elapsed_s: float, ramp_s: float, exponent: float) -> float:
    """0 at injection, 1 at failure (and after), power-law in the elapsed fraction between:
    progressive and monotone, quiet at first and accelerating towards the end."""
    if ramp_s <= 0:
        raise ValueError("ramp must be positive")
    fraction = min(max(elapsed_s / ramp_s, 0.0), 1.0)
    return float(fraction**exponent)
