"""Wiring of the scheduler: settings, broker, pool, the three consumers, the planning loop
and the outbox relay, probes."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import subscribe_reliably
from pdm_common.outbox import OutboxRelay
from pdm_common.service import BackgroundTask, ServiceKit
from pdm_common.settings import CommonSettings
from pdm_scheduler import SERVICE
from pdm_scheduler.handlers import AlarmsProcessor, CommandsProcessor, PredictionsProcessor
from pdm_scheduler.planner import Planner
from pdm_scheduler.settings import SchedulerSettings
from pdm_scheduler.storage import SchedulerStore

#: Commands per batch: a human or API rate, one transaction each.
COMMANDS_MAX_RECORDS = 100


def create_app(
    common: CommonSettings | None = None, settings: SchedulerSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or SchedulerSettings()
    kit = ServiceKit.create(common, SERVICE)
    store = SchedulerStore()
    planner = Planner(store, settings)
    relay = OutboxRelay(
        store.drain_outbox,
        kit.publisher,
        settings.outbox_interval_s,
        topic=topics.MAINTENANCE_EVENTS,
    )

    def wake() -> None:
        relay.wake()
        planner.poke()

    for topic, processor, group in (
        (topics.PREDICTIONS, PredictionsProcessor(store, settings, wake), settings.group_id),
        (topics.ANOMALIES, AlarmsProcessor(store, settings, wake), f"{settings.group_id}.alarms"),
    ):
        subscribe_reliably(
            kit.broker,
            topic,
            kit.reliable(processor),
            group_id=group,
            settings=common,
            max_records=settings.batch_max_records,
            relaxed=True,  # a work order a second later changes nothing
        )
    subscribe_reliably(
        kit.broker,
        topics.MAINTENANCE_COMMANDS,
        kit.reliable(CommandsProcessor(store, kit.publisher, planner, settings, wake)),
        group_id=f"{settings.group_id}.commands",
        settings=common,
        max_records=COMMANDS_MAX_RECORDS,
    )
    tasks = [BackgroundTask("planner", planner.run), BackgroundTask("outbox", relay.run)]

    async def start() -> None:
        store.pool = await kit.start()
        for task in tasks:
            task.start()

    async def stop() -> None:
        for task in tasks:
            await task.stop()
        if store.pool is not None:
            await store.pool.close()

    return kit.app(
        database_ready=store.schema_ready,
        details=lambda: {"planner_error": planner.last_error},
        on_startup=[start],
        after_shutdown=[stop],
    )
