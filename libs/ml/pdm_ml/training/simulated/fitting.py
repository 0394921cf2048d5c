"""Training: generate, split by machine, fit both models (out-of-fold choices on training
machines only), evaluate on the held-out machines."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from pdm_ml.training.ai4i import binary_metrics, choose_threshold
from pdm_ml.training.cmapss import (
    _fit_boosters,
    conformal_bins,
    engine_folds,
    interval_coverage,
    quantile_frame,
    rmse,
)
from pdm_ml.training.simulated.config import (
    ASSET,
    MIN_ROWS,
    ROW,
    FloatArray,
    SimConfig,
    SimTrainError,
    failure_modes,
    sensors_of,
)
from pdm_ml.training.simulated.evaluation import evaluate_failure, evaluate_rul
from pdm_ml.training.simulated.features import featurise
from pdm_ml.training.simulated.generation import _sampling, generate
from pdm_ml.training.simulated.models import _QUANTILES, SimFailureModel, SimRulModel
from pdm_ml.training.simulated.plans import MachinePlan


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
