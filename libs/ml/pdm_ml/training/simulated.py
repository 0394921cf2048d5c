"""Failure and RUL models of the simulated fleet (pump, motor, compressor), trained offline.

`pdm train simulated --asset-type pump` generates run-to-failure histories from the
simulator's own machine models (`pdm_ml.simulation.machines`, no Kafka), trains two models per
asset type and registers them as `failure-<type>` and `rul-<type>`:

* failure: LightGBM binary classifier, P(the machine fails within `horizon_h` hours of the
  newest snapshot), with the decision threshold chosen on out-of-fold predictions, a
  multi-class failure-mode model (conditional on failure) and TreeSHAP factors;
* RUL: three LightGBM quantile regressors (p10/p50/p90) of the hours to failure, capped at
  `rul_cap_h` (a machine with no developing failure is "at least the cap"), with the
  interval calibrated by Mondrian conformal quantile regression (`cmapss.conformal_bins`).

Both read the same features: `features.windows.window_features` over the last
4 / 16 / 64 snapshots (counted in snapshots, not hours), i.e. the prediction service's
`PDM_PREDICTION_HISTORY_ROWS` (64) stored rows.

Generated data (`plan_fleet`, `simulate`), one snapshot per `period_s` (60 s):

* `machines` machines of one type, each starting in a random operating scenario and
  switching to another one every 720 snapshots on average (12 h at 60 s; exponential
  gaps): level shifts and thermal transients that are not failures;
* most suffer one real failure (the type's `ALLOWED_MODES` except sensor interference), in
  equal numbers per mode, with a random severity (its magnitude) and a ramp drawn
  log-uniform between 20 and 4,320 snapshots (20 min to 72 h at 60 s), so the simulator's
  severity defaults (1-72 h) and its compressed demos (a 30-600 s ramp at 1 Hz is 30-600
  snapshots) are inside the training range *counted in snapshots*; 20 % of them are
  censored (the history stops before the failure), the others run up to 60 snapshots past it;
  half of those are repaired (`Machine.clear`: before the failure at 60-100 % of the ramp,
  or after it) and then run healthy for 64-512 more snapshots;
* 15 % get sensor interference instead (a measurement fault, labelled healthy: the hard
  negatives), 20 % stay healthy.

Labels start at the injection (the P point of the P-F curve): before it, no sensor can tell
that a failure will start, so a row is positive only when a real failure is active and due
within the horizon, and its RUL is the time to that failure (else the cap). A repair ends
it; the `SETTLE_ROWS` rows after one, whose windows still hold the failure, train as
negatives but are left out of the threshold's false-alarm budget and of every score.

Evaluation: machines are split, stratified by kind and mode, into training (75 %) and
held-out (25 %) machines before anything is fitted; every choice (threshold, interval
margins) is made on out-of-fold predictions of GroupKFold over training machines. The
held-out machines give the reported metrics and the champion comparison (the champion is
re-scored on the candidate's held-out machines with its own features).

Time scale (the honest part): degradation follows (elapsed / ramp) ** k, so on a window
counted in snapshots a failing machine looks the same at any sampling period for the same
ramp *in snapshots*; levels (mean/min/max/last of vibration, temperature, pressure...)
carry most of the signal and transfer across ramp durations and sampling periods. What
does not transfer: the hours (horizon, RUL) assume one snapshot per `period_s`, slopes
per snapshot scale with period/ramp, and the thermal lag (10-30 min) and load process
(10 min) have fixed time constants. See docs/models.md, "Simulated fleet".
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from pdm_common import registry
from pdm_ml.features.windows import (
    feature_names,
    latest_window_features,
    window_features_by_asset,
)
from pdm_ml.training.ai4i import binary_metrics, choose_threshold
from pdm_ml.training.cmapss import (
    RulConfig,
    _fit_boosters,
    conformal_bins,
    engine_folds,
    interval_coverage,
    quantile_frame,
    rmse,
)

if TYPE_CHECKING:
    import lightgbm as lgb

    from pdm_ml.simulation.machines import AssetType

FloatArray = npt.NDArray[np.float64]

#: Asset types of the simulator with rotating-machine physics (milling has AI4I).
SIMULATED_TYPES: tuple[str, ...] = ("pump", "motor", "compressor")
FEATURE_SET = "sim-windows:v1"
#: Trailing windows in snapshots; the longest is the service's default history (64 rows).
SIM_WINDOWS: tuple[int, ...] = (4, 16, 64)
#: Fewest rows of history a training example has (the service's `min_history_rows`).
MIN_ROWS = 5
#: Rows after a repair whose (default, 64-row) window still holds the failure: "settling".
#: Fixed, not the model's windows, so that every model is scored on the same rows.
SETTLE_ROWS = 64
ASSET, ROW = "asset_id", "row"
FAILURE_METRIC = "holdout_pr_auc"  # higher is better
RUL_METRIC = "holdout_rmse_h"  # lower is better (balanced: see `evaluate_rul`)
PYFUNC_LOADER_MODULE = "pdm_ml.training.simulated"
FORMAT_VERSION = 1
REFERENCE_ROWS = 2000
_META_FILE = "model.json"
#: The first simulated timestamp (histories start at a random time of day after it).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
Kind = Literal["failure", "interference", "healthy"]


class SimTrainError(ValueError):
    """A configuration that cannot give a model (the message says what to change)."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a run depends on; none of it is tuned on held-out machines."""

    asset_type: str
    machines: int = 240
    period_s: float = 60.0
    #: Each machine's real snapshot period, log-uniform in this range (None: `period_s`).
    #: Labels always count a snapshot as `period_s`. Tried (0.2, 300): worse, see the docs.
    sampling_s: tuple[float, float] | None = None
    horizon_h: float = 24.0
    rul_cap_h: float = 72.0
    ramp_snapshots: tuple[float, float] = (20.0, 4320.0)
    pre_snapshots: tuple[int, int] = (64, 512)  # healthy rows before an injection
    post_snapshots: int = 60  # most rows kept after a failure
    healthy_rows: tuple[int, int] = (512, 2560)
    healthy_share: float = 0.2
    interference_share: float = 0.15
    censored_share: float = 0.2
    repair_share: float = 0.5  # of the failures followed to the end: repaired, then healthy
    after_repair: tuple[int, int] = (64, 512)  # healthy rows after a repair
    switch_every: float = 720.0  # mean snapshots between operating-scenario changes
    holdout: float = 0.25
    false_alarms_per_week: float = 1.0  # budget of the decision threshold (see choose_cut)
    folds: int = 3
    stride: int = 4  # every stride-th row of a training machine is a training example
    windows: tuple[int, ...] = SIM_WINDOWS
    n_estimators: int = 250
    mode_estimators: int = 150
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 50
    feature_fraction: float = 0.8
    coverage: float = 0.8
    calibration_bins: int = 4
    seed: int = 0
    threads: int = 2

    @classmethod
    def quick(cls, asset_type: str, seed: int = 0) -> SimConfig:
        """A few seconds end to end (tests, smoke runs): fewer and shorter histories, fewer
        trees. Its numbers say the pipeline works, not how good the model is."""
        return cls(
            asset_type,
            machines=80,
            ramp_snapshots=(20.0, 600.0),
            pre_snapshots=(64, 160),
            healthy_rows=(256, 640),
            after_repair=(64, 160),
            stride=6,
            n_estimators=60,
            mode_estimators=40,
            learning_rate=0.1,
            min_child_samples=20,
            seed=seed,
            threads=1,  # tiny data: a second thread costs more than it gives
        )

    def check(self) -> None:
        _check_type(self.asset_type)
        if self.machines < 12:
            raise SimTrainError(f"--machines {self.machines}: at least 12 are needed")
        if self.period_s <= 0 or self.horizon_h <= 0 or self.rul_cap_h < self.horizon_h:
            raise SimTrainError("need period > 0, horizon > 0 and an RUL cap >= the horizon")
        if self.sampling_s is not None and not 0 < self.sampling_s[0] <= self.sampling_s[1]:
            raise SimTrainError(f"sampling range {self.sampling_s} must be 0 < low <= high")
        low, high = self.ramp_snapshots
        if not 1 <= low <= high:
            raise SimTrainError(f"ramp range {self.ramp_snapshots} must satisfy 1 <= low <= high")

    def failure_params(self, objective: str = "binary", **extra: Any) -> dict[str, Any]:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": self.seed,
            "num_threads": self.threads,
            "verbosity": -1,
            **extra,
        }

    def rul_config(self) -> RulConfig:
        """The C-MAPSS quantile settings with this run's sizes (one set of hyper-parameters
        for every RUL model of the platform), boosting from 0 (`_SimRulConfig`)."""
        return _SimRulConfig(
            windows=self.windows,
            cap=self.rul_cap_h,
            n_splits=self.folds,
            coverage=self.coverage,
            calibration_bins=self.calibration_bins,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            seed=self.seed,
            threads=self.threads,
        )


@dataclass(frozen=True, slots=True)
class _SimRulConfig(RulConfig):
    """`RulConfig` boosting from 0 instead of from the label quantile. Most rows here sit at
    the cap (healthy machines), so the p50 and p90 of the labels ARE the cap: LightGBM would
    start every row there, every residual would have the same sign, no split would gain and
    the quantiles would stay at the cap (measured: p50 = 72 h on every row). From 0 the
    degrading rows separate at once (held-out RMSE 56 -> 26 h on 120 pumps)."""

    def lgb_params(self, alpha: float) -> dict[str, Any]:
        return RulConfig.lgb_params(self, alpha) | {"boost_from_average": False}


def failure_modes(asset_type: str) -> tuple[str, ...]:
    """The real (machine) failure modes of a simulated type, in the simulator's order."""
    from pdm_ml.simulation.machines import ALLOWED_MODES, NON_FAILURE_MODES

    allowed = ALLOWED_MODES[cast("AssetType", _check_type(asset_type))]
    return tuple(m for m in allowed if m not in NON_FAILURE_MODES)


def sensors_of(asset_type: str) -> tuple[str, ...]:
    from pdm_ml.simulation.machines import sensor_names

    return sensor_names(cast("AssetType", _check_type(asset_type)))


# --------------------------------------------------------------------------------------------
# Generation (pure: a plan from a seed, a history from a plan)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MachinePlan:
    """What happens to one generated machine, in snapshot rows from its first one."""

    asset_id: str
    kind: Kind
    rows: int
    scenario: str
    start_s: float  # seconds after EPOCH of row 0 (the time of day varies)
    mode: str | None = None
    severity: str = "medium"
    inject_at: int | None = None
    ramp_rows: float = 0.0
    switches: tuple[tuple[int, str], ...] = ()  # (row, new scenario), in row order
    censored: bool = False
    repair_at: int | None = None  # row at which the failure is cleared (a repair)
    holdout: bool = False
    step_s: float = 60.0  # seconds between two snapshots of this machine

    @property
    def failure_row(self) -> float | None:
        """Row (fractional) at which a real failure is due; None when none is."""
        if self.kind != "failure" or self.inject_at is None:
            return None
        return self.inject_at + self.ramp_rows

    @property
    def stratum(self) -> str:
        return f"{self.kind}:{self.mode or ''}"


def plan_fleet(config: SimConfig) -> list[MachinePlan]:
    """Deterministic plans for `config.machines` machines (see the module docstring)."""
    from pdm_ml.simulation.machines import SCENARIOS, SEVERITY_LEVELS, asset_id_for

    config.check()
    rng = np.random.default_rng([config.seed, zlib.crc32(config.asset_type.encode())])
    n = config.machines
    n_healthy = round(config.healthy_share * n)
    n_interference = round(config.interference_share * n)
    modes = failure_modes(config.asset_type)
    kinds: list[tuple[Kind, str | None]] = [("healthy", None)] * n_healthy
    kinds += [("interference", "sensor_interference")] * n_interference
    kinds += [("failure", modes[i % len(modes)]) for i in range(n - n_healthy - n_interference)]
    scenarios = sorted(SCENARIOS)
    low, high = (math.log(v) for v in config.ramp_snapshots)
    step_low, step_high = (math.log(v) for v in config.sampling_s or (config.period_s,) * 2)
    plans: list[MachinePlan] = []
    for i, (kind, mode) in enumerate(kinds):
        asset_id = asset_id_for(config.asset_type, i + 1)
        scenario = str(rng.choice(scenarios))
        start_s = float(rng.uniform(0.0, 86_400.0))
        severity = str(rng.choice(SEVERITY_LEVELS))
        ramp = float(math.exp(rng.uniform(low, high)))
        pre = int(rng.integers(config.pre_snapshots[0], config.pre_snapshots[1] + 1))
        if kind == "healthy":
            rows = int(rng.integers(config.healthy_rows[0], config.healthy_rows[1] + 1))
            plan = MachinePlan(asset_id, kind, rows, scenario, start_s)
        elif kind == "interference":
            rows = pre + int(rng.integers(config.healthy_rows[0] // 2, config.healthy_rows[1]))
            plan = MachinePlan(asset_id, kind, rows, scenario, start_s, mode, severity, pre, ramp)
        else:
            censored = bool(rng.random() < config.censored_share)
            repair_at: int | None = None
            end = pre + math.ceil(ramp) + int(rng.integers(0, config.post_snapshots + 1))
            if censored:
                rows = pre + max(1, int(ramp * rng.uniform(0.3, 1.0)))
            elif rng.random() < config.repair_share:
                preventive = rng.random() < 0.5
                repair_at = pre + max(1, int(ramp * rng.uniform(0.6, 1.0))) if preventive else end
                low_after, high_after = config.after_repair
                rows = repair_at + int(rng.integers(low_after, high_after + 1))
            else:
                rows = end
            plan = MachinePlan(
                asset_id, kind, rows, scenario, start_s, mode, severity, pre, ramp,
                censored=censored, repair_at=repair_at,
            )  # fmt: skip
        switches: list[tuple[int, str]] = []
        at, current = 0.0, scenario
        while True:
            at += float(rng.exponential(config.switch_every))
            if at >= plan.rows:
                break
            current = str(rng.choice([s for s in scenarios if s != current]))
            switches.append((int(at), current))
        drawn = float(math.exp(rng.uniform(step_low, step_high)))  # drawn either way
        step_s = drawn if config.sampling_s is not None else config.period_s
        plans.append(replace(plan, switches=tuple(switches), step_s=step_s))
    return _assign_holdout(plans, config.holdout, rng)


def _assign_holdout(
    plans: list[MachinePlan], share: float, rng: np.random.Generator
) -> list[MachinePlan]:
    """Hold out `share` of the machines of every stratum (kind, mode), at random."""
    out = list(plans)
    strata: dict[str, list[int]] = {}
    for i, plan in enumerate(plans):
        strata.setdefault(plan.stratum, []).append(i)
    for members in strata.values():
        chosen = rng.permutation(members)[: max(1, round(share * len(members)))]
        for i in chosen:
            out[int(i)] = replace(out[int(i)], holdout=True)
    return out


def simulate(plan: MachinePlan, config: SimConfig) -> pd.DataFrame:
    """One machine's history: sensor values per row, plus its labels (`label_frame`)."""
    from pdm_ml.simulation.machines import Machine

    asset_type = cast("AssetType", _check_type(config.asset_type))
    machine = Machine(plan.asset_id, asset_type, config.seed, plan.scenario)
    sensors = sensors_of(config.asset_type)
    values = np.empty((plan.rows, len(sensors)), dtype=np.float64)
    start = EPOCH + timedelta(seconds=plan.start_s)
    ramp = timedelta(seconds=plan.ramp_rows * plan.step_s)
    switches = dict(plan.switches)
    for i in range(plan.rows):
        t = start + timedelta(seconds=i * plan.step_s)
        if i in switches:
            machine.set_scenario(switches[i])
        if i == plan.inject_at and plan.mode is not None:
            machine.inject(plan.mode, plan.severity, t, ramp)
        if i == plan.repair_at and plan.mode is not None:
            machine.clear(plan.mode, t)
        step = machine.step(t)
        values[i] = [step[s] for s in sensors]
    frame = pd.DataFrame(values, columns=list(sensors))
    frame.insert(0, ROW, np.arange(plan.rows))
    frame.insert(0, ASSET, plan.asset_id)
    return pd.concat([frame, label_frame(plan, config)], axis=1)


def label_frame(plan: MachinePlan, config: SimConfig) -> pd.DataFrame:
    """Per row: `active` (a real failure is developing or has happened, not yet repaired),
    `ttf_h` (hours to it, NaN when none), `target` (due within the horizon), `rul_h`
    (capped), `mode`, and `settling`: the first `SETTLE_ROWS` rows after a repair, whose
    windows still hold the failure (negatives in training, left out of the false-alarm
    budget and of every held-out score: what to say there is a matter of taste)."""
    rows = np.arange(plan.rows, dtype=np.float64)
    due = plan.failure_row
    if due is None or plan.inject_at is None:
        active = np.zeros(plan.rows, dtype=bool)
        ttf = np.full(plan.rows, np.nan)
    else:
        active = rows >= plan.inject_at
        if plan.repair_at is not None:
            active &= rows < plan.repair_at
        ttf = np.where(active, np.maximum(due - rows, 0.0) * config.period_s / 3600.0, np.nan)
    target = active & (np.nan_to_num(ttf, nan=np.inf) <= config.horizon_h)
    settling = np.zeros(plan.rows, dtype=bool)
    if plan.repair_at is not None:
        settling = (rows >= plan.repair_at) & (rows < plan.repair_at + SETTLE_ROWS)
    cap = config.rul_cap_h
    return pd.DataFrame(
        {
            "active": active,
            "ttf_h": ttf,
            "target": target.astype(np.int64),
            "rul_h": np.where(active, np.minimum(np.nan_to_num(ttf), cap), cap),
            "mode": np.where(active, plan.mode or "", ""),
            "settling": settling,
        }
    )


def generate(
    config: SimConfig, echo: Callable[[str], None] = lambda _line: None
) -> tuple[list[MachinePlan], pd.DataFrame]:
    """Plans and the long frame of every machine's history (rows in time order)."""
    plans = plan_fleet(config)
    frames = [simulate(plan, config) for plan in plans]
    history = pd.concat(frames, ignore_index=True)
    history["holdout"] = history[ASSET].map({p.asset_id: p.holdout for p in plans})
    kinds = pd.Series([p.kind for p in plans]).value_counts().to_dict()
    echo(
        f"  {len(plans)} {config.asset_type}s ({', '.join(f'{v} {k}' for k, v in kinds.items())}"
        f"), {len(history):,} snapshots at one per {_sampling(config)} s "
        f"({len(history) * config.period_s / 86_400:,.0f} machine-days)"
    )
    return plans, history


def _sampling(config: SimConfig) -> str:
    if config.sampling_s is None:
        return f"{config.period_s:g}"
    low, high = config.sampling_s
    return f"{low:g}-{high:g} (labels: {config.period_s:g})"


def _check_type(asset_type: str) -> str:
    if asset_type not in SIMULATED_TYPES:
        raise SimTrainError(
            f"asset type {asset_type!r} is not simulated here; one of {list(SIMULATED_TYPES)} "
            "(milling: `pdm train ai4i`)"
        )
    return asset_type


# --------------------------------------------------------------------------------------------
# Features: the one code path of training and serving
# --------------------------------------------------------------------------------------------


def featurise(
    history: pd.DataFrame, sensors: Sequence[str], windows: Sequence[int]
) -> pd.DataFrame:
    """Window features of every row of a long frame of histories (index kept)."""
    names = feature_names(sensors, windows)
    return window_features_by_asset(history, ASSET, ROW, sensors, windows).loc[history.index, names]


def latest_features(
    rows: pd.DataFrame, sensors: Sequence[str], windows: Sequence[int]
) -> dict[str, float]:
    """Serving: the features of the newest row of ONE asset's history (oldest first)."""
    return latest_window_features(rows, sensors, windows)


def tree_shap_top(
    booster: Any, frame: pd.DataFrame, k: int = 3, class_index: int | None = None
) -> list[list[tuple[str, float]]]:
    """Per row, the `k` features with the largest |TreeSHAP| contribution (LightGBM's
    `pred_contrib`, in the model's raw units: log-odds for a binary classifier)."""
    contrib = np.asarray(booster.predict(frame, pred_contrib=True), dtype=np.float64)
    width = frame.shape[1] + 1
    if class_index is not None:
        contrib = contrib[:, class_index * width : (class_index + 1) * width]
    contrib = contrib[:, :-1]  # the bias column
    names = list(frame.columns)
    out = []
    for row in contrib:
        order = np.argsort(-np.abs(row))[:k]
        out.append([(names[i], float(row[i])) for i in order])
    return out


# --------------------------------------------------------------------------------------------
# The models (plain files: LightGBM text + JSON, loaded by this module; no pickle)
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SimFailureModel:
    """P(failure within `horizon_h`), the failure mode and TreeSHAP factors of one asset's
    recent history. Satisfies the prediction service's history-model interface."""

    asset_type: str
    sensors: tuple[str, ...]
    windows: tuple[int, ...]
    features: tuple[str, ...]
    booster: lgb.Booster
    threshold: float
    horizon_h: float
    period_s: float
    modes: tuple[str, ...]
    mode_booster: lgb.Booster | None = None
    training: dict[str, Any] = field(default_factory=dict)

    pyfunc_loader_module: ClassVar[str] = PYFUNC_LOADER_MODULE
    kind: ClassVar[str] = "failure"
    modes_basis: ClassVar[str] = "conditional_on_failure"

    @property
    def horizon(self) -> str:
        return (
            f"failure within {self.horizon_h:g} h of the newest reading "
            f"(hours of a history sampled every {self.period_s:g} s)"
        )

    def latest_features(self, rows: pd.DataFrame) -> dict[str, float]:
        return latest_features(rows, self.sensors, self.windows)

    def featurise(self, history: pd.DataFrame) -> pd.DataFrame:
        return featurise(history, self.sensors, self.windows)

    def _x(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.reindex(columns=list(self.features)).astype(np.float64)

    def probabilities(self, frame: pd.DataFrame) -> FloatArray:
        return np.asarray(self.booster.predict(self._x(frame)), dtype=np.float64)

    def mode_probabilities(self, frame: pd.DataFrame) -> list[dict[str, float]]:
        if self.mode_booster is None or not self.modes:
            return [{} for _ in range(len(frame))]
        out = np.asarray(self.mode_booster.predict(self._x(frame)), dtype=np.float64)
        out = out.reshape(len(frame), -1)
        return [dict(zip(self.modes, map(float, row), strict=True)) for row in out]

    def contributions(self, frame: pd.DataFrame, k: int) -> list[list[tuple[str, float]]]:
        return tree_shap_top(self.booster, self._x(frame), k)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """The pyfunc view: P(failure) and the mode probabilities per feature row."""
        out = pd.DataFrame({"failure_probability": self.probabilities(features)})
        modes = pd.DataFrame(self.mode_probabilities(features), columns=list(self.modes))
        return pd.concat([out, modes.add_prefix("mode_")], axis=1).set_axis(features.index)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(path / "failure.txt"))
        if self.mode_booster is not None:
            self.mode_booster.save_model(str(path / "modes.txt"))
        _write_meta(path, self, {
            "threshold": self.threshold,
            "horizon_h": self.horizon_h,
            "modes": list(self.modes),
            "has_modes": self.mode_booster is not None,
        })  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> SimFailureModel:
        import lightgbm as lgb

        path = Path(path)
        meta = _read_meta(path, cls.kind)
        return cls(
            asset_type=meta["asset_type"],
            sensors=tuple(meta["sensors"]),
            windows=tuple(meta["windows"]),
            features=tuple(meta["features"]),
            booster=lgb.Booster(model_file=str(path / "failure.txt")),
            threshold=float(meta["threshold"]),
            horizon_h=float(meta["horizon_h"]),
            period_s=float(meta["period_s"]),
            modes=tuple(meta["modes"]),
            mode_booster=lgb.Booster(model_file=str(path / "modes.txt"))
            if meta["has_modes"]
            else None,
            training=dict(meta.get("training", {})),
        )


@dataclass(slots=True)
class SimRulModel:
    """Remaining useful life in hours (p10/p50/p90) of one asset's recent history."""

    asset_type: str
    sensors: tuple[str, ...]
    windows: tuple[int, ...]
    features: tuple[str, ...]
    boosters: dict[str, lgb.Booster]
    cap_h: float
    period_s: float
    margins: tuple[float, ...] = (0.0,)
    margin_edges: tuple[float, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)

    pyfunc_loader_module: ClassVar[str] = PYFUNC_LOADER_MODULE
    kind: ClassVar[str] = "rul"
    rul_unit: ClassVar[str] = "hours"

    @property
    def rul_cap(self) -> float:
        return self.cap_h

    def latest_features(self, rows: pd.DataFrame) -> dict[str, float]:
        return latest_features(rows, self.sensors, self.windows)

    def featurise(self, history: pd.DataFrame) -> pd.DataFrame:
        return featurise(history, self.sensors, self.windows)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Calibrated p10/p50/p90 (hours, at most the cap) per feature row."""
        x = features.reindex(columns=list(self.features)).to_numpy(dtype=np.float64)
        raw = np.sort(np.column_stack([self.boosters[q].predict(x) for q in _QUANTILES]), axis=1)
        out = quantile_frame(raw, self.margins, self.margin_edges, features.index)
        return out.clip(upper=self.cap_h)

    def predict_history(self, rows: pd.DataFrame) -> dict[str, float]:
        """Serving: RUL quantiles at the newest row of ONE asset's history."""
        out = self.predict(pd.DataFrame([self.latest_features(rows)]))
        return {str(k): float(v) for k, v in out.iloc[0].items()}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(path / f"{name}.txt"))
        _write_meta(path, self, {
            "cap_h": self.cap_h,
            "margins": list(self.margins),
            "margin_edges": list(self.margin_edges),
        })  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> SimRulModel:
        import lightgbm as lgb

        path = Path(path)
        meta = _read_meta(path, cls.kind)
        return cls(
            asset_type=meta["asset_type"],
            sensors=tuple(meta["sensors"]),
            windows=tuple(meta["windows"]),
            features=tuple(meta["features"]),
            boosters={q: lgb.Booster(model_file=str(path / f"{q}.txt")) for q in _QUANTILES},
            cap_h=float(meta["cap_h"]),
            period_s=float(meta["period_s"]),
            margins=tuple(float(m) for m in meta["margins"]),
            margin_edges=tuple(float(e) for e in meta["margin_edges"]),
            training=dict(meta.get("training", {})),
        )


_QUANTILES: tuple[str, ...] = ("p10", "p50", "p90")
SimModel = SimFailureModel | SimRulModel


def _write_meta(path: Path, model: SimModel, extra: Mapping[str, Any]) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "asset_type": model.asset_type,
        "sensors": list(model.sensors),
        "windows": list(model.windows),
        "features": list(model.features),
        "period_s": model.period_s,
        "training": model.training,
        **extra,
    }
    (path / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def _read_meta(path: Path, kind: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((path / _META_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model format {meta.get('format_version')} unsupported")
    if kind is not None and meta.get("kind") != kind:
        raise ValueError(f"{path}: a {meta.get('kind')} model, not a {kind} model")
    return meta


def load_model(path: str | Path) -> SimModel:
    """Either model from its directory (the kind is in its `model.json`)."""
    kind = _read_meta(Path(path))["kind"]
    return SimFailureModel.load(path) if kind == "failure" else SimRulModel.load(path)


class PyfuncAdapter:
    """What `mlflow.pyfunc.load_model` wraps: `predict` on window features for generic
    tools; `get_raw_model` gives the model itself (the registry loader unwraps it)."""

    def __init__(self, model: SimModel) -> None:
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict(pd.DataFrame(model_input))

    def get_raw_model(self) -> SimModel:
        return self.model


def _load_pyfunc(data_path: str) -> PyfuncAdapter:
    """Entry point MLflow calls for a model logged with `loader_module=PYFUNC_LOADER_MODULE`."""
    return PyfuncAdapter(load_model(data_path))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimTraining:
    """A run's two models, their evaluations and what the champion comparison needs."""

    config: SimConfig
    plans: list[MachinePlan]
    failure: SimFailureModel
    rul: SimRulModel
    failure_metrics: dict[str, float]
    rul_metrics: dict[str, float]
    train_features: pd.DataFrame
    holdout: pd.DataFrame  # raw held-out histories with labels
    generate_seconds: float
    fit_seconds: float

    @property
    def dataset(self) -> str:
        return f"simulated-{self.config.asset_type}"

    @property
    def split(self) -> str:
        c = self.config
        return (
            f"machines={c.machines} seed={c.seed} holdout={c.holdout} (by machine, stratified "
            f"by kind and mode) period_s={_sampling(c)} ramps={c.ramp_snapshots}"
        )


def training_rows(history: pd.DataFrame, stride: int) -> npt.NDArray[np.bool_]:
    """Rows used as training examples: every `stride`-th row with at least `MIN_ROWS` of
    history (neighbouring snapshots are near duplicates)."""
    row = history[ROW].to_numpy()
    return np.asarray((row >= MIN_ROWS - 1) & ((row - (MIN_ROWS - 1)) % stride == 0))


def choose_cut(
    y: npt.NDArray[np.int64],
    proba: FloatArray,
    healthy: npt.NDArray[np.bool_],
    false_alarm_rate: float,
) -> tuple[float, float]:
    """(decision threshold, the F1-optimal one) from out-of-fold predictions: the cut that
    maximises F1, raised until at most `false_alarm_rate` of the healthy snapshots (no
    developing failure) score above it. F1 alone weighs a false alarm like a late positive
    snapshot; an operator sees a healthy machine alarmed (the F1 cut alarmed 62-88 % of the
    held-out healthy machines at least once in a day or two). With too few healthy rows to
    expect even one above the budget (`--quick`: ~2,500 rows against 1e-4), the budget
    cannot be measured (its quantile is the maximum, 0.99 measured) and the F1 cut stands."""
    best_f1 = choose_threshold(y, proba)
    if healthy.sum() * false_alarm_rate < 1.0:
        return best_f1, best_f1
    bound = float(np.quantile(proba[healthy], 1.0 - false_alarm_rate, method="higher"))
    return max(best_f1, bound), best_f1


def fit_failure(
    x: pd.DataFrame,
    y: npt.NDArray[np.int64],
    groups: npt.ArrayLike,
    modes: npt.NDArray[np.int64],
    healthy: npt.NDArray[np.bool_],
    config: SimConfig,
    mode_names: Sequence[str],
    echo: Callable[[str], None] = lambda _line: None,
) -> tuple[SimFailureModel, dict[str, float]]:
    """Out-of-fold P(failure) (GroupKFold by machine) -> threshold (`choose_cut`); final
    fit; mode model on the positive rows. `modes` is the mode index per row (-1: none),
    `healthy` marks rows without a developing failure."""
    import lightgbm as lgb

    names = list(x.columns)
    values = x.to_numpy(dtype=np.float64)
    params = config.failure_params()
    oof = np.zeros(len(y))
    for i, (fit_idx, val_idx) in enumerate(engine_folds(groups, config.folds), start=1):
        data = lgb.Dataset(values[fit_idx], y[fit_idx], feature_name=names)
        booster = lgb.train(params, data, config.n_estimators)
        oof[val_idx] = booster.predict(values[val_idx])
        echo(f"  failure fold {i}/{config.folds}: {len(val_idx):,} rows")
    rate = config.false_alarms_per_week * config.period_s / (7 * 86_400.0)
    threshold, f1_cut = choose_cut(y, oof, healthy, rate)
    cv = {f"cv_{k}": v for k, v in binary_metrics(y, oof, threshold).items()}
    cv["cv_f1_at_f1_cut"] = binary_metrics(y, oof, f1_cut)["f1"]
    cv["f1_cut"] = f1_cut
    booster = lgb.train(params, lgb.Dataset(values, y, feature_name=names), config.n_estimators)
    positive = (y == 1) & (modes >= 0)
    mode_booster = None
    if positive.sum() >= 2 * len(mode_names) and len(mode_names) > 1:
        mode_params = config.failure_params("multiclass", num_class=len(mode_names))
        mode_booster = lgb.train(
            mode_params,
            lgb.Dataset(values[positive], modes[positive], feature_name=names),
            config.mode_estimators,
        )
    model = SimFailureModel(
        asset_type=config.asset_type,
        sensors=sensors_of(config.asset_type),
        windows=tuple(config.windows),
        features=tuple(names),
        booster=booster,
        threshold=threshold,
        horizon_h=config.horizon_h,
        period_s=config.period_s,
        modes=tuple(mode_names) if mode_booster is not None else (),
        mode_booster=mode_booster,
        training={"rows": len(y), "positives": int(y.sum()), **cv},
    )
    return model, cv | {"threshold": threshold}


def fit_rul(
    x: pd.DataFrame,
    y: FloatArray,
    groups: npt.ArrayLike,
    config: SimConfig,
    echo: Callable[[str], None] = lambda _line: None,
) -> tuple[SimRulModel, dict[str, float]]:
    """Quantile boosters, out-of-fold by machine for the conformal margins; final fit."""
    names = list(x.columns)
    values = x.to_numpy(dtype=np.float64)
    rc = config.rul_config()
    oof = np.full((len(y), 3), np.nan)
    for i, (fit_idx, val_idx) in enumerate(engine_folds(groups, config.folds), start=1):
        boosters = _fit_boosters(values[fit_idx], y[fit_idx], rc, names)
        oof[val_idx] = np.sort(
            np.column_stack([boosters[q].predict(values[val_idx]) for q in _QUANTILES]), axis=1
        )
        echo(f"  RUL fold {i}/{config.folds}: RMSE {rmse(y[val_idx], oof[val_idx, 1]):.2f} h")
    edges, margins = conformal_bins(y, oof, config.coverage, config.calibration_bins)
    calibrated = quantile_frame(oof, margins, edges)
    cv = {
        "cv_rmse_h": rmse(y, oof[:, 1]),
        "cv_raw_coverage": interval_coverage(y, oof[:, 0], oof[:, 2]),
        "cv_coverage": interval_coverage(y, calibrated["p10"], calibrated["p90"]),
    }
    model = SimRulModel(
        asset_type=config.asset_type,
        sensors=sensors_of(config.asset_type),
        windows=tuple(config.windows),
        features=tuple(names),
        boosters=_fit_boosters(values, y, rc, names),
        cap_h=config.rul_cap_h,
        period_s=config.period_s,
        margins=margins,
        margin_edges=edges,
        training={"rows": len(y), **cv},
    )
    return model, cv


def train_simulated(
    config: SimConfig, echo: Callable[[str], None] = lambda _line: None
) -> SimTraining:
    """Generate, split by machine, fit both models, evaluate on held-out machines."""
    started = time.perf_counter()
    plans, history = generate(config, echo)
    generated = time.perf_counter() - started
    sensors = sensors_of(config.asset_type)
    train = history[~history["holdout"]]
    train = train[training_rows(train, config.stride)]
    holdout = history[history["holdout"] & ~history["settling"]]
    holdout = holdout[holdout[ROW] >= MIN_ROWS - 1]
    echo(
        f"  {train[ASSET].nunique()} training machines ({len(train):,} example rows, 1 in "
        f"{config.stride}), {holdout[ASSET].nunique()} held out ({len(holdout):,} rows)"
    )
    features = featurise(history[~history["holdout"]], sensors, config.windows).loc[train.index]
    mode_names = failure_modes(config.asset_type)
    mode_index = train["mode"].map({m: i for i, m in enumerate(mode_names)}).fillna(-1)
    y = train["target"].to_numpy(dtype=np.int64)
    groups = train[ASSET].to_numpy()
    if y.sum() < config.folds or (y == 0).sum() < config.folds:
        raise SimTrainError("too few positive or negative rows: raise --machines")
    fit_started = time.perf_counter()
    failure, failure_cv = fit_failure(
        features,
        y,
        groups,
        mode_index.to_numpy(dtype=np.int64),
        ~(train["active"] | train["settling"]).to_numpy(dtype=bool),
        config,
        mode_names,
        echo,
    )
    rul, rul_cv = fit_rul(features, train["rul_h"].to_numpy(dtype=np.float64), groups, config, echo)
    fit_seconds = time.perf_counter() - fit_started
    failure_metrics = failure_cv | evaluate_failure(failure, holdout, plans, config)
    rul_metrics = rul_cv | evaluate_rul(rul, holdout)
    return SimTraining(
        config=config,
        plans=plans,
        failure=replace(failure, training=failure.training | _finite(failure_metrics)),
        rul=replace(rul, training=rul.training | _finite(rul_metrics)),
        failure_metrics=failure_metrics,
        rul_metrics=rul_metrics,
        train_features=features,
        holdout=holdout,
        generate_seconds=generated,
        fit_seconds=fit_seconds,
    )


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


# --------------------------------------------------------------------------------------------
# Evaluation (held-out machines; also how a champion is re-scored)
# --------------------------------------------------------------------------------------------


def evaluate_failure(
    model: SimFailureModel,
    holdout: pd.DataFrame,
    plans: Sequence[MachinePlan],
    config: SimConfig,
) -> dict[str, float]:
    """Row metrics (PR-AUC, ROC-AUC, F1 at the model's threshold), machine metrics (failures
    alarmed before they happen and how early, false alarms on healthy and interfered
    machines) and the failure-mode macro-F1 on the positive rows."""
    from sklearn.metrics import f1_score

    features = model.featurise(holdout)
    proba = model.probabilities(features)
    y = holdout["target"].to_numpy(dtype=np.int64)
    out = {f"holdout_{k}": v for k, v in binary_metrics(y, proba, model.threshold).items()}
    out |= alarm_metrics(holdout, proba >= model.threshold, plans, config)
    positive = y == 1
    if model.modes and positive.any():
        modes = model.mode_probabilities(features[positive])
        predicted = [max(m, key=m.__getitem__) for m in modes]
        truth = holdout.loc[positive, "mode"].tolist()
        out["holdout_mode_macro_f1"] = float(
            f1_score(truth, predicted, labels=list(model.modes), average="macro", zero_division=0)
        )
        out["holdout_mode_accuracy"] = float(np.mean(np.asarray(truth) == np.asarray(predicted)))
    return out


def alarm_metrics(
    holdout: pd.DataFrame,
    alarmed: npt.NDArray[np.bool_],
    plans: Sequence[MachinePlan],
    config: SimConfig,
) -> dict[str, float]:
    """What an operator sees, per machine: share of the failures (observed up to failure or
    repair) alarmed before they happened and at all (also after: a failed machine keeps
    running at failure level), the median lead time (hours, and as a share of the ramp),
    false-alarm snapshots per machine-day on rows with no developing failure, and repaired
    machines still alarmed once their 64-snapshot window holds only repaired rows."""
    by_id = {p.asset_id: p for p in plans}
    frame = holdout.assign(alarmed=alarmed)
    leads_h: list[float] = []
    lead_shares: list[float] = []
    failures = 0
    ever = 0
    healthy_hit: list[bool] = []
    interfered_hit: list[bool] = []
    repaired_hit: list[bool] = []
    for asset_id, rows in frame.groupby(ASSET, sort=False):
        plan = by_id[str(asset_id)]
        due = plan.failure_row
        prevented = plan.repair_at is not None and due is not None and plan.repair_at < due
        if plan.kind == "failure" and not plan.censored and not prevented:
            failures += 1
            ever += bool((rows["active"] & rows["alarmed"]).any())
            before = rows[rows["active"] & (rows["ttf_h"] > 0) & rows["alarmed"]]
            if len(before):
                lead = float(before["ttf_h"].max())
                leads_h.append(lead)
                lead_shares.append(lead / (plan.ramp_rows * config.period_s / 3600.0))
        elif plan.kind == "healthy":
            healthy_hit.append(bool(rows["alarmed"].any()))
        elif plan.kind == "interference":
            interfered_hit.append(bool(rows["alarmed"].any()))
        if plan.repair_at is not None:
            later = rows[ROW] >= plan.repair_at + SETTLE_ROWS
            repaired_hit.append(bool(rows.loc[later, "alarmed"].any()))
    negative = frame[~frame["active"].astype(bool)]
    days = len(negative) * config.period_s / 86_400.0
    return {
        "holdout_failures_alarmed": _share(len(leads_h), failures),
        "holdout_failures_alarmed_ever": _share(ever, failures),
        "holdout_lead_h_median": _median(leads_h),
        "holdout_lead_share_median": _median(lead_shares),
        "holdout_false_alarms_per_day": _share(int(negative["alarmed"].sum()), days),
        "holdout_healthy_machines_alarmed": _share(sum(healthy_hit), len(healthy_hit)),
        "holdout_interference_machines_alarmed": _share(sum(interfered_hit), len(interfered_hit)),
        "holdout_repaired_machines_alarmed": _share(sum(repaired_hit), len(repaired_hit)),
    }


def _share(count: float, total: float) -> float:
    return float(count / total) if total else float("nan")


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def evaluate_rul(model: SimRulModel, holdout: pd.DataFrame) -> dict[str, float]:
    """Errors of p50 (hours) on held-out rows, split into rows with a developing failure
    (true RUL under the cap: RMSE, MAE, p10-p90 coverage and width) and the other rows
    (RMSE; mean p50). The promotion metric `RUL_METRIC` weighs the two halves equally,
    sqrt((MSE_degrading + MSE_other) / 2): a model that calls every machine about to fail
    must not win on the degrading rows alone, nor one that calls every machine healthy win
    on a mostly healthy fleet."""
    pred = model.predict(model.featurise(holdout))
    y = holdout["rul_h"].to_numpy(dtype=np.float64)
    degrading = holdout["active"].to_numpy(dtype=bool) & (y < model.cap_h)
    out = {"holdout_rmse_all_h": rmse(y, pred["p50"])}
    if degrading.any():
        p = pred[degrading]
        out |= {
            "holdout_rmse_degrading_h": rmse(y[degrading], p["p50"]),
            "holdout_mae_degrading_h": float(np.mean(np.abs(y[degrading] - p["p50"]))),
            "holdout_coverage": interval_coverage(y[degrading], p["p10"], p["p90"]),
            "holdout_mean_width_h": float((p["p90"] - p["p10"]).mean()),
        }
    if (~degrading).any():
        out |= {
            "holdout_rmse_other_h": rmse(y[~degrading], pred.loc[~degrading, "p50"]),
            "holdout_other_p50_mean_h": float(pred.loc[~degrading, "p50"].mean()),
        }
    if degrading.any() and (~degrading).any():
        mse = (out["holdout_rmse_degrading_h"] ** 2 + out["holdout_rmse_other_h"] ** 2) / 2
        out[RUL_METRIC] = math.sqrt(mse)
    return out


def transfer_check(
    failure: SimFailureModel,
    rul: SimRulModel,
    *,
    period_s: float = 1.0,
    ramp_s: tuple[float, float] = (30.0, 600.0),
    machines: int = 40,
    healthy_s: tuple[float, float] = (3600.0, 7200.0),
    switch_every_s: float = 12 * 3600.0,
    seed: int = 1,
) -> dict[str, float]:
    """Score trained models on NEW machines sampled every `period_s` with ramps of
    `ramp_s` seconds (default: the live simulator at 1 Hz and the README's compressed
    failures, 30-600 s), healthy histories of `healthy_s` seconds and scenario changes
    every `switch_every_s` on average (the training rate in wall-clock time). Labels are in
    wall-clock hours of that sampling. Also reports the RUL p50 rescaled by
    `period_s / model period` (what a model of snapshot time would say)."""
    base = SimConfig(failure.asset_type, machines=machines, seed=seed)
    config = replace(
        base,
        period_s=period_s,
        sampling_s=None,
        ramp_snapshots=(ramp_s[0] / period_s, ramp_s[1] / period_s),
        healthy_rows=(round(healthy_s[0] / period_s), round(healthy_s[1] / period_s)),
        switch_every=switch_every_s / period_s,
        horizon_h=failure.horizon_h,
        rul_cap_h=rul.cap_h,
        holdout=1.0,
    )
    plans, history = generate(config)
    history = history[(history[ROW] >= MIN_ROWS - 1) & ~history["settling"]]
    out = evaluate_failure(failure, history, plans, config)
    out |= evaluate_rul(rul, history)
    scale = period_s / rul.period_s
    pred = rul.predict(rul.featurise(history))
    y = history["rul_h"].to_numpy(dtype=np.float64)
    degrading = history["active"].to_numpy(dtype=bool) & (y < rul.cap_h)
    if degrading.any():
        rescaled = pred["p50"][degrading] * scale
        out["holdout_rmse_degrading_h_rescaled"] = rmse(y[degrading], rescaled)
    return {k.removeprefix("holdout_"): v for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _params(training: SimTraining, algorithm: str) -> dict[str, Any]:
    config = asdict(training.config)
    return {
        "algorithm": algorithm,
        **{k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in config.items()},
    }


def _tags(training: SimTraining, task: str) -> dict[str, str]:
    c = training.config
    return {
        "asset_type": c.asset_type,
        "task": task,
        "dataset": training.dataset,
        "feature_set": FEATURE_SET,
        "holdout_split": training.split,
        "period_s": f"{c.period_s:g}",
    }


def _reference(training: SimTraining) -> pd.DataFrame:
    features = training.train_features
    sample = features.sample(min(REFERENCE_ROWS, len(features)), random_state=training.config.seed)
    return sample.reset_index(drop=True)


def register_failure(
    training: SimTraining, tracking_uri: str, *, name: str | None = None
) -> registry.RegisteredVersion:
    """Log and register the failure model (`failure-<type>`)."""
    model = training.failure
    reference = _reference(training)
    example = reference.head(5)
    return registry.log_and_register(
        model,
        name=name or registry.model_name("failure", training.config.asset_type),
        flavor="pyfunc",
        params=_params(training, "lightgbm_binary+multiclass_modes"),
        metrics=_finite(training.failure_metrics)
        | {"generate_seconds": training.generate_seconds, "fit_seconds": training.fit_seconds},
        tags=_tags(training, "failure")
        | {
            registry.THRESHOLD_TAG: repr(model.threshold),
            "horizon_h": f"{model.horizon_h:g}",
            "modes": ",".join(model.modes),
        },
        signature_input=example,
        signature_output=model.predict(example),
        input_example=example,
        reference_sample=reference,
        features=list(model.features),
        tracking_uri=tracking_uri,
    )


def register_rul(
    training: SimTraining, tracking_uri: str, *, name: str | None = None
) -> registry.RegisteredVersion:
    """Log and register the RUL model (`rul-<type>`)."""
    model = training.rul
    reference = _reference(training)
    example = reference.head(5)
    return registry.log_and_register(
        model,
        name=name or registry.model_name("rul", training.config.asset_type),
        flavor="pyfunc",
        params=_params(training, "lightgbm_quantile"),
        metrics=_finite(training.rul_metrics)
        | {"generate_seconds": training.generate_seconds, "fit_seconds": training.fit_seconds},
        tags=_tags(training, "rul") | {"rul_unit": model.rul_unit, "rul_cap_h": f"{model.cap_h:g}"},
        signature_input=example,
        signature_output=model.predict(example),
        input_example=example,
        reference_sample=reference,
        features=list(model.features),
        tracking_uri=tracking_uri,
    )


def _champion_score(
    training: SimTraining,
    tracking_uri: str,
    echo: Callable[[str], None],
    kind: type[SimFailureModel] | type[SimRulModel],
) -> Callable[[registry.RegisteredVersion], float]:
    """Re-score the champion on the candidate's held-out machines, featurised its own way."""

    def evaluate(champion: registry.RegisteredVersion) -> float:
        try:
            model = registry.load_version(champion, tracking_uri).model
            if not isinstance(model, kind):
                raise TypeError(f"{type(model).__name__} is not a {kind.__name__}")
            if isinstance(model, SimFailureModel):
                y = training.holdout["target"].to_numpy(dtype=np.int64)
                proba = model.probabilities(model.featurise(training.holdout))
                score = binary_metrics(y, proba, model.threshold)["pr_auc"]
            else:
                score = evaluate_rul(model, training.holdout).get(RUL_METRIC, float("nan"))
        except registry.RegistryUnavailable:
            raise
        except Exception as exc:  # an unusable champion cannot keep the alias
            echo(f"  champion v{champion.version} could not be evaluated ({exc!r})")
            return float("nan")
        echo(f"  champion v{champion.version} on the same held-out machines: {score:.4f}")
        return float(score)

    return evaluate


def promote_failure(
    training: SimTraining,
    version: registry.RegisteredVersion,
    tracking_uri: str,
    echo: Callable[[str], None] = lambda _line: None,
) -> registry.PromotionDecision:
    """Move `champion` when the held-out PR-AUC is at least the champion's (same machines)."""
    return registry.promote_if_better(
        version.name,
        version.version,
        metric=FAILURE_METRIC,
        higher_is_better=True,
        evaluate_champion=_champion_score(training, tracking_uri, echo, SimFailureModel),
        candidate_score=training.failure_metrics[FAILURE_METRIC],
        tracking_uri=tracking_uri,
    )


def promote_rul(
    training: SimTraining,
    version: registry.RegisteredVersion,
    tracking_uri: str,
    echo: Callable[[str], None] = lambda _line: None,
) -> registry.PromotionDecision:
    """Move `champion` when the held-out RMSE (hours) is at most the champion's."""
    return registry.promote_if_better(
        version.name,
        version.version,
        metric=RUL_METRIC,
        higher_is_better=False,
        evaluate_champion=_champion_score(training, tracking_uri, echo, SimRulModel),
        candidate_score=training.rul_metrics.get(RUL_METRIC, float("nan")),
        tracking_uri=tracking_uri,
    )
