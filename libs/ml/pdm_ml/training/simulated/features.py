"""Features: the one code path of training and serving (window features over the last
snapshots), and the TreeSHAP factors of a prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pdm_ml.features.windows import (
    feature_names,
    latest_window_features,
    window_features_by_asset,
)
from pdm_ml.training.simulated.config import ASSET, ROW


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
