"""What a prediction, an alarm or a command means for work orders (pure functions)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pdm_common.events import AlarmEvent, Prediction
from pdm_common.maintenance import Findings, MaintenanceCommand
from pdm_scheduler.commands import Malformed, check, decode_command
from pdm_scheduler.orders import (
    assess,
    choose_mode,
    findings_error,
    rul_hours,
    transition_error,
    wants_inspection,
)
from pdm_scheduler.settings import SchedulerSettings

NOW = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
SETTINGS = SchedulerSettings(rul_open_h=48, default_due_h=72)


def prediction(**fields: object) -> Prediction:
    base: dict[str, object] = {
        "source": "prediction",
        "asset_id": "pump-001",
        "asset_type": "pump",
        "as_of": NOW,
        "health_score": 50,
        "health_formula": "f",
        "confidence": 1.0,
    }
    return Prediction.model_validate(base | fields)


def test_probability_over_the_models_own_threshold_puts_the_asset_at_risk() -> None:
    p = prediction(failure_probability=0.31, decision_threshold=0.3, rul_p10=70, rul_unit="hours")
    a = assess(p, SETTINGS)
    assert a.at_risk and "threshold 0.30" in a.why
    assert a.due_by == NOW + timedelta(hours=70)  # the RUL p10, inside the default deadline
    below = assess(prediction(failure_probability=0.29, decision_threshold=0.3), SETTINGS)
    assert not below.at_risk and below.due_by is None


def test_rul_p10_inside_the_window_puts_the_asset_at_risk_with_its_deadline() -> None:
    a = assess(prediction(rul_p10=10, rul_p50=20, rul_p90=40, rul_unit="hours"), SETTINGS)
    assert a.at_risk and a.due_by == NOW + timedelta(hours=10) and a.priority == 3
    healthy = assess(prediction(rul_p10=60, rul_unit="hours"), SETTINGS)
    assert not healthy.at_risk  # a RUL at the model's cap is not a reason to visit


def test_a_rul_p10_alone_needs_the_probability_or_the_median_to_agree() -> None:
    wide = dict(rul_p10=7, rul_p50=72, rul_p90=72, rul_unit="hours", decision_threshold=0.4)
    healthy = assess(prediction(failure_probability=0.03, **wide), SETTINGS)
    assert not healthy.at_risk and healthy.due_by is None
    rising = assess(prediction(failure_probability=0.2, **wide), SETTINGS)
    assert rising.at_risk and "RUL p10 7.0 h" in rising.why
    median = dict(wide, rul_p50=30)
    assert assess(prediction(failure_probability=0.03, **median), SETTINGS).at_risk


def test_rul_in_cycles_is_converted_and_unknown_units_are_ignored() -> None:
    cycles = prediction(rul_p10=10, rul_p50=20, rul_p90=30, rul_unit="cycles")
    assert rul_hours(cycles, 2.0) == (20.0, 40.0, 60.0)
    assert rul_hours(prediction(rul_p10=1, rul_unit="furlongs"), 1.0) == (None, None, None)


def test_an_active_orders_mode_is_kept_while_the_prediction_still_gives_it_weight() -> None:
    modes = {"bearing_degradation": 0.55, "seal_leak": 0.45}
    assert choose_mode(modes, []) == "bearing_degradation"
    assert choose_mode(modes, ["seal_leak"]) == "seal_leak"  # no second order on a flicker
    assert choose_mode({"bearing_degradation": 0.9, "seal_leak": 0.1}, ["seal_leak"]) == (
        "bearing_degradation"
    )
    assert choose_mode({}, []) == "unknown"


def test_only_critical_alarms_call_for_an_inspection() -> None:
    fields = {
        "source": "anomaly",
        "alarm_id": uuid.uuid4(),
        "asset_id": "pump-001",
        "condition": "vibration:limit",
        "detector": "limit",
        "score": 9.0,
        "threshold": 7.0,
        "opened_at": NOW,
    }
    assert wants_inspection(AlarmEvent(event_type="alarm.opened", severity="critical", **fields))
    assert wants_inspection(AlarmEvent(event_type="alarm.escalated", severity="critical", **fields))
    assert not wants_inspection(AlarmEvent(event_type="alarm.opened", severity="major", **fields))
    assert not wants_inspection(
        AlarmEvent(event_type="alarm.cleared", severity="critical", **fields)
    )


def test_lifecycle_refuses_impossible_moves_with_what_is_allowed() -> None:
    assert transition_error("open", "in_progress") is None
    assert "cannot become completed" in (transition_error("scheduled", "completed") or "")
    assert "closed" in (transition_error("completed", "open") or "")


def test_findings_name_a_mode_of_the_taxonomy() -> None:
    assert findings_error(Findings(failure_found=True, failure_mode="seal_leak")) is None
    assert "taxonomy" in (findings_error(Findings(failure_found=True, failure_mode="rust")) or "")
    assert "required" in (findings_error(Findings(failure_found=True)) or "")
    assert Findings(failure_found=True, failure_mode="bearing_degradation").iso14224 == "VIB"


def test_commands_missing_what_their_action_needs_are_malformed() -> None:
    default = uuid.uuid4()
    assert isinstance(decode_command(b"{nope", default), Malformed)
    bad = decode_command(
        b'{"action": "cancel", "actor": "a", "work_order_id": "%s"}' % str(default).encode(),
        default,
    )
    assert isinstance(bad, Malformed) and bad.error.startswith("reason")
    create = MaintenanceCommand(action="create", actor="a", fields={"asset_id": "p-1"})
    assert check(create) == "fields.type: required to create a work order"
    ok = decode_command(b'{"action": "replan", "actor": "a"}', default)
    assert isinstance(ok, MaintenanceCommand) and ok.command_id == default


def test_the_deadline_is_the_rul_p10_however_far_and_the_default_only_without_rul() -> None:
    far = assess(prediction(failure_predicted=True, rul_p10=200, rul_unit="hours"), SETTINGS)
    assert far.due_by == NOW + timedelta(hours=200)
    no_rul = assess(prediction(failure_predicted=True), SETTINGS)
    assert no_rul.due_by == NOW + timedelta(hours=72)
