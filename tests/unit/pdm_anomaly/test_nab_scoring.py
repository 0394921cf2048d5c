"""NAB scoring on hand-made windows whose raw score can be worked out on paper, plus the
published facts about the shared machine_temperature file (PROVENANCE.md)."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta

import pytest

from pdm_anomaly.nab_scoring import (
    PROFILES,
    REWARD_LOW_FN,
    REWARD_LOW_FP,
    STANDARD,
    Window,
    check_windows,
    normalise,
    null_raw,
    optimise_threshold,
    perfect_raw,
    probation_length,
    row_values,
    scaled_sigmoid,
    score_at_threshold,
    score_detections,
    window_rows,
)
from tests.datasets import DATA_DIR, require

NAB = DATA_DIR / "nab"
FILE = "machine_temperature_system_failure.csv"

# 100 rows: 15 probationary, one window of width 10 at rows 40..49.
N = 100
WIN: list[Window] = [(40, 49)]
S1 = scaled_sigmoid(-1.0)


def hits(*rows: int, n: int = N) -> list[bool]:
    return [i in rows for i in range(n)]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_scaled_sigmoid_matches_the_published_points():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == pytest.approx(2 * sig(-15) - 1)
    assert scaled_sigmoid(3.0001) == -1.0


def test_probation_is_15_percent_capped_at_750_rows():
    assert probation_length(100) == 15
    assert probation_length(4999) == 749
    assert probation_length(22695) == 750


def test_detection_at_the_left_edge_is_worth_a_tp():
    for profile in PROFILES:
        assert score_detections(hits(40), WIN, profile).raw == pytest.approx(profile.a_tp)


def test_detection_at_the_right_edge_is_worth_almost_nothing():
    r = score_detections(hits(49), WIN, STANDARD)
    assert r.raw == pytest.approx((2 * sig(5 * 0.1) - 1) / S1)  # pos = -1/W = -0.1
    wide = score_detections(hits(159, n=300), [(60, 159)], STANDARD)  # W = 100
    assert wide.raw == pytest.approx((2 * sig(0.05) - 1) / S1)
    assert 0.0 < wide.raw < 0.03


def test_fp_before_any_window_costs_a_full_fp_and_the_window_is_missed():
    r = score_detections(hits(20), WIN, STANDARD)
    assert r.raw == pytest.approx(-0.11 - 1.0)
    assert (r.fp_rows, r.tp_rows, r.windows_detected) == (1, 0, 0)
    assert score_detections(hits(20), WIN, REWARD_LOW_FP).raw == pytest.approx(-0.22 - 1.0)


def test_fp_right_after_a_window_costs_almost_nothing_and_far_after_a_full_fp():
    just_after = score_detections(hits(40, 50), WIN, STANDARD)
    y = 1 / 9  # |i - R| / (W - 1)
    assert just_after.raw == pytest.approx(1.0 + 0.11 * (2 * sig(-5 * y) - 1))
    wide = score_detections(hits(60, 160, n=300), [(60, 159)], STANDARD)  # y = 1/99
    assert -0.003 < wide.raw - 1.0 < 0.0
    far = score_detections(hits(40, 90), WIN, STANDARD)  # y = 41/9 > 3
    assert far.raw == pytest.approx(1.0 - 0.11)


def test_missed_window_costs_a_fn():
    assert score_detections(hits(), WIN, STANDARD).raw == -1.0
    assert score_detections(hits(), WIN, REWARD_LOW_FN).raw == -2.0
    two = score_detections(hits(35, 40, n=200), [(40, 49), (150, 159)], STANDARD)
    assert two.raw == pytest.approx(-0.11 + 1.0 - 1.0)


def test_only_the_earliest_detection_of_a_window_counts_but_every_row_is_a_tp_row():
    r = score_detections(hits(45, 42, 47), WIN, STANDARD)
    assert r.raw == pytest.approx(scaled_sigmoid(-(49 - 42 + 1) / 10) / S1)
    assert (r.tp_rows, r.windows_detected) == (3, 1)


def test_every_fp_row_counts():
    r = score_detections(hits(40, 90, 91, 92), WIN, STANDARD)
    assert r.raw == pytest.approx(1.0 - 3 * 0.11)
    assert r.fp_rows == 3


def test_probationary_rows_are_ignored():
    r = score_detections(hits(0, 5, 14, 40), WIN, STANDARD)
    assert r.raw == pytest.approx(1.0)
    assert r.fp_rows == 0
    assert score_detections(hits(15, 40), WIN, STANDARD).fp_rows == 1


def test_normalisation_puts_null_at_0_and_perfect_at_100():
    for profile in PROFILES:
        assert normalise(null_raw(4, profile), 4, profile) == 0.0
        assert normalise(perfect_raw(4, profile), 4, profile) == 100.0
    assert normalise(2.556, 4, STANDARD) == pytest.approx(81.95)
    assert score_detections(hits(40), WIN, STANDARD).normalised == pytest.approx(100.0)


def test_windows_inside_probation_or_overlapping_are_rejected():
    with pytest.raises(ValueError):
        check_windows([(10, 20)], N)
    with pytest.raises(ValueError):
        check_windows([(40, 50), (50, 60)], N)
    with pytest.raises(ValueError):
        check_windows([(40, 100)], N)


def test_threshold_means_score_at_or_above():
    scores = [0.0] * N
    scores[40] = 0.5
    assert score_at_threshold(scores, 0.5, WIN, STANDARD).raw == pytest.approx(1.0)
    assert score_at_threshold(scores, 0.50001, WIN, STANDARD).raw == -1.0


def reference_raw(
    scores: list[float], thr: float, windows: list[Window], a: tuple[float, float, float]
) -> float:
    """An independent row-by-row walk, as NAB's sweeper walks a file."""
    a_tp, a_fp, a_fn = a
    n = len(scores)
    total, best = 0.0, dict[int, float]()
    for i in range(probation_length(n), n):
        win = next((k for k, (lo, hi) in enumerate(windows) if lo <= i <= hi), None)
        if win is not None:
            lo, hi = windows[win]
            value = a_tp * scaled_sigmoid(-(hi - i + 1) / (hi - lo + 1)) / S1
            if scores[i] >= thr:
                best[win] = max(best.get(win, -math.inf), value)
            continue
        ended = [(lo, hi) for lo, hi in windows if hi < i]
        if scores[i] >= thr:
            if not ended:
                total -= a_fp
            else:
                lo, hi = ended[-1]
                total += a_fp * scaled_sigmoid((i - hi) / (hi - lo))
    return total + sum(best.get(k, -a_fn) for k in range(len(windows)))


def test_scores_agree_with_a_row_by_row_walk_on_random_detectors():
    rng = random.Random(7)
    windows: list[Window] = [(60, 89), (150, 179), (300, 329)]
    for _ in range(20):
        scores = [rng.random() ** 8 for _ in range(400)]
        thr = rng.choice(scores[60:])
        for p in PROFILES:
            got = score_at_threshold(scores, thr, windows, p).raw
            assert got == pytest.approx(
                reference_raw(scores, thr, windows, (p.a_tp, p.a_fp, p.a_fn))
            )


def test_the_optimiser_finds_the_best_threshold_among_the_scores():
    rng = random.Random(3)
    windows: list[Window] = [(60, 89), (150, 179), (300, 329)]
    for _ in range(10):
        scores = [round(rng.random() ** 4, 2) for _ in range(400)]
        for p in PROFILES:
            best = optimise_threshold(scores, windows, p)
            brute = max(score_at_threshold(scores, t, windows, p).raw for t in set(scores))
            assert best.raw == pytest.approx(max(brute, null_raw(3, p)))
            assert best.raw == pytest.approx(
                score_at_threshold(scores, best.threshold, windows, p).raw
            )


def test_the_optimiser_returns_never_detect_when_every_threshold_loses():
    scores = [0.0] * N
    scores[20] = 1.0  # a lone FP before the window
    best = optimise_threshold(scores, WIN, STANDARD)
    assert math.isinf(best.threshold) and best.raw == -1.0 and best.fp_rows == 0


def test_row_values_follow_the_spec_between_two_windows():
    values = row_values(200, [(40, 49), (150, 159)], STANDARD)
    assert values[20] == -0.11
    assert values[40] == pytest.approx(1.0)
    assert values[100] == pytest.approx(0.11 * scaled_sigmoid(51 / 9))  # = -0.11, beyond 3 widths
    assert values[51] == pytest.approx(0.11 * scaled_sigmoid(2 / 9))


# ---- the real file (published facts from PROVENANCE.md) ----


@pytest.fixture(scope="module")
def real() -> tuple[list[datetime], list[Window]]:
    require(NAB / FILE)
    with (NAB / FILE).open() as fh:
        next(fh)
        stamps = [datetime.fromisoformat(line.split(",")[0]) for line in fh]
    spans = json.loads((NAB / "combined_windows.json").read_text())[f"realKnownCause/{FILE}"]
    edges = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in spans]
    return stamps, window_rows(stamps, edges)


def test_real_file_windows_sit_where_provenance_says(real):
    stamps, windows = real
    assert len(stamps) == 22695 and probation_length(len(stamps)) == 750
    assert windows == [(2126, 2692), (3703, 4269), (16057, 16623), (19232, 19798)]
    assert {hi - lo + 1 for lo, hi in windows} == {567}
    backwards = [i for i in range(1, len(stamps)) if stamps[i] <= stamps[i - 1]]
    assert [stamps[i] - stamps[i - 1] for i in backwards] == [timedelta(minutes=-55)]


def test_null_detector_on_the_real_file_scores_minus_4_and_0(real):
    stamps, windows = real
    for p, raw in ((STANDARD, -4.0), (REWARD_LOW_FP, -4.0), (REWARD_LOW_FN, -8.0)):
        r = score_at_threshold([0.0] * len(stamps), 0.5, windows, p)
        assert (r.raw, r.normalised, r.tp_rows, r.fp_rows) == (raw, 0.0, 0, 0)


def test_perfect_detector_on_the_real_file_scores_4_and_100(real):
    stamps, windows = real
    scores = [0.0] * len(stamps)
    for lo, _ in windows:
        scores[lo] = 1.0
    r = score_at_threshold(scores, 0.5, windows, STANDARD)
    assert r.raw == pytest.approx(4.0) and r.normalised == pytest.approx(100.0)
    assert r.window_scores == pytest.approx((1.0,) * 4)


def test_published_arTime_row_normalises_as_provenance_derives_it():
    # ARTime: raw 2.556 → norm 82.0; numentaTM 1.584 → 69.8; contextOSE -0.165 → 47.9
    for raw, norm in ((2.556, 82.0), (1.584, 69.8), (-0.165, 47.9), (-4.0, 0.0)):
        assert normalise(raw, 4, STANDARD) == pytest.approx(norm, abs=0.05)
