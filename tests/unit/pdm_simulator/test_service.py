"""The simulator's pure edges: commands applied to a fleet, and one tick's messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pdm_common.events import GroundTruth, ReadingSnapshot, SimulatorCommand
from pdm_ml.simulation.machines import Fleet
from pdm_simulator.commands import CommandRefused, apply_command
from pdm_simulator.runner import tick_messages

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def fleet() -> Fleet:
    return Fleet.build({"pump": 2, "milling": 1}, seed=3)


def test_a_tick_is_one_snapshot_per_machine_then_the_ground_truth() -> None:
    f = fleet()
    first = tick_messages(f, T0)
    assert [m.topic for m in first] == ["pdm.readings.v1"] * 3
    assert {m.key for m in first} == {b"pump-001", b"pump-002", b"milling-001"}
    for m in first:
        snap = ReadingSnapshot.model_validate_json(m.value)
        assert snap.asset_id.encode() == m.key and snap.ts == T0
    apply_command(
        f,
        SimulatorCommand(
            action="inject", asset_id="pump-002", mode="seal_leak", severity="critical", ramp_s=60
        ),
        T0,
    )
    second = tick_messages(f, T0 + timedelta(seconds=1))
    truth = [m for m in second if m.topic == "pdm.simulator.truth.v1"]
    assert len(truth) == 1 and truth[0].key == b"pump-002"
    event = GroundTruth.model_validate_json(truth[0].value)
    assert (event.event_type, event.mode, event.severity) == (
        "failure.injected",
        "seal_leak",
        "critical",
    )
    assert event.expected_failure_at == T0 + timedelta(seconds=60)
    later = tick_messages(f, T0 + timedelta(seconds=61))
    failed = [json.loads(m.value) for m in later if m.topic == "pdm.simulator.truth.v1"]
    assert [e["event_type"] for e in failed] == ["failure.failed"]
    assert tick_messages(f, T0 + timedelta(seconds=62))[-1].topic == "pdm.readings.v1"  # once


def test_messages_carry_the_content_type_and_no_event_type_header() -> None:
    """As a gateway's: the gateway's live stream shows truth without an event type."""
    f = fleet()
    apply_command(f, SimulatorCommand(action="inject", asset_id="pump-001", mode="seal_leak"), T0)
    messages = tick_messages(f, T0)
    assert {m.topic for m in messages} == {"pdm.readings.v1", "pdm.simulator.truth.v1"}
    assert all(m.headers == {"content-type": "application/json"} for m in messages)


def test_commands_change_scenario_rate_and_repair() -> None:
    f = fleet()
    assert apply_command(f, SimulatorCommand(action="rate", rate_hz=5), T0) == 5
    apply_command(
        f, SimulatorCommand(action="scenario", scenario="high_load", asset_id="pump-001"), T0
    )
    assert f["pump-001"].scenario == "high_load" and f["pump-002"].scenario == "normal"
    apply_command(f, SimulatorCommand(action="scenario", scenario="cold_environment"), T0)
    assert {m.scenario for m in f.machines.values()} == {"cold_environment"}
    apply_command(
        f, SimulatorCommand(action="inject", asset_id="milling-001", mode="tool_wear"), T0
    )
    apply_command(f, SimulatorCommand(action="clear", asset_id="milling-001", mode="tool_wear"), T0)
    kinds = [t.cleared_at is not None for t in f.drain_truth()]
    assert kinds == [False, True]


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (SimulatorCommand(action="inject", asset_id="pump-009", mode="seal_leak"), "unknown asset"),
        (SimulatorCommand(action="inject", asset_id="milling-001", mode="seal_leak"), "seal_leak"),
        (SimulatorCommand(action="inject", asset_id="pump-001"), "needs mode"),
        (SimulatorCommand(action="inject", mode="seal_leak"), "needs asset_id"),
        (SimulatorCommand(action="rate"), "needs rate_hz"),
        (SimulatorCommand(action="scenario"), "needs scenario"),
        (SimulatorCommand(action="clear", asset_id="pump-001", mode="seal_leak"), ""),
    ],
)
def test_commands_that_cannot_apply_are_refused_with_a_reason(command, reason) -> None:
    f = fleet()
    if command.action == "clear":  # repairing what is not broken changes nothing
        assert apply_command(f, command, T0) is None and f.drain_truth() == []
        return
    with pytest.raises(CommandRefused, match=reason):
        apply_command(f, command, T0)


def test_the_simulated_fleet_stays_inside_the_default_limits_until_it_degrades() -> None:
    """The anomaly service's default limits name the simulator's sensors, and a healthy fleet
    under every scenario never crosses them (no alarm storm on `make run`)."""
    from pdm_ml.detectors.limits import default_limits
    from pdm_ml.simulation.machines import SCENARIOS

    limits = default_limits()
    for name in SCENARIOS:
        f = Fleet.build({"pump": 2, "motor": 2, "compressor": 2}, seed=5, scenario=name)
        for i in range(2000):
            for snap in f.snapshots(T0 + timedelta(seconds=30 * i)):
                table = limits[snap["asset_type"]]
                for sensor, value in snap["readings"].items():
                    if sensor in table:
                        assert table[sensor].check(value).severity is None, (name, snap)
    assert {"bearing_temperature", "winding_temperature", "discharge_temperature"} <= {
        s for t in limits.values() for s in t
    }
    f = Fleet.build({"pump": 1}, seed=5)
    f["pump-001"].inject("bearing_degradation", "critical", T0, timedelta(minutes=10))
    worst = None
    for i in range(30):
        snap = f.snapshots(T0 + timedelta(seconds=30 * i))[0]
        worst = worst or limits["pump"]["vibration"].check(snap["readings"]["vibration"]).severity
    assert worst is not None  # the injected bearing fault reaches an ISO 10816 zone


def test_clear_without_mode_repairs_every_active_failure() -> None:
    f = fleet()
    for mode in ("bearing_degradation", "seal_leak"):
        apply_command(f, SimulatorCommand(action="inject", asset_id="pump-001", mode=mode), T0)
    f.drain_truth()
    apply_command(f, SimulatorCommand(action="clear", asset_id="pump-001"), T0)
    cleared = f.drain_truth()
    assert sorted(t.mode for t in cleared) == ["bearing_degradation", "seal_leak"]
    assert all(t.cleared_at == T0 for t in cleared)
    assert f["pump-001"].ground_truth == []
    apply_command(f, SimulatorCommand(action="clear", asset_id="pump-001"), T0)  # nothing left
    assert f.drain_truth() == []
