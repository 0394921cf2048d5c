"""Predictions: stored ones read from `predictions` (owned by the prediction service), and
on-demand ones through Kafka request/reply (504 when the service does not answer in time)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from pdm_common import topics
from pdm_common.events import (
    Prediction,
    PredictionBatch,
    PredictionBatchRequest,
    PredictionError,
    PredictionRequest,
)
from pdm_gateway import cursors, replies
from pdm_gateway.api.deps import (
    AssetIdPath,
    CursorQuery,
    FromQuery,
    LimitQuery,
    ToQuery,
    aware,
    bus,
    decode_cursor,
    page_limit,
    stores,
)
from pdm_gateway.api.schemas.predictions import PredictionPage
from pdm_gateway.keys import Principal
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import READ

router = APIRouter(prefix="/v1", tags=["predictions"])
#: Seconds a client should wait before asking again for a type whose model has no champion.
NO_CHAMPION_RETRY_S = 60
#: PredictionError code -> HTTP status of a single on-demand prediction.
ERROR_STATUS = {
    "invalid_request": 422,
    "unknown_asset_type": 422,
    "missing_sensors": 409,
    "insufficient_history": 409,
    "no_champion": 503,
    "model_error": 502,
}


@router.get(
    "/assets/{asset_id}/predictions/latest",
    response_model=dict[str, Any],
    responses=problem_responses(401, 403, 404, 429),
)
async def latest_prediction(
    request: Request, asset_id: AssetIdPath, _: Principal = READ
) -> dict[str, Any]:
    """The asset's newest stored prediction (a `prediction.made` event)."""
    rows = await stores(request).predictions.history(asset_id, None, None, None, 1)
    if not rows:
        raise Problem(404, f"no prediction stored for asset {asset_id!r}", slug="not-found")
    return rows[0][2]


@router.get(
    "/assets/{asset_id}/predictions",
    response_model=PredictionPage,
    responses=problem_responses(400, 401, 403, 422, 429),
)
async def prediction_history(
    request: Request,
    asset_id: AssetIdPath,
    start: FromQuery = None,
    end: ToQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> PredictionPage:
    """Stored predictions of the asset in `[from, to)`, newest first."""
    before = decode_cursor(cursor, (datetime, str))
    limit = page_limit(request, limit)
    rows = await stores(request).predictions.history(
        asset_id,
        aware(start, "from"),
        aware(end, "to"),
        before,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1][0], rows[-1][1]) if more else None
    return PredictionPage(asset_id=asset_id, items=[p for _, _, p in rows], next_cursor=next_cursor)


@router.post(
    "/predict",
    response_model=Prediction,
    responses=problem_responses(401, 403, 409, 413, 422, 429, 502, 503, 504),
)
async def predict(request: Request, body: PredictionRequest, _: Principal = READ) -> Prediction:
    """Predict now for one asset: from its stored readings, or from the `readings` /
    `history` in the body. The prediction is also stored and published."""
    body = body.model_copy(update={"trigger": "request"})
    (reply, *_rest) = await bus(request).call(
        topics.PREDICTION_REQUESTS,
        body.model_dump(mode="json"),
        body.asset_id,
        "prediction service",
        replies.PREDICTION,
    )
    if isinstance(reply, PredictionError):
        # no champion yet (e.g. `make run` still training it): worth retrying in a minute
        retry = {"Retry-After": str(NO_CHAMPION_RETRY_S)} if reply.code == "no_champion" else None
        raise Problem(
            ERROR_STATUS.get(reply.code, 502),
            reply.message,
            slug=reply.code.replace("_", "-"),
            code=reply.code,
            missing=reply.missing,
            headers=retry,
        )
    return reply


@router.post(
    "/predict/batch",
    response_model=PredictionBatch,
    responses=problem_responses(401, 403, 413, 422, 429, 503, 504),
)
async def predict_batch(
    request: Request, body: PredictionBatchRequest, _: Principal = READ
) -> PredictionBatch:
    """Predict for up to 1,000 assets at once; the answer lists the predictions and, in
    place of the ones that could not be made, errors (`errors`, with the asset and a code)."""
    requests = [r.model_copy(update={"trigger": "request"}) for r in body.requests]
    body = body.model_copy(update={"requests": requests})
    parts = await bus(request).call(
        topics.PREDICTION_REQUESTS,
        body.model_dump(mode="json"),
        str(body.batch_id),
        "prediction service",
        replies.PREDICTION_BATCH,
    )
    merged: list[PredictionBatch] = []
    for part in parts:
        if isinstance(part, PredictionError):
            raise Problem(422, part.message, slug="invalid-request", code=part.code)
        merged.append(part)
    merged.sort(key=lambda p: p.part)
    first = merged[0]
    return first.model_copy(
        update={
            "part": 1,
            "parts": 1,
            "predictions": [p for m in merged for p in m.predictions],
            "errors": [e for m in merged for e in m.errors],
        }
    )
