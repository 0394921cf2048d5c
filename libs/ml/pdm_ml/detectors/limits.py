"""Static limits per sensor from asset metadata: what an operator already knows is wrong.

Vibration uses ISO 10816-3 style severity zones by machine class (RMS velocity, mm/s):
zone A/B is acceptable, C is "unsatisfactory for long-term operation", D "may cause damage".
Other sensors get plain high/low limits. Limits are configured per asset type (JSON file,
`PDM_ANOMALY_LIMITS_FILE`); the defaults below cover the platform's simulated fleet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pdm_common.events import Severity
from pdm_ml.detectors.base import Score, severity_rank

DETECTOR = "limit"

#: ISO 10816-3 zone boundaries (mm/s RMS): (B/C, C/D) per machine class. Zone C -> major,
#: zone D -> critical; the A/B boundary is informational and raises nothing.
ISO_10816_ZONES: dict[str, tuple[float, float]] = {
    "I": (1.8, 4.5),  # small machines (up to 15 kW)
    "II": (2.8, 7.1),  # medium machines (15-75 kW), or up to 300 kW on special foundations
    "III": (4.5, 11.2),  # large machines, rigid foundations
    "IV": (7.1, 18.0),  # large machines, flexible foundations
}


@dataclass(frozen=True, slots=True)
class Limit:
    """Bands on one sensor: crossing `high`/`low` -> `severity`; the most severe band wins."""

    sensor: str
    bands: tuple[tuple[Severity, float | None, float | None], ...]  # (severity, low, high)

    def check(self, value: float) -> Score:
        """The worst band crossed, or a below-threshold Score (so an alarm can clear)."""
        worst: tuple[Severity, float] | None = None
        for severity, low, high in self.bands:
            if high is not None and value >= high:
                bound = high
            elif low is not None and value <= low:
                bound = low
            else:
                continue
            if worst is None or severity_rank(severity) > severity_rank(worst[0]):
                worst = (severity, bound)
        if worst is None:
            first = next((b for _, lo, hi in self.bands for b in (hi, lo) if b is not None), 0.0)
            return Score(DETECTOR, value, first, None, {self.sensor: 1.0})
        return Score(DETECTOR, value, worst[1], worst[0], {self.sensor: 1.0})


def vibration_limit(sensor: str, machine_class: str) -> Limit:
    bc, cd = ISO_10816_ZONES[machine_class]
    return Limit(sensor, (("major", None, bc), ("critical", None, cd)))


def default_limits() -> dict[str, dict[str, Limit]]:
    """asset type -> sensor -> limit, for the simulated fleet (units as the simulator sends,
    °C for temperatures). `temperature` covers gateways that send one generic temperature;
    the named ones are the simulator's: rolling-bearing outer ring 90/105 °C, motor winding
    at insulation class F (155 °C rating: alarm 130, near the rating 150), compressor
    discharge 110/125 °C."""

    def high(sensor: str, major: float, critical: float) -> Limit:
        return Limit(sensor, (("major", None, major), ("critical", None, critical)))

    return {
        "pump": {
            "vibration": vibration_limit("vibration", "II"),
            "temperature": high("temperature", 90.0, 105.0),
            "bearing_temperature": high("bearing_temperature", 90.0, 105.0),
        },
        "motor": {
            "vibration": vibration_limit("vibration", "I"),
            "temperature": high("temperature", 110.0, 130.0),
            "winding_temperature": high("winding_temperature", 130.0, 150.0),
        },
        "compressor": {
            "vibration": vibration_limit("vibration", "III"),
            "temperature": high("temperature", 110.0, 125.0),
            "discharge_temperature": high("discharge_temperature", 110.0, 125.0),
        },
    }


def load_limits(path: Path | None) -> dict[str, dict[str, Limit]]:
    """Defaults, overridden per asset type by a JSON file of the form
    `{"pump": {"vibration": {"iso10816_class": "II"},
               "pressure": {"bands": [["major", null, 9e5], ["critical", 2e5, 1e6]]}}}`."""
    limits = default_limits()
    if path is None:
        return limits
    spec = json.loads(path.read_text())
    for asset_type, sensors in spec.items():
        table = limits.setdefault(asset_type, {})
        for sensor, rule in sensors.items():
            if "iso10816_class" in rule:
                table[sensor] = vibration_limit(sensor, rule["iso10816_class"])
            else:
                table[sensor] = Limit(sensor, tuple((s, lo, hi) for s, lo, hi in rule["bands"]))
    return limits
