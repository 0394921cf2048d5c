"""Simulated machines: sensor models, operating scenarios and injected failures (pure, no I/O).

A `Machine` turns a timestamp into one snapshot of sensor values. Its streams are
deterministic: two generators derived from `(seed, crc32(asset_id))` (never Python's salted
`hash()`), one for the process and measurement noise and one for everything a failure draws.
Process noise is drawn as a fixed-size vector every step whatever failures are active, so a
faulty machine and its healthy twin with the same seed see the same noise and differ only by
the failure: evaluation (and the tests) can compare them value by value.

Rotating machines (pump, motor, compressor) are steady-state operating-point models driven
by a load factor, a speed factor and the ambient temperature; temperatures follow their
steady-state target through a first-order thermal lag. Slow effects are unit-variance
Ornstein-Uhlenbeck processes updated exactly for any step length, plus a diurnal cycle, so
the publishing rate changes the resolution of a stream but not its statistics.

The milling machine follows the AI4I 2020 generation rules (`../shared/data/ai4i2020/
PROVENANCE.md`), one step being one machining process (one part): air temperature a slow
random walk around 300 K (sd 2 K), process temperature air + 10 K (sd 1 K), torque
N(40, 10) Nm kept positive, tool wear +5/3/2 min per part for H/M/L quality and a new tool
at a wear between 200 and 240 min. The published "speed from a power of 2860 W plus noise"
does not reproduce the file (torque x speed averages 6.3 kW), so speed follows the load line
fitted to it instead: speed ~ torque^-0.37 with 3.6 % log-normal noise, which gives its mean
(1539 rpm), sd (179 rpm) and speed-torque correlation (-0.88).

Failures (`Machine.inject`) degrade along (elapsed / ramp) ** exponent, scaled by the
severity's magnitude, and reach `failed` at `injected_at + ramp` exactly (the ramp defaults by
severity). After that the machine keeps running at failure level until `clear` (a real plant
would trip it; holding keeps the stream and the label simple). Sensor interference is a
measurement fault, not a machine failure: it never fails and the ground truth says so.

Units: vibration mm/s RMS, temperatures °C except milling (K, as AI4I), pressure bar (gauge),
flow m3/h, current A, speed rpm, power kW, torque Nm, tool wear min.

The parts: `kinds` (asset types, failure modes, severities), `sensors`, `scenarios`,
`failures` (what a failure does and how fast), `ground_truth`, `physics` (pure model
functions: operating points, slow processes, the AI4I rules), `machine` (`Machine`) and
`fleet` (`Fleet`, ids and step times); `timestamps` holds the UTC helpers they share.
Everything public is importable from here.
"""

from pdm_ml.simulation.machines.failures import (
    ALLOWED_MODES,
    DEFAULT_INTERFERENCE_SENSOR,
    DEGRADATION_EXPONENT,
    EFFECTS,
    NON_FAILURE_MODES,
    SEVERITIES,
    Effect,
    SeverityProfile,
    allowed_modes,
    check_mode,
    check_severity,
    degradation,
)
from pdm_ml.simulation.machines.fleet import Fleet, asset_id_for, message_id, ticks
from pdm_ml.simulation.machines.ground_truth import GroundTruth
from pdm_ml.simulation.machines.kinds import (
    ASSET_TYPES,
    FAILURE_MODES,
    SEVERITY_LEVELS,
    AssetType,
    FailureMode,
    SeverityLevel,
)
from pdm_ml.simulation.machines.machine import (
    AIR_K,
    AMBIENT_C,
    AMBIENT_TAU_S,
    LOAD_DIURNAL,
    LOAD_SD,
    LOAD_TAU_S,
    PROCESS_TAU_S,
    Machine,
)
from pdm_ml.simulation.machines.physics import (
    AI4I_SPEED_EXPONENT,
    AI4I_SPEED_LOG_SD,
    AI4I_SPEED_RPM,
    AI4I_TORQUE_MIN,
    OPERATING_POINT,
    SPINDLE_MAX_RPM,
    TOOL_FAILURE_WEAR,
    TOOL_LIFE_MIN,
    WEAR_PER_PART,
    ai4i_speed,
    compressor_point,
    diurnal,
    machine_seed,
    motor_point,
    ou_step,
    pump_point,
    quality_from_uniform,
    thermal_lag,
    worn_tool,
)
from pdm_ml.simulation.machines.scenarios import SCENARIOS, Scenario, scenario
from pdm_ml.simulation.machines.sensors import SENSORS, THERMAL_TAU_S, SensorSpec, sensor_names
from pdm_ml.simulation.machines.timestamps import iso_utc

__all__ = [
    "AI4I_SPEED_EXPONENT",
    "AI4I_SPEED_LOG_SD",
    "AI4I_SPEED_RPM",
    "AI4I_TORQUE_MIN",
    "AIR_K",
    "ALLOWED_MODES",
    "AMBIENT_C",
    "AMBIENT_TAU_S",
    "ASSET_TYPES",
    "DEFAULT_INTERFERENCE_SENSOR",
    "DEGRADATION_EXPONENT",
    "EFFECTS",
    "FAILURE_MODES",
    "LOAD_DIURNAL",
    "LOAD_SD",
    "LOAD_TAU_S",
    "NON_FAILURE_MODES",
    "OPERATING_POINT",
    "PROCESS_TAU_S",
    "SCENARIOS",
    "SENSORS",
    "SEVERITIES",
    "SEVERITY_LEVELS",
    "SPINDLE_MAX_RPM",
    "THERMAL_TAU_S",
    "TOOL_FAILURE_WEAR",
    "TOOL_LIFE_MIN",
    "WEAR_PER_PART",
    "AssetType",
    "Effect",
    "FailureMode",
    "Fleet",
    "GroundTruth",
    "Machine",
    "Scenario",
    "SensorSpec",
    "SeverityLevel",
    "SeverityProfile",
    "ai4i_speed",
    "allowed_modes",
    "asset_id_for",
    "check_mode",
    "check_severity",
    "compressor_point",
    "degradation",
    "diurnal",
    "iso_utc",
    "machine_seed",
    "message_id",
    "motor_point",
    "ou_step",
    "pump_point",
    "quality_from_uniform",
    "scenario",
    "sensor_names",
    "thermal_lag",
    "ticks",
    "worn_tool",
]
