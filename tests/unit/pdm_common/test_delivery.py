"""The retry/DLQ mechanism and the helpers processors share, driven with an in-memory
publisher (the broker path is covered by the ingest integration tests)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from pdm_common import delivery as d
from pdm_common.delivery import (
    Delivery,
    DependencyUnavailable,
    Failure,
    PermanentError,
    RetryPolicy,
    TransientError,
    decode_json,
    event_outgoing,
    publish_or_pause,
)
from pdm_common.events import AssetCommandResult, PredictionRequest
from tests.factories import TIMESTAMP_MS, FakePublisher, Sleeps, delivery, reliable

POLICY = RetryPolicy(
    in_process_attempts=3,
    topic_attempts=2,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    max_value_bytes=64,
)


def rec(
    value: bytes, offset: int = 0, topic: str = "pdm.t.v1", headers: dict | None = None
) -> Delivery:
    return delivery(
        value,
        topic=topic,
        partition=1,
        offset=offset,
        key=b"k",
        headers=headers,
        timestamp_ms=TIMESTAMP_MS,
    )


class Processor:
    """Decodes `bad*` as permanent errors; `script` lists exceptions to raise per call."""

    def __init__(self, script: list[Exception | None] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[list[bytes]] = []

    def decode(self, delivery: Delivery) -> bytes:
        if delivery.value.startswith(b"bad"):
            raise PermanentError("cannot parse", reason="undecodable")
        if delivery.value == b"crash":
            raise ZeroDivisionError("decoder bug")
        return delivery.value

    async def process(self, items: Sequence[tuple[Delivery, bytes]]) -> list[Failure]:
        self.calls.append([v for _, v in items])
        if self.script:
            exc = self.script.pop(0)
            if exc is not None:
                raise exc
        return [
            Failure(dl, PermanentError("refused", reason="rejected"))
            for dl, v in items
            if v == b"refuse"
        ]


def handler(processor: Processor, publisher: FakePublisher, pauses: list[bool] | None = None):
    sleeps = Sleeps()
    h = reliable(
        processor,
        publisher,
        service="svc",
        policy=POLICY,
        sleep=sleeps,
        on_pause=(pauses.append if pauses is not None else None),
    )
    return h, sleeps.delays


async def test_poison_goes_to_dlq_with_origin_headers_and_rest_is_processed():
    pub, proc = FakePublisher(), Processor()
    h, _ = handler(proc, pub)
    report = await h.handle([rec(b"ok1", 10), rec(b"bad json", 11), rec(b"ok2", 12)])
    assert proc.calls == [[b"ok1", b"ok2"]]
    assert report.processed == 2 and report.dead_lettered == 1
    [out] = pub.sent
    assert out.topic == "pdm.t.v1.dlq" and out.value == b"bad json" and out.key == b"k"
    assert out.headers[d.H_REASON] == "undecodable"
    assert out.headers[d.H_ERROR] == "cannot parse"
    assert out.headers[d.H_SERVICE] == "svc"
    assert out.headers[d.H_ORIGINAL_TOPIC] == "pdm.t.v1"
    assert out.headers[d.H_ORIGINAL_PARTITION] == "1"
    assert out.headers[d.H_ORIGINAL_OFFSET] == "11"
    assert out.headers[d.H_FIRST_SEEN].startswith("2023-11-14T22:13:20")


async def test_decoder_crash_is_dead_lettered_not_lost():
    pub = FakePublisher()
    h, _ = handler(Processor(), pub)
    report = await h.handle([rec(b"crash"), rec(b"ok")])
    assert report.dead_lettered == 1 and report.processed == 1
    assert "decoder crashed" in pub.sent[0].headers[d.H_ERROR]


async def test_per_message_failures_from_processor_are_routed():
    pub = FakePublisher()
    h, _ = handler(Processor(), pub)
    report = await h.handle([rec(b"refuse", 1), rec(b"ok", 2)])
    assert report.dead_lettered == 1
    assert pub.sent[0].headers[d.H_REASON] == "rejected"


async def test_transient_batch_retried_in_process_then_sent_to_retry_topic():
    err = TransientError("lock timeout", reason="database_transient")
    pub, proc = FakePublisher(), Processor([err, err, err])
    h, slept = handler(proc, pub)
    before = time.time()
    report = await h.handle([rec(b"a", 1), rec(b"b", 2)])
    assert len(proc.calls) == 3  # in-process attempts
    assert len(slept) == 2 and all(0 < s <= POLICY.backoff_max_s for s in slept)
    assert report.retried == 2 and report.dead_lettered == 0
    assert {o.topic for o in pub.sent} == {"pdm.t.v1.retry"}
    first = pub.sent[0]
    assert first.headers[d.H_ATTEMPT] == "1"
    assert float(first.headers[d.H_NOT_BEFORE]) > before
    assert first.headers[d.H_ORIGINAL_TOPIC] == "pdm.t.v1"
    assert first.value == b"a"


async def test_transient_success_on_second_try_sends_nothing():
    pub, proc = FakePublisher(), Processor([TransientError("blip"), None])
    h, _ = handler(proc, pub)
    report = await h.handle([rec(b"a")])
    assert report.processed == 1 and report.in_process_retries == 1 and pub.sent == []


async def test_retry_topic_attempts_exhausted_go_to_dlq():
    err = TransientError("still failing")
    pub, proc = FakePublisher(), Processor([err] * 3)
    h, _ = handler(proc, pub)
    headers = {
        d.H_ATTEMPT: str(POLICY.topic_attempts),
        d.H_ORIGINAL_TOPIC: "pdm.t.v1",
        d.H_ORIGINAL_OFFSET: "7",
        d.H_ORIGINAL_PARTITION: "0",
        "traceparent": "x",
    }
    report = await h.handle([rec(b"a", 3, topic="pdm.t.v1.retry", headers=headers)])
    assert report.dead_lettered == 1
    [out] = pub.sent
    assert out.topic == "pdm.t.v1.dlq"
    assert "gave up after 2 retry-topic attempts" in out.headers[d.H_ERROR]
    assert out.headers[d.H_ORIGINAL_OFFSET] == "7"  # the first offset, not the retry topic's
    assert out.headers["traceparent"] == "x"  # user headers survive


async def test_retry_topic_attempt_counter_increments():
    err = TransientError("again")
    pub, proc = FakePublisher(), Processor([err] * 3)
    h, _ = handler(proc, pub)
    await h.handle([rec(b"a", topic="pdm.t.v1.retry", headers={d.H_ATTEMPT: "1"})])
    assert pub.sent[0].topic == "pdm.t.v1.retry" and pub.sent[0].headers[d.H_ATTEMPT] == "2"


async def test_dependency_unavailable_pauses_until_back_and_never_dead_letters():
    down = DependencyUnavailable("database unavailable")
    pub, proc, pauses = FakePublisher(), Processor([down] * 7 + [None]), []
    h, slept = handler(proc, pub, pauses)
    report = await h.handle([rec(b"a"), rec(b"b")])
    assert len(proc.calls) == 8 and report.pauses == 7
    assert report.processed == 2 and pub.sent == []
    assert pauses[0] is True and pauses[-1] is False
    assert max(slept) <= POLICY.backoff_max_s


async def test_unexpected_exception_is_treated_as_transient():
    pub, proc = FakePublisher(), Processor([KeyError("bug")] * 3)
    h, _ = handler(proc, pub)
    report = await h.handle([rec(b"a")])
    assert report.retried == 1 and "KeyError" in pub.sent[0].headers[d.H_ERROR]


async def test_failed_dlq_publish_is_retried_before_returning():
    pub = FakePublisher(3)
    h, slept = handler(Processor(), pub)
    report = await h.handle([rec(b"bad")])
    assert report.dead_lettered == 1 and len(pub.sent) == 1 and len(slept) == 3


async def test_oversized_value_is_truncated_in_dlq_with_original_size():
    pub = FakePublisher()
    h, _ = handler(Processor(), pub)
    await h.handle([rec(b"bad" + b"x" * 500)])
    [out] = pub.sent
    assert len(out.value) == POLICY.max_value_bytes
    assert out.headers[d.H_TRUNCATED] == "503"


async def test_not_before_is_waited_for():
    pub = FakePublisher()
    h, slept = handler(Processor(), pub)
    due = time.time() + 0.04
    await h.handle([rec(b"a", headers={d.H_NOT_BEFORE: f"{due:.3f}", d.H_ATTEMPT: "1"})])
    assert slept and 0 < slept[0] <= 0.05


@pytest.mark.parametrize("attempt", [0, 1, 5, 50])
def test_backoff_is_bounded_and_grows(attempt: int):
    for _ in range(50):
        delay = POLICY.backoff(attempt)
        ceiling = min(POLICY.backoff_max_s, POLICY.backoff_initial_s * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_pause_step_is_capped_low_so_a_consumer_resumes_soon():
    policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=60.0, pause_max_s=2.0)
    assert all(policy.pause_delay(n) <= 2.0 for n in range(1, 100))
    assert policy.pause_delay(1) >= 1.0  # still backs off: no hot loop against a dead server


# --------------------------------------------------------------------------------------------
# Helpers processors share
# --------------------------------------------------------------------------------------------


class Ping(BaseModel):
    n: int


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"{", "message: Invalid JSON: EOF while parsing an object at line 1 column 1"),
        (b"[]", "message: Input should be an object"),
        (b'{"n": "x"}', "n: Input should be a valid integer, unable to parse string as an integer"),
        (b"{}", "n: Field required"),
    ],
)
def test_decode_json_names_the_first_problem_as_a_permanent_error(value: bytes, error: str):
    assert decode_json(rec(b'{"n": 3}'), Ping) == Ping(n=3)
    with pytest.raises(PermanentError) as info:
        decode_json(rec(value), Ping)
    assert (str(info.value), info.value.reason) == (error, "invalid")
    assert info.value.__cause__ is None  # the pydantic traceback is noise in the DLQ header


async def test_a_message_decode_json_refuses_is_dead_lettered_with_the_reason():
    class Decoding(Processor):
        def decode(self, delivery: Delivery) -> bytes:
            return str(decode_json(delivery, Ping).n).encode()

    pub, proc = FakePublisher(), Decoding()
    h, _ = handler(proc, pub)
    report = await h.handle([rec(b'{"n": 1}', 1), rec(b'{"n": []}', 2)])
    assert proc.calls == [[b"1"]] and report.dead_lettered == 1
    [out] = pub.sent
    assert out.topic == "pdm.t.v1.dlq" and out.headers[d.H_REASON] == "invalid"
    assert out.headers[d.H_ERROR] == "n: Input should be a valid integer"


def test_event_outgoing_is_the_event_json_keyed_with_its_type_and_carried_headers():
    event = AssetCommandResult(source="ingest", status="deleted")
    carried = {"correlation_id": "c1", "traceparent": "00-a-b-01"}
    out = event_outgoing("pdm.t.v1", event, "pump-1", carried)
    assert (out.topic, out.key, out.value) == ("pdm.t.v1", b"pump-1", event.to_json())
    assert out.headers == {
        "content-type": "application/json",
        "event_type": "asset.command_result",
        "correlation_id": "c1",
        "traceparent": "00-a-b-01",
    }
    assert list(out.headers)[:2] == ["content-type", "event_type"]
    assert event_outgoing("t", event, b"k").key == b"k"
    assert event_outgoing("t", event, None).key is None
    assert carried == {"correlation_id": "c1", "traceparent": "00-a-b-01"}  # not modified


def test_event_outgoing_of_a_plain_model_has_no_event_type():
    request = PredictionRequest(asset_id="m-1", asset_type="milling")
    out = event_outgoing("pdm.t.v1", request, request.asset_id)
    assert out.value == request.model_dump_json().encode() and out.key == b"m-1"
    assert out.headers == {"content-type": "application/json"}


def test_trace_context_is_what_an_event_derived_from_a_message_carries_on():
    headers = {"traceparent": "00-a-b-01", "tracestate": "x=1", "correlation_id": "c", "k": "v"}
    assert rec(b"", headers=headers).trace_context() == {
        "traceparent": "00-a-b-01",
        "tracestate": "x=1",
    }
    assert rec(b"").trace_context() == {}


async def test_publish_or_pause_publishes_all_or_raises_dependency_unavailable():
    messages = [d.Outgoing("pdm.t.v1", b"1"), d.Outgoing("pdm.t.v1", b"2")]
    pub = FakePublisher()
    await publish_or_pause(pub, messages, "things")
    assert pub.sent == messages
    await publish_or_pause(pub, [], "things")
    assert pub.calls == 1  # nothing to publish: no call
    down = FakePublisher.down(ConnectionError("no leader"))
    with pytest.raises(DependencyUnavailable) as info:
        await publish_or_pause(down, messages, "things")
    assert str(info.value) == "cannot publish things: ConnectionError('no leader')"
    assert isinstance(info.value.__cause__, ConnectionError) and down.sent == []


async def test_a_batch_whose_events_cannot_be_published_pauses_until_the_broker_is_back():
    class Announcing(Processor):
        def __init__(self, downstream: FakePublisher) -> None:
            super().__init__()
            self.downstream = downstream

        async def process(self, items: Sequence[tuple[Delivery, bytes]]) -> list[Failure]:
            self.calls.append([v for _, v in items])
            events = [d.Outgoing("pdm.out.v1", v) for _, v in items]
            await publish_or_pause(self.downstream, events, "announcements")
            return []

    downstream, pauses = FakePublisher(2), []
    proc = Announcing(downstream)
    h, _ = handler(proc, FakePublisher(), pauses)
    report = await h.handle([rec(b"a"), rec(b"b")])
    assert report.pauses == 2 and report.processed == 2
    assert report.dead_lettered == report.retried == 0
    assert len(proc.calls) == 3 and pauses == [True, True, False]
    assert [m.value for m in downstream.on("pdm.out.v1")] == [b"a", b"b"]
