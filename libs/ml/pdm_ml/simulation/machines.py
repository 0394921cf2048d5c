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
"""

from __future__ import annotations

import math
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import numpy as np

from pdm_ml.features import machining

AssetType = Literal["pump", "motor", "compressor", "milling"]
ASSET_TYPES: tuple[AssetType, ...] = get_args(AssetType)
FailureMode = Literal[
    "bearing_degradation", "motor_overheating", "sensor_interference", "tool_wear", "seal_leak"
]
FAILURE_MODES: tuple[FailureMode, ...] = get_args(FailureMode)
SeverityLevel = Literal["low", "medium", "high", "critical"]
SEVERITY_LEVELS: tuple[SeverityLevel, ...] = get_args(SeverityLevel)


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


# --- scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """An operating point: factors on load and speed, an ambient offset (K), a factor on
    the noise, and the L/M/H share of the parts a mill makes. Relative to `normal`:

    ================  =====  =====  =======  =====  ==========================================
    scenario          load   speed  ambient  noise  what moves
    ================  =====  =====  =======  =====  ==========================================
    normal            1.0    1.0      0 K    1.0    nominal duty
    high_load         1.25   1.0      0 K    1.2    flow, current, power, torque and
                                                    temperatures up; pump head and mill speed
                                                    down (pump curve, mill load line)
    precision         0.7    0.9      0 K    0.5    lighter cuts and flows, less current and
                                                    power, quieter; rotating machines slower;
                                                    mills make more H parts (20/40/40 %)
    cold_environment  1.0    1.0    -15 K    1.0    every temperature ~15 K lower
    high_speed        1.0    1.15     0 K    1.3    speed, flow, vibration (~speed²) and pump
                                                    head up (affinity laws); noisier
    ================  =====  =====  =======  =====  ==========================================
    """

    name: str
    load_factor: float
    speed_factor: float
    ambient_offset_k: float
    noise_factor: float
    quality_mix: tuple[float, float, float] = (0.6, 0.3, 0.1)  # AI4I: 60/30/10 % L/M/H


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("normal", 1.0, 1.0, 0.0, 1.0),
        Scenario("high_load", 1.25, 1.0, 0.0, 1.2),
        Scenario("precision", 0.7, 0.9, 0.0, 0.5, (0.2, 0.4, 0.4)),
        Scenario("cold_environment", 1.0, 1.0, -15.0, 1.0),
        Scenario("high_speed", 1.0, 1.15, 0.0, 1.3),
    )
}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; one of {sorted(SCENARIOS)}") from None


# --- failures ----------------------------------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What was injected into an asset and when it fails: the evaluation label.

    `expected_failure_at` is None and `is_failure` False for modes that are not failures of
    the machine (sensor interference): a detector that alarms on them raises a false alarm.
    """

    asset_id: str
    asset_type: AssetType
    mode: FailureMode
    severity: SeverityLevel
    injected_at: datetime
    expected_failure_at: datetime | None
    failed: bool = False
    is_failure: bool = True
    sensor: str | None = None
    cleared_at: datetime | None = None

    def to_event(self) -> dict[str, Any]:
        """JSON-ready dict for the ground-truth topic (times ISO 8601 UTC)."""
        return {
            "asset_id": self.asset_id,
            "asset_type": self.asset_type,
            "mode": self.mode,
            "severity": self.severity,
            "injected_at": iso_utc(self.injected_at),
            "expected_failure_at": _iso_or_none(self.expected_failure_at),
            "failed": self.failed,
            "is_failure": self.is_failure,
            "sensor": self.sensor,
            "cleared_at": _iso_or_none(self.cleared_at),
        }


# --- pure model functions ----------------------------------------------------------------


def machine_seed(seed: int, asset_id: str) -> np.random.SeedSequence:
    """Seed of one asset's streams: stable across processes and Python versions."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.SeedSequence([seed, zlib.crc32(asset_id.encode())])


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


def diurnal(t: datetime) -> float:
    """Daily cycle in [-1, 1], warmest at 15:00 UTC (plant-local time is not modelled)."""
    u = t.astimezone(UTC)
    hours = u.hour + u.minute / 60 + u.second / 3600
    return math.sin(2 * math.pi * (hours - 9) / 24)


def ou_step(x: float, dt_s: float, tau_s: float, z: float) -> float:
    """Unit-variance Ornstein-Uhlenbeck update, exact for any dt (rate-independent)."""
    a = math.exp(-dt_s / tau_s)
    return a * x + math.sqrt(1 - a * a) * z


def thermal_lag(current: float, target: float, dt_s: float, tau_s: float) -> float:
    """First-order approach of a temperature to its steady-state target."""
    return target + (current - target) * math.exp(-dt_s / tau_s)


def pump_point(load: float, speed: float, ambient_c: float) -> dict[str, float]:
    """Centrifugal pump, ~30 kW at 1480 rpm: flow ~ speed x demand, head ~ speed² and falls
    with flow, current from hydraulic power; temperature is the steady-state target."""
    flow = 120.0 * speed * load
    pressure = max(6.0 * speed**2 * (1.2 - 0.2 * load**2), 0.0)
    hydraulic = (flow / 120.0) * (pressure / 6.0)
    return {
        "vibration": 1.5 * (0.75 + 0.25 * speed**2) * (0.9 + 0.1 * load),
        "bearing_temperature": ambient_c + 25.0 * (0.4 + 0.6 * speed * load),
        "discharge_pressure": pressure,
        "flow": flow,
        "motor_current": 14.0 + 40.0 * hydraulic,
    }


def motor_point(load: float, speed: float, ambient_c: float) -> dict[str, float]:
    """Induction motor, ~15 kW, 4 poles: current ~ torque (load), slip ~ load, winding
    temperature rise ~ I²."""
    current = 9.0 + 21.0 * load
    return {
        "vibration": 0.9 * (0.7 + 0.3 * speed**2) * (0.95 + 0.05 * load),
        "winding_temperature": ambient_c + 55.0 * (current / 30.0) ** 2,
        "current": current,
        "speed": speed * (1500.0 - 20.0 * load),
    }


def compressor_point(load: float, speed: float, ambient_c: float) -> dict[str, float]:
    """Oil-injected screw compressor, 75 kW at 7.5 bar: pressure band rises with demand,
    power ~ speed x (unloaded share + load) x sqrt(pressure)."""
    pressure = 7.0 + 0.5 * load
    return {
        "vibration": 2.6 * (0.7 + 0.3 * speed**2) * (0.9 + 0.1 * load),
        "discharge_temperature": ambient_c + 62.0 + 12.0 * (load - 1.0),
        "discharge_pressure": pressure,
        "power": 75.0 * speed * (0.3 + 0.7 * load) * math.sqrt(pressure / 7.5),
    }


OPERATING_POINT = {"pump": pump_point, "motor": motor_point, "compressor": compressor_point}

#: AI4I load line: speed = AI4I_SPEED_RPM x (torque / 40 Nm) ** AI4I_SPEED_EXPONENT.
AI4I_SPEED_RPM = 1512.0
AI4I_SPEED_EXPONENT = -0.37
AI4I_SPEED_LOG_SD = 0.036
AI4I_TORQUE_MIN = 3.0  # Nm; the file's minimum is 3.8, and the load line needs > 0
#: The load line overshoots the file below ~10 Nm; the spindle's top speed (file: 2886 rpm).
SPINDLE_MAX_RPM = 2900.0
#: Tool wear added per part, by quality code (L, M, H).
WEAR_PER_PART: tuple[float, float, float] = (2.0, 3.0, 5.0)
TOOL_LIFE_MIN = (200.0, 240.0)
#: Wear (min) of a tool at failure: past every planned change (AI4I's tool-wear failures
#: happen at 198-253 min) and, with the raised torque, past the overstrain limits
#: (wear x torque > 11,000-13,000 min Nm).
TOOL_FAILURE_WEAR = 250.0


def worn_tool(wear_at_injection: float, progress: float) -> float:
    """Tool wear of a failing tool: from its wear at injection to the failure wear along the
    degradation curve, so the failure time does not depend on the publishing rate."""
    target = max(TOOL_FAILURE_WEAR, wear_at_injection)
    return wear_at_injection + (target - wear_at_injection) * progress


def ai4i_speed(torque: float, speed_factor: float, z: float) -> float:
    line = AI4I_SPEED_RPM * speed_factor * (torque / 40.0) ** AI4I_SPEED_EXPONENT
    return float(min(line * math.exp(AI4I_SPEED_LOG_SD * z), SPINDLE_MAX_RPM))


def quality_from_uniform(u: float, mix: tuple[float, float, float]) -> int:
    """Quality code 0/1/2 (L/M/H) of a part from one uniform draw and the L/M/H shares."""
    if u < mix[0]:
        return 0
    return 1 if u < mix[0] + mix[1] else 2


def iso_utc(t: datetime) -> str:
    return _aware(t, "time").astimezone(UTC).isoformat()


def _iso_or_none(t: datetime | None) -> str | None:
    return None if t is None else iso_utc(t)


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {t.isoformat()}")
    return t


def _asset_type(value: str) -> AssetType:
    if value not in ASSET_TYPES:
        raise ValueError(f"unknown asset type {value!r}; one of {list(ASSET_TYPES)}")
    return cast(AssetType, value)


# --- the machine -------------------------------------------------------------------------

#: Normal and uniform draws per step, the same for every type and every failure state.
_NORMALS = 8
_UNIFORMS = 2
#: Slow processes: ambient (unit OU), load (relative sd), their time constants (s).
AMBIENT_TAU_S = 3 * 3600.0
LOAD_TAU_S = 600.0
LOAD_SD = 0.04
LOAD_DIURNAL = 0.05
PROCESS_TAU_S = 3600.0
#: Mean ambient of rotating machines (°C) and its diurnal amplitude and drift sd (K).
AMBIENT_C = (20.0, 4.0, 1.0)
#: Milling air (K): mean, diurnal amplitude, drift sd; total sd sqrt(0.5 + 1.87²) = 2 K.
AIR_K = (300.0, 1.0, 1.87)


@dataclass(slots=True)
class _Effects:
    scale: dict[str, float] = field(default_factory=dict)
    offset: dict[str, float] = field(default_factory=dict)
    jitter: dict[str, float] = field(default_factory=dict)
    progress: dict[FailureMode, float] = field(default_factory=dict)


@dataclass(slots=True)
class _Active:
    truth: GroundTruth
    ramp_s: float
    magnitude: float
    wear_at_injection: float = 0.0
    in_burst: bool = False


@dataclass(slots=True)
class Machine:
    """One simulated asset. Not thread-safe; steps must come in non-decreasing time order.

    `step(t)` gives one snapshot; `inject`/`clear` change failures; `drain_truth()` hands
    out ground-truth changes (injected, failed, cleared) once each, for publishing.
    """

    asset_id: str
    asset_type: AssetType
    seed: int = 0
    scenario: str = "normal"
    rng: np.random.Generator = field(init=False, repr=False)
    fault_rng: np.random.Generator = field(init=False, repr=False)
    failures: dict[FailureMode, _Active] = field(init=False, default_factory=dict)
    _last: datetime | None = field(init=False, default=None)
    _ambient: float = field(init=False, default=0.0)
    _load: float = field(init=False, default=0.0)
    _process: float = field(init=False, default=0.0)
    _temps: dict[str, float] = field(init=False, default_factory=dict)
    _wear: float = field(init=False, default=0.0)
    _tool_life: float = field(init=False, default=0.0)
    _outbox: list[GroundTruth] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.asset_type = _asset_type(self.asset_type)
        scenario(self.scenario)
        process_seed, fault_seed = machine_seed(self.seed, self.asset_id).spawn(2)
        self.rng = np.random.default_rng(process_seed)
        self.fault_rng = np.random.default_rng(fault_seed)
        # start the slow processes in their stationary state, the tool part-worn
        z = self.rng.standard_normal(3)
        self._ambient, self._load, self._process = (float(v) for v in z)
        low, high = TOOL_LIFE_MIN
        self._tool_life = float(self.rng.uniform(low, high))
        self._wear = float(self.rng.uniform(0.0, self._tool_life))

    # -- commands --

    def set_scenario(self, name: str) -> None:
        self.scenario = scenario(name).name

    def inject(
        self,
        mode: str,
        severity: str,
        now: datetime,
        ramp: timedelta | None = None,
        *,
        sensor: str | None = None,
    ) -> GroundTruth:
        """Start a failure at `now`; it degrades over `ramp` (default: by severity) and fails
        at `now + ramp`. `sensor` picks the victim of `sensor_interference` only."""
        checked = check_mode(self.asset_type, mode)
        level = check_severity(severity)
        _aware(now, "now")
        if checked in self.failures:
            raise ValueError(f"{checked} is already active on {self.asset_id}; clear it first")
        profile = SEVERITIES[level]
        span = profile.time_to_failure if ramp is None else ramp
        if span <= timedelta(0):
            raise ValueError(f"ramp must be positive, got {span}")
        is_failure = checked not in NON_FAILURE_MODES
        victim: str | None = None
        if checked == "sensor_interference":
            victim = sensor or DEFAULT_INTERFERENCE_SENSOR[self.asset_type]
            measured = [s.name for s in SENSORS[self.asset_type] if s.measured]
            if victim not in measured:
                raise ValueError(
                    f"sensor {victim!r} cannot take interference on a {self.asset_type}; "
                    f"one of {measured}"
                )
        elif sensor is not None:
            raise ValueError("sensor= applies to sensor_interference only")
        truth = GroundTruth(
            asset_id=self.asset_id,
            asset_type=self.asset_type,
            mode=checked,
            severity=level,
            injected_at=now,
            expected_failure_at=now + span if is_failure else None,
            is_failure=is_failure,
            sensor=victim,
        )
        self.failures[checked] = _Active(
            truth, span.total_seconds(), profile.magnitude, wear_at_injection=self._wear
        )
        self._outbox.append(truth)
        return truth

    def clear(self, mode: str, now: datetime | None = None) -> GroundTruth | None:
        """Remove a failure (repair); its final ground truth, or None if it was not active."""
        active = self.failures.pop(cast(FailureMode, mode), None)
        if active is None:
            return None
        if active.truth.mode == "tool_wear":  # the repair is a new tool
            low, high = TOOL_LIFE_MIN
            self._wear, self._tool_life = 0.0, float(self.fault_rng.uniform(low, high))
        truth = replace(active.truth, cleared_at=now if now is not None else self._last)
        self._outbox.append(truth)
        return truth

    def mark_failed(self, mode: str) -> bool:
        """Record that an active failure has already been announced as failed (a restart
        rebuilding its state from the topics), so it is not announced again; False when the
        mode is not active or already marked."""
        active = self.failures.get(cast(FailureMode, mode))
        if active is None or active.truth.failed:
            return False
        active.truth = replace(active.truth, failed=True)
        return True

    @property
    def ground_truth(self) -> list[GroundTruth]:
        """The current state of every active failure."""
        return [a.truth for a in self.failures.values()]

    def drain_truth(self) -> list[GroundTruth]:
        out, self._outbox = self._outbox, []
        return out

    # -- simulation --

    def step(self, t: datetime) -> dict[str, float]:
        """One snapshot at `t` (timezone-aware, not before the previous step)."""
        _aware(t, "t")
        if self._last is not None and t < self._last:
            raise ValueError(f"time went backwards: {t.isoformat()} < {self._last.isoformat()}")
        dt = 0.0 if self._last is None else (t - self._last).total_seconds()
        self._last = t
        sc = SCENARIOS[self.scenario]
        z = self.rng.standard_normal(_NORMALS)
        u = self.rng.random(_UNIFORMS)
        self._ambient = ou_step(self._ambient, dt, AMBIENT_TAU_S, float(z[0]))
        self._load = ou_step(self._load, dt, LOAD_TAU_S, float(z[1]))
        cycle = diurnal(t)
        load = sc.load_factor * (1.0 + LOAD_DIURNAL * cycle + LOAD_SD * self._load)
        effects = self._effects(t)
        if self.asset_type == "milling":
            values = self._mill(sc, cycle, load, dt, z, u, effects)
        else:
            values = self._rotating(sc, cycle, load, dt, z, effects)
        for name, sd in effects.jitter.items():
            values[name] += float(self.fault_rng.normal(0.0, sd * abs(values[name])))
        self._interfere(t, values)
        return _finite(values, SENSORS[self.asset_type])

    def _effects(self, t: datetime) -> _Effects:
        """Combined failure effects at `t` (scales multiply, offsets add); flags failures."""
        out = _Effects()
        for mode, active in self.failures.items():
            truth = active.truth
            elapsed = (t - truth.injected_at).total_seconds()
            progress = degradation(elapsed, active.ramp_s, DEGRADATION_EXPONENT[mode])
            out.progress[mode] = progress
            d = progress * active.magnitude
            for name, effect in EFFECTS[mode].get(self.asset_type, {}).items():
                out.scale[name] = out.scale.get(name, 1.0) * (1.0 + effect.relative * d)
                out.offset[name] = out.offset.get(name, 0.0) + effect.offset * d
                if effect.jitter:
                    out.jitter[name] = out.jitter.get(name, 0.0) + effect.jitter * d
            due = truth.expected_failure_at
            if due is not None and not truth.failed and t >= due:
                active.truth = replace(truth, failed=True)
                self._outbox.append(active.truth)
        return out

    def _rotating(
        self,
        sc: Scenario,
        cycle: float,
        load: float,
        dt: float,
        z: np.ndarray,
        effects: _Effects,
    ) -> dict[str, float]:
        scale, offset = effects.scale, effects.offset
        mean, amplitude, drift = AMBIENT_C
        ambient = mean + sc.ambient_offset_k + amplitude * cycle + drift * self._ambient
        target = OPERATING_POINT[self.asset_type](load, sc.speed_factor, ambient)
        values: dict[str, float] = {}
        for i, spec in enumerate(SENSORS[self.asset_type]):
            value = target[spec.name] * scale.get(spec.name, 1.0) + offset.get(spec.name, 0.0)
            tau = THERMAL_TAU_S.get(spec.name)
            if tau is not None:
                previous = self._temps.get(spec.name)
                value = value if previous is None else thermal_lag(previous, value, dt, tau)
                self._temps[spec.name] = value
            values[spec.name] = value + spec.noise_sd * sc.noise_factor * float(z[2 + i])
        return values

    def _mill(
        self,
        sc: Scenario,
        cycle: float,
        load: float,
        dt: float,
        z: np.ndarray,
        u: np.ndarray,
        effects: _Effects,
    ) -> dict[str, float]:
        """One part, by the AI4I rules (module docstring); the scenario's load scales the
        torque, its speed the load line, its ambient offset the air temperature."""
        scale, offset = effects.scale, effects.offset
        self._process = ou_step(self._process, dt, PROCESS_TAU_S, float(z[2]))
        # the air temperature is the hall's ambient (AI4I: a slow random walk)
        mean, amplitude, drift = AIR_K
        air = mean + sc.ambient_offset_k + amplitude * cycle + drift * self._ambient
        process = air + 10.0 + self._process + 1.5 * (load - 1.0)
        process += offset.get("process_temperature", 0.0)
        torque = max(40.0 * load + 10.0 * sc.noise_factor * float(z[3]), AI4I_TORQUE_MIN)
        torque *= scale.get("torque", 1.0)
        speed = ai4i_speed(torque, sc.speed_factor, float(z[4]))
        quality = quality_from_uniform(float(u[0]), sc.quality_mix)
        failing = self.failures.get("tool_wear")
        if failing is not None:
            progress = effects.progress["tool_wear"]
            wear = worn_tool(failing.wear_at_injection, progress)
        else:
            wear = self._wear + WEAR_PER_PART[quality]
            if wear > self._tool_life:
                wear = 0.0  # tool changed; a life is drawn every step to keep the rng aligned
                low, high = TOOL_LIFE_MIN
                self._tool_life = low + (high - low) * float(u[1])
        self._wear = wear
        return {
            "air_temperature": air,
            "process_temperature": process,
            "rotational_speed": speed,
            "torque": torque,
            "tool_wear": wear,
            "quality_code": float(quality),
        }

    def _interfere(self, t: datetime, values: dict[str, float]) -> None:
        """Intermittent noise bursts and spikes on one sensor (a measurement fault only)."""
        active = self.failures.get("sensor_interference")
        if active is None or active.truth.sensor is None:
            return
        truth = active.truth
        profile = SEVERITIES[truth.severity]
        elapsed = (t - truth.injected_at).total_seconds()
        intensity = 0.25 + 0.75 * degradation(elapsed, active.ramp_s, 1.0)
        draw = self.fault_rng.random(3)
        if active.in_burst:
            active.in_burst = draw[0] > 0.3  # bursts last ~3 steps
        else:
            active.in_burst = elapsed >= 0 and draw[0] < profile.burst_start_p * intensity
        if not active.in_burst:
            return
        spec = next(s for s in SENSORS[self.asset_type] if s.name == truth.sensor)
        sd = profile.burst_amplitude * spec.span
        spike = 4.0 * sd * (1.0 if draw[2] < 0.5 else -1.0) if draw[1] < 0.2 else 0.0
        values[spec.name] += float(self.fault_rng.normal(0.0, sd)) + spike


def _finite(values: dict[str, float], specs: Iterable[SensorSpec]) -> dict[str, float]:
    """Values clipped to their physical floor, in sensor order; non-finite is a model bug."""
    out: dict[str, float] = {}
    for spec in specs:
        value = max(float(values[spec.name]), spec.floor)
        if not math.isfinite(value):
            raise ArithmeticError(f"sensor model produced {value} for {spec.name}")
        out[spec.name] = value
    return out


# --- the fleet ---------------------------------------------------------------------------

_MESSAGE_NS = uuid.UUID("5f1d6c1e-3a55-4d0e-9a65-8c3f1d2b7e41")


def asset_id_for(asset_type: str, number: int) -> str:
    return f"{asset_type}-{number:03d}"


def message_id(asset_id: str, t: datetime) -> str:
    """Stable per (asset, time): a replay with the same seed republishes the same ids."""
    return str(uuid.uuid5(_MESSAGE_NS, f"{asset_id}/{iso_utc(t)}"))


def ticks(start: datetime, period: timedelta, count: int) -> list[datetime]:
    """`count` step times from `start`, `period` apart (the publishing rate)."""
    _aware(start, "start")
    if period <= timedelta(0):
        raise ValueError(f"period must be positive, got {period}")
    return [start + i * period for i in range(count)]


@dataclass(slots=True)
class Fleet:
    """Machines of several types, built deterministically, stepped together."""

    machines: dict[str, Machine] = field(default_factory=dict)

    @classmethod
    def build(cls, counts: Mapping[str, int], seed: int = 0, scenario: str = "normal") -> Fleet:
        """`{"pump": 2, "milling": 1}` -> pump-001, pump-002, milling-001, each seeded
        from (seed, asset id), so adding machines never changes the others' streams."""
        fleet = cls()
        for asset_type, count in counts.items():
            checked = _asset_type(asset_type)
            if count < 0:
                raise ValueError(f"count of {asset_type} must be >= 0, got {count}")
            for number in range(1, count + 1):
                asset_id = asset_id_for(checked, number)
                fleet.machines[asset_id] = Machine(asset_id, checked, seed, scenario)
        return fleet

    def __getitem__(self, asset_id: str) -> Machine:
        try:
            return self.machines[asset_id]
        except KeyError:
            raise KeyError(f"no asset {asset_id!r} in the fleet") from None

    def set_scenario(self, name: str, asset_ids: Iterable[str] | None = None) -> None:
        for asset_id in self.machines if asset_ids is None else asset_ids:
            self[asset_id].set_scenario(name)

    def snapshots(self, t: datetime) -> list[dict[str, Any]]:
        """One gateway message per machine at `t` (the `ReadingSnapshot` shape)."""
        ts = iso_utc(t)
        return [
            {
                "asset_id": m.asset_id,
                "ts": ts,
                "readings": m.step(t),
                "message_id": message_id(m.asset_id, t),
                "asset_type": m.asset_type,
            }
            for m in self.machines.values()
        ]

    def drain_truth(self) -> list[GroundTruth]:
        return [truth for m in self.machines.values() for truth in m.drain_truth()]
