"""Wiring of the simulator: settings, broker, the fleet runner, the commands consumer, probes.
It owns no tables, so it never connects to the database."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from pdm_common import topics
from pdm_common.broker import ensure_topics, subscribe_reliably
from pdm_common.service import ServiceKit
from pdm_common.settings import CommonSettings
from pdm_simulator.handlers import CommandsProcessor
from pdm_simulator.machines import Fleet
from pdm_simulator.runner import FleetRunner
from pdm_simulator.settings import SimulatorSettings

SERVICE = "simulator"


def create_app(
    common: CommonSettings | None = None, settings: SimulatorSettings | None = None
) -> AsgiFastStream:
    common = common or CommonSettings()
    settings = settings or SimulatorSettings()
    kit = ServiceKit.create(common, SERVICE)
    fleet = Fleet.build(settings.fleet, seed=settings.seed, scenario=settings.scenario)
    runner = FleetRunner(fleet, kit.publisher, settings.rate_hz)
    subscribe_reliably(
        kit.broker,
        topics.SIMULATOR_COMMANDS,
        kit.reliable(CommandsProcessor(runner)),
        group_id=settings.group_id,
        settings=common,
        max_records=100,
    )

    async def start() -> None:
        await ensure_topics(
            common.kafka_bootstrap, topics.all_topics(), partitions=common.kafka_partitions
        )
        runner.start()

    async def no_database() -> bool:
        return True

    return kit.app(database_ready=no_database, on_startup=[start], after_shutdown=[runner.stop])
