"""Wiring of the ingest service: settings, broker, database pool, handlers, HTTP probes."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import subscribe_reliably
from pdm_common.service import ServiceKit
from pdm_common.settings import CommonSettings
from pdm_ingest import SERVICE
from pdm_ingest.handlers import AssetCommandsProcessor, IngestProcessor
from pdm_ingest.settings import IngestSettings
from pdm_ingest.storage import AssetStore, ReadingStore

#: Asset commands per batch: a human or API rate, and each is its own transaction.
ASSET_COMMANDS_MAX_RECORDS = 500


def create_app(
    common: CommonSettings | None = None, settings: IngestSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or IngestSettings()
    kit = ServiceKit.create(common, SERVICE)
    store = ReadingStore()
    processor = IngestProcessor(store, kit.publisher, settings, common.kafka_max_message_bytes)
    subscribe_reliably(
        kit.broker,
        topics.READINGS,
        kit.reliable(processor),
        group_id=settings.group_id,
        settings=common,
        max_records=settings.batch_max_records,
    )
    # Commands share the readings' store, so a delete also clears its known-asset cache.
    commands = AssetCommandsProcessor(AssetStore(store), kit.publisher)
    subscribe_reliably(
        kit.broker,
        topics.ASSET_COMMANDS,
        kit.reliable(commands),
        group_id=f"{settings.group_id}.assets",
        settings=common,
        max_records=ASSET_COMMANDS_MAX_RECORDS,
    )

    async def start() -> None:
        store.pool = await kit.start()

    async def stop() -> None:
        if store.pool is not None:
            await store.pool.close()

    return kit.app(database_ready=store.schema_ready, on_startup=[start], after_shutdown=[stop])
