"""Batch processors of the prediction service.

Requests (`pdm.prediction.requests.v1`): each request is routed by asset type to its champion
models, featurised from inline values or the asset's stored readings, predicted; successful
predictions are stored (one transaction), then published on `pdm.predictions.v1`, then every
reply is sent (a reply that cannot be delivered is logged, not retried: it must not stall
other clients' requests), then (by the caller) offsets are committed. A request that cannot be
answered gets a `PredictionError` reply on its `reply_to` topic (same `correlation_id`
header); without a `reply_to` there is nobody to tell, so it is dead-lettered instead. A
malformed request is dead-lettered AND, when it names a `reply_to`, answered with an error.

Models (`pdm.models.v1`): reload a served champion whose alias moved.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import structlog
from pydantic import ValidationError

from pdm_common import topics
from pdm_common.db.pool import db_call
from pdm_common.delivery import (
    Delivery,
    DependencyUnavailable,
    Failure,
    Outgoing,
    PermanentError,
    Publisher,
)
from pdm_common.events import Prediction, PredictionError, PredictionRequest
from pdm_common.model_events import AliasMovedProcessor, record_model_in_use
from pdm_common.registry import (
    ChampionCache,
    LoadedModel,
    ModelNotFound,
    RegistryUnavailable,
    load_champion,
)
from pdm_common.telemetry import TRACE_HEADERS
from pdm_prediction.serving import (
    FAILURE,
    FAILURE_HORIZON,
    HEALTH_FORMULA,
    RUL,
    Confidence,
    FailureServable,
    ModeBoosters,
    ServingError,
    freshness,
    health,
    milling_snapshot,
    model_refs,
    predict_failure,
    predict_rul,
    route,
)
from pdm_prediction.settings import PredictionSettings
from pdm_prediction.storage import SERVICE, PredictionStore

log = structlog.get_logger(__name__)

REPLY_TO = "reply_to"
CORRELATION_ID = "correlation_id"
#: Stable namespace: a prediction's event id derives from its request id, so a redelivered
#: request republishes the same event id (consumers dedupe on it).
PREDICTION_NS = uuid.UUID("6f1d3c52-64a4-4c3e-9f55-4f1f0b7f2a11")


def describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    return ".".join(str(p) for p in err["loc"]) + ": " + err["msg"]


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def load_failure_model(name: str, tracking_uri: str, alias: str) -> LoadedModel:
    """The champion classifier plus its threshold tag and its run's failure-mode models."""
    from pdm_common.training.ai4i import MODES_ARTIFACT, THRESHOLD_TAG

    loaded = load_champion(name, tracking_uri, alias=alias)
    threshold = float(loaded.tags.get(THRESHOLD_TAG, "0.5"))
    modes: ModeBoosters | None = None
    if loaded.run_id:
        try:
            import mlflow.artifacts

            with tempfile.TemporaryDirectory(prefix="pdm-modes-") as tmp:
                path = mlflow.artifacts.download_artifacts(
                    run_id=loaded.run_id,
                    artifact_path=MODES_ARTIFACT,
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
                with open(path) as fh:
                    modes = ModeBoosters.from_json(json.load(fh))
        except Exception as exc:  # the probability is still served without modes
            log.warning("failure modes not loaded", model=name, error=repr(exc))
    return replace(loaded, model=FailureServable(loaded.model, threshold, modes))


def _load(name: str, tracking_uri: str, alias: str) -> LoadedModel:
    if name.startswith(f"{FAILURE}-"):
        return load_failure_model(name, tracking_uri, alias)
    return load_champion(name, tracking_uri, alias=alias)


class ServedModels:
    """Champions by name, loaded off the event loop; reports the versions in use."""

    def __init__(self, tracking_uri: str, cache: ChampionCache | None = None) -> None:
        self.cache = cache or ChampionCache(tracking_uri, loader=_load, retry_after_s=10.0)

    async def get(self, name: str) -> LoadedModel:
        first = self.cache.peek(name) is None
        loaded = await self.cache.aget(name)
        if first:
            record_model_in_use(SERVICE, name, loaded.version)
        return loaded

    def processor(self) -> AliasMovedProcessor:
        """Reloads for `pdm.models.v1`."""
        return AliasMovedProcessor(self.cache, SERVICE)


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request that did not validate; kept to answer its `reply_to` before dead-lettering."""

    error: str


Decoded: TypeAlias = "PredictionRequest | Malformed"


def reply_headers(delivery: Delivery, event_type: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "event_type": event_type}
    if CORRELATION_ID in delivery.headers:
        headers[CORRELATION_ID] = delivery.headers[CORRELATION_ID]
    return headers | {k: v for k, v in delivery.headers.items() if k in TRACE_HEADERS}


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


def _key(delivery: Delivery, request: PredictionRequest | None) -> bytes | None:
    return request.asset_id.encode() if request else delivery.key


class RequestsProcessor:
    """`delivery.BatchProcessor` for `pdm.prediction.requests.v1`."""

    def __init__(
        self,
        store: PredictionStore,
        publisher: Publisher,
        models: ServedModels,
        settings: PredictionSettings,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.models = models
        self.settings = settings

    def decode(self, delivery: Delivery) -> Decoded:
        try:
            return PredictionRequest.model_validate_json(delivery.value)
        except ValidationError as exc:
            return Malformed(describe(exc))

    async def process(self, items: Sequence[tuple[Delivery, Decoded]]) -> list[Failure]:
        failures: list[Failure] = []
        predictions: list[tuple[Delivery, Prediction]] = []
        replies: list[Outgoing] = []
        for delivery, request in items:
            if isinstance(request, Malformed):
                error = ServingError("invalid_request", f"malformed request: {request.error}")
                failures.append(Failure(delivery, PermanentError(error.message, reason="invalid")))
                replies += self._error_reply(delivery, None, error)
                continue
            try:
                prediction = await self.predict(request)
            except ServingError as exc:
                log.info(
                    "prediction refused",
                    asset_id=request.asset_id,
                    code=exc.code,
                    error=exc.message,
                    correlation_id=delivery.headers.get(CORRELATION_ID),
                )
                answer = self._error_reply(delivery, request, exc)
                if answer:
                    replies += answer
                else:  # nobody to tell: never silence, dead-letter it with the reason
                    failures.append(Failure(delivery, PermanentError(exc.message, reason=exc.code)))
                continue
            predictions.append((delivery, prediction))
        if predictions:
            await db_call(self.store.record([p for _, p in predictions]))
        events: list[Outgoing] = []
        for delivery, p in predictions:
            value = p.to_json()
            key = p.asset_id.encode()
            headers = reply_headers(delivery, p.event_type)
            events.append(Outgoing(topics.PREDICTIONS, value, key, headers))
            if reply_to := delivery.headers.get(REPLY_TO):
                replies.append(Outgoing(reply_to, value, key, headers))
        if events:
            try:
                await self.publisher.publish_many(events)
            except Exception as exc:
                raise DependencyUnavailable(f"cannot publish predictions: {exc!r}") from exc
        await self._send_replies(replies)
        return failures

    async def _send_replies(self, replies: Sequence[Outgoing]) -> None:
        """Replies are for a client waiting with a timeout: a reply topic that cannot take
        them (e.g. it does not exist where topics are not auto-created) must not stall the
        requests of everyone else, so a failed reply is logged, not retried."""
        if not replies:
            return
        try:
            await self.publisher.publish_many(replies)
        except Exception as exc:
            log.warning(
                "replies not delivered",
                replies=len(replies),
                topics=sorted({r.topic for r in replies}),
                error=repr(exc),
            )

    def _error_reply(
        self, delivery: Delivery, request: PredictionRequest | None, error: ServingError
    ) -> list[Outgoing]:
        reply_to = delivery.headers.get(REPLY_TO)
        if not reply_to:
            return []
        event = error_event(request, error)
        headers = reply_headers(delivery, event.event_type)
        return [Outgoing(reply_to, event.to_json(), _key(delivery, request), headers)]

    async def _model(self, name: str) -> LoadedModel:
        try:
            return await self.models.get(name)
        except RegistryUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        except ModelNotFound as exc:
            raise ServingError("no_champion", f"{name}: {exc}") from None

    async def predict(self, request: PredictionRequest) -> Prediction:
        parts = route(request.asset_type, self.settings.routes)
        loaded = {part: await self._model(name) for part, name in parts.items()}
        now = datetime.now(UTC)
        confidence = Confidence()
        fields: dict[str, Any] = {}
        as_of: datetime | None = None
        if FAILURE in loaded:
            readings, times = await self._snapshot(request)
            freshness(
                confidence,
                times,
                now,
                stale_after_s=self.settings.stale_after_s,
                max_skew_s=self.settings.max_skew_s,
            )
            as_of = max(times) if times else None
            servable: FailureServable = loaded[FAILURE].model
            snapshot = milling_snapshot(readings, request.attributes)
            result = await asyncio.to_thread(
                predict_failure, servable, snapshot, self.settings.top_factors
            )
            fields |= {
                "failure_probability": result.probability,
                "failure_horizon": FAILURE_HORIZON,
                "failure_predicted": result.predicted,
                "decision_threshold": result.threshold,
                "failure_modes": result.modes,
                "failure_modes_basis": result.modes_basis,
                "top_factors": result.factors,
            }
        if RUL in loaded:
            model = loaded[RUL].model
            history, times = await self._history(request, model)
            freshness(
                confidence,
                times[-1:],
                now,
                stale_after_s=self.settings.stale_after_s,
                max_skew_s=self.settings.max_skew_s,
            )
            as_of = max([t for t in (as_of, *times[-1:]) if t is not None], default=None)
            rul = await asyncio.to_thread(
                predict_rul, model, history, confidence, self.settings.min_history_rows
            )
            fields |= {
                "rul_p10": rul["p10"],
                "rul_p50": rul["p50"],
                "rul_p90": rul["p90"],
                "rul_unit": "cycles",
            }
        score, contributors = health(fields.get("failure_probability"), fields.get("rul_p50"))
        return Prediction(
            source=SERVICE,
            event_id=uuid.uuid5(PREDICTION_NS, str(request.request_id)),
            request_id=request.request_id,
            asset_id=request.asset_id,
            asset_type=request.asset_type,
            as_of=as_of,
            models=model_refs({p: (m.name, m.version) for p, m in loaded.items()}),
            health_score=score,
            health_formula=HEALTH_FORMULA,
            health_contributors=contributors,
            confidence=confidence.value,
            confidence_reasons=confidence.reasons,
            **fields,
        )

    async def _snapshot(
        self, request: PredictionRequest
    ) -> tuple[Mapping[str, float], list[datetime]]:
        """Inline readings (no times: they are current), or the latest stored per sensor."""
        if request.readings is not None:
            return request.readings, []
        since = datetime.now(UTC) - timedelta(hours=self.settings.readings_max_age_hours)
        latest = await db_call(self.store.latest(request.asset_id, since))
        if not latest:
            raise ServingError(
                "missing_sensors",
                f"no readings of {request.asset_id} in the last "
                f"{self.settings.readings_max_age_hours:g} h and none in the request",
            )
        return {s: v for s, (_, v) in latest.items()}, [t for t, _ in latest.values()]

    async def _history(
        self, request: PredictionRequest, model: Any
    ) -> tuple[list[dict[str, float]], list[datetime]]:
        if request.history is not None:
            return [dict(r) for r in request.history], []
        anchor = str(model.normaliser.settings[0])
        since = datetime.now(UTC) - timedelta(hours=self.settings.readings_max_age_hours)
        rows, times = await db_call(
            self.store.history(request.asset_id, anchor, self.settings.history_rows, since)
        )
        if not rows:
            raise ServingError(
                "insufficient_history",
                f"no stored history of {request.asset_id} (sensor {anchor!r}) in the last "
                f"{self.settings.readings_max_age_hours:g} h and none in the request",
                [anchor],
            )
        return rows, times
