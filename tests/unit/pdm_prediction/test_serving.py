"""Pure parts of the prediction service: routing, health score, confidence, error shapes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord

from pdm_common.delivery import Delivery
from pdm_common.events import PredictionError, PredictionRequest
from pdm_common.request_reply import reply_headers
from pdm_prediction.handlers import Malformed, RequestsProcessor, error_event
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
from tests import factories
from tests.factories import FakePublisher, alarm_event, consumer_record, prediction


def test_routing_by_asset_type() -> None:
    assert route("milling", DEFAULT_ROUTES) == {"failure": "failure-milling"}
    assert route("turbofan", DEFAULT_ROUTES) == {"rul": "rul-turbofan"}
    with pytest.raises(ServingError) as info:
        route("conveyor", DEFAULT_ROUTES)
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
    d = factories.delivery(topic="t", headers={"correlation_id": "c1", "reply_to": "r", "x": "y"})
    assert reply_headers(d, "prediction.error") == {
        "content-type": "application/json",
        "event_type": "prediction.error",
        "correlation_id": "c1",
    }


def test_malformed_request_decodes_to_malformed_not_an_exception() -> None:
    proc = RequestsProcessor(None, None, None, PredictionSettings())  # type: ignore[arg-type]
    bad = factories.delivery(b'{"asset_id": 3}', topic="t")
    assert isinstance(proc.decode(bad), Malformed)
    good = factories.delivery({"asset_id": "m-1", "asset_type": "milling"}, topic="t")
    decoded = proc.decode(good)
    assert isinstance(decoded, PredictionRequest) and isinstance(decoded.request_id, uuid.UUID)


def _tiny_failure_model() -> FailureServable:
    import numpy as np
    import pandas as pd
    from lightgbm import LGBMClassifier

    from pdm_ml.features import machining
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


#: One milling snapshot (AI4I sensors and quality) the failure-model tests score.
MILL_SNAPSHOT = {
    "air_temperature": 300.0,
    "process_temperature": 310.0,
    "rotational_speed": 1400.0,
    "torque": 60.0,
    "tool_wear": 240.0,
    "quality": "L",
}


def test_failure_prediction_gives_probability_modes_and_treeshap_factors() -> None:
    servable = _tiny_failure_model()
    snapshot = MILL_SNAPSHOT
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


def test_batch_scoring_equals_one_by_one() -> None:
    from pdm_prediction.serving import failure_features, predict_failures

    servable = _tiny_failure_model()
    base = {
        "air_temperature": 300.0,
        "process_temperature": 310.0,
        "rotational_speed": 1400.0,
        "quality": "M",
    }
    snapshots = [base | {"torque": 20.0 + 5 * i, "tool_wear": 20.0 * i} for i in range(12)]
    batch = predict_failures(servable, [failure_features(s) for s in snapshots], k=3)
    for snapshot, together in zip(snapshots, batch, strict=True):
        alone = predict_failure(servable, snapshot, k=3)
        assert together.probability == pytest.approx(alone.probability, abs=1e-12)
        assert together.modes == pytest.approx(alone.modes)
        assert [f.feature for f in together.factors] == [f.feature for f in alone.factors]
    assert len({round(r.probability, 9) for r in batch}) > 1  # the rows really differ
    assert predict_failures(servable, []) == []
    cut = sorted(r.probability for r in batch)[6]
    gated = predict_failures(servable, [failure_features(s) for s in snapshots], 3, cut)
    assert [bool(g.factors) for g in gated] == [r.probability >= cut for r in batch]
    assert [g.factors for g in gated if g.factors] == [
        r.factors for r in batch if r.probability >= cut
    ]


def test_a_batch_request_is_told_apart_from_a_single_one_and_bounded() -> None:
    from pdm_common.events import MAX_BATCH_REQUESTS, PredictionBatchRequest
    from pdm_prediction.handlers import decode_request

    one = {"asset_id": "m-1", "asset_type": "milling"}
    assert isinstance(decode_request(json.dumps(one).encode()), PredictionRequest)
    batch = decode_request(json.dumps({"requests": [one, one | {"asset_id": "m-2"}]}).encode())
    assert isinstance(batch, PredictionBatchRequest) and len(batch.requests) == 2
    for bad, where in (
        ({"requests": []}, "requests"),
        ({"requests": [one] * (MAX_BATCH_REQUESTS + 1)}, "requests"),
        ({"requests": [{"asset_id": "m-1"}]}, "requests.0.asset_type"),
        ({"asset_id": "m-1", "asset_type": "milling", "trigger": "cron"}, "trigger"),
    ):
        decoded = decode_request(json.dumps(bad).encode())
        assert isinstance(decoded, Malformed) and decoded.error.startswith(where), decoded
    assert isinstance(decode_request(b"[1, 2"), Malformed)


def test_batch_replies_are_split_into_numbered_parts_in_request_order() -> None:
    from pdm_common.events import PredictionBatchRequest
    from pdm_prediction.handlers import batch_replies

    requests = [PredictionRequest(asset_id=f"m-{i}", asset_type="milling") for i in range(5)]
    batch = PredictionBatchRequest(requests=requests)
    outcomes: list = []
    for i, r in enumerate(requests):
        if i == 2:
            outcomes.append(error_event(r, ServingError("missing_sensors", "no torque")))
        else:
            outcomes.append(prediction(r, health_score=50.0))
    parts = batch_replies(batch, outcomes, part_size=2)
    assert [(p.part, p.parts, p.requests) for p in parts] == [(1, 3, 5), (2, 3, 5), (3, 3, 5)]
    assert [p.asset_id for p in parts[0].predictions] == ["m-0", "m-1"]
    assert [e.asset_id for e in parts[1].errors] == ["m-2"]
    assert [p.asset_id for p in parts[1].predictions] == ["m-3"]
    assert all(p.batch_id == batch.batch_id for p in parts)


def test_alarms_become_one_request_per_asset_with_a_stable_id() -> None:
    from pdm_prediction.handlers import alarm_requests

    events = [
        alarm_event("m-1", "alarm.opened"),
        alarm_event("m-1", "alarm.escalated"),
        alarm_event("m-2", "alarm.cleared"),
        alarm_event("m-3", "alarm.acknowledged"),
        alarm_event("p-1", "alarm.opened", "conveyor"),  # no model serves conveyors
        alarm_event("x-1", "alarm.opened", None),
    ]
    requests = alarm_requests(events, DEFAULT_ROUTES)
    assert [(r.asset_id, r.trigger) for r in requests] == [("m-1", "alarm")]
    assert requests[0].request_id == alarm_requests(events, DEFAULT_ROUTES)[0].request_id
    assert requests[0].request_id != alarm_requests(events[:1], DEFAULT_ROUTES)[0].request_id


async def test_alarms_processor_queues_requests_and_pauses_while_the_broker_is_down() -> None:
    from pdm_common.delivery import DependencyUnavailable, PermanentError
    from pdm_prediction.handlers import AlarmsProcessor

    publisher = FakePublisher()
    proc = AlarmsProcessor(publisher, PredictionSettings())
    events = [alarm_event("m-1"), alarm_event("m-2", "alarm.cleared")]
    decoded = [(d, proc.decode(d)) for d in (factories.delivery(e) for e in events)]
    assert [e for _, e in decoded] == events
    assert await proc.process(decoded) == []
    [queued] = publisher.on("pdm.prediction.requests.v1")
    request = PredictionRequest.model_validate_json(queued.value)
    assert (request.asset_id, request.trigger, queued.key) == ("m-1", "alarm", b"m-1")
    assert queued.headers == {"content-type": "application/json"}
    with pytest.raises(PermanentError) as info:
        proc.decode(factories.delivery({"asset_id": "m-1"}))
    assert info.value.reason == "invalid"
    down = AlarmsProcessor(FakePublisher.down(), PredictionSettings())
    with pytest.raises(DependencyUnavailable):
        await down.process(decoded)


async def test_processor_answers_batches_skips_periodic_errors_and_dead_letters_the_unanswerable():
    from pdm_prediction.handlers import RequestsProcessor

    class Predictor:
        async def predict_many(self, requests):
            return [
                ServingError("missing_sensors", "no data", ["torque"])
                if r.asset_id.startswith("b")
                else prediction(r)
                for r in requests
            ]

    class Store:
        def __init__(self) -> None:
            self.recorded: list = []

        async def record(self, predictions):
            self.recorded += predictions

    def delivery(offset: int, body: dict | bytes, reply_to: str | None = "replies") -> Delivery:
        headers = {"correlation_id": f"c{offset}"} | ({"reply_to": reply_to} if reply_to else {})
        return factories.delivery(body, topic="req", offset=offset, headers=headers)

    store, publisher = Store(), FakePublisher()
    proc = RequestsProcessor(store, publisher, Predictor(), PredictionSettings(reply_part_size=2))  # type: ignore[arg-type]
    m = {"asset_type": "milling"}
    deliveries = [
        delivery(0, {"asset_id": "m-1"} | m),
        delivery(1, {"requests": [{"asset_id": f"{p}-{i}"} | m for i, p in enumerate("mmbm")]}),
        delivery(2, {"asset_id": "bad-1", "trigger": "periodic"} | m, reply_to=None),
        delivery(3, {"asset_id": "bad-2"} | m, reply_to=None),
        delivery(4, {"asset_id": "bad-3"} | m),
        delivery(5, b"{", reply_to=None),
    ]
    failures = await proc.process([(d, proc.decode(d)) for d in deliveries])

    assert sorted((f.delivery.offset, f.error.reason) for f in failures) == [
        (3, "missing_sensors"),
        (5, "invalid"),
    ]
    assert sorted(p.asset_id for p in store.recorded) == ["m-0", "m-1", "m-1", "m-3"]
    events = publisher.on("pdm.predictions.v1")
    assert len(events) == 4
    replies = [(o.headers["correlation_id"], json.loads(o.value)) for o in publisher.on("replies")]
    by_cid: dict[str, list] = {}
    for cid, body in replies:
        by_cid.setdefault(cid, []).append(body)
    assert [b["event_type"] for b in by_cid["c0"]] == ["prediction.made"]
    assert [(b["part"], b["parts"]) for b in by_cid["c1"]] == [(1, 2), (2, 2)]
    assert sum(len(b["predictions"]) for b in by_cid["c1"]) == 3
    assert [e["asset_id"] for b in by_cid["c1"] for e in b["errors"]] == ["b-2"]
    assert by_cid["c4"][0]["code"] == "missing_sensors"
    assert set(by_cid) == {"c0", "c1", "c4"}


async def test_reply_client_waits_for_every_part_and_ignores_strangers() -> None:
    from pdm_common.request_reply import ReplyClient, _Pending

    client = ReplyClient("unused:9092")
    loop = asyncio.get_running_loop()
    single, batch = _Pending(loop.create_future()), _Pending(loop.create_future())
    client._pending |= {"a": single, "b": batch}

    def record(cid: str, body: dict) -> ConsumerRecord[bytes, bytes]:
        return consumer_record(body, topic=client.topic, headers={"correlation_id": cid})

    client._receive(record("zzz", {"parts": 1}), 1.0)  # nobody waits for it
    client._receive(record("b", {"part": 2, "parts": 3}), 1.0)
    client._receive(record("a", {"event_type": "prediction.made"}), 2.0)
    assert single.future.done() and single.future.result() == 2.0 and len(single.parts) == 1
    client._receive(record("b", {"part": 1, "parts": 3}), 3.0)
    assert not batch.future.done()
    client._receive(record("b", {"part": 3, "parts": 3}), 4.0)
    assert batch.future.result() == 4.0 and len(batch.parts) == 3
    client._receive(record("a", {}), 5.0)  # a late duplicate changes nothing
    assert single.future.result() == 2.0 and len(single.parts) == 1


class _RecordingBooster:
    """A booster that records the keyword arguments of its predict calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def predict(self, x: object, **kwargs: object) -> list[float]:
        self.calls.append(kwargs)
        return [0.25] * len(x)  # type: ignore[arg-type]


def test_small_frames_are_scored_on_one_thread_and_large_ones_keep_the_threads() -> None:
    import pandas as pd

    from pdm_ml.features import machining
    from pdm_prediction.serving import SINGLE_THREAD_ROWS, ModeBoosters

    booster = _RecordingBooster()
    modes = ModeBoosters("ovr", ("TWF",), tuple(machining.FEATURES), {"TWF": booster})
    row = dict.fromkeys(machining.FEATURES, 1.0)
    assert modes.proba(pd.DataFrame([row])) == [{"TWF": 0.25}]
    modes.proba(pd.DataFrame([row] * SINGLE_THREAD_ROWS))
    assert booster.calls == [{"num_threads": 1}, {}]


def test_one_thread_gives_the_same_answer() -> None:
    import pandas as pd

    from pdm_ml.features import machining
    from pdm_prediction.serving import SINGLE_THREAD_ROWS, predict_failures

    servable = _tiny_failure_model()
    snapshot = MILL_SNAPSHOT
    row = machining.features_row(snapshot)
    one = predict_failures(servable, [row], k=2)[0]
    many = predict_failures(servable, [row] * SINGLE_THREAD_ROWS, k=2)[0]
    assert one == many
    frame = pd.DataFrame([row])
    assert servable.probabilities(frame)[0] == pytest.approx(one.probability)
