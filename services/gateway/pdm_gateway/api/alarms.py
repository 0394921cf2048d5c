"""Alarms: state read from `alarms` (owned by the anomaly service); acknowledge and assign
are `pdm.anomaly.commands.v1` commands, applied once per command id by the anomaly service
(202: the new state shows in GET shortly, and on the stream as `alarm.acknowledged` /
`alarm.assigned`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from pdm_common import topics
from pdm_common.events import AlarmCommand, AlarmStatus, Severity
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
from pdm_gateway.api.schemas.alarms import AckBody, Alarm, AlarmPage, AssignBody
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
