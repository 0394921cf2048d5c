"""Wiring of the anomaly service: settings, broker, pool, detectors, alarm book, probes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import structlog
from aiokafka.abc import ConsumerRebalanceListener
from faststream.asgi import AsgiFastStream

from pdm_anomaly import SERVICE
from pdm_anomaly.alarms import AlarmBook, AlarmPolicy
from pdm_anomaly.handlers import (
    CommandsProcessor,
    ContextProcessor,
    EventPublisher,
    ReadingsProcessor,
)
from pdm_anomaly.models import SnapshotModels, detector_factory
from pdm_anomaly.settings import AnomalySettings
from pdm_anomaly.shelves import ShelfIndex
from pdm_anomaly.storage import AlarmStore
from pdm_common import topics
from pdm_common.broker import subscribe_reliably
from pdm_common.service import BackgroundTask, ServiceKit
from pdm_common.settings import CommonSettings
from pdm_ml.detectors.limits import load_limits
from pdm_ml.detectors.semantics import load_catalog

log = structlog.get_logger(__name__)


class ForgetRevoked(ConsumerRebalanceListener):
    """Drop the state of assets whose partitions moved away; they warm up again if back."""

    def __init__(self, processor: ReadingsProcessor) -> None:
        self.processor = processor

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.processor.forget_partitions({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def create_app(
    common: CommonSettings | None = None, settings: AnomalySettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or AnomalySettings()
    kit = ServiceKit.create(common, SERVICE)
    broker = kit.broker
    store = AlarmStore()
    events = EventPublisher(store, kit.publisher)
    models = SnapshotModels(common.mlflow_tracking_uri, enabled=settings.multivariate)
    catalog = load_catalog(settings.sensors_file)
    shelves = ShelfIndex()
    policy = AlarmPolicy(
        timedelta(seconds=settings.clear_after_s),
        settings.open_after,
        timedelta(seconds=settings.group_window_s),
    )
    readings = ReadingsProcessor(
        store,
        events,
        AlarmBook(policy, shelves=shelves),
        detectors=detector_factory(catalog),
        limits=load_limits(settings.limits_file),
        models=models.get,
        warmup_readings=settings.warmup_readings,
        warmup_max_age=timedelta(hours=settings.warmup_max_age_hours),
        shelf_refresh_s=settings.shelf_refresh_s,
    )

    handler = kit.reliable
    subscribe_reliably(
        broker,
        topics.READINGS_VALIDATED,
        handler(readings),
        group_id=settings.group_id,
        settings=common,
        max_records=settings.batch_max_records,
        listener=ForgetRevoked(readings),
    )
    subscribe_reliably(
        broker,
        topics.ANOMALY_COMMANDS,
        handler(
            CommandsProcessor(
                store, events, shelves, shelf_max=timedelta(hours=settings.shelf_max_hours)
            )
        ),
        group_id=f"{settings.group_id}.commands",
        settings=common,
        max_records=500,
    )
    kit.follow_model_events(models.processor(), settings.group_id)
    kit.broadcast(
        topics.ASSET_CONTEXT, ContextProcessor(readings, catalog), f"{settings.group_id}.context"
    )
    outbox = BackgroundTask("alarm-outbox", lambda: _flush_outbox(events))

    async def start() -> None:
        store.pool = await kit.start()
        outbox.start()

    async def stop() -> None:
        await outbox.stop()
        if store.pool is not None:
            await store.pool.close()

    return kit.app(database_ready=store.schema_ready, on_startup=[start], after_shutdown=[stop])


async def _flush_outbox(events: EventPublisher) -> None:
    """Publish alarm events a crash left in the outbox; retried until the database answers.

    In the background, so that a database still down at start-up delays neither `/health`
    nor the consumers (which pause on their own until it is back)."""
    delay = 1.0
    while True:
        try:
            n = await events.flush_outbox()
            if n:
                log.info("outbox flushed", events=n)
            return
        except Exception as exc:
            log.warning("outbox flush failed; retrying", error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
