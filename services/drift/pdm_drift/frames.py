"""The pure parts of a check: stored readings to snapshot frames, the model's own features
of them, the importances a weighted share needs, and a `DriftResult` to a `DriftReport`.

No I/O here (the `checker` reads and writes); everything is unit-tested on small frames.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pdm_common.drift import ColumnDrift, DriftReport, DriftTrigger
from pdm_ml.drift import DriftResult, NumericProfile, ReferenceProfile
from pdm_ml.drift.check import ColumnDrift as CheckedColumn

ASSET, TIME, ROW = "asset_id", "time", "row"
#: Model tasks whose champions get a features check, and what a retrain covers.
CHECKED_TASKS: tuple[str, ...] = ("failure", "rul")
#: Prefix of the profiles and reports of an asset type's raw sensors.
SENSORS_PREFIX = "sensors-"


def split_name(model_name: str) -> tuple[str, str]:
    """`failure-pump` -> (`failure`, `pump`)."""
    task, _, asset_type = model_name.partition("-")
    return task, asset_type


def sensors_name(asset_type: str) -> str:
    return f"{SENSORS_PREFIX}{asset_type}"


def pair_of(model_name: str) -> tuple[str, ...]:
    """The models one retrain of `model_name` registers (failure and RUL of its type), the
    named one first, as `pdm train simulated` does."""
    task, asset_type = split_name(model_name)
    others = [f"{t}-{asset_type}" for t in CHECKED_TASKS if t != task]
    return (model_name, *others)


def snapshots_frame(readings: Iterable[tuple[str, datetime, str, float]]) -> pd.DataFrame:
    """Narrow `(asset_id, time, sensor, value)` rows to one row per asset snapshot (sensors
    as columns), ordered by asset and time, with the row number within each asset (`row`)
    that the window features count in."""
    narrow = pd.DataFrame(list(readings), columns=[ASSET, TIME, "sensor", "value"])
    if narrow.empty:
        return pd.DataFrame(columns=[ASSET, TIME, ROW])
    wide = narrow.pivot_table(
        index=[ASSET, TIME], columns="sensor", values="value", aggfunc="last"
    ).reset_index()
    wide.columns.name = None
    wide = wide.sort_values([ASSET, TIME], kind="stable").reset_index(drop=True)
    wide[ROW] = wide.groupby(ASSET).cumcount()
    return wide


def model_features(model: Any, snapshots: pd.DataFrame, warmup_rows: int) -> pd.DataFrame:
    """The model's own features of every snapshot (its `featurise`, the code path serving
    shares with training), without each asset's first `warmup_rows` rows (windows still
    filling up). Sensors the model reads but the window lacks are missing values."""
    sensors = list(getattr(model, "sensors", ()))
    frame = snapshots.copy()
    for sensor in sensors:
        if sensor not in frame.columns:
            frame[sensor] = np.nan
    features = model.featurise(frame[[ASSET, ROW, *sensors]])
    keep = frame[ROW] >= warmup_rows
    out: pd.DataFrame = features.loc[keep[keep].index].reset_index(drop=True)
    return out


def gain_importances(model: Any, columns: Sequence[str]) -> dict[str, float] | None:
    """LightGBM gain importance per feature, normalised to sum 1: of the failure model's
    booster, or of the RUL model's median booster. None when the model has no booster."""
    booster = getattr(model, "booster", None)
    if booster is None:
        boosters = getattr(model, "boosters", None)
        if isinstance(boosters, Mapping) and boosters:
            booster = boosters.get("p50") or next(iter(boosters.values()))
    if booster is None or not hasattr(booster, "feature_importance"):
        return None
    names = list(booster.feature_name())
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    total = float(gains.sum())
    if total <= 0:
        return None
    by_name = dict(zip(names, gains / total, strict=True))
    features = list(getattr(model, "features", names))
    # LightGBM may rename columns (Column_0...) when fitted on an array: map by position
    if not set(columns) & set(names) and len(features) == len(names):
        by_name = dict(zip(features, gains / total, strict=True))
    return {c: float(by_name.get(c, 0.0)) for c in columns}


def sensor_columns(snapshots: pd.DataFrame, min_share: float) -> list[str]:
    """Numeric sensor columns present in at least `min_share` of the snapshots."""
    out = []
    for name in snapshots.columns:
        if name in (ASSET, TIME, ROW):
            continue
        series = snapshots[name]
        if pd.api.types.is_numeric_dtype(series) and series.notna().mean() >= min_share:
            out.append(str(name))
    return sorted(out)


def reference_frame(profile: ReferenceProfile) -> pd.DataFrame:
    """A frame of the profile's numeric samples (the column itself, or its quantiles), for
    the human-readable Evidently report of a check whose reference is only a profile."""
    columns = {
        name: pd.Series(col.sample, dtype="float64")
        for name, col in profile.columns.items()
        if isinstance(col, NumericProfile)
    }
    return pd.DataFrame(columns)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def column_verdicts(result: DriftResult) -> list[ColumnDrift]:
    """The report's per-column verdicts: most important first, then drifted ones, then by
    PSI (comparable across the tests)."""

    def key(c: CheckedColumn) -> tuple[float, bool, float]:
        psi = c.psi if c.psi is not None and math.isfinite(c.psi) else 0.0
        return (-(c.importance or 0.0), not c.drifted, -psi)

    return [
        ColumnDrift(
            column=c.column,
            method=c.method,
            statistic=_finite(c.statistic),
            threshold=_finite(c.threshold),
            drifted=bool(c.drifted),
            psi=_finite(c.psi),
            importance=_finite(c.importance),
            reference_mean=_finite(c.mean_reference),
            current_mean=_finite(c.mean_current),
            mean_shift=_finite(c.mean_shift),
            median_shift=_finite(c.median_shift),
        )
        for c in sorted(result.columns.values(), key=key)
    ]


def build_report(
    source: str,
    result: DriftResult,
    *,
    kind: str,
    trigger: DriftTrigger,
    window: tuple[datetime, datetime],
    reference_rows: int,
    model_name: str | None,
    model_version: str | None,
    asset_type: str | None,
    report_id: uuid.UUID | None = None,
) -> DriftReport:
    """A `DriftReport` of a check's result (the weighted share is the plain drifted share
    when the check had no importances). Missing model columns lead the headlines."""
    headlines = [f"{name}: missing from the current window" for name in result.missing_columns]
    headlines += result.headlines()
    return DriftReport(
        source=source,
        report_id=report_id or uuid.uuid4(),
        kind=kind,
        model_name=model_name,
        model_version=model_version,
        asset_type=asset_type,
        trigger=trigger,
        window_start=window[0],
        window_end=window[1],
        reference_rows=reference_rows,
        current_rows=result.current_rows,
        drifted_share=round(result.share_drifted, 6),
        weighted_share=round(result.weighted_share_drifted, 6),
        drift_detected=result.dataset_drift,
        headlines=headlines,
        columns=column_verdicts(result),
    )


def wants_retrain(report: DriftReport, threshold: float) -> bool:
    """A features report whose importance-weighted drifted share reaches the threshold."""
    return report.kind == "features" and report.weighted_share >= threshold and threshold > 0
