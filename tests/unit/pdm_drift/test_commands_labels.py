"""Commands decode to a valid command or say what is wrong; events become labels once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from pdm_common.drift import DriftCommand
from pdm_common.events import GroundTruth
from pdm_drift.commands import Malformed, check, decode_command, delivery_command_id
from pdm_drift.labels import from_truth, from_work_order
from pdm_drift.lifecycle import job_ids, retrain_problem

DEFAULT = uuid.UUID(int=7)


def decode(body: object) -> DriftCommand | Malformed:
    return decode_command(json.dumps(body).encode(), DEFAULT)


def test_valid_commands_and_their_default_id() -> None:
    c = decode({"action": "retrain", "model_name": "failure-pump", "force": True})
    assert isinstance(c, DriftCommand) and c.command_id == DEFAULT and c.force
    c = decode({"action": "check"})
    assert isinstance(c, DriftCommand) and c.model_name is None
    c = decode({"action": "promote", "model_name": "rul-pump", "version": "3"})
    assert isinstance(c, DriftCommand) and c.version == "3"


def test_malformed_commands_say_why() -> None:
    bad = decode_command(b"{nope", DEFAULT)
    assert isinstance(bad, Malformed) and bad.reason == "undecodable"
    bad = decode([1, 2])
    assert isinstance(bad, Malformed) and bad.reason == "undecodable"
    bad = decode({"action": "explode"})
    assert isinstance(bad, Malformed) and "action" in bad.error and bad.command_id == DEFAULT
    bad = decode({"action": "retrain"})
    assert isinstance(bad, Malformed) and bad.error.startswith("model_name: required")
    bad = decode({"action": "check", "model_name": "Not A Model"})
    assert isinstance(bad, Malformed) and "model_name" in bad.error
    bad = decode({"action": "rollback", "model_name": "failure-pump", "version": "2"})
    assert isinstance(bad, Malformed) and bad.error.startswith("version:")
    bad = decode({"action": "check", "model_name": "anomaly-pump"})
    assert isinstance(bad, Malformed)
    assert check(DriftCommand(command_id=DEFAULT, action="rollback", model_name="rul-x")) is None


def test_delivery_ids_are_stable_per_position() -> None:
    a = delivery_command_id("pdm.drift.commands.v1", 0, 5)
    assert a == delivery_command_id("pdm.drift.commands.v1", "0", "5")
    assert a != delivery_command_id("pdm.drift.commands.v1", 0, 6)


def test_only_simulated_failure_and_rul_models_are_retrained() -> None:
    assert retrain_problem("failure-pump") is None and retrain_problem("rul-compressor") is None
    assert "simulated types" in (retrain_problem("failure-milling") or "")
    assert "only failure-* and rul-*" in (retrain_problem("anomaly-pump") or "")
    jobs = job_ids("rul-pump", DEFAULT)
    assert list(jobs) == ["rul-pump", "failure-pump"] and jobs["rul-pump"] == DEFAULT
    assert jobs == job_ids("rul-pump", DEFAULT)  # derived, so a redelivery claims the same


def truth(kind: str, *, is_failure: bool = True) -> GroundTruth:
    now = datetime.now(UTC)
    return GroundTruth(
        event_type=kind,  # type: ignore[arg-type]
        source="simulator",
        asset_id="pump-001",
        asset_type="pump",
        mode="bearing_degradation" if is_failure else "sensor_interference",
        severity="critical",
        injected_at=now,
        failed=kind == "failure.failed",
        is_failure=is_failure,
    )


def test_truth_labels_only_real_outcomes() -> None:
    failed = truth("failure.failed")
    label = from_truth(failed)
    assert label is not None and label.label_id == failed.event_id
    assert label.failure_found and label.failure_mode == "bearing_degradation"
    assert label.source == "simulator"
    fault = from_truth(truth("failure.failed", is_failure=False))
    assert fault is not None and not fault.failure_found and fault.failure_mode is None
    assert from_truth(truth("failure.injected")) is None
    assert from_truth(truth("failure.cleared")) is None


def test_completed_work_orders_with_findings_are_labels() -> None:
    from pdm_common.maintenance import WorkOrderEvent

    now = datetime.now(UTC).isoformat()
    order = {
        "work_order_id": str(uuid.uuid4()),
        "asset_id": "pump-002",
        "asset_type": "pump",
        "type": "predictive",
        "status": "completed",
        "priority": 2,
        "source": "prediction",
        "title": "bearing",
        "skill": "mechanical",
        "estimated_hours": 2,
        "parts_cost": 10,
        "failure_cost": 100,
        "downtime_cost_per_h": 5,
        "findings": {"failure_found": True, "failure_mode": "bearing_degradation"},
        "completed_at": now,
        "created_at": now,
        "created_by": "x",
        "updated_at": now,
        "version": 3,
    }
    event = WorkOrderEvent.model_validate(
        {
            "event_type": "work_order.completed",
            "source": "scheduler",
            "work_order": order,
            "actor": "tech",
        }
    )
    label = from_work_order(event)
    assert label is not None and label.failure_found and label.asset_id == "pump-002"
    assert label.ref == f"work_order:{order['work_order_id']}"
    started = event.model_copy(update={"event_type": "work_order.started"})
    assert from_work_order(started) is None
