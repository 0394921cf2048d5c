"""Window features: one code path for training and serving (parity), causal, slope by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdm_ml.features.windows import (
    ConditionNormaliser,
    feature_names,
    informative_sensors,
    latest_window_features,
    window_features,
    window_features_by_asset,
)

SENSORS = ["a", "b"]
WINDOWS = (3, 5)


def _history(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": np.cumsum(rng.normal(size=n)),
            "b": rng.normal(10.0, 2.0, size=n),
            "setting1": rng.normal(size=n),
            "hours_since_maintenance": np.arange(n, dtype=float) * 8.0,
        }
    )
    frame.loc[7, "b"] = np.nan  # an offline sensor must not break either path
    return frame


def test_training_and_serving_give_identical_numbers() -> None:
    history = _history()
    training = window_features(history, SENSORS, WINDOWS, context=["setting1"])
    for end in (1, 2, 4, 5, 9, 23, len(history)):
        serving = latest_window_features(history.iloc[:end], SENSORS, WINDOWS, ["setting1"])
        assert list(serving) == list(training.columns)
        expected = training.iloc[end - 1].to_numpy()
        np.testing.assert_array_equal(np.array(list(serving.values())), expected)


def test_serving_accepts_records() -> None:
    history = _history(12)
    records = history.to_dict(orient="records")
    assert latest_window_features(records, SENSORS, WINDOWS) == latest_window_features(
        history, SENSORS, WINDOWS
    )


def test_features_are_causal() -> None:
    history = _history()
    before = window_features(history, SENSORS, WINDOWS)
    changed = history.copy()
    changed.loc[30:, ["a", "b"]] += 1000.0  # the future changes...
    after = window_features(changed, SENSORS, WINDOWS)
    pd.testing.assert_frame_equal(before.iloc[:30], after.iloc[:30])  # ...the past does not


def test_columns_and_optional_context() -> None:
    history = _history(6)
    out = window_features(history, SENSORS, WINDOWS, context=["setting1"])
    assert list(out.columns) == [
        *feature_names(SENSORS, WINDOWS, ["setting1"]),
        "hours_since_maintenance",
    ]
    without = window_features(history.drop(columns="hours_since_maintenance"), SENSORS, WINDOWS)
    assert "hours_since_maintenance" not in without.columns


def test_slope_and_stats_by_hand() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 4.0, 7.0], "b": [5.0, 5.0, 5.0, 5.0]})
    out = window_features(frame, SENSORS, windows=(3,))
    # last 3 of [1, 2, 4, 7] = [2, 4, 7]: x = 0, 1, 2, slope = Σ(x-1)(y-13/3)/Σ(x-1)^2 = 5/2
    assert out["a__slope_w3"].iloc[-1] == pytest.approx(2.5)
    assert out["a__mean_w3"].iloc[-1] == pytest.approx(13 / 3)
    assert out["a__std_w3"].iloc[-1] == pytest.approx(np.std([2.0, 4.0, 7.0]))
    assert (out["a__min_w3"].iloc[-1], out["a__max_w3"].iloc[-1]) == (2.0, 7.0)
    assert out["a__last"].iloc[-1] == 7.0
    # first row: one reading -> std 0, slope 0; second: [1, 2] -> slope 1
    assert out["a__std_w3"].iloc[0] == 0.0 and out["a__slope_w3"].iloc[0] == 0.0
    assert out["a__slope_w3"].iloc[1] == pytest.approx(1.0)
    assert (out["b__slope_w3"] == 0.0).all()


def test_slope_skips_missing_readings() -> None:
    frame = pd.DataFrame({"a": [0.0, np.nan, 2.0, 3.0]})
    out = window_features(frame, ["a"], windows=(4,))
    assert out["a__slope_w4"].iloc[-1] == pytest.approx(1.0)  # points (0,0), (2,2), (3,3)


def test_by_asset_does_not_mix_assets() -> None:
    one, two = _history(10, seed=1), _history(10, seed=2)
    frame = pd.concat([one.assign(unit=1), two.assign(unit=2)], ignore_index=True)
    frame["cycle"] = list(range(10)) * 2
    shuffled = frame.sample(frac=1.0, random_state=0)
    out = window_features_by_asset(shuffled, "unit", "cycle", SENSORS, WINDOWS).loc[frame.index]
    alone = window_features(two, SENSORS, WINDOWS)
    np.testing.assert_array_equal(out.iloc[10:].to_numpy(), alone.to_numpy())


def test_condition_normaliser_finds_regimes_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    regimes = np.array([[0.0, 0.0], [10.0, 0.5], [20.0, 0.8]])
    labels = rng.integers(0, 3, size=600)
    frame = pd.DataFrame(regimes[labels] + rng.normal(0, 1e-3, (600, 2)), columns=["s1", "s2"])
    frame["x"] = 100.0 * labels + rng.normal(0, 1.0, 600)  # the regime dominates the sensor
    frame["flat"] = 3.0 * labels  # constant within each regime
    normaliser = ConditionNormaliser.fit(frame, ["s1", "s2"], ["x", "flat"])
    assert normaliser.n_conditions == 3
    z = normaliser.transform(frame)
    assert abs(z["x"].std() - 1.0) < 0.05 and (z["flat"] == 0.0).all()
    assert informative_sensors(frame, ["x", "flat"], normaliser.condition(frame)) == ["x"]
    again = ConditionNormaliser.from_dict(normaliser.to_dict())
    pd.testing.assert_frame_equal(again.transform(frame), z)


def test_noise_only_settings_are_one_condition() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(500, 3)), columns=["s1", "s2", "s3"])
    frame["x"] = rng.normal(size=500)
    assert ConditionNormaliser.fit(frame, ["s1", "s2", "s3"], ["x"]).n_conditions == 1
