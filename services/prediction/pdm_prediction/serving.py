"""The pure part of serving: routing, features, model outputs, health score and confidence.

Routing: an asset type maps to the registered models serving it, per part
(`milling` -> `failure-milling`, `turbofan` -> `rul-turbofan`; overridable in settings).

Health score (0-100, 100 = healthy), from the parts present:

* failure part: `score_f = 100 * (1 - p_failure)`;
* RUL part: `score_r = 100 * min(max(rul_p50, 0), cap) / cap` (cap = `RUL_CAP`, the cap the
  RUL model was trained with: at or beyond it an asset counts as fully healthy);
* `health = sum(weight_i * score_i) / sum(weight_i)` over the parts present, weights
  `HEALTH_WEIGHTS` (equal). Each term is returned as a `HealthContributor`
  (`points = weight * score / sum(weights)`, so the points add up to the score).

Confidence (0-1) starts at 1 and is multiplied down, one reason each, when: the readings are
older than `stale_after_s`; the sensors of one snapshot were read far apart in time
(stored readings); history is shorter than the longest feature window; sensors of a history
model are missing (filled as missing values, which LightGBM routes on); the RUL band is wide.

Features are computed by the training code itself (`features.machining.features_row`, the
RUL model's own `predict_history`), so serving and training cannot diverge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pdm_common.events import Factor, HealthContributor, ModelRef
from pdm_common.features import machining

FAILURE, RUL = "failure", "rul"
#: asset type -> {part: registered model name}.
DEFAULT_ROUTES: dict[str, dict[str, str]] = {
    "milling": {FAILURE: "failure-milling"},
    "turbofan": {RUL: "rul-turbofan"},
}
RUL_CAP = 125.0
HEALTH_WEIGHTS: dict[str, float] = {FAILURE: 1.0, RUL: 1.0}
HEALTH_FORMULA = (
    "weighted mean over the parts present of: failure = 100*(1-p_failure); "
    f"rul = 100*min(max(rul_p50,0),{RUL_CAP:g})/{RUL_CAP:g}; weights {HEALTH_WEIGHTS}"
)
FAILURE_HORIZON = "current operating step (AI4I 2020 label: failure of this process step)"
MODES_BASIS = {"multiclass": "conditional_on_failure", "ovr": "per_mode"}
#: How many confidence factors a missing-sensor fraction costs (1 - fraction * this).
MISSING_SENSOR_PENALTY = 1.0


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
        if self.strategy == "multiclass":
            out = np.asarray(self.boosters["all"].predict(x), dtype=float).reshape(len(x), -1)
            if out.shape[1] != len(self.modes):  # a class absent in training
                return [{} for _ in range(len(x))]
            return [dict(zip(self.modes, map(float, r), strict=True)) for r in out]
        cols = {m: np.asarray(self.boosters[m].predict(x), dtype=float) for m in self.modes}
        return [{m: float(cols[m][i]) for m in self.modes} for i in range(len(x))]


@dataclass(frozen=True, slots=True)
class FailureServable:
    """What the cache holds for a failure model: classifier, threshold and mode models."""

    classifier: Any
    threshold: float
    modes: ModeBoosters | None = None


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
    servable: FailureServable,
    rows: Sequence[Mapping[str, float]],
    k: int = 3,
    factors_min_probability: float = 0.0,
) -> list[FailureResult]:
    """P(failure), failure modes and top TreeSHAP factors of many feature rows at once: one
    call per booster for the whole batch (a LightGBM call costs ~0.3 ms however few rows).
    Factors only for rows with P(failure) >= `factors_min_probability` (SHAP dominates the
    cost of a batch); the others get none."""
    from pdm_common.training.ai4i import top_contributions

    if not rows:
        return []
    frame = pd.DataFrame(list(rows))[list(machining.FEATURES)]
    probabilities = np.asarray(servable.classifier.predict_proba(frame), dtype=float)[:, 1]
    explain = np.flatnonzero(probabilities >= factors_min_probability)
    contributions: list[list[tuple[str, float]]] = [[] for _ in range(len(rows))]
    if len(explain):
        found = top_contributions(servable.classifier, frame.iloc[explain], k)
        for i, factors in zip(explain, found, strict=True):
            contributions[i] = factors
    modes = servable.modes.proba(frame) if servable.modes is not None else [{}] * len(rows)
    strategy = servable.modes.strategy if servable.modes is not None else None
    return [
        FailureResult(
            float(p),
            bool(p >= servable.threshold),
            servable.threshold,
            m,
            MODES_BASIS.get(strategy) if strategy and m else None,
            [Factor(feature=n, contribution=c, value=row[n]) for n, c in factors],
        )
        for p, factors, m, row in zip(probabilities, contributions, modes, rows, strict=True)
    ]


def predict_failure(
    servable: FailureServable, snapshot: Mapping[str, object], k: int = 3
) -> FailureResult:
    """One snapshot's failure prediction (see `predict_failures`)."""
    return predict_failures(servable, [failure_features(snapshot)], k)[0]


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# RUL (turbofan)
# --------------------------------------------------------------------------------------------


def predict_rul(
    model: Any, history: Sequence[Mapping[str, float]], confidence: Confidence, min_rows: int
) -> dict[str, float]:
    """RUL p10/p50/p90 at the last row of one asset's history (oldest first)."""
    if len(history) < min_rows:
        raise ServingError(
            "insufficient_history",
            f"RUL needs at least {min_rows} rows of history; got {len(history)}",
        )
    frame = pd.DataFrame(list(history))
    required = [*model.normaliser.settings, *model.context]
    missing_required = [c for c in required if c not in frame.columns]
    if missing_required:
        raise ServingError(
            "missing_sensors",
            f"RUL history lacks {missing_required} (needed to normalise and featurise)",
            missing_required,
        )
    if frame[required].isna().any().any():
        gaps = [c for c in required if frame[c].isna().any()]
        raise ServingError("missing_sensors", f"RUL history has gaps in {gaps}", gaps)
    sensors = list(model.normaliser.sensors)
    absent = [s for s in sensors if s not in frame.columns or frame[s].isna().all()]
    if len(absent) * 2 > len(sensors):
        raise ServingError(
            "missing_sensors",
            f"RUL history lacks {len(absent)} of {len(sensors)} sensors: {absent}",
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
    out = model.predict_history(frame)
    p10, p50, p90 = (float(out[q]) for q in ("p10", "p50", "p90"))
    if p90 - p10 > max(p50, 1.0):
        confidence.reduce(0.8, f"wide RUL band: p10 {p10:.0f} to p90 {p90:.0f}")
    return {"p10": p10, "p50": p50, "p90": p90}


def model_refs(loaded: Mapping[str, tuple[str, str]]) -> dict[str, ModelRef]:
    return {part: ModelRef(name=n, version=v) for part, (n, v) in loaded.items()}
