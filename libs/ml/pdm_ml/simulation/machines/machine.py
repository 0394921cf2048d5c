"""One simulated asset: steps its sensors through time, carries its active failures and
hands out their ground truth."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

import numpy as np

from pdm_ml.simulation.machines.failures import (
    DEFAULT_INTERFERENCE_SENSOR,
    DEGRADATION_EXPONENT,
    EFFECTS,
    NON_FAILURE_MODES,
    SEVERITIES,
    check_mode,
    check_severity,
    degradation,
)
from pdm_ml.simulation.machines.ground_truth import GroundTruth
from pdm_ml.simulation.machines.kinds import AssetType, FailureMode, _asset_type
from pdm_ml.simulation.machines.physics import (
    AI4I_TORQUE_MIN,
    OPERATING_POINT,
    TOOL_LIFE_MIN,
    WEAR_PER_PART,
    ai4i_speed,
    diurnal,
    machine_seed,
    ou_step,
    quality_from_uniform,
    thermal_lag,
    worn_tool,
)
from pdm_ml.simulation.machines.scenarios import SCENARIOS, Scenario, scenario
from pdm_ml.simulation.machines.sensors import SENSORS, THERMAL_TAU_S, SensorSpec
from pdm_ml.simulation.machines.timestamps import _aware

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
        """One part, by the AI4I rules (package docstring); the scenario's load scales the
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
