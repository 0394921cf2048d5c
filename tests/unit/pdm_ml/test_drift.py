"""Drift checks from a reference profile: few false alarms, clear verdicts on real shifts,
a lossless JSON profile, and the same per-column verdicts as Evidently's DataDriftPreset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pdm_ml.drift import ReferenceProfile, build_profile, check, evidently_verdicts


def _numeric(
    rng: np.random.Generator, n: int, n_cols: int, shift: dict[int, float]
) -> pd.DataFrame:
    """Columns of mixed shapes (normal, lognormal, uniform); `shift` adds k reference stds."""
    data = {}
    for j in range(n_cols):
        kind = j % 3
        if kind == 0:
            values, std = rng.normal(50 + j, 5, n), 5.0
        elif kind == 1:
            values = rng.lognormal(1.0, 0.5, n)
            std = float(np.sqrt((np.exp(0.25) - 1) * np.exp(2 + 0.25)))
        else:
            values, std = rng.uniform(0, 10, n), 10 / np.sqrt(12)
        data[f"x{j}"] = values + shift.get(j, 0.0) * std
    return pd.DataFrame(data)


def test_no_drift_between_two_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(1)
    ref, cur = _numeric(rng, 5000, 50, {}), _numeric(rng, 5000, 50, {})
    result = check(build_profile(ref), cur)
    assert result.n_checked == 50
    assert {c.method for c in result.columns.values()} == {"wasserstein"}
    assert result.n_drifted <= 1
    assert all(c.psi_band == "stable" for c in result.columns.values())
    assert not result.dataset_drift


def test_small_reference_uses_ks_with_few_false_verdicts() -> None:
    rng = np.random.default_rng(2)
    ref, cur = _numeric(rng, 800, 50, {}), _numeric(rng, 800, 50, {})
    profile = build_profile(ref)
    assert all(col.exact for col in profile.columns.values())  # type: ignore[union-attr]
    result = check(profile, cur)
    assert {c.method for c in result.columns.values()} == {"ks"}
    assert result.n_drifted <= 7  # 5 % expected at p < 0.05: 2.5 of 50


def test_shifted_column_is_drifted_with_its_shift_in_units() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    ref = pd.DataFrame(
        {"bearing_temperature": rng.normal(60, 5, n), "speed": rng.normal(1500, 20, n)}
    )
    cur = pd.DataFrame(
        {"bearing_temperature": rng.normal(68, 5, n), "speed": rng.normal(1500, 20, n)}
    )
    result = check(build_profile(ref), cur, importance={"bearing_temperature": 3.0, "speed": 1.0})
    temp = result.columns["bearing_temperature"]
    assert temp.drifted and temp.method == "wasserstein"
    assert temp.statistic == pytest.approx(8 / 5, rel=0.05)
    assert temp.mean_shift == pytest.approx(8.0, abs=0.2)
    assert temp.median_shift == pytest.approx(8.0, abs=0.3)
    assert temp.psi_band == "significant"
    assert not result.columns["speed"].drifted
    assert result.share_drifted == 0.5
    assert result.weighted_share_drifted == pytest.approx(0.75)
    assert result.headlines()[0].startswith("bearing_temperature: mean +8")


def test_categorical_shift_and_nan_rows_are_ignored_and_counted() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    modes = ["normal", "wear", "overheat", "overstrain"]
    ref = pd.DataFrame(
        {"mode": rng.choice(modes, n, p=[0.7, 0.1, 0.1, 0.1]), "x": rng.normal(0, 1, n)}
    )
    cur = pd.DataFrame(
        {"mode": rng.choice(modes, n, p=[0.4, 0.1, 0.4, 0.1]), "x": rng.normal(0, 1, n)}
    )
    cur.loc[:499, "x"] = np.nan
    cur.loc[:99, "mode"] = None
    result = check(build_profile(ref), cur)
    mode = result.columns["mode"]
    assert mode.kind == "categorical" and mode.method == "jensenshannon" and mode.drifted
    assert mode.current_missing == 100 and mode.current_rows == n - 100
    assert mode.share_shift["overheat"] == pytest.approx(0.3, abs=0.03)
    x = result.columns["x"]
    assert x.current_missing == 500 and x.current_rows == n - 500 and not x.drifted


def test_small_categorical_reference_uses_chi_square_and_z() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame(
        {"c": rng.choice(["a", "b", "c"], 500), "flag": rng.choice([True, False], 500)}
    )
    cur = pd.DataFrame(
        {
            "c": rng.choice(["a", "b", "c"], 500, p=[0.6, 0.2, 0.2]),
            "flag": rng.choice([True, False], 500),
        }
    )
    result = check(build_profile(ref), cur)
    assert result.columns["c"].method == "chisquare" and result.columns["c"].drifted
    assert result.columns["flag"].method == "z"


def test_missing_column_is_listed() -> None:
    rng = np.random.default_rng(6)
    ref = _numeric(rng, 2000, 3, {})
    result = check(build_profile(ref), ref.drop(columns=["x1"]))
    assert result.missing_columns == ["x1"] and result.n_checked == 2


def test_profile_json_round_trip_gives_the_same_check() -> None:
    rng = np.random.default_rng(7)
    ref = _numeric(rng, 3000, 6, {})
    ref["mode"] = rng.choice(["a", "b"], 3000)
    ref["code"] = rng.integers(0, 4, 3000)  # <= 10 integer values: categorical, as Evidently
    ref["level"] = rng.choice([1.0, 2.0, 3.0], 3000)  # few-valued float: count-based test
    cur = _numeric(rng, 3000, 6, {2: 0.5})
    cur["mode"], cur["code"] = rng.choice(["a", "b"], 3000), rng.integers(0, 4, 3000)
    cur["level"] = rng.choice([1.0, 2.0, 3.0], 3000, p=[0.2, 0.3, 0.5])
    profile = build_profile(ref, meta={"model": "pump-failure", "version": "7"})
    text = profile.to_json()
    assert len(text) < 200_000
    again = ReferenceProfile.from_json(text)
    assert again == profile
    assert json.loads(again.to_json()) == json.loads(text)
    assert check(again, cur) == check(profile, cur)
    result = check(again, cur)
    assert result.columns["code"].kind == "categorical"
    assert result.columns["level"].method == "jensenshannon" and result.columns["level"].drifted
    assert result.drifted_columns() == ["x2", "level"]


def test_verdicts_agree_with_evidently_data_drift_preset() -> None:
    """20 columns x 5000 rows (17 numeric with shifts from none to 2 std, a categorical, an
    integer code, a two-valued float), NaN in one current column.

    Measured: 19/20 verdicts agree (95 %); the one disagreement is x9, at the threshold
    (Evidently 0.0999, ours 0.1000 from the 1000-point quantile sample); every statistic is
    within 0.001 of Evidently's."""
    evidently = pytest.importorskip("evidently")
    presets = pytest.importorskip("evidently.presets")
    rng = np.random.default_rng(8)
    shifts = {1: 0.05, 3: 0.2, 5: 0.5, 7: 1.0, 9: 0.08, 11: 0.15, 13: 2.0}
    ref = _numeric(rng, 5000, 17, {})
    cur = _numeric(rng, 5000, 17, shifts)
    ref["mode"], cur["mode"] = (
        rng.choice(list("abc"), 5000),
        rng.choice(list("abc"), 5000, p=[0.5, 0.3, 0.2]),
    )
    ref["code"], cur["code"] = rng.integers(0, 5, 5000), rng.integers(0, 5, 5000)
    ref["level"] = rng.choice([1.0, 2.0], 5000)
    cur["level"] = rng.choice([1.0, 2.0], 5000, p=[0.6, 0.4])
    cur.loc[:199, "x4"] = np.nan

    ours = check(build_profile(ref), cur)
    snapshot = evidently.Report([presets.DataDriftPreset()]).run(
        current_data=cur, reference_data=ref
    )
    theirs = evidently_verdicts(snapshot.dict())
    assert set(theirs) == set(ours.columns)
    agree = sum(ours.columns[c].drifted == theirs[c][2] for c in theirs)
    assert agree / len(theirs) >= 0.95, (agree, len(theirs))
    # the same tests were chosen
    names = {"wasserstein": "Wasserstein", "jensenshannon": "Jensen-Shannon", "ks": "K-S"}
    for c, (method, value, _) in theirs.items():
        assert method.startswith(names[ours.columns[c].method]), (c, method)
        assert ours.columns[c].statistic == pytest.approx(value, abs=0.002), c


def test_evidently_report_renders_bounded_samples() -> None:
    pytest.importorskip("evidently")
    from pdm_ml.drift import evidently_report

    rng = np.random.default_rng(9)
    ref, cur = _numeric(rng, 3000, 3, {}), _numeric(rng, 3000, 3, {0: 1.0})
    html, data = evidently_report(ref, cur, ["x0", "x1"], max_rows=1500)
    assert "<html" in html.lower()
    json.dumps(data)  # storable as it is
    verdicts = evidently_verdicts(data)
    assert set(verdicts) == {"x0", "x1"}
    assert verdicts["x0"][2] and not verdicts["x1"][2]
