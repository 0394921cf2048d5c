"""Wiring of the simulator: settings, broker, the fleet runner, the commands consumer, probes.
It owns no tables, so it never connects to the database. At start it rebuilds the fleet's
state from its topics (`restore.py`) before the first tick and before the consumer joins."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import ensure_topics, subscribe_reliably
from pdm_common.service import ServiceKit
from pdm_common.settings import CommonSettings
from pdm_ml.simulation.machines import Fleet
from pdm_simulator import SERVICE
from pdm_simulator.handlers import CommandsProcessor
from pdm_simulator.repairs import RepairsProcessor
from pdm_simulator.restore import restore
from pdm_simulator.runner import FleetRunner, truth_message
from pdm_simulator.settings import SimulatorSettings


def create_app(
    common: CommonSettings | None = None, settings: SimulatorSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or SimulatorSettings()
    kit = ServiceKit.create(common, SERVICE)
    fleet = Fleet.build(settings.fleet, seed=settings.seed, scenario=settings.scenario)
    runner = FleetRunner(fleet, kit.publisher, settings.rate_hz)
    processor = CommandsProcessor(runner)
    subscribe_reliably(
        kit.broker,
        topics.SIMULATOR_COMMANDS,
        kit.reliable(processor),
        group_id=settings.group_id,
        settings=common,
        max_records=100,
    )

    subscribe_reliably(
        kit.broker,
        topics.MAINTENANCE_EVENTS,
        kit.reliable(RepairsProcessor(runner)),
        group_id=f"{settings.group_id}.maintenance",
        settings=common,
        max_records=100,
        relaxed=True,  # a repair a second later changes nothing
    )

    async def start() -> None:  # FastStream runs this before its consumers start
        await ensure_topics(
            common.kafka_bootstrap, topics.all_topics(), partitions=common.kafka_partitions
        )
        restored = await restore(fleet, common)
        processor.seen |= restored.seen
        if restored.rate_hz is not None:
            runner.rate_hz = restored.rate_hz
        if restored.owed_truth:
            await runner.publish([truth_message(t) for t in restored.owed_truth])
        runner.start()

    async def no_database() -> bool:
        return True

    return kit.app(database_ready=no_database, on_startup=[start], after_shutdown=[runner.stop])
