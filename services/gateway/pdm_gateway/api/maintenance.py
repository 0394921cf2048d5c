"""Maintenance: work orders, technicians, preventive plans, production windows and the
schedule. Reads come from the scheduler's tables (CQRS read side); every change is a
`pdm.maintenance.commands.v1` command answered by the scheduler through Kafka request/reply,
so the client learns the outcome (created 201, ok/updated/unchanged 200, not_found 404,
conflict 409 e.g. an impossible transition, invalid 422; 504 when the scheduler does not
answer in time).

An `Idempotency-Key` on a write makes a retry safe twice over: the gateway answers a repeat of
the same request from the stored answer, and the command id is derived from the key, so the
scheduler, which applies each command id once, changes nothing on a repeat that does reach it
(e.g. after a timeout)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from pdm_common import topics
from pdm_common.events import ASSET_ID_PATTERN
from pdm_common.maintenance import (
    SCHEDULE_KEY,
    MaintenanceCommand,
    MaintenanceCommandResult,
    MaintenancePlan,
    PlannedOrder,
    ScheduleSummary,
    Technician,
    WhatIf,
    WorkOrder,
    WorkOrderFields,
    WorkOrderSource,
    WorkOrderStatus,
    WorkOrderType,
)
from pdm_gateway import cursors, replies
from pdm_gateway.api.deps import (
    AssetIdPath,
    CursorQuery,
    LimitQuery,
    aware,
    bus,
    decode_cursor,
    page_limit,
    stores,
)
from pdm_gateway.api.readings import IDEMPOTENCY_KEY
from pdm_gateway.api.schemas.maintenance import (
    AssetWindows,
    CommandOutcome,
    CurrentSchedule,
    GanttLane,
    PlanBody,
    ProductionWindows,
    ReplanBody,
    TechnicianBody,
    TransitionBody,
    UpcomingOrders,
    WorkOrderCreate,
    WorkOrderDetail,
    WorkOrderPage,
)
from pdm_gateway.idempotency import IdempotentRequest
from pdm_gateway.keys import Principal
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import READ, WRITE
from pdm_gateway.store.schedule import ScheduleReader
from pdm_gateway.store.work_orders import WorkOrderReader

router = APIRouter(prefix="/v1", tags=["maintenance"])
#: Command result status -> HTTP status.
STATUS = {
    "created": 201,
    "ok": 200,
    "updated": 200,
    "unchanged": 200,
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
}
SCHEDULER = "scheduler service"
#: Namespace of the command ids derived from (API key, Idempotency-Key).
COMMAND_NAMESPACE = uuid.UUID("5d0f7c1e-4a43-4a8e-9d55-2f1b8e0c6a11")
IdPath = Annotated[str, Path(pattern=ASSET_ID_PATTERN, description="Id, e.g. `tech-01`.")]
WRITE_ERRORS = (401, 403, 404, 409, 413, 422, 429, 502, 503, 504)


def work_orders(request: Request) -> WorkOrderReader:
    return WorkOrderReader(stores(request).db)


def schedules(request: Request) -> ScheduleReader:
    return ScheduleReader(stores(request).db)


class _Stored(BaseModel):
    """What an Idempotency-Key keeps: the HTTP status and the body answered."""

    status: int
    body: Any


def command_id(key_id: str, idempotency_key: str | None) -> uuid.UUID:
    """The command id of a request: derived from its key when it has one (so a repeat is the
    same command to the scheduler), else random."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(COMMAND_NAMESPACE, f"{key_id}\n{idempotency_key}")


async def _command(
    request: Request,
    response: Response,
    who: Principal,
    idempotency_key: str | None,
    key: str,
    pick: Callable[[MaintenanceCommandResult], Any],
    *,
    accepted_without_schedule: bool = False,
    work_s: float = 0.0,
    **fields: Any,
) -> Any:
    """Send one command and answer with `pick(reply)`; problems for refusals. With
    `accepted_without_schedule`, a success that carries no plan is 202 (planned later)."""
    fingerprint = f"{request.method} {request.url.path}\n".encode() + await request.body()
    idempotent = IdempotentRequest(
        stores(request).idempotency, who.key_id, idempotency_key, fingerprint
    )
    stored = await idempotent.begin()
    if stored is not None:
        response.status_code = int(stored["status"])
        response.headers["Idempotent-Replayed"] = "true"
        return stored["body"]
    command = MaintenanceCommand(
        command_id=command_id(who.key_id, idempotency_key), actor=who.name, **fields
    )
    try:
        (reply, *_) = await bus(request).call(
            topics.MAINTENANCE_COMMANDS,
            command.model_dump(mode="json", exclude_unset=True),
            key,
            SCHEDULER,
            replies.MAINTENANCE_COMMAND,
            work_s=work_s,
        )
        status = STATUS[reply.status]
        if status >= 400:
            raise Problem(status, reply.message or reply.status, slug=reply.status)
        answer = pick(reply)
        if accepted_without_schedule and status == 200 and reply.schedule is None:
            status = 202
    except Exception:
        await idempotent.abandon()  # a repeat is the same command id: the scheduler dedupes
        raise
    response.status_code = status
    body = answer.model_dump(mode="json") if isinstance(answer, BaseModel) else answer
    await idempotent.finish(status, _Stored(status=status, body=body))
    return answer


def _required(what: str, value: Any) -> Any:
    if value is None:
        raise Problem(502, f"the {SCHEDULER} answered without the {what}", slug="bad-upstream")
    return value


def _work_order(reply: MaintenanceCommandResult) -> WorkOrder:
    return _required("work order", reply.work_order)


def _outcome(reply: MaintenanceCommandResult) -> CommandOutcome:
    return CommandOutcome(status=reply.status, message=reply.message, schedule=reply.schedule)


# --- work orders ------------------------------------------------------------------------------


@router.get(
    "/work-orders",
    response_model=WorkOrderPage,
    responses=problem_responses(400, 401, 403, 422, 429),
)
async def list_work_orders(
    request: Request,
    status: Annotated[
        list[WorkOrderStatus] | None, Query(description="Any of these statuses (repeatable).")
    ] = None,
    asset_id: Annotated[str | None, Query(pattern=ASSET_ID_PATTERN)] = None,
    type: WorkOrderType | None = None,
    source: WorkOrderSource | None = None,
    technician_id: Annotated[str | None, Query(pattern=ASSET_ID_PATTERN)] = None,
    due_before: Annotated[
        datetime | None, Query(description="Due before this time (ISO 8601 with offset).")
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> WorkOrderPage:
    """Work orders, newest created first, filtered by status, asset, type, source,
    technician and due time."""
    after = decode_cursor(cursor, (datetime, str))
    limit = page_limit(request, limit)
    filters = {
        "status": status,
        "asset_id": asset_id,
        "type": type,
        "source": source,
        "technician_id": technician_id,
        "due_before": aware(due_before, "due_before"),
    }
    rows = await work_orders(request).page(filters, after, limit + 1)
    items = [WorkOrder.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if items else None
    next_cursor = (
        cursors.encode(last.created_at, str(last.work_order_id)) if more and last else None
    )
    return WorkOrderPage(items=items, next_cursor=next_cursor)


@router.get(
    "/work-orders/{work_order_id}",
    response_model=WorkOrderDetail,
    responses=problem_responses(401, 403, 404, 422, 429),
)
async def get_work_order(
    request: Request, work_order_id: uuid.UUID, _: Principal = READ
) -> WorkOrderDetail:
    """A work order with its lifecycle moves (who moved it from what to what, when, why)."""
    reader = work_orders(request)
    row = await reader.get(work_order_id)
    if row is None:
        raise Problem(404, f"no work order {work_order_id}", slug="not-found")
    return WorkOrderDetail.model_validate(
        row | {"transitions": await reader.transitions(work_order_id)}
    )


@router.post(
    "/work-orders",
    response_model=WorkOrder,
    status_code=201,
    responses=problem_responses(*WRITE_ERRORS),
)
async def create_work_order(
    request: Request,
    response: Response,
    body: WorkOrderCreate,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Open a work order by hand (source `person`); the scheduler places it in the next plan."""
    fields = WorkOrderFields.model_validate(body.model_dump(exclude_unset=True))
    return await _command(
        request, response, who, idempotency_key, body.asset_id, _work_order,
        action="create", fields=fields,
    )  # fmt: skip


@router.patch(
    "/work-orders/{work_order_id}",
    response_model=WorkOrder,
    responses=problem_responses(*WRITE_ERRORS),
)
async def update_work_order(
    request: Request,
    response: Response,
    work_order_id: uuid.UUID,
    body: WorkOrderFields,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Change the given fields of an active order (others are kept); `technician_id` pins it."""
    return await _command(
        request, response, who, idempotency_key, str(work_order_id), _work_order,
        action="update", work_order_id=work_order_id, fields=body,
    )  # fmt: skip


@router.post(
    "/work-orders/{work_order_id}/transitions",
    response_model=WorkOrder,
    responses=problem_responses(*WRITE_ERRORS),
)
async def transition_work_order(
    request: Request,
    response: Response,
    work_order_id: uuid.UUID,
    body: TransitionBody,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Move an order through its lifecycle: `start` (by its technician, or the one named),
    `hold`, `resume` (back to open, to be planned again), `complete` (with the findings:
    failure found or not, mode, cause, remedy, hours, cost, 5-whys) or `cancel` (with a
    reason). A move the order's status does not allow (e.g. completing an open order) is 409."""
    extra: dict[str, Any] = {}
    if body.reason is not None:
        extra["reason"] = body.reason
    if body.findings is not None:
        extra["findings"] = body.findings
    if body.technician_id is not None:
        extra["technician_id"] = body.technician_id
    return await _command(
        request, response, who, idempotency_key, str(work_order_id), _work_order,
        action=body.action, work_order_id=work_order_id, **extra,
    )  # fmt: skip


@router.get(
    "/maintenance/upcoming",
    response_model=UpcomingOrders,
    responses=problem_responses(401, 403, 422, 429),
)
async def upcoming(
    request: Request,
    hours: Annotated[int, Query(ge=1, le=24 * 60, description="Look-ahead in hours.")] = 72,
    limit: LimitQuery = 500,
    _: Principal = READ,
) -> UpcomingOrders:
    """Scheduled orders starting within the next `hours` and active orders due within them
    (overdue ones included), soonest first."""
    now = datetime.now(UTC)
    until = now + timedelta(hours=hours)
    rows = await work_orders(request).upcoming(until, page_limit(request, limit))
    items = [WorkOrder.model_validate(r) for r in rows]
    return UpcomingOrders(now=now, until=until, hours=hours, items=items)


# --- technicians ------------------------------------------------------------------------------


@router.get(
    "/technicians", response_model=list[Technician], responses=problem_responses(401, 403, 429)
)
async def list_technicians(
    request: Request, active: bool | None = None, _: Principal = READ
) -> list[Technician]:
    """Technicians by id, with skills, weekly shifts (UTC) and hourly cost."""
    return [Technician.model_validate(r) for r in await schedules(request).technicians(active)]


@router.get(
    "/technicians/{technician_id}",
    response_model=Technician,
    responses=problem_responses(401, 403, 404, 429),
)
async def get_technician(
    request: Request, technician_id: IdPath, _: Principal = READ
) -> Technician:
    row = await schedules(request).technician(technician_id)
    if row is None:
        raise Problem(404, f"no technician {technician_id!r}", slug="not-found")
    return Technician.model_validate(row)


@router.put(
    "/technicians/{technician_id}",
    response_model=Technician,
    responses={
        **problem_responses(*WRITE_ERRORS),
        201: {"model": Technician, "description": "Created"},
    },
)
async def upsert_technician(
    request: Request,
    response: Response,
    technician_id: IdPath,
    body: TechnicianBody,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Create (201) or replace (200) a technician; the schedule is re-planned around them."""
    technician = Technician(technician_id=technician_id, **body.model_dump())
    return await _command(
        request, response, who, idempotency_key, technician_id,
        lambda r: r.technician or technician, action="technician.upsert", technician=technician,
    )  # fmt: skip


@router.delete(
    "/technicians/{technician_id}",
    response_model=None,
    responses=problem_responses(401, 403, 404, 409, 429, 503, 504),
)
async def remove_technician(
    request: Request,
    response: Response,
    technician_id: IdPath,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> dict[str, str]:
    """Remove a technician; the orders assigned to them are re-planned."""
    answer: dict[str, str] = await _command(
        request, response, who, idempotency_key, technician_id,
        lambda r: {"technician_id": technician_id, "status": "removed"},
        action="technician.remove", technician_id=technician_id,
    )  # fmt: skip
    return answer


# --- preventive plans -------------------------------------------------------------------------


@router.get(
    "/maintenance/plans",
    response_model=list[MaintenancePlan],
    responses=problem_responses(401, 403, 429),
)
async def list_plans(request: Request, _: Principal = READ) -> list[MaintenancePlan]:
    """Time-based preventive plans by id."""
    return [MaintenancePlan.model_validate(r) for r in await schedules(request).plans()]


@router.get(
    "/maintenance/plans/{plan_id}",
    response_model=MaintenancePlan,
    responses=problem_responses(401, 403, 404, 429),
)
async def get_plan(request: Request, plan_id: IdPath, _: Principal = READ) -> MaintenancePlan:
    row = await schedules(request).plan(plan_id)
    if row is None:
        raise Problem(404, f"no maintenance plan {plan_id!r}", slug="not-found")
    return MaintenancePlan.model_validate(row)


@router.put(
    "/maintenance/plans/{plan_id}",
    response_model=MaintenancePlan,
    responses={
        **problem_responses(*WRITE_ERRORS),
        201: {"model": MaintenancePlan, "description": "Created"},
    },
)
async def upsert_plan(
    request: Request,
    response: Response,
    plan_id: IdPath,
    body: PlanBody,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Create (201) or replace (200) a preventive plan: every `interval_hours`, an order for
    the asset (or every known asset of the type)."""
    plan = MaintenancePlan(plan_id=plan_id, **body.model_dump())
    return await _command(
        request, response, who, idempotency_key, plan_id,
        lambda r: r.plan or plan, action="plan.upsert", plan=plan,
    )  # fmt: skip


@router.delete(
    "/maintenance/plans/{plan_id}",
    response_model=None,
    responses=problem_responses(401, 403, 404, 409, 429, 503, 504),
)
async def remove_plan(
    request: Request,
    response: Response,
    plan_id: IdPath,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> dict[str, str]:
    """Remove a preventive plan (orders it already opened stay)."""
    answer: dict[str, str] = await _command(
        request, response, who, idempotency_key, plan_id,
        lambda r: {"plan_id": plan_id, "status": "removed"},
        action="plan.remove", plan_id=plan_id,
    )  # fmt: skip
    return answer


# --- production windows -----------------------------------------------------------------------


@router.get(
    "/assets/{asset_id}/production-windows",
    response_model=AssetWindows,
    responses=problem_responses(401, 403, 429),
)
async def get_windows(request: Request, asset_id: AssetIdPath, _: Principal = READ) -> AssetWindows:
    """When maintenance may stop the asset (none: at any time)."""
    rows = await schedules(request).windows(asset_id)
    return AssetWindows.model_validate({"asset_id": asset_id, "windows": rows})


@router.put(
    "/assets/{asset_id}/production-windows",
    response_model=AssetWindows,
    responses=problem_responses(*WRITE_ERRORS),
)
async def set_windows(
    request: Request,
    response: Response,
    asset_id: AssetIdPath,
    body: ProductionWindows,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Replace the asset's production windows (an empty list removes them)."""
    return await _command(
        request, response, who, idempotency_key, asset_id,
        lambda r: AssetWindows(asset_id=asset_id, windows=body.windows),
        action="windows.set", asset_id=asset_id, windows=body.windows,
    )  # fmt: skip


# --- schedule ---------------------------------------------------------------------------------


def gantt_lanes(
    orders: Iterable[PlannedOrder], view: Literal["technician", "asset"]
) -> tuple[list[GanttLane], list[PlannedOrder]]:
    """The scheduled orders (those with a start and an end) grouped into one lane per
    technician or asset, lanes by key (no technician last), orders by start; and the orders
    in no lane (unschedulable), in their given order."""
    groups: dict[str | None, list[PlannedOrder]] = {}
    rest: list[PlannedOrder] = []
    for order in orders:
        if order.status != "scheduled" or order.start is None or order.end is None:
            rest.append(order)
            continue
        key = order.technician_id if view == "technician" else order.asset_id
        groups.setdefault(key, []).append(order)
    lanes = []
    for key in sorted(groups, key=lambda k: (k is None, k or "")):
        lane = sorted(groups[key], key=lambda o: (o.start, str(o.work_order_id)))
        lanes.append(
            GanttLane(
                key=key,
                orders=lane,
                busy_h=sum((o.end - o.start).total_seconds() for o in lane if o.end and o.start)
                / 3600,
                first_start=lane[0].start,
                last_end=max(o.end for o in lane if o.end),
            )
        )
    return lanes, rest


@router.get(
    "/schedule",
    response_model=CurrentSchedule,
    responses=problem_responses(401, 403, 404, 422, 429),
)
async def current_schedule(
    request: Request,
    view: Annotated[
        Literal["plan", "technician", "asset"],
        Query(description="`technician` or `asset`: scheduled orders in Gantt lanes."),
    ] = "plan",
    _: Principal = READ,
) -> CurrentSchedule:
    """The current plan (the newest one the scheduler published): its solve figures, every
    order's place, and what moved since the plan before."""
    found = await schedules(request).current_plan()
    if found is None:
        raise Problem(
            404,
            "no schedule yet: the scheduler publishes one once it has orders to plan "
            "(POST /v1/schedule/replan asks for one now)",
            slug="not-found",
        )
    summary, rows = found
    orders = [PlannedOrder.model_validate(r) for r in rows]
    if view == "plan":
        return CurrentSchedule.model_validate(summary | {"orders": orders, "view": view})
    lanes, rest = gantt_lanes(orders, view)
    return CurrentSchedule.model_validate(summary | {"orders": rest, "view": view, "lanes": lanes})


@router.post(
    "/schedule/replan",
    response_model=CommandOutcome,
    responses=problem_responses(*WRITE_ERRORS)
    | {202: {"model": CommandOutcome, "description": "Accepted: the plan follows shortly"}},
)
async def replan(
    request: Request,
    response: Response,
    body: ReplanBody | None = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Plan again now (e.g. after a shift change the scheduler cannot know of); answers the
    new plan's summary when the scheduler planned within the request, else 202."""
    extra: dict[str, Any] = {"reason": body.reason} if body and body.reason else {}
    return await _command(
        request, response, who, idempotency_key, SCHEDULE_KEY, _outcome,
        accepted_without_schedule=True, action="replan", **extra,
    )  # fmt: skip


@router.post(
    "/schedule/what-if",
    response_model=ScheduleSummary,
    responses=problem_responses(*WRITE_ERRORS),
)
async def what_if(
    request: Request,
    response: Response,
    body: WhatIf,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """The plan the scheduler would make under other constraints (horizon, weekly budget,
    only some technicians, extra ones): computed and answered, never committed."""
    return await _command(
        request, response, who, idempotency_key, SCHEDULE_KEY,
        lambda r: _required("schedule", r.schedule), action="what_if", what_if=body,
        work_s=body.time_limit_s or 0.0,
    )  # fmt: skip
