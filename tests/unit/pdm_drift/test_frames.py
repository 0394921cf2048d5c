"""The pure parts of a drift check: stored readings to snapshots, the model's own features,
gain importances, reports and the retrain trigger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from pdm_drift.frames import (
    ROW,
    build_report,
    gain_importances,
    model_features,
    pair_of,
    reference_frame,
    sensor_columns,
    snapshots_frame,
    wants_retrain,
)
from pdm_ml.drift import build_profile, check
from pdm_ml.training.simulated import featurise

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SENSORS = ("vibration", "bearing_temperature")


@dataclass
class HistoryModel:
    """What the checker needs of a served history model: sensors and its own featurise."""

    sensors: tuple[str, ...] = SENSORS
    windows: tuple[int, ...] = (4, 16)

    def featurise(self, history: pd.DataFrame) -> pd.DataFrame:
        return featurise(history, self.sensors, self.windows)


def narrow(assets: int, rows: int, shift: float = 0.0, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    out = []
    for a in range(assets):
        for i in range(rows):
            t = T0 + timedelta(seconds=i)
            out.append((f"pump-{a}", t, "vibration", float(rng.normal(2.0, 0.2))))
            out.append((f"pump-{a}", t, "bearing_temperature", float(rng.normal(60 + shift, 1))))
    return out


def test_snapshots_pivot_one_row_per_asset_and_time_numbered_within_each_asset() -> None:
    frame = snapshots_frame(narrow(2, 5))
    assert len(frame) == 10
    assert set(SENSORS) <= set(frame.columns)
    assert frame.groupby("asset_id")[ROW].apply(list).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert snapshots_frame([]).empty


def test_model_features_use_the_models_featurise_and_drop_warmup_rows() -> None:
    frame = snapshots_frame(narrow(2, 30))
    model = HistoryModel()
    features = model_features(model, frame, warmup_rows=4)
    assert len(features) == 2 * (30 - 4)
    assert "bearing_temperature__mean_w16" in features.columns
    # a sensor the window lacks becomes missing values, not an error
    only_vibration = frame.drop(columns=["bearing_temperature"])
    partial = model_features(model, only_vibration, warmup_rows=0)
    assert partial["bearing_temperature__last"].isna().all()


def test_gain_importances_normalised_per_feature() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (x["a"] > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 4}, lgb.Dataset(x, y), 10
    )

    @dataclass
    class Model:
        booster: lgb.Booster
        features: tuple[str, ...] = ("a", "b")

    weights = gain_importances(Model(booster), ["a", "b", "c"])
    assert weights is not None
    assert weights["a"] > weights["b"] and weights["c"] == 0.0
    assert sum(weights.values()) == pytest.approx(1.0)

    @dataclass
    class Rul:
        boosters: dict[str, lgb.Booster]
        features: tuple[str, ...] = ("a", "b")

    assert gain_importances(Rul({"p50": booster}), ["a"]) == {"a": pytest.approx(weights["a"])}
    assert gain_importances(object(), ["a"]) is None


def test_a_shifted_sensor_reads_as_a_headline_in_its_own_units() -> None:
    reference = snapshots_frame(narrow(3, 500))
    columns = sensor_columns(reference, 0.5)
    assert columns == sorted(SENSORS)
    profile = build_profile(reference, columns)
    current = snapshots_frame(narrow(3, 200, shift=8.0, seed=1))
    result = check(profile, current[columns])
    window = (T0, T0 + timedelta(hours=1))
    report = build_report(
        "drift",
        result,
        kind="sensors",
        trigger="timer",
        window=window,
        reference_rows=profile.n_rows,
        model_name="sensors-pump",
        model_version="failure-pump@3",
        asset_type="pump",
    )
    assert report.drift_detected  # one of two columns: Evidently calls half the columns drift
    assert report.drifted_share == 0.5 and report.weighted_share == 0.5
    assert report.headlines[0].startswith(
        ("bearing_temperature: mean +8", "bearing_temperature: mean +7.9")
    )
    assert report.columns[0].column == "bearing_temperature"  # the drifted one first
    assert report.columns[0].drifted and report.columns[0].mean_shift == pytest.approx(8, abs=0.3)
    assert not wants_retrain(report, 0.3), "a sensors report never retrains"
    features = report.model_copy(update={"kind": "features"})
    assert wants_retrain(features, 0.3) and not wants_retrain(features, 0.6)
    # the profile's samples give the Evidently report a reference frame
    assert list(reference_frame(profile).columns) == columns


def test_missing_model_columns_lead_the_headlines() -> None:
    reference = snapshots_frame(narrow(1, 300))
    profile = build_profile(reference, list(SENSORS))
    result = check(profile, reference[["vibration"]])
    report = build_report(
        "drift",
        result,
        kind="features",
        trigger="command",
        window=(T0, T0 + timedelta(minutes=5)),
        reference_rows=300,
        model_name="failure-pump",
        model_version="1",
        asset_type="pump",
        report_id=uuid.UUID(int=1),
    )
    assert report.headlines[0] == "bearing_temperature: missing from the current window"
    assert report.report_id == uuid.UUID(int=1)


def test_a_retrain_covers_both_models_of_the_type_the_named_first() -> None:
    assert pair_of("rul-pump") == ("rul-pump", "failure-pump")
    assert pair_of("failure-motor") == ("failure-motor", "rul-motor")
