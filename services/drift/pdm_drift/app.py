"""Wiring of the drift service: settings, broker, pool, the four consumers (alias moves,
work-order labels, simulator truth, commands), the check timer, the outbox relay, probes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import subscribe_reliably
from pdm_common.outbox import OutboxRelay
from pdm_common.service import BackgroundTask, ServiceKit
from pdm_common.settings import CommonSettings
from pdm_drift import SERVICE
from pdm_drift.checker import Checker
from pdm_drift.handlers import CommandsProcessor, ModelsProcessor, truth_labels, work_order_labels
from pdm_drift.lifecycle import Lifecycle
from pdm_drift.models import Models
from pdm_drift.settings import DriftSettings
from pdm_drift.storage import DriftStore

#: Commands per batch: a human or API rate; each may run a check (seconds).
COMMANDS_MAX_RECORDS = 20
#: Alias moves per batch: each champion move runs a baseline check.
MODELS_MAX_RECORDS = 20
SESSION_TIMEOUT_MS = 6000


async def warm_up() -> None:
    """Import the heavy libraries a check needs (Evidently alone takes ~10 s) in a thread
    at start-up, not in the first check."""
    for module in ("mlflow", "lightgbm", "evidently", "evidently.presets"):
        with contextlib.suppress(Exception):
            await asyncio.to_thread(importlib.import_module, module)


def create_app(
    common: CommonSettings | None = None, settings: DriftSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or DriftSettings()
    kit = ServiceKit.create(common, SERVICE)
    store = DriftStore()
    models = Models(common.mlflow_tracking_uri)
    relay = OutboxRelay(store.drain_outbox, kit.publisher, settings.outbox_interval_s)
    instance = f"{socket.gethostname()}-{os.getpid()}"
    lifecycle = Lifecycle(store, models, settings, relay.wake, instance)
    checker = Checker(
        store,
        models,
        settings,
        relay.wake,
        lifecycle.on_drift,
        lifecycle.on_degraded,
        (lifecycle.judge_shadowed, lifecycle.retrain_scheduled),
    )

    group = settings.group_id
    for topic, processor, group_id, max_records in (
        (topics.MODELS, ModelsProcessor(store, checker), f"{group}.models", MODELS_MAX_RECORDS),
        (
            topics.MAINTENANCE_EVENTS,
            work_order_labels(store),
            f"{group}.labels",
            settings.batch_max_records,
        ),
        (
            topics.SIMULATOR_TRUTH,
            truth_labels(store),
            f"{group}.truth",
            settings.batch_max_records,
        ),
        (
            topics.DRIFT_COMMANDS,
            CommandsProcessor(store, kit.publisher, checker, lifecycle),
            f"{group}.commands",
            COMMANDS_MAX_RECORDS,
        ),
    ):
        subscribe_reliably(
            kit.broker,
            topic,
            kit.reliable(processor),
            group_id=group_id,
            settings=common,
            max_records=max_records,
            # eight group members per process join one after the other at start-up, each
            # waiting about half the session timeout: keep it short
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=SESSION_TIMEOUT_MS // 3,
            relaxed=topic != topics.DRIFT_COMMANDS,  # only commands have a caller waiting
        )
    tasks = [
        BackgroundTask("warm-up", warm_up),
        BackgroundTask("checks", checker.run),
        BackgroundTask("outbox", relay.run),
    ]

    async def start() -> None:
        store.pool = await kit.start()
        for task in tasks:
            task.start()

    async def stop() -> None:
        for task in tasks:
            await task.stop()
        await lifecycle.stop()
        if store.pool is not None:
            await store.pool.close()

    return kit.app(
        database_ready=store.schema_ready,
        details=lambda: {
            "check_error": checker.last_error,
            "retrains_running": len(lifecycle.tasks),
        },
        on_startup=[start],
        after_shutdown=[stop],
    )
