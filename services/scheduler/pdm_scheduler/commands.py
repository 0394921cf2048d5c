"""Maintenance commands (`pdm.maintenance.commands.v1`): decoding and the checks the schema
cannot express, as pure functions. A command that fails them is dead-lettered with the reason
and answered `invalid`; one that passes is applied by `workflow` (state-dependent refusals,
such as an impossible transition, are answered `conflict` or `not_found`, not dead-lettered:
the command was well formed)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from pydantic import ValidationError

from pdm_common.events import describe_validation
from pdm_common.maintenance import WORK_ORDER_ACTIONS, MaintenanceCommand
from pdm_scheduler.orders import findings_error

#: Namespace of the ids given to commands sent without a `command_id`.
COMMAND_ID_NS = uuid.UUID("0b7c6f38-2a55-4a51-a4c3-91d0d3d5e7a4")


@dataclass(frozen=True, slots=True)
class Malformed:
    error: str
    reason: str = "invalid"
    command_id: uuid.UUID | None = None
    action: str | None = None


def decode_command(value: bytes, default_id: uuid.UUID) -> MaintenanceCommand | Malformed:
    """A valid command, or `Malformed` with the first problem. A command without a
    `command_id` gets `default_id` (derived from where it was first published), so each
    delivery of it decodes the same and it is applied once."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        return Malformed(f"not JSON: {exc}", reason="undecodable")
    if not isinstance(data, dict):
        return Malformed("message: a command is a JSON object", reason="undecodable")
    data.setdefault("command_id", str(default_id))
    try:
        command = MaintenanceCommand.model_validate(data)
    except ValidationError as exc:
        action = data.get("action") if isinstance(data.get("action"), str) else None
        try:
            cid: uuid.UUID | None = uuid.UUID(str(data["command_id"]))
        except ValueError:
            cid = None
        return Malformed(describe_validation(exc), command_id=cid, action=action)
    problem = check(command)
    if problem is not None:
        return Malformed(problem, command_id=command.command_id, action=command.action)
    return command


def delivery_command_id(topic: str, partition: str | int, offset: str | int) -> uuid.UUID:
    return uuid.uuid5(COMMAND_ID_NS, f"{topic}/{partition}/{offset}")


def check(c: MaintenanceCommand) -> str | None:
    """What each action needs, as `where: what`; None when the command is complete."""
    a = c.action
    if a == "create":
        f = c.fields
        missing = [n for n in ("asset_id", "type", "title") if f is None or not getattr(f, n)]
        if missing:
            return f"fields.{missing[0]}: required to create a work order"
    if a in WORK_ORDER_ACTIONS and c.work_order_id is None:
        return f"work_order_id: required for {a}"
    if a == "update" and (c.fields is None or not c.fields.model_fields_set):
        return "fields: an update needs at least one field"
    if a == "complete":
        if c.findings is None:
            return "findings: required to complete a work order (what was found)"
        return findings_error(c.findings)
    if a == "cancel" and not c.reason:
        return "reason: required to cancel a work order"
    if a == "technician.upsert" and c.technician is None:
        return "technician: required"
    if a == "technician.remove" and c.technician_id is None:
        return "technician_id: required"
    if a == "plan.upsert":
        if c.plan is None:
            return "plan: required"
        if (c.plan.asset_id is None) == (c.plan.asset_type is None):
            return "plan: give exactly one of asset_id and asset_type"
    if a == "plan.remove" and c.plan_id is None:
        return "plan_id: required"
    if a == "windows.set":
        if c.asset_id is None or c.windows is None:
            return "asset_id, windows: required (an empty list removes the asset's windows)"
        for i, w in enumerate(c.windows):
            if w.end <= w.start:
                return f"windows.{i}: end must be after start"
    return None
