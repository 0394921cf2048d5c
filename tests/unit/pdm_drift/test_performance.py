"""Live performance per model version: precision and recall at the horizon, lead time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pdm_drift.performance import (
    Outcome,
    RulPrediction,
    ScoredPrediction,
    Window,
    compare_live,
    evaluate,
    from_rows,
    live_performance,
    rul_from_rows,
    rul_performance,
    significant_drop,
)

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


def test_rul_error_and_coverage_on_uncensored_predictions_only() -> None:
    def r(asset: str, h: float, p10: float, p50: float, p90: float) -> RulPrediction:
        return RulPrediction(asset, T0 + timedelta(hours=h), "rul-pump", "2", p10, p50, p90)

    predictions = [
        r("a", 0, 5, 10, 15),  # fails at 12 h: error -2, covered
        r("a", 6, 1, 2, 3),  # 6 h left: error -4, not covered
        r("b", 0, 1, 2, 3),  # b never fails: censored
    ]
    outcomes = [Outcome("a", T0 + timedelta(hours=12), True)]
    (perf,) = rul_performance(predictions, outcomes)
    assert (perf.predictions, perf.judged, perf.covered) == (3, 2, 1)
    assert perf.mae_h == pytest.approx(3.0) and perf.bias_h == pytest.approx(-3.0)
    assert perf.coverage == 0.5


def test_a_drop_is_significant_only_with_enough_events() -> None:
    assert significant_drop("recall", (18, 20), (6, 20), 10, 0.01) is not None
    assert significant_drop("recall", (18, 20), (3, 5), 10, 0.01) is None  # too few recent
    assert significant_drop("recall", (18, 20), (16, 20), 10, 0.01) is None  # not significant
    assert significant_drop("recall", (10, 20), (15, 20), 10, 0.01) is None  # a rise
    why = significant_drop("precision", (45, 50), (10, 40), 10, 0.01)
    assert why is not None and why.startswith("precision 0.90 (45/50) -> 0.25 (10/40)")


def test_evaluate_marks_a_recent_drop_and_keeps_shadow_scores_apart() -> None:
    """30 failures, one a day: the version caught all of them until 5 days ago and none
    since; its shadow challenger caught the recent ones."""
    now = T0 + timedelta(days=30)
    predictions: list[ScoredPrediction] = []
    outcomes = []
    for day in range(30):
        fails = T0 + timedelta(days=day, hours=12)
        outcomes.append(Outcome(f"m{day}", fails, True))
        recent = day >= 25
        for h in (1, 6):
            as_of = fails - timedelta(hours=h)
            predictions.append(
                ScoredPrediction(f"m{day}", as_of, "failure-pump", "1", 0.1 if recent else 0.9, 0.5)
            )
            predictions.append(
                ScoredPrediction(f"m{day}", as_of, "failure-pump", "2", 0.9, 0.5, role="shadow")
            )
    window = Window(T0, now - timedelta(days=5), now, H)
    rows = evaluate(predictions, [], outcomes, window, min_events=5, alpha=0.01)
    by = {(r.model_version, r.role, r.span): r for r in rows}
    assert set(by) == {(v, role, span) for v, role in (("1", "served"), ("2", "shadow"))
                       for span in ("all", "recent")}  # fmt: skip
    served_recent = by[("1", "served", "recent")]
    assert served_recent.degraded and served_recent.recall == 0.0
    assert (
        served_recent.reason is not None
        and "dropped: recall 1.00 (25/25) -> 0.00" in served_recent.reason
    )
    assert not by[("1", "served", "all")].degraded and by[
        ("1", "served", "all")
    ].recall == pytest.approx(25 / 30)
    assert (
        by[("2", "shadow", "recent")].recall == 1.0 and not by[("2", "shadow", "recent")].degraded
    )
    assert by[("1", "served", "recent")].window_start == now - timedelta(days=5)


def test_rows_carry_their_role_and_skip_rows_without_a_failure_model() -> None:
    row = {
        "asset_id": "a",
        "as_of": T0,
        "failure_model": "failure-pump",
        "failure_model_version": "4",
        "failure_probability": 0.7,
        "threshold": 0.4,
        "rul_model": "rul-pump",
        "rul_model_version": "5",
        "rul_p10": 1.0,
        "rul_p50": 2.0,
        "rul_p90": 3.0,
        "rul_unit": "hours",
        "role": "shadow",
    }
    cycles = row | {"rul_unit": "cycles", "failure_model": None}
    preds, _ = from_rows([row, cycles], [])
    assert [(p.version, p.role) for p in preds] == [("4", "shadow")]
    assert [(p.version, p.role) for p in rul_from_rows([row, cycles])] == [("5", "shadow")]


def pair(asset: str, h: float, champion: float, challenger: float) -> dict:
    as_of = T0 + timedelta(hours=h)
    return {
        "asset_id": asset,
        "as_of": as_of,
        "c_p": champion,
        "c_t": 0.5,
        "s_p": challenger,
        "s_t": 0.5,
    }


def test_a_challenger_worse_on_the_same_requests_is_kept() -> None:
    """20 failures: the champion alarmed all of them, the challenger 2."""
    pairs = [pair(f"m{i}", 0, 0.9, 0.9 if i < 2 else 0.1) for i in range(20)]
    outcomes = [Outcome(f"m{i}", T0 + timedelta(hours=5), True) for i in range(20)]
    verdict = compare_live(
        "failure", pairs, outcomes, H, T0 + timedelta(days=2), min_events=10, alpha=0.01
    )
    assert not verdict.promote and verdict.reason.startswith("kept: live on 20 shared requests")
    assert "recall 1.00 (20/20) -> 0.10 (2/20)" in verdict.reason
    assert (
        verdict.metrics["live_champion_recall"] == 1.0
        and verdict.metrics["live_challenger_recall"] == 0.1
    )


def test_a_challenger_as_good_is_promoted_and_too_little_evidence_defers_to_offline() -> None:
    pairs = [pair(f"m{i}", 0, 0.9, 0.8) for i in range(20)]
    outcomes = [Outcome(f"m{i}", T0 + timedelta(hours=5), True) for i in range(20)]
    now = T0 + timedelta(days=2)
    good = compare_live("failure", pairs, outcomes, H, now, min_events=10, alpha=0.01)
    assert good.promote and good.reason.startswith("promoted: live on 20 shared requests")
    few = compare_live("failure", pairs[:3], outcomes, H, now, min_events=10, alpha=0.01)
    assert few.promote and few.reason.startswith("promoted on the offline comparison")
    assert "3 labelled events < 10" in few.reason
    none = compare_live("failure", [], outcomes, H, now, min_events=10, alpha=0.01)
    assert none.promote and none.metrics == {"live_shared_requests": 0.0}


def test_an_rul_challenger_whose_band_misses_is_kept() -> None:
    def rul(
        asset: str, champion: tuple[float, float, float], challenger: tuple[float, float, float]
    ) -> dict:
        row: dict = {"asset_id": asset, "as_of": T0}
        for prefix, band in (("c", champion), ("s", challenger)):
            row |= {f"{prefix}_p10": band[0], f"{prefix}_p50": band[1], f"{prefix}_p90": band[2]}
        return row

    pairs = [rul(f"m{i}", (5, 10, 15), (50, 60, 70)) for i in range(15)]
    outcomes = [Outcome(f"m{i}", T0 + timedelta(hours=10), True) for i in range(15)]
    verdict = compare_live("rul", pairs, outcomes, H, T0, min_events=10, alpha=0.01)
    assert (
        not verdict.promote and "RUL p10-p90 coverage 1.00 (15/15) -> 0.00 (0/15)" in verdict.reason
    )
    assert verdict.metrics["live_challenger_rul_mae_h"] == 50.0
