"""Drift commands (`pdm.drift.commands.v1`): decoding and the checks the schema cannot
express, as pure functions. A command that fails them is dead-lettered with the reason and
answered `invalid`; one that passes is applied by `lifecycle` (state-dependent refusals, such
as a retrain in its cooldown, are answered `conflict` or `not_found`, not dead-lettered)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pdm_common.drift import DriftCommand, DriftCommandResult
from pdm_common.events import describe_validation
from pdm_drift import SERVICE

#: Namespace of the ids given to commands sent without a `command_id`.
COMMAND_ID_NS = uuid.UUID("5a0f4b8e-3c1d-4f6e-9b27-d81e0c6a4f13")


@dataclass(frozen=True, slots=True)
class Malformed:
    error: str
    reason: str = "invalid"
    command_id: uuid.UUID | None = None
    action: str | None = None


def decode_command(value: bytes, default_id: uuid.UUID) -> DriftCommand | Malformed:
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
        command = DriftCommand.model_validate(data)
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


def check(c: DriftCommand) -> str | None:
    """What each action needs, as `where: what`; None when the command is complete."""
    if c.action in ("retrain", "promote", "rollback") and c.model_name is None:
        return f"model_name: required for {c.action}"
    if c.action == "check" and c.model_name is not None and c.model_name.startswith("anomaly-"):
        return "model_name: anomaly detectors are not drift-checked (failure-*, rul-* are)"
    if c.action != "promote" and c.version is not None:
        return f"version: only promote takes a version, not {c.action}"
    return None


def result(
    command: DriftCommand, status: str, message: str | None = None, **parts: Any
) -> DriftCommandResult:
    return DriftCommandResult(
        source=SERVICE,
        command_id=command.command_id,
        action=command.action,
        status=status,
        message=message,
        **parts,
    )
