"""Live performance per model version: precision and recall at the horizon, lead time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pdm_drift.performance import Outcome, ScoredPrediction, from_rows, live_performance

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=24)


def p(asset: str, h: float, prob: float, version: str = "1") -> ScoredPrediction:
    return ScoredPrediction(asset, T0 + timedelta(hours=h), "failure-pump", version, prob, 0.5)


def test_precision_recall_and_lead_time_per_version() -> None:
    predictions = [
        p("a", 0, 0.9),  # true alarm: a fails at 10 h
        p("a", 5, 0.8),
        p("b", 0, 0.7),  # false alarm: b never fails, horizon over
        p("c", 0, 0.1),  # c fails at 20 h unalarmed: a miss
        p("d", 100, 0.9),  # horizon not over, no failure yet: not judged
        p("a", 0, 0.2, version="2"),
    ]
    outcomes = [
        Outcome("a", T0 + timedelta(hours=10), True),
        Outcome("c", T0 + timedelta(hours=20), True),
        Outcome("b", T0 + timedelta(hours=30), False),  # inspected, nothing found
        Outcome("z", T0 + timedelta(hours=5), True),  # never scored: not counted
    ]
    v1, v2 = live_performance(predictions, outcomes, H, now=T0 + timedelta(hours=110))
    assert (v1.version, v1.predictions, v1.alarms, v1.alarms_judged) == ("1", 5, 4, 3)
    assert v1.true_alarms == 2 and v1.precision == pytest.approx(2 / 3)
    assert (v1.failures, v1.caught, v1.recall) == (2, 1, 0.5)
    assert v1.lead_h_median == pytest.approx(10.0)
    assert (v2.version, v2.alarms, v2.precision, v2.failures, v2.recall) == ("2", 0, None, 1, 0)
    assert v2.lead_h_median is None


def test_rows_from_the_store() -> None:
    preds, outcomes = from_rows(
        [
            {
                "asset_id": "a",
                "as_of": T0,
                "failure_model": "failure-pump",
                "failure_model_version": 3,
                "failure_probability": 0.6,
                "threshold": None,
            }
        ],
        [{"asset_id": "a", "occurred_at": T0 + H / 2, "failure_found": True}],
    )
    assert preds[0].version == "3" and preds[0].threshold == 0.5
    (perf,) = live_performance(preds, outcomes, H, now=T0)
    assert perf.recall == 1.0 and perf.lead_h_median == pytest.approx(12.0)
