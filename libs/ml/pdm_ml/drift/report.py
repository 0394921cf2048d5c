"""Evidently's own HTML and JSON report on bounded samples, for a service to store with each
check: people read Evidently's report, while the verdicts come from `check` (fast, from the
profile). Sampling keeps the report's cost flat however long the window is.

Evidently is imported lazily (it is heavy and only the drift service needs it).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

DEFAULT_REPORT_ROWS = 5000


def bounded_sample(frame: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """At most `max_rows` rows, drawn without replacement and kept in their original order."""
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


def evidently_report(
    reference_sample: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    max_rows: int = DEFAULT_REPORT_ROWS,
    seed: int = 0,
) -> tuple[str, dict[str, Any]]:
    """Render Evidently's `DataDriftPreset` as (HTML, JSON-ready dict) on at most `max_rows`
    rows of each frame.

    The verdicts in it are Evidently's on the sample, so with a sample of <= 1000 rows it
    switches to p-value tests (see `check`); the default 5000 keeps it on the same tests as
    `check` on a full reference.
    """
    evidently = importlib.import_module("evidently")
    presets = importlib.import_module("evidently.presets")
    cols = list(columns)
    ref = bounded_sample(reference_sample[cols], max_rows, seed)
    cur = bounded_sample(current[cols], max_rows, seed)
    report = evidently.Report([presets.DataDriftPreset(columns=cols)])
    snapshot = report.run(current_data=cur, reference_data=ref)
    html: str = snapshot.get_html_str(as_iframe=False)
    # through JSON: the snapshot dict holds numpy scalars that a store cannot take as they are
    data: dict[str, Any] = json.loads(snapshot.json())
    return html, data


def evidently_verdicts(data: dict[str, Any]) -> dict[str, tuple[str, float, bool]]:
    """Per column (method, value, drifted) from a `DataDriftPreset` snapshot dict.

    Evidently 0.7 stores only the value and threshold per `ValueDrift`, so the verdict is
    rebuilt with its rules: p-value tests drift below the threshold (KS at or below),
    distances at or above it.
    """
    verdicts: dict[str, tuple[str, float, bool]] = {}
    for metric in data.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method = str(config["method"])
        value = float(metric["value"])
        threshold = float(config["threshold"])
        if "p_value" in method:
            drifted = value <= threshold if method.startswith("K-S") else value < threshold
        else:
            drifted = value >= threshold
        verdicts[str(config["column"])] = (method, value, drifted)
    return verdicts
