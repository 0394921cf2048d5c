"""The multivariate detector on synthetic pumps whose sensors all follow one latent load."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pdm_ml.detectors import multivariate as mv
from pdm_ml.detectors.multivariate import MultivariateConfig, MultivariateModel
from pdm_ml.training import anomaly as train_cli

SENSORS = ("flow", "power", "pressure", "speed", "temperature", "vibration")


def healthy(n: int, seed: int) -> pd.DataFrame:
    """Six sensors driven by one load: strongly correlated, each with its own noise."""
    rng = np.random.default_rng(seed)
    load = rng.normal(size=n)
    return pd.DataFrame(
        {
            "flow": 50 + 12 * load + rng.normal(0, 1.0, n),
            "power": 11 + 4 * load + rng.normal(0, 0.2, n),
            "pressure": 4 + 1.2 * load + rng.normal(0, 0.08, n),
            "speed": 1480 + 20 * load + rng.normal(0, 3, n),
            "temperature": 55 + 6 * load + rng.normal(0, 0.7, n),
            "vibration": 2.0 + 0.4 * load + np.abs(rng.normal(0, 0.1, n)),
        }
    )


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return healthy(8000, seed=1)


@pytest.fixture(scope="module")
def heldout() -> pd.DataFrame:
    return healthy(40_000, seed=2)


@pytest.fixture(scope="module")
def model(train: pd.DataFrame) -> MultivariateModel:
    return mv.fit(train, MultivariateConfig(false_alarm_target=1e-3))


def sigma(frame: pd.DataFrame) -> pd.Series:
    return 1.4826 * (frame - frame.median()).abs().median()


def test_fit_keeps_varying_sensors_in_a_stable_order(model: MultivariateModel) -> None:
    assert model.sensors == SENSORS
    assert model.training["snapshots"] == 8000
    assert model.threshold == 0.5
    assert model.training["train_false_alarm_rate"] < 5e-3


@pytest.mark.parametrize("sensor", SENSORS)
def test_single_sensor_shift_is_flagged_and_named(
    model: MultivariateModel, heldout: pd.DataFrame, sensor: str
) -> None:
    """1.5 robust sigmas: well inside the sensor's own range, far off the others' prediction."""
    snapshot = heldout.iloc[0].to_dict()
    snapshot[sensor] += 1.5 * sigma(heldout)[sensor]
    score = model.score(snapshot)
    assert score is not None and score.is_anomalous
    assert score.value > score.threshold
    assert next(iter(score.contributors)) == sensor
    assert score.contributors[sensor] > 0.5
    assert score.detector == "multivariate"


def test_broken_correlation_is_flagged_although_every_value_is_plausible(
    model: MultivariateModel, train: pd.DataFrame
) -> None:
    low = train.quantile(0.05)
    high = train.quantile(0.95)
    snapshot = low.to_dict() | {"temperature": float(high["temperature"])}  # hot at low load
    for name, value in snapshot.items():
        assert train[name].min() < value < train[name].max()
    score = model.score(snapshot)
    assert score is not None and score.severity in ("major", "critical")
    assert max(score.contributors, key=score.contributors.__getitem__) == "temperature"


def test_healthy_snapshot_is_quiet_and_still_explained(
    model: MultivariateModel, heldout: pd.DataFrame
) -> None:
    score = model.score(heldout.iloc[1].to_dict())
    assert score is not None and not score.is_anomalous and score.severity is None
    assert 0.0 <= score.value < 0.5
    assert 0 < len(score.contributors) <= 3
    assert sum(score.contributors.values()) <= 1.0 + 1e-9


@pytest.mark.parametrize("target", [1e-3, 1e-2])
def test_false_alarm_rate_on_heldout_healthy_is_near_the_target(
    model: MultivariateModel, heldout: pd.DataFrame, target: float
) -> None:
    # thresholds are calibrated lazily from the stored training sample: a new target only
    # needs a fresh cache, not a refit
    config = replace(model.config, false_alarm_target=target)
    model = replace(model, config=config, _subsets={})
    values, _ = model.score_batch(heldout)
    far = float(np.mean(values >= model.threshold))
    assert target / 3 <= far <= target * 2.5, far


def test_a_few_anomalies_in_the_training_data_do_not_blind_the_detector(
    train: pd.DataFrame, heldout: pd.DataFrame
) -> None:
    """2 % of training snapshots carry 5-10 sigma faults; the robust fit and the tail
    calibration keep both the false-alarm rate and the detection of small shifts."""
    rng = np.random.default_rng(3)
    dirty = train.to_numpy(copy=True)
    rows = rng.choice(len(dirty), int(0.02 * len(dirty)), replace=False)
    cols = rng.integers(0, dirty.shape[1], len(rows))
    s = sigma(train).to_numpy()
    dirty[rows, cols] += rng.uniform(5, 10, len(rows)) * s[cols]
    model = mv.fit(pd.DataFrame(dirty, columns=train.columns))
    values, _ = model.score_batch(heldout)
    assert np.mean(values >= 0.5) <= 3e-3
    shifted = heldout.iloc[:2000].to_numpy(copy=True)
    col = rng.integers(0, shifted.shape[1], len(shifted))
    shifted[np.arange(len(shifted)), col] += 1.5 * s[col]
    values, shares = model.score_batch(shifted)
    assert np.mean(values >= 0.5) > 0.95
    assert np.mean(np.argmax(shares, axis=1) == col) > 0.95


def test_missing_sensor_scores_with_the_others(
    model: MultivariateModel, heldout: pd.DataFrame
) -> None:
    snapshot = heldout.iloc[0].to_dict()
    del snapshot["pressure"]
    snapshot["temperature"] += 2 * sigma(heldout)["temperature"]
    score = model.score(snapshot)
    assert score is not None and score.is_anomalous
    assert "pressure" not in score.contributors
    assert next(iter(score.contributors)) == "temperature"


def test_a_subset_of_sensors_keeps_its_own_calibrated_false_alarm_rate(
    model: MultivariateModel, heldout: pd.DataFrame
) -> None:
    values, shares = model.score_batch(heldout.drop(columns=["speed", "flow"]))
    assert np.isnan(shares[:, [0, 3]]).all()
    assert np.mean(values >= 0.5) <= 3e-3


def test_too_few_sensors_give_no_score(model: MultivariateModel) -> None:
    assert model.score({"flow": 50.0, "power": 11.0}) is None  # 2 of 6 < half
    assert model.score({"flow": 50.0, "power": 11.0, "speed": math.nan}) is None
    assert model.score({}) is None
    strict = replace(model, config=replace(model.config, min_sensors=5, min_sensor_fraction=0))
    assert strict.score({s: 1.0 for s in SENSORS[:4]}) is None


def test_unknown_sensors_are_ignored(model: MultivariateModel, heldout: pd.DataFrame) -> None:
    snapshot = heldout.iloc[5].to_dict()
    plain = model.score(snapshot)
    extra = model.score(snapshot | {"humidity": 1e9})
    assert plain is not None and extra is not None
    assert extra.value == plain.value and extra.contributors == plain.contributors


def test_batch_agrees_with_single_snapshots_across_missing_patterns(
    model: MultivariateModel, heldout: pd.DataFrame
) -> None:
    records = heldout.iloc[:60].to_dict("records")
    for i, record in enumerate(records):
        if i % 3 == 1:
            del record["power"]
        elif i % 3 == 2:
            record["vibration"] = math.nan
    many = model.score_many(records)
    for record, batch in zip(records, many, strict=True):
        single = model.score(record)
        assert single is not None and batch is not None
        assert single.value == pytest.approx(batch.value, rel=1e-9)
        assert single.contributors == batch.contributors


def test_severity_grows_with_the_distance(model: MultivariateModel) -> None:
    assert mv.severity_of(0.49, model.config.severity_bands) is None
    assert mv.severity_of(math.nan, model.config.severity_bands) is None
    ladder = [mv.severity_of(r / (1 + r), model.config.severity_bands) for r in (1, 2, 4, 8, 50)]
    assert ladder == ["warning", "minor", "major", "critical", "critical"]


def test_tail_calibration_matches_the_chi2_quantile() -> None:
    """For Gaussian snapshots d² is χ²(p): the extrapolated 99.9 % point must be close."""
    rng = np.random.default_rng(0)
    d2 = rng.chisquare(6, 200_000)
    exact = float(np.quantile(d2, 0.999))  # 22.46 for χ²(6)
    assert mv.calibrate_threshold(d2, 1e-3) == pytest.approx(exact, rel=0.1)
    assert mv.calibrate_threshold(d2, 0.1) == pytest.approx(np.quantile(d2, 0.9))


def test_scoring_a_batch_costs_well_under_50_us_per_snapshot(
    model: MultivariateModel, heldout: pd.DataFrame
) -> None:
    x = heldout.to_numpy()[:20_000]
    model.score_batch(x[:10])
    started = time.perf_counter()
    model.score_batch(x)
    per_snapshot_us = (time.perf_counter() - started) / len(x) * 1e6
    assert per_snapshot_us < 5.0, per_snapshot_us  # measured ~0.1 µs


def test_fit_rejects_what_cannot_make_a_model() -> None:
    with pytest.raises(mv.InsufficientData, match="complete snapshots"):
        mv.fit(healthy(50, seed=0))
    with pytest.raises(mv.InsufficientData, match="varying sensors"):
        mv.fit(healthy(500, seed=0)[["flow"]].assign(speed=1480.0))
    frame = healthy(1000, seed=0).assign(setpoint=7.0, label="x")
    fitted = mv.fit(frame)
    assert "setpoint" not in fitted.sensors and "label" not in fitted.sensors
    assert "setpoint" in fitted.training["dropped_sensors"]


def test_save_load_round_trip_scores_identically(
    model: MultivariateModel, heldout: pd.DataFrame, tmp_path
) -> None:
    model.save(tmp_path / "m")
    loaded = MultivariateModel.load(tmp_path / "m")
    assert loaded.sensors == model.sensors and loaded.config == model.config
    x = heldout.to_numpy()[:500].copy()
    x[::7, 2] = np.nan
    a, sa = model.score_batch(x)
    b, sb = loaded.score_batch(x)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)


def test_pyfunc_loader_gives_back_the_model_and_a_tabular_predict(
    model: MultivariateModel, heldout: pd.DataFrame, tmp_path
) -> None:
    model.save(tmp_path / "m")
    adapter = mv._load_pyfunc(str(tmp_path / "m"))
    raw = adapter.get_raw_model()
    assert isinstance(raw, MultivariateModel)
    out = adapter.predict(heldout.head(4).drop(columns=["flow"]))
    assert list(out.columns[:2]) == ["score", "anomalous"]
    assert out["share_flow"].isna().all() and len(out) == 4
    bound = raw.bind_registry("anomaly-pump", "7")
    score = bound.score(heldout.iloc[0].to_dict())
    assert score is not None
    assert (score.model_name, score.model_version) == ("anomaly-pump", "7")


# ---- the training pipeline's pure steps (pdm train anomaly) --------------------------------


def narrow_history(assets: int, snapshots: int) -> pd.DataFrame:
    rows = []
    start = pd.Timestamp("2026-01-01", tz="UTC")
    for a in range(assets):
        frame = healthy(snapshots, seed=10 + a)
        times = start + pd.to_timedelta(np.arange(snapshots), unit="s")
        for sensor in frame.columns:
            rows.append(
                pd.DataFrame(
                    {"asset_id": f"p{a}", "time": times, "sensor": sensor, "value": frame[sensor]}
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_training_pipeline_splits_by_time_and_evaluates_on_injected_faults() -> None:
    wide = train_cli.pivot_snapshots(narrow_history(assets=3, snapshots=2000))
    assert wide.shape == (6000, 6) and list(wide.index.names) == ["asset_id", "time"]
    train, holdout = train_cli.split_by_time(wide, 0.25)
    assert len(holdout) == 1500
    for asset in ("p0", "p1", "p2"):
        assert train.loc[asset].index.max() < holdout.loc[asset].index.min()
    result = train_cli.train_anomaly(wide, MultivariateConfig(), holdout_fraction=0.25)
    ev = result.evaluation
    assert ev.false_alarm_rate < 0.01
    assert ev.detection["spike"] > 0.99 and ev.detection["shift"] > 0.9
    assert 0.5 < ev.detection["drift"] < 1.0  # small ramp values are invisible by design
    assert ev.top_contributor_accuracy > 0.95
    assert ev.youden_j == pytest.approx(ev.detection_rate - ev.false_alarm_rate)
    assert set(ev.metrics()) >= {"youden_j", "holdout_false_alarm_rate", "detection_rate_drift"}


def test_injected_faults_are_reproducible() -> None:
    holdout = healthy(300, seed=4)
    a = train_cli.inject_faults(holdout, sigma(holdout), seed=1)
    b = train_cli.inject_faults(holdout, sigma(holdout), seed=1)
    assert [f.kind for f in a] == list(train_cli.FAULT_KINDS)
    for fa, fb in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(fa.frame, fb.frame)


def test_training_with_too_little_history_says_what_to_do() -> None:
    wide = train_cli.pivot_snapshots(narrow_history(assets=1, snapshots=300))
    with pytest.raises(train_cli.TrainError, match="widen --since"):
        train_cli.train_anomaly(wide, MultivariateConfig(), min_snapshots=500)


def test_window_arguments() -> None:
    now = pd.Timestamp("2026-03-01T12:00", tz="UTC").to_pydatetime()
    assert train_cli.parse_when("7d", now) == now - pd.Timedelta(days=7)
    assert train_cli.parse_when("90m", now) == now - pd.Timedelta(minutes=90)
    assert train_cli.parse_when("2026-02-01T00:00", now).tzinfo is not None
    with pytest.raises(Exception, match="duration like 7d"):
        train_cli.parse_when("last week", now)
