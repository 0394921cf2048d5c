"""The simulator's consumer of `pdm.simulator.commands.v1`: steer the running fleet.

A malformed command, or one that can never apply (unknown asset, a failure mode the machine
type does not have, repairing what is not broken), is dead-lettered with the reason; a
command id seen before changes nothing (redelivery, or applied already by the start-up
replay of `restore.py`). A command takes effect at its record's timestamp (`command_time`),
so a restart that replays the topic rebuilds exactly the same failures. The ground truth a
command causes is published by the runner on its next tick, with the readings it affects; a
scenario change (before it applies) and a repair (after) are announced on
`pdm.asset.context.v1`, so the anomaly service re-learns the new normal instead of alarming.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from pdm_common import topics
from pdm_common.delivery import Delivery, Failure, PermanentError, decode_json, event_outgoing
from pdm_common.events import AssetContextChanged, SimulatorCommand
from pdm_simulator.commands import CommandRefused, apply_command, command_time, context_events
from pdm_simulator.runner import FleetRunner

log = structlog.get_logger(__name__)


class CommandsProcessor:
    """`delivery.BatchProcessor` for `pdm.simulator.commands.v1`."""

    def __init__(self, runner: FleetRunner, seen: set[str] | None = None) -> None:
        self.runner = runner
        self.seen: set[str] = set() if seen is None else seen

    def decode(self, delivery: Delivery) -> SimulatorCommand:
        return decode_json(delivery, SimulatorCommand)

    async def process(self, items: Sequence[tuple[Delivery, SimulatorCommand]]) -> list[Failure]:
        failures: list[Failure] = []
        now = datetime.now(UTC)
        for delivery, command in items:
            key = str(command.command_id)
            if key in self.seen:
                continue
            try:
                at = command_time(delivery.timestamp_ms, now)
                context = context_events(self.runner.fleet, command, at)
                if command.action == "scenario":  # before the readings of the new scenario
                    await self._announce(context)
                rate = apply_command(self.runner.fleet, command, at)
            except CommandRefused as exc:
                failures.append(Failure(delivery, PermanentError(str(exc), reason="refused")))
                continue
            if rate is not None:
                self.runner.rate_hz = rate
            self.seen.add(key)
            if command.action == "clear":  # only once the repair was accepted
                await self._announce(context)
            log.info(
                "simulator command applied", **command.model_dump(mode="json", exclude_none=True)
            )
        return failures

    async def _announce(self, context: list[AssetContextChanged]) -> None:
        if context:
            await self.runner.publish(
                [event_outgoing(topics.ASSET_CONTEXT, e, e.asset_id) for e in context]
            )
