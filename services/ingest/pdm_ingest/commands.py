"""Asset commands (`pdm.asset.commands.v1`): validation, decisions and SQL, as pure functions.

`storage.AssetStore` reads the asset's row under a row lock, asks `plan` what the command
does to it, executes the `statement` of the resulting `Write` in the same transaction and
turns the returned row into the `Outcome`; the processor in `handlers.py` turns outcomes into
`AssetCommandResult` replies. Semantics are documented on `events.AssetCommand`.

Idempotency, without a table of applied commands (the schema has none for assets):
* within one process, `ResultMemo` remembers the result of every applied command (bounded
  LRU), so a command delivered again (a batch retried after the database came back, the
  retry topic) is not applied twice and gets the reply it got the first time;
* across restarts, what a command finds decides: a repeated `create` finds the asset owned by
  its actor with the fields it names and answers `created` again; a repeated `update` writes
  the same values again (`updated`); a repeated `delete` finds nothing and answers
  `not_found`, which is the one answer that differs from the first (the row is gone either way).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg.types.json import Jsonb
from pydantic import ValidationError

from pdm_common.events import (
    ASSET_ID_PATTERN,
    AUTO_REGISTERED_BY,
    MAX_ASSET_METADATA_BYTES,
    AssetCommand,
    AssetCommandResult,
    AssetCommandStatus,
    AssetRecord,
    describe_validation,
)

#: The columns a command may set (`AssetFields`), in table order.
COLUMNS = ("asset_type", "site", "line", "display_name", "criticality", "machine_class", "metadata")
#: Results remembered per process for redelivered commands: several batches' worth (a batch
#: is at most ~500 commands); ~1 KiB each, 16 KiB at most (the metadata bound).
MEMO_SIZE = 2_000
ACTIONS = ("create", "update", "delete")
#: Namespace of the ids given to commands sent without a `command_id`.
COMMAND_ID_NS = uuid.UUID("6d1f3c2a-8b4e-4f0a-9c7d-2e5b8a1f4c93")


@dataclass(frozen=True, slots=True)
class Malformed:
    """A command that cannot be applied as sent; kept to answer its `reply_to` before it is
    dead-lettered. What could be read of it is echoed in the reply."""

    error: str
    reason: str = "invalid"
    command_id: uuid.UUID | None = None
    asset_id: str | None = None
    action: Literal["create", "update", "delete"] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the reply's status, why (for refusals) and the asset row."""

    status: AssetCommandStatus
    message: str | None = None
    asset: AssetRecord | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """The one statement a command executes: `values` are the columns it sets (column ->
    value), `status` what it answers when the statement hits a row."""

    kind: Literal["insert", "take_over", "update", "delete"]
    status: AssetCommandStatus
    values: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def decode_command(value: bytes, default_id: uuid.UUID | None = None) -> AssetCommand | Malformed:
    """A valid command, or `Malformed` with the first problem (`undecodable` when the value
    is not a JSON object, else `invalid`). A command without a `command_id` gets
    `default_id` (see `delivery_command_id`), so each delivery of it decodes the same."""
    try:
        data = json.loads(value)
    except ValueError as exc:  # UnicodeDecodeError included
        return Malformed(f"not JSON: {exc}", reason="undecodable")
    if not isinstance(data, dict):
        return Malformed("message: a command is a JSON object", reason="undecodable")
    if default_id is not None and "command_id" not in data:
        data["command_id"] = str(default_id)
    try:
        command = AssetCommand.model_validate(data)
    except ValidationError as exc:
        return Malformed(describe_validation(exc), **_echo(data))
    problem = check(command)
    if problem is not None:
        return Malformed(
            problem,
            command_id=command.command_id,
            asset_id=command.asset_id,
            action=command.action,
        )
    return command


def delivery_command_id(topic: str, partition: str | int, offset: str | int) -> uuid.UUID:
    """The id of a command sent without one: derived from where it was first published
    (original topic, partition, offset; kept across the retry topic), so a redelivery is
    recognised as the same command."""
    return uuid.uuid5(COMMAND_ID_NS, f"{topic}/{partition}/{offset}")


def check(command: AssetCommand) -> str | None:
    """What the schema cannot say about a command, as `where: what`; None when it is fine."""
    if command.actor == AUTO_REGISTERED_BY:
        return (
            f"actor: {AUTO_REGISTERED_BY!r} is reserved for assets ingest registers "
            "on their first reading"
        )
    values = given(command)
    if command.action == "update" and not values:
        return "fields: an update needs at least one field to change"
    if command.action == "delete" and values:
        return f"fields: a delete takes no fields (got {', '.join(values)})"
    if "metadata" in values:
        try:
            size = len(metadata_json(values["metadata"]).encode())
        except ValueError:
            return "fields.metadata: NaN and Infinity are not JSON"
        if size > MAX_ASSET_METADATA_BYTES:
            return f"fields.metadata: {size} bytes encoded; the limit is {MAX_ASSET_METADATA_BYTES}"
    return None


def metadata_json(metadata: dict[str, Any]) -> str:
    """Compact JSON, as the size limit counts it; raises ValueError for NaN/Infinity (which
    Python's JSON parser accepts and PostgreSQL's jsonb refuses)."""
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def given(command: AssetCommand) -> dict[str, Any]:
    """The columns the command names (non-null fields), in table order."""
    if command.fields is None:
        return {}
    dumped = command.fields.model_dump(exclude_none=True)
    return {c: dumped[c] for c in COLUMNS if c in dumped}


def _echo(data: dict[str, Any]) -> dict[str, Any]:
    """The identifying fields of an invalid command that are usable as they are."""
    echo: dict[str, Any] = {}
    with contextlib.suppress(KeyError, ValueError):
        echo["command_id"] = uuid.UUID(str(data["command_id"]))
    asset_id = data.get("asset_id")
    if isinstance(asset_id, str) and re.fullmatch(ASSET_ID_PATTERN, asset_id):
        echo["asset_id"] = asset_id
    if data.get("action") in ACTIONS:
        echo["action"] = data["action"]
    return echo


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------


def plan(command: AssetCommand, existing: AssetRecord | None) -> Write | Outcome:
    """What `command` does given the asset's current row (None: no such asset): a `Write` to
    execute, or the `Outcome` at once when nothing is to be written."""
    asset_id = command.asset_id
    values = given(command)
    if command.action == "create":
        if existing is None:
            return Write("insert", "created", values)
        if existing.registered_by == AUTO_REGISTERED_BY:
            return Write("take_over", "created", values)
        if is_repeat(command, existing):
            return Outcome(
                "created", "unchanged: the asset already is as this create asks", existing
            )
        return Outcome(
            "conflict",
            f"asset {asset_id!r} exists already (registered by {existing.registered_by!r})",
            existing,
        )
    if existing is None:
        return Outcome("not_found", f"no asset {asset_id!r}")
    if command.action == "update":
        return Write("update", "updated", values)
    return Write("delete", "deleted")


def is_repeat(command: AssetCommand, existing: AssetRecord) -> bool:
    """A create the row already reflects: same owner, and every field it names as it names
    it (the replay of a create that succeeded, or the same create sent twice)."""
    return existing.registered_by == command.actor and all(
        getattr(existing, column) == value for column, value in given(command).items()
    )


def statement(write: Write, command: AssetCommand) -> tuple[str, tuple[Any, ...]]:
    """The SQL of `write` (every statement returns the row it touched, `RETURNING *`).

    An insert does nothing when the row appeared since it was read (ingest registering the
    asset from a reading at that moment): no row comes back and the caller plans again. A
    take-over sets the given fields and the owner, and keeps the rest (the `asset_type` the
    gateway reported, `created_at`: first sight of the asset)."""
    columns = [c for c in COLUMNS if c in write.values]
    params = [_param(c, write.values[c]) for c in columns]
    assignments = "".join(f", {c} = %s" for c in columns)
    if write.kind == "insert":
        names = ", ".join(["asset_id", "registered_by", *columns])
        marks = ", ".join(["%s"] * (2 + len(columns)))
        return (
            f"INSERT INTO assets ({names}) VALUES ({marks}) "
            "ON CONFLICT (asset_id) DO NOTHING RETURNING *",
            (command.asset_id, command.actor, *params),
        )
    if write.kind == "take_over":
        return (
            f"UPDATE assets SET registered_by = %s{assignments}, updated_at = now() "
            "WHERE asset_id = %s AND registered_by = %s RETURNING *",
            (command.actor, *params, command.asset_id, AUTO_REGISTERED_BY),
        )
    if write.kind == "update":
        return (
            f"UPDATE assets SET updated_at = now(){assignments} WHERE asset_id = %s RETURNING *",
            (*params, command.asset_id),
        )
    return "DELETE FROM assets WHERE asset_id = %s RETURNING *", (command.asset_id,)


def done(write: Write, row: AssetRecord) -> Outcome:
    """The outcome of a write that hit `row` (the row as it is now, or as it was deleted)."""
    note = "took over the asset ingest had registered on its first reading"
    return Outcome(write.status, note if write.kind == "take_over" else None, row)


def _param(column: str, value: Any) -> Any:
    return Jsonb(value, dumps=metadata_json) if column == "metadata" else value


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


def result(command: AssetCommand, outcome: Outcome, source: str) -> AssetCommandResult:
    return AssetCommandResult(
        source=source,
        command_id=command.command_id,
        asset_id=command.asset_id,
        action=command.action,
        status=outcome.status,
        message=outcome.message,
        asset=outcome.asset,
    )


def invalid_result(malformed: Malformed, source: str) -> AssetCommandResult:
    return AssetCommandResult(
        source=source,
        command_id=malformed.command_id,
        asset_id=malformed.asset_id,
        action=malformed.action,
        status="invalid",
        message=malformed.error,
    )


class ResultMemo:
    """The results of applied commands, newest kept (LRU, `size` entries), keyed by the whole
    command: a redelivery gets the same reply (same `event_id`), a command id reused for a
    different command is a new command."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._results: OrderedDict[bytes, AssetCommandResult] = OrderedDict()

    @staticmethod
    def key(command: AssetCommand) -> bytes:
        return hashlib.sha256(command.model_dump_json().encode()).digest()

    def get(self, command: AssetCommand) -> AssetCommandResult | None:
        key = self.key(command)
        found = self._results.get(key)
        if found is not None:
            self._results.move_to_end(key)
        return found

    def put(self, command: AssetCommand, result: AssetCommandResult) -> None:
        key = self.key(command)
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > self.size:
            self._results.popitem(last=False)

    def __len__(self) -> int:
        return len(self._results)
