"""The univariate detector: raises on spikes, shifts, drifts and stuck sensors, stays quiet on
healthy noise, and is causal, deterministic and restartable from its state. Speed is measured
by bench/nab.py, not asserted here."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence

import pytest

from pdm_ml.detectors.base import Score
from pdm_ml.detectors.univariate import (
    UnivariateConfig,
    UnivariateDetector,
    gaussian_nlp,
)

STEP = 60.0  # seconds between readings


def noise(n: int, seed: int, sigma: float = 1.0, mean: float = 20.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sigma) for _ in range(n)]


def run(
    values: Sequence[float], det: UnivariateDetector | None = None, t0: float = 0.0
) -> tuple[list[Score], UnivariateDetector]:
    det = det or UnivariateDetector(sensor="temperature")
    return [det.update(t0 + i * STEP, v) for i, v in enumerate(values)], det


def alarms(scores: Sequence[Score], start: int = 0) -> list[int]:
    return [i for i, s in enumerate(scores) if i >= start and s.severity is not None]


def test_defaults_are_fixed_a_priori():
    c = UnivariateConfig()
    assert c.threshold == pytest.approx(0.5)  # p = 1e-5
    scores, det = run(noise(600, 1))
    assert det.ready and det.threshold == 0.5
    assert all(0.0 <= s.value <= 1.0 and s.threshold == 0.5 for s in scores)
    assert scores[-1].contributors == {"temperature": 1.0}
    assert scores[-1].detector == "univariate"


def test_nothing_is_emitted_before_warm_up():
    values = noise(600, 2)
    values[100] += 50.0
    scores, _ = run(values)
    assert all(s.value == 0.0 and s.severity is None for s in scores[:512])


def test_a_spike_raises_at_once():
    values = noise(3000, 3)
    values[2500] += 10.0
    scores, det = run(values[:2501])
    assert alarms(scores, 600) == [2500]
    assert det.kind == "jump" and scores[2500].value >= 0.5


def test_a_level_shift_raises_within_a_few_readings():
    values = noise(3000, 4) + noise(3000, 5, mean=25.0)  # +5 σ
    scores, _ = run(values)
    first = alarms(scores, 600)
    assert first and 3000 <= first[0] <= 3020
    _, det = run(values[: first[0] + 1])
    assert det.kind == "level" and det.in_excursion


def test_a_slow_drift_raises_eventually():
    values = noise(8000, 6)
    for i in range(3000, 8000):
        values[i] += 0.01 * (i - 3000)  # 1 σ per 100 readings
    scores, _ = run(values)
    first = alarms(scores, 600)
    assert first and 3000 < first[0] < 4000


def test_a_stuck_sensor_raises():
    values = noise(3000, 7)
    values += [values[-1]] * 30
    scores, det = run(values)
    assert alarms(scores, 600) and 3000 < alarms(scores, 600)[0] <= 3010
    assert det.kind == "stuck"


@pytest.mark.parametrize("seed", [11, 12])
def test_healthy_gaussian_noise_almost_never_alarms(seed: int):
    scores, _ = run(noise(100_000, seed))
    assert len(alarms(scores)) <= 2  # measured: 0 per 100k readings on several seeds


def test_healthy_seasonal_noise_with_a_trend_almost_never_alarms():
    rng = random.Random(13)
    values = [
        50 + 10 * math.sin(2 * math.pi * i / 288) + 1e-4 * i + rng.gauss(0, 1)
        for i in range(100_000)
    ]
    scores, _ = run(values)
    assert len(alarms(scores)) <= 2


def test_one_long_anomaly_is_one_alarm_and_escalations_not_a_flood():
    values = noise(3000, 14) + noise(2000, 15, mean=40.0)  # +20 σ, held
    scores, det = run(values)
    raised = alarms(scores, 600)
    assert 1 <= len(raised) <= 4  # opened, then at most one row per higher severity
    severities = [scores[i].severity for i in raised]
    assert severities == sorted(severities, key=["warning", "minor", "major", "critical"].index)
    held = [s.value for i, s in enumerate(scores) if i > raised[-1] and det.in_excursion]
    assert all(v < 0.5 for v in held)


def test_a_constant_signal_is_quiet_and_the_first_tiny_change_does_not_scream():
    scores, det = run([5.0] * 3000 + [5.0 + 1e-9] + [5.0] * 100 + [5.0 + 1e-9] * 1000)
    assert alarms(scores) == [] and det.ready
    scores, _ = run([0.0] * 3000 + noise(2000, 16, sigma=1e-3, mean=0.0))
    assert alarms(scores) == []


def test_a_constant_sensor_that_starts_to_move_learns_its_scale():
    scores, _ = run([5.0] * 3000 + noise(3000, 17, sigma=0.01, mean=5.0))
    assert alarms(scores) == []


def slow_wave(n: int, seed: int, gap_at: int, gap: int) -> tuple[list[float], list[float]]:
    """A slow sine plus noise, sampled every STEP except for one gap of `gap` steps."""
    rng = random.Random(seed)
    times, values, k = [], [], 0
    for i in range(n):
        k += gap if i == gap_at else 1
        times.append(k * STEP)
        values.append(10 * math.sin(2 * math.pi * k / 500) + rng.gauss(0, 0.2))
    return times, values


def test_a_gap_widens_the_expected_jump():
    times, values = slow_wave(6000, 18, gap_at=5000, gap=60)
    det = UnivariateDetector()
    assert [
        i for i, (t, v) in enumerate(zip(times, values, strict=True)) if det.update(t, v).severity
    ] == []
    # the same readings on a regular clock: the step across the gap is a genuine jump
    scores, _ = run(values)
    assert 5000 in alarms(scores)


def test_a_backward_clock_step_is_taken_as_one_regular_step():
    times, values = slow_wave(6000, 25, gap_at=-1, gap=1)
    times = [t - 55 * STEP if i >= 5000 else t for i, t in enumerate(times)]
    det = UnivariateDetector()
    assert [
        i for i, (t, v) in enumerate(zip(times, values, strict=True)) if det.update(t, v).severity
    ] == []


def test_scores_are_causal():
    values = noise(3000, 19)
    prefix, _ = run(values[:2000])
    other = values[:2000] + [v + 100.0 for v in values[2000:]]
    full, _ = run(other)
    assert [s.value for s in full[:2000]] == [s.value for s in prefix]


def test_scores_are_deterministic():
    values = noise(3000, 20)
    values[2500] += 20
    a, _ = run(values)
    b, _ = run(values)
    assert a == b


def test_state_round_trips_through_json_and_resumes_identically():
    values = noise(4000, 21)
    values[3500] += 15.0
    _, det = run(values[:3000])
    saved = json.loads(json.dumps(det.state()))
    assert len(json.dumps(saved)) < 2000
    restored = UnivariateDetector.from_state(saved)
    a = [det.update(3000 * STEP + i * STEP, v) for i, v in enumerate(values[3000:])]
    b = [restored.update(3000 * STEP + i * STEP, v) for i, v in enumerate(values[3000:])]
    assert a == b and alarms(a)
    assert det.state() == restored.state()


def test_warm_learns_without_reporting():
    values = noise(1000, 22)
    values[700] += 30.0
    det = UnivariateDetector()
    det.warm(values[:900], [i * STEP for i in range(900)])
    assert det.ready and not det.in_excursion
    assert det.update(900 * STEP, values[900]).severity is None


def test_scale_invariance():
    values = noise(3000, 23)
    values[2500] += 10.0
    a, _ = run(values)
    b, _ = run([1e6 + 1e-3 * v for v in values])
    assert alarms(a) == alarms(b)


def test_bigger_deviations_get_higher_severity():
    order = ["warning", "minor", "major", "critical"]
    ranks = []
    for size in (6.0, 12.0, 60.0):
        values = noise(3000, 24)
        values[2500] += size
        scores, _ = run(values[:2501])
        ranks.append(order.index(scores[2500].severity or "warning"))
    assert ranks == sorted(ranks) and ranks[-1] == 3


def test_gaussian_nlp_is_continuous_and_monotone():
    assert gaussian_nlp(0.0) == 0.0
    assert gaussian_nlp(4.417) == pytest.approx(5.0, abs=0.01)
    assert gaussian_nlp(8.0 - 1e-9) == pytest.approx(gaussian_nlp(8.0), rel=1e-3)
    assert gaussian_nlp(40.0) > gaussian_nlp(20.0) > gaussian_nlp(8.0)


def test_config_is_validated():
    with pytest.raises(ValueError):
        UnivariateConfig(alarm_p=1e-2, rearm_p=1e-3)
    with pytest.raises(ValueError):
        UnivariateConfig(smoothing=0)
