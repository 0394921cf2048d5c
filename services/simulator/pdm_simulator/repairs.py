"""The simulated plant's technicians: a work order completed with a failure found
(`work_order.completed` on `pdm.maintenance.events.v1`) repairs that simulated asset.

The repair is published as a `clear` command on `pdm.simulator.commands.v1` rather than
applied here, so it goes the one way every change of the fleet goes (applied once per
command id, announced as a context change, replayed by `restore.py` after a restart). Its
command id derives from the event id: a redelivered completion repairs nothing twice. An
order completed with no failure found, or on an asset that is not broken (or not simulated
here), changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog

from pdm_common import topics
from pdm_common.delivery import Delivery, Failure, decode_json, event_outgoing
from pdm_common.events import SimulatorCommand
from pdm_common.maintenance import WorkOrderEvent
from pdm_simulator.runner import FleetRunner

log = structlog.get_logger(__name__)
REPAIR_NS = uuid.UUID("3f0e2d43-5b0f-4c8e-9d6a-7a1b9f2c4e11")


class RepairsProcessor:
    """`delivery.BatchProcessor` for `pdm.maintenance.events.v1`."""

    def __init__(self, runner: FleetRunner) -> None:
        self.runner = runner

    def decode(self, delivery: Delivery) -> WorkOrderEvent | None:
        if delivery.headers.get("event_type") != "work_order.completed":
            return None
        return decode_json(delivery, WorkOrderEvent)

    def repairs(self, events: Sequence[WorkOrderEvent | None]) -> list[SimulatorCommand]:
        out = []
        for event in events:
            if event is None:
                continue
            order = event.work_order
            machine = self.runner.fleet.machines.get(order.asset_id)
            found = order.findings is not None and order.findings.failure_found
            if machine is None or not found or not machine.failures:
                continue
            out.append(
                SimulatorCommand(
                    command_id=uuid.uuid5(REPAIR_NS, str(event.event_id)),
                    action="clear",
                    asset_id=order.asset_id,
                )
            )
        return out

    async def process(
        self, items: Sequence[tuple[Delivery, WorkOrderEvent | None]]
    ) -> list[Failure]:
        commands = self.repairs([e for _, e in items])
        if commands:
            await self.runner.publish(
                [event_outgoing(topics.SIMULATOR_COMMANDS, c, c.asset_id) for c in commands]
            )
            log.info("repairs from completed work orders", assets=[c.asset_id for c in commands])
        return []
