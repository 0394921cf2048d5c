"""What a sensor measures, so a detector judges it the way an engineer would.

A level detector that alarms on "territory not visited recently" is right for a bearing's
vibration and wrong for a tool-wear counter (which only grows until a tool change), for a
flow that follows the operating point the plant chose, or for a temperature that takes half
an hour to settle after a load change. Each sensor of an asset type can therefore be
declared as one of:

* `level` (the default for unknown sensors): judged by its level, jumps and repeats;
* `counter` (tool wear, operating hours, cycle counts): judged by its rate (the increments),
  a drop is a reset (tool change, counter roll-over), never an alarm;
* `setpoint` (flow, current, power, speed, pressure: they follow the operating point): after
  a change of operating context the detector re-learns the new normal instead of alarming;
* `thermal` (a temperature with a first-order lag): like `setpoint`, and its level test stays
  quiet for `settle_s` after a context change while the temperature travels to its new
  steady state (about four time constants);
* `categorical` (codes such as a product quality class): not judged by a numeric detector.

Declarations come per asset type from a JSON file (`PDM_ANOMALY_SENSORS_FILE`, merged over the
simulated fleet's declarations shipped here):
`{"pump": {"flow": {"kind": "setpoint"}, "bearing_temperature": {"kind": "thermal",
"settle_s": 4800}}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

SensorKind = Literal["level", "counter", "setpoint", "thermal", "categorical"]
SENSOR_KINDS: tuple[SensorKind, ...] = get_args(SensorKind)
#: Settling time of a thermal sensor declared without one: four 15-minute time constants.
DEFAULT_SETTLE_S = 3600.0


@dataclass(frozen=True, slots=True)
class SensorSemantics:
    kind: SensorKind = "level"
    #: Thermal sensors: seconds the level test waits after a context change.
    settle_s: float = 0.0

    @property
    def follows_context(self) -> bool:
        """Re-learns its normal after a change of operating context."""
        return self.kind in ("setpoint", "thermal")


LEVEL = SensorSemantics()


class SensorCatalog:
    """asset type -> sensor -> semantics; unknown sensors are `level`."""

    def __init__(self, table: Mapping[str, Mapping[str, SensorSemantics]] | None = None) -> None:
        self._table = {t: dict(s) for t, s in (table or {}).items()}

    def of(self, asset_type: str | None, sensor: str) -> SensorSemantics:
        return self._table.get(asset_type or "", {}).get(sensor, LEVEL)

    def merged(self, other: Mapping[str, Mapping[str, SensorSemantics]]) -> SensorCatalog:
        table = {t: dict(s) for t, s in self._table.items()}
        for asset_type, sensors in other.items():
            table.setdefault(asset_type, {}).update(sensors)
        return SensorCatalog(table)

    def table(self) -> dict[str, dict[str, SensorSemantics]]:
        return {t: dict(s) for t, s in self._table.items()}


def parse(
    spec: Mapping[str, Mapping[str, Mapping[str, object]]],
) -> dict[str, dict[str, SensorSemantics]]:
    """Validate a declarations document; errors name the asset type and sensor."""
    out: dict[str, dict[str, SensorSemantics]] = {}
    for asset_type, sensors in spec.items():
        for sensor, rule in sensors.items():
            where = f"{asset_type}.{sensor}"
            kind = rule.get("kind", "level")
            if kind not in SENSOR_KINDS:
                raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(SENSOR_KINDS)}")
            settle = rule.get("settle_s", DEFAULT_SETTLE_S if kind == "thermal" else 0.0)
            if not isinstance(settle, int | float) or settle < 0:
                raise ValueError(f"{where}: settle_s must be a number >= 0, got {settle!r}")
            out.setdefault(asset_type, {})[sensor] = SensorSemantics(kind, float(settle))
    return out


#: The simulated fleet's sensors (`pdm_ml.simulation.machines`): thermal settling is four of
#: the simulator's thermal time constants (bearing 20 min, winding 30 min, discharge 10 min).
SIMULATED: dict[str, dict[str, SensorSemantics]] = {
    "pump": {
        "bearing_temperature": SensorSemantics("thermal", 4 * 1200.0),
        "discharge_pressure": SensorSemantics("setpoint"),
        "flow": SensorSemantics("setpoint"),
        "motor_current": SensorSemantics("setpoint"),
        "vibration": SensorSemantics("setpoint"),
    },
    "motor": {
        "winding_temperature": SensorSemantics("thermal", 4 * 1800.0),
        "current": SensorSemantics("setpoint"),
        "speed": SensorSemantics("setpoint"),
        "vibration": SensorSemantics("setpoint"),
    },
    "compressor": {
        "discharge_temperature": SensorSemantics("thermal", 4 * 600.0),
        "discharge_pressure": SensorSemantics("setpoint"),
        "power": SensorSemantics("setpoint"),
        "vibration": SensorSemantics("setpoint"),
    },
    "milling": {
        # AI4I temperatures: a random walk of the air and the process 10 K above it, no lag
        "air_temperature": SensorSemantics("thermal", 0.0),
        "process_temperature": SensorSemantics("thermal", 0.0),
        "tool_wear": SensorSemantics("counter"),
        "quality_code": SensorSemantics("categorical"),
        "rotational_speed": SensorSemantics("setpoint"),
        "torque": SensorSemantics("setpoint"),
    },
}


def simulated_catalog() -> SensorCatalog:
    return SensorCatalog(SIMULATED)


def load_catalog(path: Path | None) -> SensorCatalog:
    """The shipped declarations, overridden per sensor by a JSON file when given."""
    catalog = simulated_catalog()
    if path is None:
        return catalog
    return catalog.merged(parse(json.loads(path.read_text())))
