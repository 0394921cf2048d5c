"""The machining features: one code path, identical numbers for training and serving."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pdm_ml.features import machining

SNAPSHOT = {
    "air_temperature": 298.1,
    "process_temperature": 308.6,
    "rotational_speed": 1551.0,
    "torque": 42.8,
    "tool_wear": 10.0,
    "quality": "M",
}


def random_snapshots(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    air = rng.normal(300, 2, n)
    return pd.DataFrame(
        {
            "air_temperature": air,
            "process_temperature": air + 10 + rng.normal(0, 1, n),
            "rotational_speed": rng.normal(1540, 180, n).round(),
            "torque": np.clip(rng.normal(40, 10, n), 3, None),
            "tool_wear": rng.integers(0, 250, n).astype(float),
            "quality": rng.choice(["L", "M", "H"], n),
        }
    )


def test_training_and_serving_give_identical_features() -> None:
    frame = random_snapshots(500)
    batch = machining.features_frame(frame)
    assert list(batch.columns) == list(machining.FEATURES)
    for i, record in enumerate(frame.to_dict(orient="records")):
        row = machining.features_row(record)
        assert list(row) == list(machining.FEATURES)
        assert np.array_equal(batch.iloc[i].to_numpy(), np.array(list(row.values()))), i


def test_derived_values_by_hand() -> None:
    row = machining.features_row(SNAPSHOT)
    assert row["temperature_difference"] == pytest.approx(10.5)
    assert row["power"] == pytest.approx(42.8 * 1551 * 2 * math.pi / 60)  # ≈ 6951.6 W
    assert row["power"] == pytest.approx(6951.6, abs=0.1)
    assert row["overstrain"] == pytest.approx(428.0)
    assert row["quality_code"] == 1.0
    assert machining.features_row(SNAPSHOT | {"quality": "h"})["quality_code"] == 2.0


def test_ai4i_columns_map_to_sensor_names() -> None:
    ai4i = pd.DataFrame(
        [[1, "M14860", "M", 298.1, 308.6, 1551, 42.8, 0, 0]],
        columns=[
            "UDI",
            "Product ID",
            "Type",
            "Air temperature [K]",
            "Process temperature [K]",
            "Rotational speed [rpm]",
            "Torque [Nm]",
            "Tool wear [min]",
            "Machine failure",
        ],
    )
    features = machining.features_frame(machining.rename_ai4i(ai4i))
    assert list(features.columns) == list(machining.FEATURES)  # identifiers and label dropped
    assert features.iloc[0].to_dict() == machining.features_row(SNAPSHOT | {"tool_wear": 0})


@pytest.mark.parametrize("missing", ["torque", "quality"])
def test_missing_sensor_is_a_clear_error(missing: str) -> None:
    values = {k: v for k, v in SNAPSHOT.items() if k != missing}
    with pytest.raises(machining.MissingSensorError, match=missing):
        machining.features_row(values)
    with pytest.raises(machining.MissingSensorError, match=missing):
        machining.features_frame(pd.DataFrame([values]))


def test_none_or_nan_counts_as_missing() -> None:
    with pytest.raises(machining.MissingSensorError, match="tool_wear"):
        machining.features_row(SNAPSHOT | {"tool_wear": None})
    with pytest.raises(machining.MissingSensorError, match="torque"):
        machining.features_row(SNAPSHOT | {"torque": float("nan")})
    frame = pd.DataFrame([SNAPSHOT, SNAPSHOT | {"torque": float("nan")}])
    with pytest.raises(machining.MissingSensorError, match="torque"):
        machining.features_frame(frame)


def test_unknown_quality_is_rejected() -> None:
    with pytest.raises(ValueError, match="quality"):
        machining.features_row(SNAPSHOT | {"quality": "X"})
