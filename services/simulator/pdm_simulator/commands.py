"""Applying a `SimulatorCommand` to the fleet: pure, so every refusal is testable and named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pdm_common.events import AssetContextChanged, SimulatorCommand
from pdm_common.events import GroundTruth as GroundTruthEvent
from pdm_ml.simulation.machines import Fleet, GroundTruth
from pdm_simulator import SERVICE


class CommandRefused(ValueError):
    """A command that can never apply (unknown asset, mode not for this machine type, ...)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def command_time(timestamp_ms: int | None, now: datetime) -> datetime:
    """When a command takes effect: its Kafka record's timestamp (CreateTime), exact to the
    millisecond, so the consumer and a restart that replays the topic (`restore.py`) apply it
    at the same instant and derive the same failure times; `now` for a record without one."""
    if timestamp_ms is None or timestamp_ms < 0:
        return now
    return _EPOCH + timedelta(milliseconds=timestamp_ms)


def apply_command(fleet: Fleet, command: SimulatorCommand, now: datetime) -> float | None:
    """Apply `command`; returns the new rate for `rate` commands, else None. Ground truth
    the command causes is queued in the fleet (`Fleet.drain_truth`)."""
    if command.action == "rate":
        if command.rate_hz is None:
            raise CommandRefused("rate needs rate_hz")
        return command.rate_hz
    if command.action == "scenario":
        if command.scenario is None:
            raise CommandRefused("scenario needs scenario")
        targets = None if command.asset_id is None else [_asset(fleet, command.asset_id)]
        fleet.set_scenario(command.scenario, targets)
        return None
    asset_id = _asset(fleet, command.asset_id)
    machine = fleet[asset_id]
    if command.action == "clear" and command.mode is None:  # repair everything
        for mode in list(machine.failures):
            machine.clear(mode, now)
        return None
    if command.mode is None:
        raise CommandRefused(f"{command.action} needs mode")
    try:
        if command.action == "inject":
            ramp = timedelta(seconds=command.ramp_s) if command.ramp_s else None
            machine.inject(command.mode, command.severity, now, ramp, sensor=command.sensor)
        else:
            machine.clear(command.mode, now)
    except ValueError as exc:
        raise CommandRefused(str(exc)) from None
    return None


def context_events(
    fleet: Fleet, command: SimulatorCommand, at: datetime
) -> list[AssetContextChanged]:
    """What a command changes on purpose, announced on `pdm.asset.context.v1` so detectors
    re-learn instead of alarming: a scenario change moves its assets' operating point, a
    repair (clear) ends a failure. Raises `CommandRefused` for an unknown asset."""
    detail: str | None
    targets: list[str | None]
    if command.action == "scenario":
        targets = [*sorted(fleet.machines)] if command.asset_id is None else [command.asset_id]
        reason, detail = "operating_point", command.scenario
    elif command.action == "clear":
        targets, reason, detail = [command.asset_id], "repair", command.mode
    else:
        return []
    return [
        AssetContextChanged(
            source=SERVICE, asset_id=_asset(fleet, a), reason=reason, detail=detail, at=at
        )
        for a in targets
    ]


def _asset(fleet: Fleet, asset_id: str | None) -> str:
    if asset_id is None:
        raise CommandRefused("this command needs asset_id")
    if asset_id not in fleet.machines:
        raise CommandRefused(f"unknown asset {asset_id!r}; the fleet has {sorted(fleet.machines)}")
    return asset_id


def truth_kind(truth: GroundTruth) -> str:
    """The event type of one ground-truth change (cleared, failed, else injected)."""
    if truth.cleared_at is not None:
        return "failure.cleared"
    return "failure.failed" if truth.failed else "failure.injected"


def truth_event(truth: GroundTruth) -> GroundTruthEvent:
    """The event for one ground-truth change."""
    return GroundTruthEvent.model_validate(
        truth.to_event() | {"event_type": truth_kind(truth), "source": SERVICE}
    )
