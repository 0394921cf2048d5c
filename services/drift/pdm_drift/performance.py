"""Live performance of the failure models from what really happened: stored predictions
(the prediction service's `predictions`, read only) joined with outcome labels (completed
work orders' findings, the simulator's failures), per model version. Pure: the service
reads the rows (`DriftStore.predictions_with_labels`) and calls `live_performance`.

Per model version, with H its horizon:

* precision at H: of the alarmed predictions (probability >= the decision threshold the
  prediction carried) whose H is over, the share followed by a found failure of the same
  asset within H;
* recall at H: of the found failures of assets the version scored in the H before them, the
  share with at least one alarmed prediction in that H;
* lead time: per caught failure, the hours from its first alarmed prediction in the H before
  it to the failure (median and mean over caught failures).
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class ScoredPrediction:
    asset_id: str
    as_of: datetime
    model: str
    version: str
    probability: float
    threshold: float


@dataclass(frozen=True, slots=True)
class Outcome:
    asset_id: str
    at: datetime
    failure_found: bool


@dataclass(frozen=True, slots=True)
class VersionPerformance:
    model: str
    version: str
    predictions: int
    alarms: int
    alarms_judged: int  # alarms whose horizon is over (or that a failure confirmed)
    true_alarms: int
    failures: int  # found failures of assets the version scored within H before them
    caught: int
    precision: float | None
    recall: float | None
    lead_h_median: float | None
    lead_h_mean: float | None


def from_rows(
    predictions: Iterable[Mapping[str, Any]], labels: Iterable[Mapping[str, Any]]
) -> tuple[list[ScoredPrediction], list[Outcome]]:
    """Rows of `DriftStore.predictions_with_labels` as the inputs of `live_performance`."""
    preds = [
        ScoredPrediction(
            asset_id=r["asset_id"],
            as_of=r["as_of"],
            model=r["failure_model"],
            version=str(r["failure_model_version"]),
            probability=float(r["failure_probability"]),
            threshold=float(r["threshold"]) if r.get("threshold") is not None else 0.5,
        )
        for r in predictions
    ]
    outcomes = [Outcome(r["asset_id"], r["occurred_at"], bool(r["failure_found"])) for r in labels]
    return preds, outcomes


def live_performance(
    predictions: Iterable[ScoredPrediction],
    outcomes: Iterable[Outcome],
    horizon: timedelta,
    now: datetime,
) -> list[VersionPerformance]:
    """Precision and recall at `horizon`, and lead time, per (model, version)."""
    failures: dict[str, list[datetime]] = {}
    for o in outcomes:
        if o.failure_found:
            failures.setdefault(o.asset_id, []).append(o.at)
    for times in failures.values():
        times.sort()
    groups: dict[tuple[str, str], list[ScoredPrediction]] = {}
    for p in predictions:
        groups.setdefault((p.model, p.version), []).append(p)
    out = []
    for (model, version), preds in sorted(groups.items()):
        preds.sort(key=lambda p: (p.asset_id, p.as_of))
        alarms = [p for p in preds if p.probability >= p.threshold]
        judged = true_alarms = 0
        for p in alarms:
            hit = _next_failure(failures.get(p.asset_id, []), p.as_of, horizon)
            if hit is not None:
                judged += 1
                true_alarms += 1
            elif p.as_of + horizon <= now:
                judged += 1
        scored_assets: dict[str, list[datetime]] = {}
        alarmed_assets: dict[str, list[datetime]] = {}
        for p in preds:
            scored_assets.setdefault(p.asset_id, []).append(p.as_of)
        for p in alarms:
            alarmed_assets.setdefault(p.asset_id, []).append(p.as_of)
        n_failures = caught = 0
        leads: list[float] = []
        for asset, times in failures.items():
            scored = scored_assets.get(asset, [])
            alarmed = alarmed_assets.get(asset, [])
            for at in times:
                if _first_within(scored, at, horizon) is None:
                    continue  # the version did not watch this asset before that failure
                n_failures += 1
                first = _first_within(alarmed, at, horizon)
                if first is not None:
                    caught += 1
                    leads.append((at - first).total_seconds() / 3600)
        out.append(
            VersionPerformance(
                model=model,
                version=version,
                predictions=len(preds),
                alarms=len(alarms),
                alarms_judged=judged,
                true_alarms=true_alarms,
                failures=n_failures,
                caught=caught,
                precision=true_alarms / judged if judged else None,
                recall=caught / n_failures if n_failures else None,
                lead_h_median=statistics.median(leads) if leads else None,
                lead_h_mean=statistics.fmean(leads) if leads else None,
            )
        )
    return out


def _next_failure(times: list[datetime], after: datetime, horizon: timedelta) -> datetime | None:
    """The first failure in `(after, after + horizon]` (times sorted)."""
    i = bisect.bisect_right(times, after)
    if i < len(times) and times[i] <= after + horizon:
        return times[i]
    return None


def _first_within(times: list[datetime], before: datetime, horizon: timedelta) -> datetime | None:
    """The first of `times` (sorted) in `[before - horizon, before)`."""
    i = bisect.bisect_left(times, before - horizon)
    if i < len(times) and times[i] < before:
        return times[i]
    return None
