"""Wiring of the ingest service: settings, broker, database pool, handler, HTTP probes."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import BrokerPublisher, ensure_topics, make_broker, subscribe_reliably
from pdm_common.db.pool import create_pool
from pdm_common.delivery import ReliableBatchHandler, RetryPolicy
from pdm_common.service import PauseFlag, make_service_app
from pdm_common.settings import CommonSettings
from pdm_common.telemetry import configure_logging
from pdm_ingest.handlers import SERVICE, IngestProcessor
from pdm_ingest.settings import IngestSettings
from pdm_ingest.storage import ReadingStore


def create_app(
    common: CommonSettings | None = None, settings: IngestSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or IngestSettings()
    configure_logging(SERVICE, common.log_level, common.log_format)
    broker = make_broker(common, SERVICE)
    publisher = BrokerPublisher(broker)
    paused = PauseFlag(SERVICE)
    store = ReadingStore()
    processor = IngestProcessor(store, publisher, settings, common.kafka_max_message_bytes)
    handler = ReliableBatchHandler(
        processor,
        publisher,
        service=SERVICE,
        policy=RetryPolicy.from_settings(common),
        on_pause=paused,
    )
    subscribe_reliably(
        broker,
        topics.READINGS,
        handler,
        group_id=settings.group_id,
        settings=common,
        max_records=settings.batch_max_records,
    )

    async def create_topics() -> None:
        # Production creates topics declaratively (Strimzi KafkaTopic); this is a no-op there.
        await ensure_topics(
            common.kafka_bootstrap, topics.all_topics(), partitions=common.kafka_partitions
        )

    async def open_pool() -> None:
        # Opens without waiting: the service starts (not ready) while PostgreSQL is down.
        store.pool = await create_pool(
            common.database_url,
            min_size=1,
            max_size=common.database_pool_size,
            name=SERVICE,
            statement_timeout_ms=common.database_statement_timeout_ms,
        )

    async def close_pool() -> None:
        if store.pool is not None:
            await store.pool.close()

    return make_service_app(
        broker,
        SERVICE,
        readiness={"database": store.schema_ready, "consumer": paused.check},
        on_startup=[create_topics, open_pool],
        after_shutdown=[close_pool],
    )
