"""Windowed sensor features: THE code path shared by training and serving.

Per sensor, over trailing windows counted in readings (not seconds): the last value, and per
window the mean, standard deviation (population), min, max and least-squares slope (per
reading). Plus operating context columns (operating settings, `hours_since_maintenance`) when
present. Everything is causal: the row at step t only sees steps <= t.

Every window statistic is computed from the window's own values only (a padded sliding view,
not a running sum), so the features of the last step of a short tail are the same numbers as
the features of that step computed on the whole history: `latest_window_features` (serving)
reuses `window_features` (training) on the tail, and no training/serving skew can creep in.

`ConditionNormaliser` z-scores sensors per operating condition (conditions found by
clustering the settings on training data), so degradation, not the flight regime, drives the
features; `informative_sensors` drops sensors that are (near) constant within conditions.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

DEFAULT_WINDOWS: tuple[int, ...] = (5, 10, 20, 30)
WINDOW_STATS: tuple[str, ...] = ("mean", "std", "min", "max", "slope")
#: Optional per-row context, used as a feature when the column is present.
OPTIONAL_CONTEXT: tuple[str, ...] = ("hours_since_maintenance",)
#: A sensor with at most this many distinct values within a condition carries no trend.
MAX_FLAT_DISTINCT = 2
_MIN_SCALE = 1e-12


def feature_names(
    sensors: Sequence[str], windows: Sequence[int], context: Sequence[str] = ()
) -> list[str]:
    """Column order of `window_features` (the model's feature list)."""
    names = [f"{s}__last" for s in sensors]
    names += [f"{s}__{stat}_w{w}" for w in windows for stat in WINDOW_STATS for s in sensors]
    return names + list(context)


def _window_stats(values: FloatArray, window: int) -> dict[str, FloatArray]:
    """Statistics of the trailing `window` readings of every row, NaN-aware.

    The view is padded with NaN before the first row and copied contiguous, so each window
    is reduced by the same code over the same values wherever the row sits in the history.
    """
    k = values.shape[1]
    padded = np.vstack([np.full((window - 1, k), np.nan), values])
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (n, k, w)
    arr = np.ascontiguousarray(view)
    present = ~np.isnan(arr)
    count = present.sum(axis=-1)
    x = np.arange(window, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(arr, axis=-1)
        std = np.nanstd(arr, axis=-1)
        low = np.nanmin(arr, axis=-1)
        high = np.nanmax(arr, axis=-1)
        x_mean = np.where(present, x, 0.0).sum(axis=-1) / count
        dx = np.where(present, x - x_mean[..., None], 0.0)
        dy = np.where(present, arr - mean[..., None], 0.0)
        sxx = (dx * dx).sum(axis=-1)
        slope = np.where(sxx > 0, (dx * dy).sum(axis=-1) / np.where(sxx > 0, sxx, 1.0), 0.0)
    slope = np.where(count > 0, slope, np.nan)
    return {"mean": mean, "std": std, "min": low, "max": high, "slope": slope}


def window_features(
    frame: pd.DataFrame,
    sensors: Sequence[str],
    windows: Sequence[int] = DEFAULT_WINDOWS,
    context: Sequence[str] = (),
) -> pd.DataFrame:
    """Features of every time step of ONE asset (rows sorted by time), causal.

    Early rows use the shorter history they have. `context` columns are copied through;
    `OPTIONAL_CONTEXT` columns are added when the frame has them. Missing readings (NaN)
    are skipped by the statistics; LightGBM handles the NaN of an all-missing window.
    """
    columns = list(sensors)
    values = frame[columns].to_numpy(dtype=np.float64) if columns else np.empty((len(frame), 0))
    out: dict[str, FloatArray] = {f"{s}__last": values[:, j] for j, s in enumerate(columns)}
    for window in windows:
        if window < 1:
            raise ValueError(f"window {window}: must be at least one reading")
        stats = _window_stats(values, window) if len(frame) else {}
        for stat in WINDOW_STATS:
            for j, s in enumerate(columns):
                out[f"{s}__{stat}_w{window}"] = (
                    stats[stat][:, j] if stats else np.empty(0, dtype=np.float64)
                )
    for name in _context_columns(frame.columns, context):
        out[name] = frame[name].to_numpy(dtype=np.float64)
    return pd.DataFrame(out, index=frame.index)


def _context_columns(available: Iterable[Any], context: Sequence[str]) -> list[str]:
    present = set(available)
    missing = [c for c in context if c not in present]
    if missing:
        raise KeyError(f"context columns {missing} are not in the frame")
    return list(context) + [c for c in OPTIONAL_CONTEXT if c in present and c not in context]


def latest_window_features(
    rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    sensors: Sequence[str],
    windows: Sequence[int] = DEFAULT_WINDOWS,
    context: Sequence[str] = (),
) -> dict[str, float]:
    """The serving path: features of the LAST row of one asset's history (sorted by time).

    Only the last `max(windows)` rows matter, so only they are featurised, by the training
    function itself.
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        raise ValueError("no history: at least one reading is needed")
    tail = frame.iloc[-max(windows, default=1) :]
    last = window_features(tail, sensors, windows, context).iloc[-1]
    return {str(k): float(v) for k, v in last.items()}


def window_features_by_asset(
    frame: pd.DataFrame,
    asset: str,
    time: str,
    sensors: Sequence[str],
    windows: Sequence[int] = DEFAULT_WINDOWS,
    context: Sequence[str] = (),
) -> pd.DataFrame:
    """`window_features` of every asset of a long frame (index kept; rows in time order)."""
    ordered = frame.sort_values([asset, time], kind="stable")
    parts = [
        window_features(group, sensors, windows, context)
        for _, group in ordered.groupby(asset, sort=False)
    ]
    return pd.concat(parts) if parts else window_features(ordered, sensors, windows, context)


# --------------------------------------------------------------------------------------------
# Normalisation per operating condition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConditionNormaliser:
    """Z-scores sensors per operating condition (found by clustering the settings).

    Flight regime moves most sensors far more than wear does; normalising inside each
    regime leaves the wear signal. The number of conditions is measured, not configured:
    the fewest clusters that explain all but `tolerance` of the settings' variance (one
    condition when the settings are only noise, as in FD001/FD003).
    """

    settings: tuple[str, ...]
    sensors: tuple[str, ...]
    settings_center: FloatArray  # (n_settings,)
    settings_scale: FloatArray  # (n_settings,)
    centroids: FloatArray  # (n_conditions, n_settings), scaled settings space
    means: FloatArray  # (n_conditions, n_sensors)
    stds: FloatArray  # (n_conditions, n_sensors)

    @property
    def n_conditions(self) -> int:
        return int(self.centroids.shape[0])

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        settings: Sequence[str],
        sensors: Sequence[str],
        *,
        max_conditions: int = 8,
        tolerance: float = 1e-3,
        seed: int = 0,
    ) -> ConditionNormaliser:
        """Fit on training rows only."""
        raw = frame[list(settings)].to_numpy(dtype=np.float64)
        center = raw.mean(axis=0)
        scale = raw.std(axis=0)
        scale = np.where(scale > _MIN_SCALE, scale, 1.0)
        centroids = _cluster(
            (raw - center) / scale, max_conditions=max_conditions, tol=tolerance, seed=seed
        )
        labels = _nearest(((raw - center) / scale), centroids)
        values = frame[list(sensors)].to_numpy(dtype=np.float64)
        means = np.vstack([np.nanmean(values[labels == c], axis=0) for c in range(len(centroids))])
        stds = np.vstack([np.nanstd(values[labels == c], axis=0) for c in range(len(centroids))])
        return cls(
            tuple(settings), tuple(sensors), center, scale, centroids, means, np.nan_to_num(stds)
        )

    def condition(self, frame: pd.DataFrame) -> npt.NDArray[np.int64]:
        """The operating condition of each row (nearest centroid)."""
        raw = frame[list(self.settings)].to_numpy(dtype=np.float64)
        return _nearest((raw - self.settings_center) / self.settings_scale, self.centroids)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy with each sensor z-scored within its row's condition (constant -> 0)."""
        labels = self.condition(frame)
        out = frame.copy()
        values = frame[list(self.sensors)].to_numpy(dtype=np.float64)
        scale = np.where(self.stds > _MIN_SCALE, self.stds, np.inf)
        out[list(self.sensors)] = (values - self.means[labels]) / scale[labels]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": list(self.settings),
            "sensors": list(self.sensors),
            "settings_center": self.settings_center.tolist(),
            "settings_scale": self.settings_scale.tolist(),
            "centroids": self.centroids.tolist(),
            "means": self.means.tolist(),
            "stds": self.stds.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionNormaliser:
        def arr(key: str) -> FloatArray:
            return np.asarray(data[key], dtype=np.float64)

        return cls(
            tuple(data["settings"]),
            tuple(data["sensors"]),
            arr("settings_center"),
            arr("settings_scale"),
            arr("centroids").reshape(-1, len(data["settings"])),
            arr("means").reshape(-1, len(data["sensors"])),
            arr("stds").reshape(-1, len(data["sensors"])),
        )


def _nearest(points: FloatArray, centroids: FloatArray) -> npt.NDArray[np.int64]:
    d2 = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=-1)
    return np.asarray(d2.argmin(axis=1), dtype=np.int64)


def _cluster(points: FloatArray, *, max_conditions: int, tol: float, seed: int) -> FloatArray:
    """Centroids of the fewest k-means clusters leaving < `tol` of the variance unexplained."""
    from sklearn.cluster import KMeans

    total = float(((points - points.mean(axis=0)) ** 2).sum())
    if total <= _MIN_SCALE:
        return points.mean(axis=0, keepdims=True)
    sample = points
    if len(points) > 5_000:
        rng = np.random.default_rng(seed)
        sample = points[rng.choice(len(points), 5_000, replace=False)]
    for k in range(2, max_conditions + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(sample)
        inertia = float(km.inertia_) * len(points) / len(sample)
        if inertia / total < tol:
            return np.asarray(km.cluster_centers_, dtype=np.float64)
    return points.mean(axis=0, keepdims=True)


def informative_sensors(
    frame: pd.DataFrame, sensors: Sequence[str], conditions: npt.NDArray[np.int64]
) -> list[str]:
    """Sensors that vary within operating conditions on the training data.

    A sensor with at most `MAX_FLAT_DISTINCT` distinct values inside a typical condition is
    constant (or flickers by one quantisation step): it tells nothing about wear.
    """
    kept = []
    for sensor in sensors:
        distinct = frame[sensor].groupby(conditions).nunique()
        if float(distinct.median()) > MAX_FLAT_DISTINCT:
            kept.append(sensor)
    return kept
