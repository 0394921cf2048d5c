"""The pure part of serving: routing, features, model outputs, health score and confidence.

Routing: an asset type maps to the registered models serving it, per part
(`milling` -> `failure-milling`, `turbofan` -> `rul-turbofan`, and the simulated fleet's
`pump`/`motor`/`compressor` -> `failure-<type>` + `rul-<type>`; overridable in settings).

Two kinds of failure model: a snapshot classifier (`FailureServable`, AI4I features of the
latest readings) and a history model (`HistoryModel`, e.g. `training.simulated`'s, which
featurises the asset's recent stored rows itself). Both answer through `FailureScorer`, so
`predict_failures` scores either in one batch.

Health score (0-100, 100 = healthy), from the parts present:

* failure part: `score_f = 100 * (1 - p_failure)`;
* RUL part: `score_r = 100 * min(max(rul_p50, 0), cap) / cap` (cap = the cap the RUL model
  was trained with, `rul_cap` of the model, else `RUL_CAP` = 125 cycles of C-MAPSS: at or
  beyond it an asset counts as fully healthy);
* `health = sum(weight_i * score_i) / sum(weight_i)` over the parts present, weights
  `HEALTH_WEIGHTS` (equal). Each term is returned as a `HealthContributor`
  (`points = weight * score / sum(weights)`, so the points add up to the score).

Confidence (0-1) starts at 1 and is multiplied down, one reason each, when: the readings are
older than `stale_after_s`; the sensors of one snapshot were read far apart in time
(stored readings); history is shorter than the longest feature window; sensors of a history
model are missing (filled as missing values, which LightGBM routes on); the RUL band is wide;
stored history is sampled much faster or slower than the history model was trained on (its
hours assume that sampling period).

Features are computed by the training code itself (`features.machining.features_row`, the
RUL model's own `predict_history`), so serving and training cannot diverge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from pdm_common.events import Factor, HealthContributor, ModelRef
from pdm_ml.features import machining

FAILURE, RUL = "failure", "rul"
#: asset type -> {part: registered model name}.
DEFAULT_ROUTES: dict[str, dict[str, str]] = {
    "milling": {FAILURE: "failure-milling"},
    "turbofan": {RUL: "rul-turbofan"},
    # the simulated fleet: `pdm train simulated --asset-type <type>` registers both parts
    **{t: {FAILURE: f"failure-{t}", RUL: f"rul-{t}"} for t in ("pump", "motor", "compressor")},
}
RUL_CAP = 125.0
RUL_UNIT = "cycles"
HEALTH_WEIGHTS: dict[str, float] = {FAILURE: 1.0, RUL: 1.0}


def health_formula(cap: float = RUL_CAP) -> str:
    return (
        "weighted mean over the parts present of: failure = 100*(1-p_failure); "
        f"rul = 100*min(max(rul_p50,0),{cap:g})/{cap:g}; weights {HEALTH_WEIGHTS}"
    )


HEALTH_FORMULA = health_formula()
FAILURE_HORIZON = "current operating step (AI4I 2020 label: failure of this process step)"
MODES_BASIS = {"multiclass": "conditional_on_failure", "ovr": "per_mode"}
#: How many confidence factors a missing-sensor fraction costs (1 - fraction * this).
MISSING_SENSOR_PENALTY = 1.0
#: History sampled this many times faster or slower than a history model's training period
#: costs confidence (its windows count snapshots, its hours assume its period).
PERIOD_TOLERANCE = 3.0


class ServingError(Exception):
    """A request that cannot be answered: `code` is stable, `missing` names what is absent."""

    def __init__(self, code: str, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.missing = list(missing)


def route(asset_type: str, routes: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The models serving `asset_type` ({part: model name}); unknown types are an error."""
    parts = routes.get(asset_type)
    if not parts:
        raise ServingError(
            "unknown_asset_type",
            f"no model serves asset type {asset_type!r}; known types: {sorted(routes)}",
        )
    return dict(parts)


# --------------------------------------------------------------------------------------------
# Confidence
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Confidence:
    value: float = 1.0
    reasons: list[str] = field(default_factory=list)

    def reduce(self, factor: float, reason: str) -> None:
        """Multiply by `factor` for `reason`; the same reason twice (two parts of one
        prediction reading the same history) counts once."""
        if reason in self.reasons:
            return
        self.value *= min(1.0, max(0.0, factor))
        self.reasons.append(reason)


def freshness(
    confidence: Confidence,
    times: Sequence[datetime],
    now: datetime,
    *,
    stale_after_s: float,
    max_skew_s: float,
) -> None:
    """Reduce confidence for stale readings and for sensors read far apart in time."""
    if not times:
        return
    newest, oldest = max(times), min(times)
    age = (now - newest).total_seconds()
    if age > stale_after_s:
        confidence.reduce(0.7, f"newest reading is {age:.0f} s old (> {stale_after_s:g} s)")
    skew = (newest - oldest).total_seconds()
    if skew > max_skew_s:
        confidence.reduce(0.8, f"sensors read {skew:.0f} s apart (> {max_skew_s:g} s)")


# --------------------------------------------------------------------------------------------
# Health score
# --------------------------------------------------------------------------------------------


def rul_cap(model: Any) -> float:
    """The cap an RUL model was trained with (its `rul_cap`; C-MAPSS models: `RUL_CAP`)."""
    return float(getattr(model, "rul_cap", RUL_CAP))


def rul_unit(model: Any) -> str:
    """The unit of an RUL model's quantiles (its `rul_unit`; C-MAPSS models: cycles)."""
    return str(getattr(model, "rul_unit", RUL_UNIT))


def health(
    failure_probability: float | None,
    rul_p50: float | None,
    *,
    cap: float = RUL_CAP,
    weights: Mapping[str, float] = HEALTH_WEIGHTS,
) -> tuple[float, list[HealthContributor]]:
    """The 0-100 health score and its contributors (see the module docstring)."""
    terms: list[tuple[str, float, float]] = []  # (name, raw value, score)
    if failure_probability is not None:
        p = min(1.0, max(0.0, failure_probability))
        terms.append((FAILURE, failure_probability, 100.0 * (1.0 - p)))
    if rul_p50 is not None:
        terms.append((RUL, rul_p50, 100.0 * min(max(rul_p50, 0.0), cap) / cap))
    if not terms:
        raise ValueError("a health score needs a failure probability or an RUL")
    total = sum(weights[name] for name, _, _ in terms)
    contributors = [
        HealthContributor(
            name=name,
            value=value,
            score=score,
            weight=weights[name] / total,
            points=weights[name] / total * score,
        )
        for name, value, score in terms
    ]
    return sum(c.points for c in contributors), contributors


# --------------------------------------------------------------------------------------------
# Failure classifier (milling)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModeBoosters:
    """The failure-mode models of a run (`failure_modes.json`) as LightGBM boosters."""

    strategy: str
    modes: tuple[str, ...]
    features: tuple[str, ...]
    boosters: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModeBoosters:
        import lightgbm as lgb

        return cls(
            strategy=str(data["strategy"]),
            modes=tuple(data["modes"]),
            features=tuple(data["features"]),
            boosters={k: lgb.Booster(model_str=v) for k, v in data["models"].items()},
        )

    def proba(self, rows: pd.DataFrame) -> list[dict[str, float]]:
        """Mode probabilities of each feature row (empty dicts if the columns cannot map)."""
        x = rows[list(self.features)]
        threads = lightgbm_threads(len(x))
        if self.strategy == "multiclass":
            out = np.asarray(self.boosters["all"].predict(x, **threads), dtype=float)
            out = out.reshape(len(x), -1)
            if out.shape[1] != len(self.modes):  # a class absent in training
                return [{} for _ in range(len(x))]
            return [dict(zip(self.modes, map(float, r), strict=True)) for r in out]
        cols = {
            m: np.asarray(self.boosters[m].predict(x, **threads), dtype=float) for m in self.modes
        }
        return [{m: float(cols[m][i]) for m in self.modes} for i in range(len(x))]


#: Frames of fewer rows are scored on one thread: for a few rows LightGBM's OpenMP start-up
#: and barriers cost more than the trees, the more so on a busy machine (one row, 500 trees,
#: 2 loaded cores: 5.0 ms p50 with the default threads, 0.6 ms with one; docs/benchmarks.md,
#: "Against `mlflow models serve`"). Larger frames keep the model's threads.
SINGLE_THREAD_ROWS = 64


def lightgbm_threads(rows: int) -> dict[str, int]:
    """Keyword arguments of a LightGBM predict call for a frame of `rows` rows."""
    return {"num_threads": 1} if rows < SINGLE_THREAD_ROWS else {}


def _is_lightgbm(model: object) -> bool:
    return type(model).__module__.split(".", 1)[0] == "lightgbm"


class FailureScorer(Protocol):
    """What `predict_failures` needs of a failure model, snapshot or history."""

    @property
    def features(self) -> tuple[str, ...]: ...
    @property
    def threshold(self) -> float: ...
    @property
    def horizon(self) -> str: ...
    @property
    def modes_basis(self) -> str | None: ...
    def probabilities(self, frame: pd.DataFrame) -> np.ndarray: ...
    def mode_probabilities(self, frame: pd.DataFrame) -> list[dict[str, float]]: ...
    def contributions(self, frame: pd.DataFrame, k: int) -> list[list[tuple[str, float]]]: ...


@runtime_checkable
class HistoryModel(Protocol):
    """A model that featurises one asset's recent history itself (rows oldest first): the
    stored sensors it reads, its windows (in rows) and the sampling period it was trained
    on. `training.simulated`'s failure and RUL models are history models; C-MAPSS's
    `RulModel` is served by the older path (`predict_rul` reads its normaliser)."""

    sensors: tuple[str, ...]
    windows: tuple[int, ...]
    period_s: float

    def latest_features(self, rows: pd.DataFrame) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class FailureServable:
    """What the cache holds for a snapshot failure model (AI4I): classifier, threshold and
    mode models. A `FailureScorer` over `machining.FEATURES`."""

    classifier: Any
    threshold: float
    modes: ModeBoosters | None = None
    features: tuple[str, ...] = machining.FEATURES
    horizon: str = FAILURE_HORIZON

    @property
    def modes_basis(self) -> str | None:
        return MODES_BASIS.get(self.modes.strategy) if self.modes is not None else None

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        threads = lightgbm_threads(len(frame)) if _is_lightgbm(self.classifier) else {}
        return np.asarray(self.classifier.predict_proba(frame, **threads), dtype=float)[:, 1]

    def mode_probabilities(self, frame: pd.DataFrame) -> list[dict[str, float]]:
        return self.modes.proba(frame) if self.modes is not None else [{}] * len(frame)

    def contributions(self, frame: pd.DataFrame, k: int) -> list[list[tuple[str, float]]]:
        return machining.top_contributions(self.classifier, frame, k)


def milling_snapshot(
    readings: Mapping[str, float], attributes: Mapping[str, str]
) -> dict[str, object]:
    """Sensor values plus the product quality (an attribute, or a stored `quality_code`)."""
    values: dict[str, object] = dict(readings)
    quality = attributes.get(machining.QUALITY)
    if quality is None and "quality_code" in readings:
        codes = {float(v): k for k, v in machining.QUALITY_CODES.items()}
        quality = codes.get(float(readings["quality_code"]))
    if quality is not None:
        values[machining.QUALITY] = quality
    return values


@dataclass(frozen=True, slots=True)
class FailureResult:
    probability: float
    predicted: bool
    threshold: float
    modes: dict[str, float]
    modes_basis: str | None
    factors: list[Factor]
    horizon: str = FAILURE_HORIZON


def failure_features(snapshot: Mapping[str, object]) -> dict[str, float]:
    """The classifier's feature row of one snapshot, or a `ServingError` naming what is
    missing or invalid."""
    missing = [s for s in (*machining.SENSORS, machining.QUALITY) if _absent(snapshot.get(s))]
    if missing:
        raise ServingError(
            "missing_sensors",
            f"milling prediction needs {[*machining.SENSORS, machining.QUALITY]}; "
            f"missing {missing}",
            missing,
        )
    try:
        return machining.features_row(snapshot)
    except ValueError as exc:
        raise ServingError("invalid_request", str(exc)) from None


def predict_failures(
    servable: FailureScorer,
    rows: Sequence[Mapping[str, float]],
    k: int = 3,
    factors_min_probability: float = 0.0,
) -> list[FailureResult]:
    """P(failure), failure modes and top TreeSHAP factors of many feature rows at once: one
    call per booster for the whole batch (a LightGBM call costs ~0.3 ms however few rows).
    Factors only for rows with P(failure) >= `factors_min_probability` (SHAP dominates the
    cost of a batch); the others get none."""
    if not rows:
        return []
    frame = pd.DataFrame(list(rows)).reindex(columns=list(servable.features))
    probabilities = servable.probabilities(frame)
    explain = np.flatnonzero(probabilities >= factors_min_probability)
    contributions: list[list[tuple[str, float]]] = [[] for _ in range(len(rows))]
    if len(explain):
        found = servable.contributions(frame.iloc[explain], k)
        for i, factors in zip(explain, found, strict=True):
            contributions[i] = factors
    modes = servable.mode_probabilities(frame)
    basis = servable.modes_basis
    return [
        FailureResult(
            float(p),
            bool(p >= servable.threshold),
            servable.threshold,
            m,
            basis if m else None,
            [Factor(feature=n, contribution=c, value=_value(row.get(n))) for n, c in factors],
            servable.horizon,
        )
        for p, factors, m, row in zip(probabilities, contributions, modes, rows, strict=True)
    ]


def _value(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def predict_failure(
    servable: FailureScorer, snapshot: Mapping[str, object], k: int = 3
) -> FailureResult:
    """One snapshot's failure prediction (see `predict_failures`)."""
    return predict_failures(servable, [failure_features(snapshot)], k)[0]


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# History models (RUL of turbofans and simulated machines, failure of simulated machines)
# --------------------------------------------------------------------------------------------


def history_columns(model: Any) -> tuple[str, list[str]]:
    """(anchor sensor that counts the rows, every stored sensor read) of a history model:
    a `HistoryModel`'s sensors, or a C-MAPSS `RulModel`'s settings, context and sensors."""
    if isinstance(model, HistoryModel):
        return str(model.sensors[0]), list(model.sensors)
    names = [*model.normaliser.settings, *model.context, *model.normaliser.sensors]
    return str(model.normaliser.settings[0]), list(dict.fromkeys(str(n) for n in names))


def history_frame(
    model: Any,
    history: Sequence[Mapping[str, float]],
    confidence: Confidence,
    min_rows: int,
    what: str = "RUL",
) -> pd.DataFrame:
    """One asset's history (oldest first) as the frame a history model featurises, or a
    `ServingError`: too few rows, a required column (settings, context) missing or with
    gaps, more than half the sensors absent. Fewer absent sensors become missing values and
    cost confidence, as does a history shorter than the longest window."""
    if len(history) < min_rows:
        raise ServingError(
            "insufficient_history",
            f"{what} needs at least {min_rows} rows of history; got {len(history)}",
        )
    frame = pd.DataFrame(list(history))
    if isinstance(model, HistoryModel):
        required: list[str] = []
        sensors = list(model.sensors)
    else:
        required = [*model.normaliser.settings, *model.context]
        sensors = list(model.normaliser.sensors)
    missing_required = [c for c in required if c not in frame.columns]
    if missing_required:
        raise ServingError(
            "missing_sensors",
            f"{what} history lacks {missing_required} (needed to normalise and featurise)",
            missing_required,
        )
    if frame[required].isna().any().any():
        gaps = [c for c in required if frame[c].isna().any()]
        raise ServingError("missing_sensors", f"{what} history has gaps in {gaps}", gaps)
    absent = [s for s in sensors if s not in frame.columns or frame[s].isna().all()]
    if len(absent) * 2 > len(sensors):
        raise ServingError(
            "missing_sensors",
            f"{what} history lacks {len(absent)} of {len(sensors)} sensors: {absent}",
            absent,
        )
    if absent:
        confidence.reduce(
            1.0 - MISSING_SENSOR_PENALTY * len(absent) / len(sensors),
            f"sensors missing from history (treated as missing values): {absent}",
        )
        for s in absent:
            frame[s] = np.nan
    longest = max(model.windows)
    if len(frame) < longest:
        confidence.reduce(
            0.5 + 0.5 * len(frame) / longest,
            f"only {len(frame)} rows of history for a {longest}-row feature window",
        )
    return frame


def history_features(
    model: HistoryModel,
    history: Sequence[Mapping[str, float]],
    confidence: Confidence,
    min_rows: int,
) -> dict[str, float]:
    """The feature row of the newest row of one asset's history, by the model's own code."""
    return model.latest_features(history_frame(model, history, confidence, min_rows, "failure"))


def sampling_period(confidence: Confidence, times: Sequence[datetime], model: Any) -> float | None:
    """The median spacing (s) of stored history rows; when a `HistoryModel` was trained on a
    period more than `PERIOD_TOLERANCE` times longer or shorter, confidence drops: its
    windows count rows, so they span another stretch of time, and its hours (horizon, RUL)
    assume its own period."""
    if len(times) < 2 or not isinstance(model, HistoryModel):
        return None
    gaps = np.diff(np.array([t.timestamp() for t in times], dtype=np.float64))
    period = float(np.median(gaps))
    trained = float(model.period_s)
    if period > 0 and max(period / trained, trained / period) > PERIOD_TOLERANCE:
        confidence.reduce(
            0.7,
            f"history sampled every {period:.3g} s; the model was trained on one row per "
            f"{trained:g} s, so its windows span another time and its hours assume {trained:g} s",
        )
    return period


def predict_rul(
    model: Any, history: Sequence[Mapping[str, float]], confidence: Confidence, min_rows: int
) -> dict[str, float]:
    """RUL p10/p50/p90 at the last row of one asset's history (oldest first)."""
    frame = history_frame(model, history, confidence, min_rows)
    out = model.predict_history(frame)
    p10, p50, p90 = (float(out[q]) for q in ("p10", "p50", "p90"))
    if p90 - p10 > max(p50, 1.0):
        confidence.reduce(0.8, f"wide RUL band: p10 {p10:.0f} to p90 {p90:.0f}")
    return {"p10": p10, "p50": p50, "p90": p90}


def model_refs(loaded: Mapping[str, tuple[str, str]]) -> dict[str, ModelRef]:
    return {part: ModelRef(name=n, version=v) for part, (n, v) in loaded.items()}
