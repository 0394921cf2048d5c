"""Which simulator commands announce an operating-context change, and for which assets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pdm_common.events import SimulatorCommand
from pdm_ml.simulation.machines import Fleet
from pdm_simulator.commands import CommandRefused, context_events

AT = datetime(2026, 3, 2, 6, tzinfo=UTC)


def fleet() -> Fleet:
    return Fleet.build({"pump": 2, "motor": 1}, seed=0)


def test_a_fleet_wide_scenario_change_announces_every_asset_at_its_time() -> None:
    events = context_events(fleet(), SimulatorCommand(action="scenario", scenario="high_load"), AT)
    assert sorted(e.asset_id for e in events) == ["motor-001", "pump-001", "pump-002"]
    assert {(e.reason, e.detail, e.at) for e in events} == {("operating_point", "high_load", AT)}


def test_one_asset_scenario_and_repair_announce_that_asset_only() -> None:
    one = SimulatorCommand(action="scenario", scenario="precision", asset_id="pump-002")
    assert [e.asset_id for e in context_events(fleet(), one, AT)] == ["pump-002"]
    repair = SimulatorCommand(action="clear", asset_id="pump-001")
    [event] = context_events(fleet(), repair, AT)
    assert (event.asset_id, event.reason) == ("pump-001", "repair")


def test_injections_and_rate_changes_are_not_context_and_unknown_assets_are_refused() -> None:
    inject = SimulatorCommand(action="inject", asset_id="pump-001", mode="seal_leak")
    assert context_events(fleet(), inject, AT) == []
    assert context_events(fleet(), SimulatorCommand(action="rate", rate_hz=2.0), AT) == []
    with pytest.raises(CommandRefused, match="unknown asset"):
        context_events(fleet(), SimulatorCommand(action="clear", asset_id="pump-009"), AT)
