"""What a run depends on (`SimConfig`), the constants every part shares, and the simulated
types with their sensors and failure modes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from pdm_ml.training.cmapss import RulConfig

if TYPE_CHECKING:
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


class SimTrainError(ValueError):
    """A configuration that cannot give a model (the message says what to change)."""


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


def _check_type(asset_type: str) -> str:
    if asset_type not in SIMULATED_TYPES:
        raise SimTrainError(
            f"asset type {asset_type!r} is not simulated here; one of {list(SIMULATED_TYPES)} "
            "(milling: `pdm train ai4i`)"
        )
    return asset_type
