"""Alarms: state read from `alarms` (owned by the anomaly service); acknowledge and assign
are `pdm.anomaly.commands.v1` commands, applied once per command id by the anomaly service
(202: the new state shows in GET shortly, and on the stream as `alarm.acknowledged` /
`alarm.assigned`). Shelves (`/v1/alarms/shelves`, read from `alarm_shelves`) hold back new
alarms of an asset or sensor for a while; shelve and unshelve are commands too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from pdm_common import topics
from pdm_common.events import (
    MAX_SHELF_DURATION,
    AlarmCommand,
    AlarmShelf,
    AlarmStatus,
    Severity,
    ShelfCommand,
)
from pdm_gateway import cursors
from pdm_gateway.api.deps import (
    CursorQuery,
    FromQuery,
    LimitQuery,
    aware,
    bus,
    decode_cursor,
    page_limit,
    stores,
)
from pdm_gateway.api.schemas.alarms import (
    AckBody,
    Alarm,
    AlarmPage,
    AssignBody,
    ShelfBody,
    ShelfList,
)
from pdm_gateway.api.schemas.common import Accepted
from pdm_gateway.keys import Principal
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import READ, WRITE

router = APIRouter(prefix="/v1/alarms", tags=["alarms"])


@router.get("", response_model=AlarmPage, responses=problem_responses(400, 401, 403, 422, 429))
async def list_alarms(
    request: Request,
    asset_id: Annotated[str | None, Query(max_length=128)] = None,
    status: AlarmStatus | None = None,
    severity: Severity | None = None,
    condition: Annotated[str | None, Query(max_length=128)] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    acknowledged: bool | None = None,
    since: FromQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> AlarmPage:
    """Alarms, newest opened first, filtered by asset, status, severity, condition, assignee,
    acknowledgement and opening time (`from`)."""
    after = decode_cursor(cursor, (datetime, str))
    limit = page_limit(request, limit)
    filters = {
        "asset_id": asset_id,
        "status": status,
        "severity": severity,
        "condition": condition,
        "assignee": assignee,
        "acknowledged": acknowledged,
        "since": aware(since, "from"),
    }
    rows = await stores(request).alarms.page(filters, after, limit + 1)
    items = [Alarm.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if items else None
    next_cursor = cursors.encode(last.opened_at, str(last.alarm_id)) if more and last else None
    return AlarmPage(items=items, next_cursor=next_cursor)


# The shelf routes come before `/{alarm_id}`, which would otherwise take `shelves` for an id.


@router.get("/shelves", response_model=ShelfList, responses=problem_responses(401, 403, 422, 429))
async def list_shelves(
    request: Request,
    asset_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: LimitQuery = 1000,
    _: Principal = READ,
) -> ShelfList:
    """Shelves in force (neither unshelved nor expired), soonest to expire first, each with
    the alarms it held back so far (`suppressed`)."""
    rows = await stores(request).alarms.shelves(asset_id, page_limit(request, limit))
    return ShelfList(items=[AlarmShelf.model_validate(r) for r in rows])


@router.post(
    "/shelves",
    response_model=Accepted,
    status_code=202,
    responses=problem_responses(401, 403, 413, 422, 429, 503),
)
async def shelve(request: Request, body: ShelfBody, who: Principal = WRITE) -> Accepted:
    """Shelve (ISA-18.2): no new alarm of the asset, or of its `sensor`, opens until
    `expires_at` (at most 7 days away), for the `reason` given; the alarms it holds back are
    logged and counted on the shelf. Alarms already open stay as they are. Shelving a target
    that is shelved already replaces its reason and expiry."""
    now = datetime.now(UTC)
    if not body.reason.strip():
        raise Problem(422, "`reason` is blank: say why the alarms are shelved", slug="validation")
    if body.expires_at <= now:
        raise Problem(422, "`expires_at` is in the past", slug="validation")
    if body.expires_at - now > MAX_SHELF_DURATION:
        raise Problem(
            422,
            f"`expires_at` is more than {MAX_SHELF_DURATION.days} days away: shelving is temporary",
            slug="validation",
        )
    if await stores(request).assets.get(body.asset_id) is None:
        raise Problem(422, f"no asset {body.asset_id}", slug="unknown-asset")
    command = ShelfCommand(
        action="shelve",
        asset_id=body.asset_id,
        sensor=body.sensor,
        actor=who.name,
        reason=body.reason,
        expires_at=body.expires_at,
    )
    await bus(request).command(topics.ANOMALY_COMMANDS, command, command.asset_id)
    return Accepted(
        command_id=command.command_id,
        detail=f"shelve sent to the anomaly service; GET /v1/alarms/shelves?asset_id="
        f"{command.asset_id} shows it once applied (a new shelf's id is this command_id)",
    )


@router.delete(
    "/shelves/{shelf_id}",
    response_model=Accepted,
    status_code=202,
    responses=problem_responses(401, 403, 404, 429, 503),
)
async def unshelve(
    request: Request,
    shelf_id: uuid.UUID,
    reason: Annotated[str | None, Query(max_length=2000, description="Why, for the log.")] = None,
    who: Principal = WRITE,
) -> Accepted:
    """Unshelve now: the shelf's target alarms again from the next anomalous reading."""
    row = await stores(request).alarms.shelf(str(shelf_id))
    if row is None or not row["active"]:
        raise Problem(404, f"no shelf {shelf_id} in force", slug="not-found")
    command = ShelfCommand(
        action="unshelve",
        asset_id=row["asset_id"],
        sensor=row["sensor"],
        actor=who.name,
        reason=reason or None,
    )
    await bus(request).command(topics.ANOMALY_COMMANDS, command, command.asset_id)
    return Accepted(
        command_id=command.command_id,
        detail=f"unshelve sent to the anomaly service; shelf {shelf_id} leaves "
        "GET /v1/alarms/shelves once applied",
    )


@router.get("/{alarm_id}", response_model=Alarm, responses=problem_responses(401, 403, 404, 429))
async def get_alarm(request: Request, alarm_id: uuid.UUID, _: Principal = READ) -> Alarm:
    row = await stores(request).alarms.get(str(alarm_id))
    if row is None:
        raise Problem(404, f"no alarm {alarm_id}", slug="not-found")
    return Alarm.model_validate(row)


async def _send(request: Request, command: AlarmCommand) -> Accepted:
    if await stores(request).alarms.get(str(command.alarm_id)) is None:
        raise Problem(404, f"no alarm {command.alarm_id}", slug="not-found")
    await bus(request).command(topics.ANOMALY_COMMANDS, command, str(command.alarm_id))
    return Accepted(
        command_id=command.command_id,
        detail=f"{command.action} sent to the anomaly service; GET /v1/alarms/"
        f"{command.alarm_id} shows it once applied",
    )


@router.post(
    "/{alarm_id}/acknowledge",
    response_model=Accepted,
    status_code=202,
    responses=problem_responses(401, 403, 404, 413, 422, 429, 503),
)
async def acknowledge(
    request: Request, alarm_id: uuid.UUID, body: AckBody, who: Principal = WRITE
) -> Accepted:
    """Acknowledge an alarm as the calling key's name."""
    return await _send(
        request,
        AlarmCommand(alarm_id=alarm_id, action="acknowledge", actor=who.name, note=body.note),
    )


@router.post(
    "/{alarm_id}/assign",
    response_model=Accepted,
    status_code=202,
    responses=problem_responses(401, 403, 404, 413, 422, 429, 503),
)
async def assign(
    request: Request, alarm_id: uuid.UUID, body: AssignBody, who: Principal = WRITE
) -> Accepted:
    """Assign an alarm to a person or team."""
    return await _send(
        request,
        AlarmCommand(
            alarm_id=alarm_id,
            action="assign",
            actor=who.name,
            assignee=body.assignee,
            note=body.note,
        ),
    )
