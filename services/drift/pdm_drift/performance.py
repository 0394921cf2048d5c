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

Per RUL model version (hours), over the predictions a found failure of their asset followed
(the real time to failure is then known; the others are censored and left out): the mean
absolute error and the bias of the median, and the share whose p10-p90 band held it.

A version's predictions are counted per role: `served` (published, as champion, from
`predictions`) and `shadow` (scored as challenger on the same requests, from
`shadow_predictions`), so a challenger is judged live on the requests its champion saw.

A drop is significant when the recent part of the look-back scores a proportion (precision,
recall, RUL coverage) lower than the part before it with a one-sided Fisher exact test below
`alpha`, both parts holding at least `min_events` judged events: a comparison of the version
with itself, so the live definitions need not match the offline metrics of its training run.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scipy import stats

from pdm_common.drift import LivePerformance, PerformanceRole, PerformanceSpan


@dataclass(frozen=True, slots=True)
class ScoredPrediction:
    asset_id: str
    as_of: datetime
    model: str
    version: str
    probability: float
    threshold: float
    role: PerformanceRole = "served"


@dataclass(frozen=True, slots=True)
class RulPrediction:
    asset_id: str
    as_of: datetime
    model: str
    version: str
    p10: float
    p50: float
    p90: float
    role: PerformanceRole = "served"


@dataclass(frozen=True, slots=True)
class Outcome:
    asset_id: str
    at: datetime
    failure_found: bool


@dataclass(frozen=True, slots=True)
class VersionPerformance:
    model: str
    version: str
    role: PerformanceRole
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
            role=r.get("role", "served"),
        )
        for r in predictions
        if r.get("failure_model") is not None and r.get("failure_probability") is not None
    ]
    outcomes = [Outcome(r["asset_id"], r["occurred_at"], bool(r["failure_found"])) for r in labels]
    return preds, outcomes


def rul_from_rows(predictions: Iterable[Mapping[str, Any]]) -> list[RulPrediction]:
    """The RUL predictions (in hours, with a full band) among the same rows."""
    return [
        RulPrediction(
            asset_id=r["asset_id"],
            as_of=r["as_of"],
            model=r["rul_model"],
            version=str(r["rul_model_version"]),
            p10=float(r["rul_p10"]),
            p50=float(r["rul_p50"]),
            p90=float(r["rul_p90"]),
            role=r.get("role", "served"),
        )
        for r in predictions
        if r.get("rul_model") is not None
        and r.get("rul_unit", "hours") == "hours"
        and None not in (r.get("rul_p10"), r.get("rul_p50"), r.get("rul_p90"))
    ]


def live_performance(
    predictions: Iterable[ScoredPrediction],
    outcomes: Iterable[Outcome],
    horizon: timedelta,
    now: datetime,
) -> list[VersionPerformance]:
    """Precision and recall at `horizon`, and lead time, per (model, version, role)."""
    failures = _failures(outcomes)
    groups: dict[tuple[str, str, PerformanceRole], list[ScoredPrediction]] = {}
    for p in predictions:
        groups.setdefault((p.model, p.version, p.role), []).append(p)
    out = []
    for (model, version, role), preds in sorted(groups.items()):
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
                role=role,
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


@dataclass(frozen=True, slots=True)
class RulPerformance:
    model: str
    version: str
    role: PerformanceRole
    predictions: int
    judged: int  # predictions a found failure of their asset followed
    covered: int  # of those, failures inside the p10-p90 band
    mae_h: float | None
    bias_h: float | None
    coverage: float | None


def rul_performance(
    predictions: Iterable[RulPrediction], outcomes: Iterable[Outcome]
) -> list[RulPerformance]:
    """RUL error and band coverage per (model, version, role), on uncensored predictions."""
    failures = _failures(outcomes)
    groups: dict[tuple[str, str, PerformanceRole], list[RulPrediction]] = {}
    for p in predictions:
        groups.setdefault((p.model, p.version, p.role), []).append(p)
    out = []
    for (model, version, role), preds in sorted(groups.items()):
        errors: list[float] = []
        covered = 0
        for p in preds:
            times = failures.get(p.asset_id, [])
            i = bisect.bisect_right(times, p.as_of)
            if i == len(times):
                continue  # censored: no failure after it (yet)
            actual = (times[i] - p.as_of).total_seconds() / 3600
            errors.append(p.p50 - actual)
            covered += p.p10 <= actual <= p.p90
        out.append(
            RulPerformance(
                model=model,
                version=version,
                role=role,
                predictions=len(preds),
                judged=len(errors),
                covered=covered,
                mae_h=statistics.fmean(abs(e) for e in errors) if errors else None,
                bias_h=statistics.fmean(errors) if errors else None,
                coverage=covered / len(errors) if errors else None,
            )
        )
    return out


def significant_drop(
    name: str, before: tuple[int, int], after: tuple[int, int], min_events: int, alpha: float
) -> str | None:
    """Why the proportion `after` (successes, trials) is significantly below `before`
    (one-sided Fisher exact test), or None."""
    (k1, n1), (k2, n2) = before, after
    if n1 < min_events or n2 < min_events or k2 * n1 >= k1 * n2:
        return None
    _, p_value = stats.fisher_exact([[k2, n2 - k2], [k1, n1 - k1]], alternative="less")
    if p_value >= alpha:
        return None
    return (
        f"{name} {k1 / n1:.2f} ({k1}/{n1}) -> {k2 / n2:.2f} ({k2}/{n2}), "
        f"one-sided Fisher p={p_value:.2g} < {alpha:g}"
    )


@dataclass(frozen=True, slots=True)
class LiveVerdict:
    """A challenger judged live against its champion on the requests both scored."""

    promote: bool
    reason: str
    metrics: dict[str, float]


def compare_live(
    task: str,
    pairs: Iterable[Mapping[str, Any]],
    outcomes: list[Outcome],
    horizon: timedelta,
    now: datetime,
    *,
    min_events: int,
    alpha: float,
) -> LiveVerdict:
    """Champion and challenger on the same requests (`DriftStore.shadow_pairs` rows, the
    challenger's columns prefixed `s_`, the champion's `c_`): kept when the challenger is
    significantly worse (recall or precision of a failure model, p10-p90 coverage of an RUL
    model; the test of `significant_drop`), else promoted; with too few labelled events to
    tell, promoted on the offline comparison that made it a candidate, and the reason says so."""
    rows = list(pairs)
    metrics: dict[str, float] = {"live_shared_requests": float(len(rows))}
    worse: list[str | None]
    if task == "failure":
        scored = [
            ScoredPrediction(r["asset_id"], r["as_of"], task, who, float(r[f"{k}_p"]),
                             float(r[f"{k}_t"]) if r.get(f"{k}_t") is not None else 0.5)
            for r in rows
            for who, k in (("champion", "c"), ("challenger", "s"))
            if r.get(f"{k}_p") is not None
        ]  # fmt: skip
        found = {v.version: v for v in live_performance(scored, outcomes, horizon, now)}
        c, s = found.get("champion"), found.get("challenger")
        if c is None or s is None:
            return LiveVerdict(True, _offline(len(rows), "no scored pairs"), metrics)
        for who, v in (("champion", c), ("challenger", s)):
            for measure in ("recall", "precision"):
                value = getattr(v, measure)
                if value is not None:
                    metrics[f"live_{who}_{measure}"] = value
        events = max(s.failures, min(s.alarms_judged, c.alarms_judged))
        worse = [
            significant_drop("recall", (c.caught, c.failures), (s.caught, s.failures),
                             min_events, alpha),
            significant_drop("precision", (c.true_alarms, c.alarms_judged),
                             (s.true_alarms, s.alarms_judged), min_events, alpha),
        ]  # fmt: skip
        enough = events >= min_events
        shown = (
            f"recall {_f(c.recall)} -> {_f(s.recall)}, "
            f"precision {_f(c.precision)} -> {_f(s.precision)}"
        )
    else:
        band = [
            RulPrediction(r["asset_id"], r["as_of"], task, who, float(r[f"{k}_p10"]),
                          float(r[f"{k}_p50"]), float(r[f"{k}_p90"]))
            for r in rows
            for who, k in (("champion", "c"), ("challenger", "s"))
            if None not in (r.get(f"{k}_p10"), r.get(f"{k}_p50"), r.get(f"{k}_p90"))
        ]  # fmt: skip
        found_r = {v.version: v for v in rul_performance(band, outcomes)}
        cr, sr = found_r.get("champion"), found_r.get("challenger")
        if cr is None or sr is None:
            return LiveVerdict(True, _offline(len(rows), "no scored pairs"), metrics)
        for who, vr in (("champion", cr), ("challenger", sr)):
            if vr.coverage is not None and vr.mae_h is not None:
                metrics[f"live_{who}_rul_coverage"] = vr.coverage
                metrics[f"live_{who}_rul_mae_h"] = vr.mae_h
        events = sr.judged
        worse = [
            significant_drop("RUL p10-p90 coverage", (cr.covered, cr.judged),
                             (sr.covered, sr.judged), min_events, alpha)
        ]  # fmt: skip
        enough = sr.judged >= min_events
        shown = (
            f"RUL coverage {_f(cr.coverage)} -> {_f(sr.coverage)}, "
            f"MAE {_f(cr.mae_h)} -> {_f(sr.mae_h)} h"
        )
    reasons = [w for w in worse if w]
    if reasons:
        return LiveVerdict(
            False,
            f"kept: live on {len(rows)} shared requests the challenger is worse: "
            + "; ".join(reasons),
            metrics,
        )
    if not enough:
        return LiveVerdict(
            True, _offline(len(rows), f"{events} labelled events < {min_events}"), metrics
        )
    return LiveVerdict(
        True,
        f"promoted: live on {len(rows)} shared requests the challenger is not significantly "
        f"worse ({shown}, champion -> challenger)",
        metrics,
    )


def _offline(shared: int, why: str) -> str:
    return (
        f"promoted on the offline comparison: too little live evidence on {shared} shared "
        f"requests to judge ({why})"
    )


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


Key = tuple[str, str, PerformanceRole]  # model, version, role


@dataclass(frozen=True, slots=True)
class Window:
    """The look-back `[since, now)` and where its recent part starts."""

    since: datetime
    recent_from: datetime
    now: datetime
    horizon: timedelta


def evaluate(
    predictions: list[ScoredPrediction],
    rul_predictions: list[RulPrediction],
    outcomes: list[Outcome],
    window: Window,
    *,
    min_events: int,
    alpha: float,
) -> list[LivePerformance]:
    """The stored rows of one computation: per version and role, the whole look-back
    (`all`) and its recent part (`recent`, `degraded` when it dropped significantly
    against the part before it)."""
    w = window

    def part(
        lo: datetime, hi: datetime
    ) -> tuple[dict[Key, VersionPerformance], dict[Key, RulPerformance]]:
        fp = [p for p in predictions if lo <= p.as_of < hi]
        rp = [p for p in rul_predictions if lo <= p.as_of < hi]
        return (
            {
                (v.model, v.version, v.role): v
                for v in live_performance(fp, outcomes, w.horizon, w.now)
            },
            {(v.model, v.version, v.role): v for v in rul_performance(rp, outcomes)},
        )

    spans: dict[PerformanceSpan, tuple[dict[Key, VersionPerformance], dict[Key, RulPerformance]]]
    spans = {"all": part(w.since, w.now), "recent": part(w.recent_from, w.now)}
    before_f, before_r = part(w.since, w.recent_from)
    rows: list[LivePerformance] = []
    for span, (failure, rul) in spans.items():
        start = w.since if span == "all" else w.recent_from
        for key in sorted(set(failure) | set(rul)):
            f, r = failure.get(key), rul.get(key)
            reasons: list[str] = []
            if span == "recent":
                b, br = before_f.get(key), before_r.get(key)
                if f is not None and b is not None:
                    reasons += [
                        f"dropped: {why}"
                        for why in (
                            significant_drop(
                                "precision", (b.true_alarms, b.alarms_judged),
                                (f.true_alarms, f.alarms_judged), min_events, alpha,
                            ),
                            significant_drop(
                                "recall", (b.caught, b.failures), (f.caught, f.failures),
                                min_events, alpha,
                            ),
                        )
                        if why
                    ]  # fmt: skip
                if r is not None and br is not None:
                    why = significant_drop(
                        "RUL p10-p90 coverage", (br.covered, br.judged), (r.covered, r.judged),
                        min_events, alpha,
                    )  # fmt: skip
                    reasons += [f"dropped: {why}"] if why else []
            model, version, role = key
            rows.append(
                LivePerformance(
                    model_name=model,
                    model_version=version,
                    role=role,
                    span=span,
                    computed_at=w.now,
                    window_start=start,
                    window_end=w.now,
                    horizon_h=w.horizon.total_seconds() / 3600,
                    predictions=(f.predictions if f else 0) + (r.predictions if r else 0),
                    alarms=f.alarms if f else None,
                    alarms_judged=f.alarms_judged if f else None,
                    true_alarms=f.true_alarms if f else None,
                    failures=f.failures if f else None,
                    caught=f.caught if f else None,
                    precision=f.precision if f else None,
                    recall=f.recall if f else None,
                    lead_h_median=f.lead_h_median if f else None,
                    lead_h_mean=f.lead_h_mean if f else None,
                    rul_judged=r.judged if r else None,
                    rul_mae_h=r.mae_h if r else None,
                    rul_bias_h=r.bias_h if r else None,
                    rul_coverage=r.coverage if r else None,
                    degraded=bool(reasons),
                    reason="; ".join(reasons) or None,
                )
            )
    return rows


def _failures(outcomes: Iterable[Outcome]) -> dict[str, list[datetime]]:
    """Found failures per asset, sorted."""
    failures: dict[str, list[datetime]] = {}
    for o in outcomes:
        if o.failure_found:
            failures.setdefault(o.asset_id, []).append(o.at)
    for times in failures.values():
        times.sort()
    return failures


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
