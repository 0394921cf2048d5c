"""Remaining useful life on NASA C-MAPSS: features, quantile LightGBM, evaluation, registry.

Protocol (as in the C-MAPSS literature since Saxena et al., PHM08):

* Training labels: RUL = last cycle - cycle, capped at `RUL_CAP` = 125 (piecewise linear).
* Scored point: the last cycle of each test unit; truth from `RUL_FD00x.txt`, clipped at the
  same cap (the dominant convention; the unclipped RMSE is logged too).
* Metrics: RMSE of p50, the PHM08 score (sum), p10-p90 coverage and mean width.
* Validation never touches the test split: GroupKFold by engine on the training units gives
  out-of-fold predictions, used to report CV RMSE and to calibrate the interval
  (conformalised quantile regression: widen/narrow [p10, p90] by the (1-α) quantile of the
  out-of-fold conformity scores).

Every subset gets the same defaults (`RulConfig`): no per-subset sensor lists or constants;
operating conditions and constant sensors are measured on the training data.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from pdm_common import registry
from pdm_ml.features.windows import (
    ConditionNormaliser,
    feature_names,
    informative_sensors,
    latest_window_features,
    window_features_by_asset,
)

if TYPE_CHECKING:
    import lightgbm as lgb

FloatArray = npt.NDArray[np.float64]

UNIT, CYCLE = "unit", "cycle"
SETTINGS: tuple[str, ...] = ("setting1", "setting2", "setting3")
SENSORS: tuple[str, ...] = tuple(f"s{i}" for i in range(1, 22))
COLUMNS: tuple[str, ...] = (UNIT, CYCLE, *SETTINGS, *SENSORS)
RUL_CAP = 125
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
QUANTILE_COLUMNS: tuple[str, ...] = ("p10", "p50", "p90")
ASSET_TYPE = "turbofan"
MODEL_NAME = registry.model_name("rul", ASSET_TYPE)
FEATURE_SET = "windows:v1"
PROMOTION_METRIC = "test_rmse"
#: Trailing windows in cycles. 50 and 100 were added to the generic (5, 10, 20, 30) because
#: they lowered the cross-validated RMSE on both FD001 and FD003 (slow wear needs long trends).
RUL_WINDOWS: tuple[int, ...] = (5, 10, 20, 30, 50, 100)
PYFUNC_LOADER_MODULE = "pdm_ml.training.cmapss"
FORMAT_VERSION = 1
REFERENCE_ROWS = 2000
_META_FILE = "model.json"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CmapssData:
    """One subset: run-to-failure training units, truncated test units and their true RUL."""

    subset: str
    train: pd.DataFrame
    test: pd.DataFrame
    test_rul: pd.Series  # indexed by test unit id


def read_table(path: str | Path) -> pd.DataFrame:
    """A C-MAPSS text file (space separated, two trailing spaces per line) -> named frame."""
    frame = pd.read_csv(path, sep=r"\s+", header=None, names=list(COLUMNS))
    return frame.astype({UNIT: "int64", CYCLE: "int64"})


def load_subset(data_dir: str | Path, subset: str) -> CmapssData:
    """`train_<subset>.txt`, `test_<subset>.txt` and `RUL_<subset>.txt` from `data_dir`."""
    data_dir = Path(data_dir)
    paths = [data_dir / f"{kind}_{subset}.txt" for kind in ("train", "test", "RUL")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"C-MAPSS {subset}: missing {', '.join(missing)}")
    train, test = read_table(paths[0]), read_table(paths[1])
    truth = pd.read_csv(paths[2], sep=r"\s+", header=None).iloc[:, 0].astype(float)
    units = np.sort(test[UNIT].unique())
    if len(units) != len(truth):
        raise ValueError(f"{subset}: {len(units)} test units but {len(truth)} RUL values")
    return CmapssData(subset, train, test, pd.Series(truth.to_numpy(), index=units, name="rul"))


def capped_rul(rul: npt.ArrayLike, cap: float = RUL_CAP) -> FloatArray:
    """Piecewise-linear target: constant `cap` early in life, then linear down to 0."""
    return np.minimum(np.asarray(rul, dtype=np.float64), cap)


def train_rul(frame: pd.DataFrame, cap: float = RUL_CAP) -> FloatArray:
    """Label of every training row: cycles left until the unit's last (failure) cycle."""
    last = frame.groupby(UNIT)[CYCLE].transform("max")
    return capped_rul((last - frame[CYCLE]).to_numpy(), cap)


def last_cycles(frame: pd.DataFrame) -> pd.DataFrame:
    """The last row of each unit (the scored point of a test unit)."""
    return frame.sort_values([UNIT, CYCLE]).groupby(UNIT).tail(1)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    diff = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def phm08_score(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """PHM08 score (sum; lower is better): late predictions (d = ŷ - y > 0) cost more.

    Σ exp(-d/13) - 1 for d < 0, Σ exp(d/10) - 1 for d >= 0.
    """
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))))


def interval_coverage(y: npt.ArrayLike, low: npt.ArrayLike, high: npt.ArrayLike) -> float:
    y_arr = np.asarray(y, dtype=np.float64)
    return float(np.mean((y_arr >= np.asarray(low)) & (y_arr <= np.asarray(high))))


def engine_folds(
    units: npt.ArrayLike, n_splits: int
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """GroupKFold on unit ids: all rows of an engine sit in the same fold (no leakage of an
    engine's own near-identical neighbouring cycles into its validation)."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(units)
    splitter = GroupKFold(n_splits=min(n_splits, len(np.unique(groups))))
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def conformal_margin(
    y: npt.ArrayLike, low: npt.ArrayLike, high: npt.ArrayLike, coverage: float
) -> float:
    """CQR: how much to widen (or, negative, narrow) [low, high] for `coverage`.

    The finite-sample (1-α)(1+1/n) quantile of max(low - y, y - high) on calibration data.
    """
    scores = np.maximum(np.asarray(low) - np.asarray(y), np.asarray(y) - np.asarray(high))
    n = len(scores)
    level = min(1.0, math.ceil(coverage * (n + 1)) / n)
    return float(np.quantile(scores, level, method="higher"))


def conformal_bins(
    y: npt.ArrayLike, raw: FloatArray, coverage: float, bins: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mondrian CQR: one margin per bin of predicted p50 (edges at its quantiles).

    Coverage then holds per bin, so it does not depend on the mix of early-life (capped,
    easy) and late-life points that a test set happens to have.
    """
    y_arr = np.asarray(y, dtype=np.float64)
    edges = np.unique(np.quantile(raw[:, 1], np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, raw[:, 1], side="right")
    margins = tuple(
        conformal_margin(y_arr[which == b], raw[which == b, 0], raw[which == b, 2], coverage)
        if np.any(which == b)
        else 0.0
        for b in range(len(edges) + 1)
    )
    return tuple(float(e) for e in edges), margins


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RulConfig:
    """Defaults shared by every subset (none is tuned on a test split)."""

    windows: tuple[int, ...] = RUL_WINDOWS
    cap: float = RUL_CAP
    n_splits: int = 5
    coverage: float = 0.8
    calibration_bins: int = 4  # Mondrian CQR bins of predicted p50
    use_cycle: bool = True  # cycles since the start of the record: the asset's age
    n_estimators: int = 300
    learning_rate: float = 0.06
    num_leaves: int = 15
    min_child_samples: int = 50
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    seed: int = 0
    threads: int = 2

    def lgb_params(self, alpha: float) -> dict[str, Any]:
        return {
            "objective": "quantile",
            "alpha": alpha,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": self.threads,
            "verbosity": -1,
        }


@dataclass(slots=True)
class RulModel:
    """Three LightGBM quantile boosters (p10/p50/p90) plus everything to featurise raw rows.

    Saved as native LightGBM model files and a JSON file (no pickle); MLflow loads the
    directory through this module's `_load_pyfunc`.
    """

    normaliser: ConditionNormaliser
    sensors: tuple[str, ...]
    windows: tuple[int, ...]
    context: tuple[str, ...]
    features: tuple[str, ...]
    boosters: dict[str, lgb.Booster]
    margins: tuple[float, ...] = (0.0,)  # conformal widening of [p10, p90] per p50 bin
    margin_edges: tuple[float, ...] = ()  # p50 bin edges of `margins`
    training: dict[str, Any] = field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None

    pyfunc_loader_module: ClassVar[str] = PYFUNC_LOADER_MODULE

    def bind_registry(self, model_name: str, model_version: str) -> RulModel:
        return replace(self, model_name=model_name, model_version=model_version)

    def predict_raw(self, features: pd.DataFrame) -> FloatArray:
        """(n, 3) uncalibrated quantiles, sorted per row (no crossing)."""
        x = features.reindex(columns=list(self.features)).to_numpy(dtype=np.float64)
        raw = np.column_stack([self.boosters[q].predict(x) for q in QUANTILE_COLUMNS])
        return np.sort(raw, axis=1)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """p10/p50/p90 in cycles from window features (the pyfunc view)."""
        raw = self.predict_raw(features)
        return quantile_frame(raw, self.margins, self.margin_edges, features.index)

    def featurise(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Window features of every row of a long frame of raw readings (all units)."""
        normalised = self.normaliser.transform(rows)
        return window_features_by_asset(
            normalised, UNIT, CYCLE, self.sensors, self.windows, self.context
        ).reindex(columns=list(self.features))

    def predict_history(self, rows: pd.DataFrame) -> dict[str, float]:
        """Serving: RUL quantiles at the last reading of ONE asset's raw history."""
        tail = rows.iloc[-max(self.windows) :]
        latest = latest_window_features(
            self.normaliser.transform(tail), self.sensors, self.windows, self.context
        )
        out = self.predict(pd.DataFrame([latest]))
        return {str(k): float(v) for k, v in out.iloc[0].items()}

    def predict_units(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Quantiles at the last cycle of each unit of a raw frame, indexed by unit."""
        features = self.featurise(rows)
        last = last_cycles(rows)
        out = self.predict(features.loc[last.index])
        out.index = last[UNIT].to_numpy()
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(str(path / f"{name}.txt"))
        meta = {
            "format_version": FORMAT_VERSION,
            "normaliser": self.normaliser.to_dict(),
            "sensors": list(self.sensors),
            "windows": list(self.windows),
            "context": list(self.context),
            "features": list(self.features),
            "margins": list(self.margins),
            "margin_edges": list(self.margin_edges),
            "training": self.training,
        }
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> RulModel:
        import lightgbm as lgb

        path = Path(path)
        meta = json.loads((path / _META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: model format {meta.get('format_version')} unsupported")
        return cls(
            normaliser=ConditionNormaliser.from_dict(meta["normaliser"]),
            sensors=tuple(meta["sensors"]),
            windows=tuple(meta["windows"]),
            context=tuple(meta["context"]),
            features=tuple(meta["features"]),
            boosters={q: lgb.Booster(model_file=str(path / f"{q}.txt")) for q in QUANTILE_COLUMNS},
            margins=tuple(float(m) for m in meta["margins"]),
            margin_edges=tuple(float(e) for e in meta["margin_edges"]),
            training=dict(meta.get("training", {})),
        )


def quantile_frame(
    raw: FloatArray,
    margins: Sequence[float] = (0.0,),
    edges: Sequence[float] = (),
    index: Any = None,
) -> pd.DataFrame:
    """Calibrated quantiles: [p10, p90] widened by the margin of the row's p50 bin, kept
    ordered and >= 0."""
    margin = np.asarray(margins, dtype=np.float64)[
        np.searchsorted(np.asarray(edges, dtype=np.float64), raw[:, 1], side="right")
    ]
    p50 = np.maximum(raw[:, 1], 0.0)
    p10 = np.clip(raw[:, 0] - margin, 0.0, p50)
    p90 = np.maximum(raw[:, 2] + margin, p50)
    return pd.DataFrame({"p10": p10, "p50": p50, "p90": p90}, index=index)


class PyfuncAdapter:
    """What `mlflow.pyfunc.load_model` wraps: `predict` on window features for generic
    tools; `get_raw_model` gives the `RulModel` (the registry loader unwraps it)."""

    def __init__(self, model: RulModel) -> None:
        self.model = model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict(pd.DataFrame(model_input))

    def get_raw_model(self) -> RulModel:
        return self.model


def _load_pyfunc(data_path: str) -> PyfuncAdapter:
    """Entry point MLflow calls for a model logged with `loader_module=PYFUNC_LOADER_MODULE`."""
    return PyfuncAdapter(RulModel.load(data_path))


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RulEvaluation:
    """Scores at the last cycle of each test unit (truth clipped at the cap, as published)."""

    rmse: float
    rmse_unclipped: float
    phm08: float
    coverage: float
    mean_width: float
    units: int

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class RulTraining:
    model: RulModel
    evaluation: RulEvaluation
    cv: dict[str, float]
    config: RulConfig
    subset: str
    train_features: pd.DataFrame
    test: pd.DataFrame
    test_rul: pd.Series
    fit_seconds: float


def evaluate(model: RulModel, test: pd.DataFrame, truth: pd.Series, cap: float) -> RulEvaluation:
    """Score a model (candidate or champion) on the last cycle of every test unit."""
    pred = model.predict_units(test)
    y_raw = truth.loc[pred.index].to_numpy(dtype=np.float64)
    y = capped_rul(y_raw, cap)
    return RulEvaluation(
        rmse=rmse(y, pred["p50"]),
        rmse_unclipped=rmse(y_raw, pred["p50"]),
        phm08=phm08_score(y, pred["p50"]),
        coverage=interval_coverage(y, pred["p10"], pred["p90"]),
        mean_width=float((pred["p90"] - pred["p10"]).mean()),
        units=len(pred),
    )


def _fit_boosters(
    x: FloatArray, y: FloatArray, config: RulConfig, names: Sequence[str]
) -> dict[str, lgb.Booster]:
    import lightgbm as lgb

    boosters = {}
    for q, alpha in zip(QUANTILE_COLUMNS, QUANTILES, strict=True):
        data = lgb.Dataset(x, y, feature_name=list(names), free_raw_data=False)
        boosters[q] = lgb.train(config.lgb_params(alpha), data, config.n_estimators)
    return boosters


def fit_model(
    train: pd.DataFrame,
    config: RulConfig = RulConfig(),
    echo: Callable[[str], None] = lambda _line: None,
) -> tuple[RulModel, pd.DataFrame, dict[str, float]]:
    """Fit normaliser, feature set, out-of-fold calibration and the final boosters.

    Returns the model, the training features and the cross-validation metrics.
    """
    normaliser_all = ConditionNormaliser.fit(train, SETTINGS, SENSORS, seed=config.seed)
    sensors = tuple(informative_sensors(train, SENSORS, normaliser_all.condition(train)))
    normaliser = ConditionNormaliser(
        normaliser_all.settings,
        sensors,
        normaliser_all.settings_center,
        normaliser_all.settings_scale,
        normaliser_all.centroids,
        normaliser_all.means[:, [SENSORS.index(s) for s in sensors]],
        normaliser_all.stds[:, [SENSORS.index(s) for s in sensors]],
    )
    echo(
        f"  {normaliser.n_conditions} operating condition(s); sensors kept: "
        f"{', '.join(sensors)} (dropped: {', '.join(s for s in SENSORS if s not in sensors)})"
    )
    context = (*SETTINGS, CYCLE) if config.use_cycle else SETTINGS
    names = feature_names(sensors, config.windows, context)
    features = window_features_by_asset(
        normaliser.transform(train), UNIT, CYCLE, sensors, config.windows, context
    ).loc[train.index, names]
    x = features.to_numpy(dtype=np.float64)
    y = train_rul(train, config.cap)
    units = train[UNIT].to_numpy()
    oof = np.full((len(y), 3), np.nan)
    folds = engine_folds(units, config.n_splits)
    for i, (fit_idx, val_idx) in enumerate(folds, start=1):
        boosters = _fit_boosters(x[fit_idx], y[fit_idx], config, names)
        oof[val_idx] = np.sort(
            np.column_stack([boosters[q].predict(x[val_idx]) for q in QUANTILE_COLUMNS]), axis=1
        )
        echo(f"  fold {i}/{len(folds)}: RMSE {rmse(y[val_idx], oof[val_idx, 1]):.2f}")
    edges, margins = conformal_bins(y, oof, config.coverage, config.calibration_bins)
    calibrated = quantile_frame(oof, margins, edges)
    cv = {
        "cv_rmse": rmse(y, oof[:, 1]),
        "cv_raw_coverage": interval_coverage(y, oof[:, 0], oof[:, 2]),
        "cv_coverage": interval_coverage(y, calibrated["p10"], calibrated["p90"]),
        "interval_margin_mean": float(np.mean(margins)),
    }
    model = RulModel(
        normaliser=normaliser,
        sensors=sensors,
        windows=tuple(config.windows),
        context=tuple(context),
        features=tuple(names),
        boosters=_fit_boosters(x, y, config, names),
        margins=margins,
        margin_edges=edges,
        training={
            "rows": len(y),
            "units": len(np.unique(units)),
            "conditions": normaliser.n_conditions,
            "dropped_sensors": [s for s in SENSORS if s not in sensors],
            "config": asdict(config),
            **cv,
        },
    )
    return model, features, cv


def train_cmapss(
    data: CmapssData,
    config: RulConfig = RulConfig(),
    echo: Callable[[str], None] = lambda _line: None,
) -> RulTraining:
    """Fit on the training units, evaluate at the last cycle of every test unit."""
    started = time.perf_counter()
    model, features, cv = fit_model(data.train, config, echo)
    fit_seconds = time.perf_counter() - started
    evaluation = evaluate(model, data.test, data.test_rul, config.cap)
    return RulTraining(
        model, evaluation, cv, config, data.subset, features, data.test, data.test_rul, fit_seconds
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def champion_evaluator(
    training: RulTraining, tracking_uri: str, echo: Callable[[str], None]
) -> Callable[[registry.RegisteredVersion], float]:
    """Re-evaluate the champion on the candidate's test split (the same evaluation)."""

    def evaluate_champion(champion: registry.RegisteredVersion) -> float:
        try:
            loaded = registry.load_version(champion, tracking_uri)
            result = evaluate(loaded.model, training.test, training.test_rul, training.config.cap)
        except registry.RegistryUnavailable:
            raise
        except Exception as exc:  # an unloadable champion cannot keep the alias
            echo(f"  champion v{champion.version} could not be evaluated ({exc!r})")
            return float("nan")
        echo(
            f"  champion v{champion.version} on cmapss-{training.subset}: RMSE {result.rmse:.2f}"
            f", PHM08 {result.phm08:.1f}"
        )
        return result.rmse

    return evaluate_champion


def register(
    training: RulTraining, tracking_uri: str, *, name: str = MODEL_NAME
) -> registry.RegisteredVersion:
    """Log the run (params, metrics, features, signature, example, reference sample)."""
    model, config = training.model, training.config
    features = training.train_features
    reference = features.sample(min(REFERENCE_ROWS, len(features)), random_state=config.seed)
    reference = reference.reset_index(drop=True)
    example = reference.head(5)
    params: dict[str, Any] = {
        "subset": training.subset,
        "algorithm": "lightgbm_quantile",
        "quantiles": ",".join(str(q) for q in QUANTILES),
        "rul_cap": config.cap,
        "windows": ",".join(str(w) for w in config.windows),
        "conditions": model.normaliser.n_conditions,
        "sensors": ",".join(model.sensors),
        **{k: v for k, v in asdict(config).items() if k not in ("windows", "cap")},
    }
    metrics: Mapping[str, float] = (
        training.evaluation.metrics()
        | training.cv
        | {"fit_seconds": training.fit_seconds, "features": float(len(model.features))}
    )
    return registry.log_and_register(
        model,
        name=name,
        flavor="pyfunc",
        params=params,
        metrics=metrics,
        tags={
            "asset_type": ASSET_TYPE,
            "task": "rul",
            "dataset": f"cmapss-{training.subset}",
            "feature_set": FEATURE_SET,
        },
        signature_input=example,
        signature_output=model.predict(example),
        input_example=example,
        reference_sample=reference,
        features=list(model.features),
        tracking_uri=tracking_uri,
    )


def promote(
    training: RulTraining,
    version: registry.RegisteredVersion,
    tracking_uri: str,
    echo: Callable[[str], None] = lambda _line: None,
) -> registry.PromotionDecision:
    """Move `champion` when the candidate's test RMSE is at most the champion's (same data)."""
    return registry.promote_if_better(
        version.name,
        version.version,
        metric=PROMOTION_METRIC,
        higher_is_better=False,
        evaluate_champion=champion_evaluator(training, tracking_uri, echo),
        candidate_score=training.evaluation.rmse,
        tracking_uri=tracking_uri,
    )
