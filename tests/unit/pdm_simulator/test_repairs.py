"""A work order completed with a failure found repairs the simulated asset, once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pdm_common.maintenance import Findings, WorkOrder, WorkOrderEvent
from pdm_ml.simulation.machines import Fleet
from pdm_simulator.repairs import RepairsProcessor
from pdm_simulator.runner import FleetRunner

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def completed(asset: str, found: bool) -> WorkOrderEvent:
    order = WorkOrder(
        work_order_id=uuid.uuid4(), asset_id=asset, type="predictive", status="completed",
        priority=2, source="prediction", title="t", skill="mechanical", estimated_hours=2,
        parts_cost=0, failure_cost=0, downtime_cost_per_h=0, created_at=NOW, created_by="s",
        updated_at=NOW, version=3,
        findings=Findings(failure_found=found, failure_mode="bearing_degradation" if found else None),
    )  # fmt: skip
    return WorkOrderEvent(
        event_type="work_order.completed", source="scheduler", work_order=order, actor="tech"
    )


def test_only_a_broken_simulated_asset_with_a_failure_found_is_repaired_once() -> None:
    fleet = Fleet.build({"pump": 2})
    fleet["pump-001"].inject("bearing_degradation", "high", NOW)
    processor = RepairsProcessor(FleetRunner(fleet, publisher=None, rate_hz=1.0))  # type: ignore[arg-type]
    event = completed("pump-001", True)
    commands = processor.repairs(
        [
            event,
            completed("pump-001", False),
            completed("pump-002", True),
            completed("x-1", True),
            None,
        ]
    )
    assert [(c.action, c.asset_id) for c in commands] == [("clear", "pump-001")]
    assert processor.repairs([event])[0].command_id == commands[0].command_id  # redelivery
