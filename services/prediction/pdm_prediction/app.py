"""Wiring of the prediction service: settings, broker, pool, champion models, probes."""

from __future__ import annotations

import asyncio

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import subscribe_reliably
from pdm_common.model_events import AliasFollowers
from pdm_common.service import ServiceKit
from pdm_common.settings import CommonSettings
from pdm_prediction import SERVICE
from pdm_prediction.handlers import AlarmsProcessor, RequestsProcessor
from pdm_prediction.predictor import Predictor, ServedModels, ShadowScorer
from pdm_prediction.settings import PredictionSettings
from pdm_prediction.storage import PredictionStore
from pdm_prediction.timer import PeriodicScorer


def create_app(
    common: CommonSettings | None = None, settings: PredictionSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or PredictionSettings()
    kit = ServiceKit.create(common, SERVICE)
    broker = kit.broker
    store = PredictionStore()
    models = ServedModels(common.mlflow_tracking_uri)
    uri = common.mlflow_tracking_uri
    shadow = ShadowScorer(store, settings, uri) if settings.shadow_scoring else None

    timer = PeriodicScorer(store, kit.publisher, settings)
    handler = kit.reliable
    subscribe_reliably(
        broker,
        topics.PREDICTION_REQUESTS,
        handler(
            RequestsProcessor(
                store, kit.publisher, Predictor(store, models, settings), settings, shadow
            )
        ),
        group_id=settings.group_id,
        settings=common,
        max_records=settings.batch_max_records,
    )
    subscribe_reliably(
        broker,
        topics.ANOMALIES,
        handler(AlarmsProcessor(kit.publisher, settings)),
        group_id=f"{settings.group_id}.alarms",
        settings=common,
        max_records=settings.batch_max_records,
        relaxed=True,  # an alarm's prediction a second later changes nothing
    )
    followers = [models.processor()] + ([shadow.processor()] if shadow else [])
    kit.follow_model_events(AliasFollowers(followers), settings.group_id)

    routed = [name for parts in settings.routes.values() for name in parts.values()]
    preload: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal preload
        store.pool = await kit.start()
        timer.start()
        preload = asyncio.create_task(models.preload(routed), name="preload-champions")

    async def stop() -> None:
        if preload is not None:
            preload.cancel()
        await timer.stop()
        if store.pool is not None:
            await store.pool.close()

    return kit.app(
        database_ready=store.schema_ready,
        details=lambda: {"models": models.status(routed)},
        on_startup=[start],
        after_shutdown=[stop],
    )
