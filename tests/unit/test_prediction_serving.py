"""Pure parts of the prediction service: routing, health score, confidence, error shapes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pdm_common.delivery import Delivery
from pdm_common.events import PredictionError, PredictionRequest
from pdm_prediction.handlers import Malformed, RequestsProcessor, error_event, reply_headers
from pdm_prediction.serving import (
    DEFAULT_ROUTES,
    Confidence,
    FailureServable,
    ServingError,
    freshness,
    health,
    milling_snapshot,
    predict_failure,
    route,
)
from pdm_prediction.settings import PredictionSettings


def test_routing_by_asset_type() -> None:
    assert route("milling", DEFAULT_ROUTES) == {"failure": "failure-milling"}
    assert route("turbofan", DEFAULT_ROUTES) == {"rul": "rul-turbofan"}
    with pytest.raises(ServingError) as info:
        route("pump", DEFAULT_ROUTES)
    assert info.value.code == "unknown_asset_type" and "milling" in info.value.message


def test_health_score_formula_and_contributors() -> None:
    score, parts = health(0.2, None)
    assert score == pytest.approx(80.0)
    assert [(c.name, c.weight, c.points) for c in parts] == [("failure", 1.0, pytest.approx(80))]
    score, parts = health(None, 62.5)
    assert score == pytest.approx(50.0)
    score, parts = health(0.0, 500.0)  # RUL beyond the cap counts as fully healthy
    assert score == pytest.approx(100.0)
    score, parts = health(0.6, 25.0)
    assert score == pytest.approx(0.5 * 40 + 0.5 * 20)
    assert sum(c.points for c in parts) == pytest.approx(score)
    assert health(1.5, -3.0)[0] == 0.0  # clamped
    with pytest.raises(ValueError):
        health(None, None)


def test_confidence_drops_for_stale_and_skewed_readings() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fresh = Confidence()
    freshness(fresh, [now, now], now, stale_after_s=60, max_skew_s=60)
    assert fresh.value == 1.0 and fresh.reasons == []
    old = Confidence()
    freshness(
        old,
        [now - timedelta(hours=2), now - timedelta(hours=1)],
        now,
        stale_after_s=60,
        max_skew_s=60,
    )
    assert old.value == pytest.approx(0.7 * 0.8) and len(old.reasons) == 2


def test_milling_snapshot_takes_quality_from_attribute_or_stored_code() -> None:
    assert milling_snapshot({"torque": 1.0}, {"quality": "M"})["quality"] == "M"
    assert milling_snapshot({"quality_code": 2.0}, {})["quality"] == "H"
    assert "quality" not in milling_snapshot({"torque": 1.0}, {})


def test_missing_sensors_are_named() -> None:
    with pytest.raises(ServingError) as info:
        predict_failure(FailureServable(object(), 0.5), {"torque": 40.0, "quality": "L"})
    assert info.value.code == "missing_sensors"
    assert "tool_wear" in info.value.missing and "torque" not in info.value.missing


def test_error_reply_shape_and_headers() -> None:
    request = PredictionRequest(asset_id="m-1", asset_type="pump")
    event = error_event(request, ServingError("unknown_asset_type", "no model", ["x"]))
    data = json.loads(event.to_json())
    assert data["event_type"] == "prediction.error" and data["code"] == "unknown_asset_type"
    assert data["request_id"] == str(request.request_id) and data["missing"] == ["x"]
    assert PredictionError.model_validate(data).asset_type == "pump"
    d = Delivery("t", 0, 0, None, b"", {"correlation_id": "c1", "reply_to": "r", "x": "y"}, 0)
    assert reply_headers(d, "prediction.error") == {
        "content-type": "application/json",
        "event_type": "prediction.error",
        "correlation_id": "c1",
    }


def test_malformed_request_decodes_to_malformed_not_an_exception() -> None:
    proc = RequestsProcessor(None, None, None, PredictionSettings())  # type: ignore[arg-type]
    bad = Delivery("t", 0, 0, None, b'{"asset_id": 3}', {}, 0)
    assert isinstance(proc.decode(bad), Malformed)
    good = Delivery(
        "t", 0, 0, None, json.dumps({"asset_id": "m-1", "asset_type": "milling"}).encode(), {}, 0
    )
    decoded = proc.decode(good)
    assert isinstance(decoded, PredictionRequest) and isinstance(decoded.request_id, uuid.UUID)


def _tiny_failure_model() -> FailureServable:
    import numpy as np
    import pandas as pd
    from lightgbm import LGBMClassifier

    from pdm_common.features import machining
    from pdm_prediction.serving import ModeBoosters

    rng = np.random.default_rng(0)
    n = 400
    raw = pd.DataFrame(
        {
            "air_temperature": rng.normal(300, 2, n),
            "process_temperature": rng.normal(310, 1.5, n),
            "rotational_speed": rng.normal(1500, 150, n),
            "torque": rng.normal(40, 10, n),
            "tool_wear": rng.uniform(0, 250, n),
            "quality": rng.choice(["L", "M", "H"], n),
        }
    )
    x = machining.features_frame(raw)
    y = (x["overstrain"] > 11_000).astype(int).to_numpy()
    clf = LGBMClassifier(n_estimators=20, num_leaves=4, verbose=-1).fit(x, y)
    mode_labels = np.arange(n) % 4
    modes = LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(x, mode_labels)
    boosters = ModeBoosters.from_json(
        {
            "strategy": "multiclass",
            "modes": ["TWF", "HDF", "PWF", "OSF"],
            "features": list(machining.FEATURES),
            "models": {"all": modes.booster_.model_to_string()},
        }
    )
    return FailureServable(clf, 0.4, boosters)


def test_failure_prediction_gives_probability_modes_and_treeshap_factors() -> None:
    servable = _tiny_failure_model()
    snapshot = {
        "air_temperature": 300.0,
        "process_temperature": 310.0,
        "rotational_speed": 1400.0,
        "torque": 60.0,
        "tool_wear": 240.0,
        "quality": "L",
    }
    result = predict_failure(servable, snapshot, k=2)
    assert 0.0 <= result.probability <= 1.0
    assert result.predicted == (result.probability >= 0.4) and result.threshold == 0.4
    assert set(result.modes) == {"TWF", "HDF", "PWF", "OSF"}
    assert sum(result.modes.values()) == pytest.approx(1.0)
    assert result.modes_basis == "conditional_on_failure"
    assert len(result.factors) == 2 and result.factors[0].value is not None
    with pytest.raises(ServingError) as info:
        predict_failure(servable, snapshot | {"quality": "X"})
    assert info.value.code == "invalid_request"


class _FakeRul:
    """Stands in for `RulModel`: the attributes serving reads, and `predict_history`."""

    class normaliser:
        settings = ("setting1",)
        sensors = ("s1", "s2", "s3", "s4")

    context = ("setting1", "cycle")
    windows = (5, 10)

    def __init__(self) -> None:
        self.seen: object = None

    def predict_history(self, frame: object) -> dict[str, float]:
        self.seen = frame
        return {"p10": 40.0, "p50": 60.0, "p90": 80.0}


def test_rul_needs_history_and_context_and_tolerates_some_missing_sensors() -> None:
    from pdm_prediction.serving import predict_rul

    row = {"setting1": 0.0, "cycle": 1.0, "s1": 1.0, "s2": 2.0, "s3": 3.0}
    model = _FakeRul()
    with pytest.raises(ServingError) as info:
        predict_rul(model, [row] * 3, Confidence(), min_rows=5)
    assert info.value.code == "insufficient_history"
    with pytest.raises(ServingError) as info:
        predict_rul(model, [{k: v for k, v in row.items() if k != "cycle"}] * 6, Confidence(), 5)
    assert info.value.code == "missing_sensors" and info.value.missing == ["cycle"]
    with pytest.raises(ServingError) as info:
        predict_rul(model, [{"setting1": 0.0, "cycle": 1.0, "s1": 1.0}] * 6, Confidence(), 5)
    assert info.value.code == "missing_sensors" and "s4" in info.value.missing

    confidence = Confidence()
    out = predict_rul(model, [row] * 6, confidence, min_rows=5)
    assert out == {"p10": 40.0, "p50": 60.0, "p90": 80.0}
    assert confidence.value < 1.0
    assert any("s4" in r for r in confidence.reasons)  # missing sensor named
    assert any("6 rows" in r for r in confidence.reasons)  # shorter than the 10-row window
