"""Risk = probability x consequence, the 5x5 matrix (defaults, configuration, validation),
asset ranking, and Pareto analysis of failure modes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdm_reliability.risk import (
    DEFAULT_MATRIX,
    LEVELS,
    RiskMatrix,
    assess_risk,
    pareto,
    pareto_counts,
    rank_assets,
)


def test_default_levels_are_the_documented_grid() -> None:
    short = {"low": "L", "medium": "M", "high": "H", "extreme": "E"}
    picture = [" ".join(short[level] for level in row) for row in reversed(DEFAULT_MATRIX.levels)]
    assert picture == [
        "M H H E E",  # probability band 5
        "L M H H E",
        "L M M H H",
        "L L M M H",
        "L L L L M",  # probability band 1
    ]


@pytest.mark.parametrize(
    ("probability", "band"),
    [(0.0, 1), (0.01, 1), (0.0100001, 2), (0.05, 2), (0.2, 3), (0.35, 4), (0.5, 4), (0.51, 5)],
)
def test_probability_bands_include_their_upper_edge(probability: float, band: int) -> None:
    assert DEFAULT_MATRIX.probability_band(probability) == band


@pytest.mark.parametrize(
    ("cost", "band"),
    [(0, 1), (1_000, 1), (1_001, 2), (10_000, 2), (50_000, 3), (1_000_000, 4), (2e6, 5)],
)
def test_consequence_bands_include_their_upper_edge(cost: float, band: int) -> None:
    assert DEFAULT_MATRIX.consequence_band(cost) == band


def test_assess_one_asset() -> None:
    r = assess_risk("P-7", probability=0.3, consequence=200_000)
    assert r.risk == pytest.approx(60_000)
    assert (r.probability_band, r.consequence_band, r.level) == (4, 4, "high")
    assert json.loads(json.dumps(r.to_dict()))["level"] == "high"
    rare_disaster = assess_risk("B-1", probability=0.005, consequence=5e6)
    assert rare_disaster.level == "medium"  # small expected loss, still not "low"
    with pytest.raises(ValueError):
        assess_risk("X", probability=1.2, consequence=10)
    with pytest.raises(ValueError):
        assess_risk("X", probability=0.2, consequence=-1)


def test_ranking_is_by_expected_loss_then_level_then_consequence_then_id() -> None:
    ranked = rank_assets(
        [
            ("pump-1", 0.10, 50_000),  # 5 000, medium
            ("pump-2", 0.60, 20_000),  # 12 000, high
            ("fan-1", 0.02, 250_000),  # 5 000, medium (P2 x C4)
            ("fan-2", 0.50, 10_000),  # 5 000, medium (P4 x C2)
            ("motor-1", 0.001, 10),  # 0.01, low
            ("motor-2", 0.05, 100_000),  # 5 000, medium
        ]
    )
    assert [r.asset_id for r in ranked] == [
        "pump-2",
        "fan-1",  # same loss and level: the worse consequence first
        "motor-2",
        "pump-1",
        "fan-2",
        "motor-1",
    ]
    with pytest.raises(ValueError, match="twice"):
        rank_assets([("a", 0.1, 1.0), ("a", 0.2, 1.0)])


def test_matrix_is_configurable_and_round_trips() -> None:
    strict = RiskMatrix(
        probability_edges=(0.001, 0.01, 0.05, 0.1),
        consequence_edges=(100, 1_000, 10_000, 100_000),
        levels=tuple(
            tuple("extreme" if p + c >= 7 else "high" if p + c >= 5 else "low" for c in range(5))
            for p in range(5)
        ),
    )
    r = assess_risk("P-1", probability=0.2, consequence=50_000, matrix=strict)
    assert (r.probability_band, r.consequence_band, r.level) == (5, 4, "extreme")
    data = json.loads(json.dumps(strict.to_dict()))
    assert RiskMatrix.from_dict(data) == strict
    assert RiskMatrix.from_dict({}) == DEFAULT_MATRIX


@pytest.mark.parametrize(
    "kwargs",
    [
        {"probability_edges": (0.05, 0.01, 0.2, 0.5)},  # not increasing
        {"probability_edges": (0.01, 0.05, 0.2)},  # 3 edges
        {"probability_edges": (0.01, 0.05, 0.2, 1.5)},  # beyond 1
        {"consequence_edges": (-5, 10, 100, 1000)},
        {"levels": (("low",) * 5,) * 4},  # 4 rows
        {"levels": (("low",) * 5,) * 4 + (("low", "low", "bad", "low", "low"),)},
        {"levels": (("high",) * 5,) + (("low",) * 5,) * 4},  # decreases with probability
        {"consequence_labels": ("a", "b")},
    ],
)
def test_invalid_matrices_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RiskMatrix(**kwargs)


probabilities = st.floats(0, 1)
costs = st.floats(0, 1e8)


@given(probabilities, probabilities, costs, costs)
def test_level_never_drops_when_probability_or_consequence_rise(
    p1: float, p2: float, c1: float, c2: float
) -> None:
    lo = assess_risk("a", min(p1, p2), min(c1, c2))
    hi = assess_risk("a", max(p1, p2), max(c1, c2))
    assert 1 <= lo.probability_band <= hi.probability_band <= 5
    assert 1 <= lo.consequence_band <= hi.consequence_band <= 5
    assert LEVELS.index(lo.level) <= LEVELS.index(hi.level)
    assert lo.risk <= hi.risk


# --- Pareto -------------------------------------------------------------------------------


def test_pareto_of_failure_mode_counts() -> None:
    modes = ["bearing"] * 42 + ["seal"] * 30 + ["impeller"] * 12 + ["coupling"] * 9
    modes += ["motor"] * 5 + ["other"] * 2
    p = pareto_counts(modes)
    assert [i.key for i in p.items] == ["bearing", "seal", "impeller", "coupling", "motor", "other"]
    assert [i.cumulative_share for i in p.items] == pytest.approx([0.42, 0.72, 0.84, 0.93, 0.98, 1])
    assert p.vital_few == ("bearing", "seal", "impeller")  # impeller crosses 80 %
    assert p.total == 100
    data = json.loads(json.dumps(p.to_dict()))
    assert data["vital_few"] == ["bearing", "seal", "impeller"]
    assert data["items"][0] == {
        "key": "bearing",
        "value": 42.0,
        "share": 0.42,
        "cumulative_share": 0.42,
        "vital_few": True,
    }


def test_pareto_of_costs_sums_events_and_takes_a_threshold() -> None:
    events = [("seal", 1_000.0), ("bearing", 9_000.0), ("seal", 2_000.0), ("fan", 0.0)]
    p = pareto(events, threshold=0.7)
    assert [(i.key, i.value) for i in p.items] == [("bearing", 9000), ("seal", 3000), ("fan", 0)]
    assert p.vital_few == ("bearing",)  # 75 % >= 70 %
    assert pareto({"a": 5.0, "b": 5.0}).vital_few == ("a", "b")  # ties: by key
    assert pareto({"a": 1.0, "b": 0.0}, threshold=1.0).vital_few == ("a",)


@pytest.mark.parametrize(
    ("values", "threshold"),
    [({}, 0.8), ({"a": 0.0}, 0.8), ({"a": -1.0, "b": 3.0}, 0.8), ({"a": 1.0}, 0.0)],
)
def test_pareto_refuses_bad_input(values: dict, threshold: float) -> None:
    with pytest.raises(ValueError):
        pareto(values, threshold)


@given(
    st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 1e6), min_size=1),
    st.floats(0.05, 1.0),
)
def test_pareto_properties(values: dict[str, float], threshold: float) -> None:
    if sum(values.values()) <= 0:
        return
    p = pareto(values, threshold)
    shares = [i.cumulative_share for i in p.items]
    assert shares == sorted(shares)
    assert shares[-1] == pytest.approx(1.0)
    assert [i.value for i in p.items] == sorted(values.values(), reverse=True)
    k = len(p.vital_few)
    assert k >= 1
    assert p.vital_few == tuple(i.key for i in p.items[:k])  # a prefix
    assert p.items[k - 1].cumulative_share >= threshold - 1e-9  # that reaches the threshold
    if k > 1:
        assert p.items[k - 2].cumulative_share < threshold  # and is the smallest such
