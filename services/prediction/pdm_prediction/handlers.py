"""Batch processors of the prediction service.

Requests (`pdm.prediction.requests.v1`): single requests and batch requests (many assets in
one message) of a fetched batch are scored together by the `Predictor`; the replies are sent
while the predictions are stored (one transaction), then the predictions are published on
`pdm.predictions.v1`, then (by the caller) offsets are committed. A reply that cannot be
delivered is logged, not retried: it must not stall other clients' requests.

What happens to a request that cannot be answered:
* a client's request (`trigger=request`) gets a `PredictionError` reply on its `reply_to`
  topic (same `correlation_id` header); without a `reply_to` there is nobody to tell, so it is
  dead-lettered instead;
* a malformed request is dead-lettered AND, when it names a `reply_to`, answered with an error;
* a periodic or alarm-triggered request is counted (`pdm_prediction_skipped_total`) and logged:
  an asset that stopped reporting must not fill the DLQ every round.

Alarms (`pdm.anomalies.v1`): an alarm opened or escalated on an asset becomes a request
(`trigger=alarm`, request id derived from the alarm event, so a redelivery is one request).

Models (`pdm.models.v1`): reload a served champion whose alias moved (`predictor.ServedModels`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import structlog
from prometheus_client import Counter
from pydantic import ValidationError

from pdm_common import topics
from pdm_common.db.pool import db_call
from pdm_common.delivery import (
    Delivery,
    Failure,
    Outgoing,
    PermanentError,
    Publisher,
    decode_json,
    event_outgoing,
    publish_or_pause,
)
from pdm_common.events import (
    AlarmEvent,
    Prediction,
    PredictionBatch,
    PredictionBatchRequest,
    PredictionError,
    PredictionRequest,
    describe_validation,
)
from pdm_common.request_reply import reply_headers, reply_outgoing, reply_to, send_replies
from pdm_common.telemetry import REGISTRY
from pdm_prediction import SERVICE
from pdm_prediction.predictor import Predictor, ShadowScorer
from pdm_prediction.serving import ServingError
from pdm_prediction.settings import PredictionSettings
from pdm_prediction.storage import PredictionStore

log = structlog.get_logger(__name__)

#: Alarm events that make the service re-assess the asset now.
REASSESS_ON = frozenset({"alarm.opened", "alarm.escalated"})
#: Namespace of the request ids derived from alarm event ids.
ALARM_REQUEST_NS = uuid.UUID("0b9a5a8e-2f57-4a43-9a43-0d2c3c1f6e55")

SKIPPED = Counter(
    "pdm_prediction_skipped_total",
    "Periodic or alarm-triggered predictions that could not be made, by trigger and code.",
    ["trigger", "code"],
    registry=REGISTRY,
)
SHADOWED = Counter(
    "pdm_prediction_shadow_total",
    "Challenger predictions stored beside the champion's (shadow scoring).",
    registry=REGISTRY,
)
SHADOW_FAILED = Counter(
    "pdm_prediction_shadow_failed_total",
    "Batches whose shadow scoring failed (logged; the champions' predictions are unaffected).",
    registry=REGISTRY,
)


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request that did not validate; kept to answer its `reply_to` before dead-lettering."""

    error: str


Decoded: TypeAlias = "PredictionRequest | PredictionBatchRequest | Malformed"


def decode_request(value: bytes) -> Decoded:
    """A single request, or a batch request (an object with a `requests` field)."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        return Malformed(f"not JSON: {exc}")
    model: type[PredictionRequest] | type[PredictionBatchRequest] = (
        PredictionBatchRequest
        if isinstance(data, dict) and "requests" in data
        else PredictionRequest
    )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return Malformed(describe_validation(exc))


def error_event(request: PredictionRequest | None, error: ServingError) -> PredictionError:
    return PredictionError(
        source=SERVICE,
        request_id=request.request_id if request else None,
        asset_id=request.asset_id if request else None,
        asset_type=request.asset_type if request else None,
        code=error.code,
        message=error.message,
        missing=error.missing,
    )


def batch_replies(
    batch: PredictionBatchRequest,
    outcomes: Sequence[Prediction | PredictionError],
    part_size: int,
) -> list[PredictionBatch]:
    """The reply parts of a batch, `part_size` outcomes each, in request order."""
    chunks = [outcomes[i : i + part_size] for i in range(0, len(outcomes), part_size)] or [[]]
    return [
        PredictionBatch(
            source=SERVICE,
            batch_id=batch.batch_id,
            part=n,
            parts=len(chunks),
            requests=len(batch.requests),
            predictions=[o for o in chunk if isinstance(o, Prediction)],
            errors=[o for o in chunk if isinstance(o, PredictionError)],
        )
        for n, chunk in enumerate(chunks, start=1)
    ]


class RequestsProcessor:
    """`delivery.BatchProcessor` for `pdm.prediction.requests.v1`."""

    def __init__(
        self,
        store: PredictionStore,
        publisher: Publisher,
        predictor: Predictor,
        settings: PredictionSettings,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.predictor = predictor
        self.settings = settings
        self.shadow = shadow

    def decode(self, delivery: Delivery) -> Decoded:
        return decode_request(delivery.value)

    async def process(self, items: Sequence[tuple[Delivery, Decoded]]) -> list[Failure]:
        failures: list[Failure] = []
        replies: list[Outgoing] = []
        requests: list[PredictionRequest] = []
        for delivery, decoded in items:
            if isinstance(decoded, Malformed):
                error = ServingError("invalid_request", f"malformed request: {decoded.error}")
                failures.append(Failure(delivery, PermanentError(error.message, reason="invalid")))
                replies += self._error_reply(delivery, None, error)
            elif isinstance(decoded, PredictionBatchRequest):
                requests += decoded.requests
            else:
                requests.append(decoded)
        outcomes = iter(await self.predictor.predict_many(requests))

        predictions: list[tuple[Delivery, Prediction]] = []
        for delivery, decoded in items:
            if isinstance(decoded, Malformed):
                continue
            if isinstance(decoded, PredictionBatchRequest):
                answers = [next(outcomes) for _ in decoded.requests]
                predictions += [(delivery, p) for p in answers if isinstance(p, Prediction)]
                replies += self._batch_reply(delivery, decoded, answers)
                continue
            outcome = next(outcomes)
            if isinstance(outcome, Prediction):
                predictions.append((delivery, outcome))
                if reply := reply_outgoing(delivery, outcome, outcome.asset_id.encode()):
                    replies.append(reply)
            elif decoded.trigger != "request":
                SKIPPED.labels(decoded.trigger, outcome.code).inc()
                log.info(
                    "prediction skipped",
                    asset_id=decoded.asset_id,
                    trigger=decoded.trigger,
                    code=outcome.code,
                    error=outcome.message,
                )
            elif answer := self._error_reply(delivery, decoded, outcome):
                replies += answer
            else:  # nobody to tell: never silence, dead-letter it with the reason
                failures.append(
                    Failure(delivery, PermanentError(outcome.message, reason=outcome.code))
                )
        # An event caused by a request carries the request's correlation id and trace context.
        events = [
            event_outgoing(topics.PREDICTIONS, p, p.asset_id, reply_headers(d, p.event_type))
            for d, p in predictions
        ]
        # The client waits for its reply and the answer does not depend on the store: reply
        # while the database writes. A batch that then fails is retried and replies again
        # (same event ids); the client keeps the first answer.
        done = await asyncio.gather(
            db_call(self.store.record([p for _, p in predictions])),
            send_replies(self.publisher, replies),
            return_exceptions=True,
        )
        if isinstance(done[0], BaseException):
            raise done[0]
        await publish_or_pause(self.publisher, events, "predictions")
        if self.shadow is not None and predictions:
            await self._shadow(requests, [p for _, p in predictions])
        return failures

    async def _shadow(
        self, requests: Sequence[PredictionRequest], predictions: Sequence[Prediction]
    ) -> None:
        """Shadow-score challengers after the champions' answers are out. Best effort: a
        failure here costs shadow rows (logged and counted), never the batch."""
        assert self.shadow is not None
        by_request = {r.request_id: r for r in requests}
        pairs = [(by_request[p.request_id], p) for p in predictions if p.request_id in by_request]
        try:
            shadows = await self.shadow.score(pairs)
            await db_call(self.store.record_shadow(shadows))
        except Exception as exc:
            SHADOW_FAILED.inc()
            log.warning("shadow scoring failed", error=repr(exc), requests=len(pairs))
            return
        if shadows:
            SHADOWED.inc(len(shadows))

    def _batch_reply(
        self,
        delivery: Delivery,
        batch: PredictionBatchRequest,
        outcomes: Sequence[Prediction | ServingError],
    ) -> list[Outgoing]:
        if reply_to(delivery) is None:  # nobody waits: the predictions are still published
            return []
        answers = [
            o if isinstance(o, Prediction) else error_event(r, o)
            for r, o in zip(batch.requests, outcomes, strict=True)
        ]
        parts = batch_replies(batch, answers, self.settings.reply_part_size)
        return [r for part in parts if (r := reply_outgoing(delivery, part)) is not None]

    def _error_reply(
        self, delivery: Delivery, request: PredictionRequest | None, error: ServingError
    ) -> list[Outgoing]:
        key = request.asset_id.encode() if request else None  # None: the request's key
        reply = reply_outgoing(delivery, error_event(request, error), key)
        return [] if reply is None else [reply]


# --------------------------------------------------------------------------------------------
# Alarms
# --------------------------------------------------------------------------------------------


class AlarmsProcessor:
    """`delivery.BatchProcessor` for `pdm.anomalies.v1`: re-assess an asset when an alarm on
    it opens or escalates, by queueing a request on `pdm.prediction.requests.v1` (keyed by
    asset, so the consumer group spreads the work and one retry/DLQ path applies)."""

    def __init__(self, publisher: Publisher, settings: PredictionSettings) -> None:
        self.publisher = publisher
        self.settings = settings

    def decode(self, delivery: Delivery) -> AlarmEvent:
        return decode_json(delivery, AlarmEvent)

    async def process(self, items: Sequence[tuple[Delivery, AlarmEvent]]) -> list[Failure]:
        requests = alarm_requests([e for _, e in items], self.settings.routes)
        messages = [event_outgoing(topics.PREDICTION_REQUESTS, r, r.asset_id) for r in requests]
        await publish_or_pause(self.publisher, messages, "alarm re-assessments")
        return []


def alarm_requests(
    events: Sequence[AlarmEvent], routes: dict[str, dict[str, str]]
) -> list[PredictionRequest]:
    """One request per asset with an opened/escalated alarm in `events` (the newest event
    names it), for asset types a model serves; the request id derives from the event id."""
    newest: dict[str, AlarmEvent] = {}
    for event in events:
        if event.event_type in REASSESS_ON and event.asset_type in routes:
            newest[event.asset_id] = event
    return [
        PredictionRequest(
            request_id=uuid.uuid5(ALARM_REQUEST_NS, str(e.event_id)),
            trigger="alarm",
            asset_id=e.asset_id,
            asset_type=e.asset_type,
        )
        for e in newest.values()
        if e.asset_type is not None
    ]
