"""Per-asset evaluation: duplicates and late readings are not scored twice, warm-up readies
detectors, limits and ongoing excursions feed the alarm book correctly."""

from __future__ import annotations

import random

from pdm_anomaly.models import detector_factory
from pdm_anomaly.state import AssetState, evaluate, warm_up
from pdm_ml.detectors.limits import default_limits

MAKE = detector_factory()(None)
LIMITS = default_limits()["pump"]


def healthy(n: int, start: float = 0.0) -> list[tuple[str, float, float]]:
    rng = random.Random(1)
    return [("temperature", start + i, 60 + rng.gauss(0, 0.5)) for i in range(n)]


def test_warm_up_readies_detectors_and_sets_last_seen():
    state = AssetState()
    n = warm_up(state, healthy(600), MAKE)
    assert n == 600
    assert state.detectors["temperature"].ready
    assert state.last_ts["temperature"] == 599


def test_duplicate_and_out_of_order_readings_are_not_scored_again():
    state = AssetState()
    warm_up(state, healthy(600), MAKE)
    first = evaluate(state, 600.0, {"temperature": 60.1}, make_detector=MAKE, limits={}, model=None)
    assert [c for c, _ in first] == ["temperature:univariate"]
    assert (
        evaluate(state, 600.0, {"temperature": 99.0}, make_detector=MAKE, limits={}, model=None)
        == []
    )
    assert (
        evaluate(state, 550.0, {"temperature": 99.0}, make_detector=MAKE, limits={}, model=None)
        == []
    )


def test_spike_scores_and_an_ongoing_excursion_stays_anomalous():
    state = AssetState()
    warm_up(state, healthy(600), MAKE)
    out = evaluate(state, 600.0, {"temperature": 90.0}, make_detector=MAKE, limits={}, model=None)
    [(condition, score)] = out
    assert condition == "temperature:univariate" and score.severity is not None
    assert score.contributors == {"temperature": 1.0}
    # the level stays away: the detector holds its score, the alarm must not look quiet
    later = evaluate(state, 601.0, {"temperature": 90.0}, make_detector=MAKE, limits={}, model=None)
    assert later[0][1].severity is not None


def test_detector_not_ready_gives_no_univariate_opinion_but_limits_apply():
    state = AssetState()
    out = evaluate(state, 0.0, {"vibration": 9.0}, make_detector=MAKE, limits=LIMITS, model=None)
    assert [(c, s.severity) for c, s in out] == [("vibration:limit", "critical")]
    calm = evaluate(state, 1.0, {"vibration": 1.0}, make_detector=MAKE, limits=LIMITS, model=None)
    assert [(c, s.severity) for c, s in calm] == [("vibration:limit", None)]
