"""What each input does to the work orders, inside one transaction (`storage.Tx`):
predictions open, update or cancel predictive orders; critical alarms open inspections;
plans open preventive orders; commands create, change and move orders through their life.

Idempotency without a table of seen events: a prediction no newer than the one an order
already follows changes nothing (duplicates and out-of-order deliveries alike); an alarm or
a plan occurrence opens at most one order (unique indexes); a command is applied once per
`command_id` (`maintenance_commands_applied` keeps its answer).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog

from pdm_common.events import AlarmEvent, Prediction
from pdm_common.maintenance import (
    MaintenanceCommand,
    MaintenanceCommandResult,
    MaintenancePlan,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderStatus,
)
from pdm_scheduler import SERVICE
from pdm_scheduler.orders import (
    ACTION_TARGETS,
    EVENT_OF_STATUS,
    Costing,
    assess,
    choose_mode,
    priority_for,
    transition_error,
    wants_inspection,
)
from pdm_scheduler.settings import SchedulerSettings
from pdm_scheduler.storage import Tx

log = structlog.get_logger(__name__)
PREDICTIVE_CONFLICT = (
    "(asset_id, failure_mode) WHERE type = 'predictive' "
    "AND status IN ('open', 'scheduled', 'in_progress', 'on_hold')"
)
#: A due date moved by less than this is not news (no event, no re-plan).
MATERIAL_DUE_CHANGE = timedelta(hours=1)


async def emit(
    tx: Tx,
    kind: str,
    order: WorkOrder,
    actor: str,
    *,
    from_status: WorkOrderStatus | None = None,
    reason: str | None = None,
) -> None:
    event = WorkOrderEvent(
        event_type=kind,
        source=SERVICE,
        work_order=order,
        actor=actor,
        from_status=from_status,
        reason=reason,
    )
    await tx.emit(event, order.asset_id)


async def move(
    tx: Tx,
    order: WorkOrder,
    target: WorkOrderStatus,
    actor: str,
    reason: str | None,
    extra: dict[str, Any] | None = None,
) -> WorkOrder:
    """Move `order` to `target` (the caller checked it may), record and announce it."""
    updated = await tx.update_order(order, {"status": target, **(extra or {})})
    await tx.transition(order.work_order_id, order.status, target, actor, reason)
    await emit(tx, EVENT_OF_STATUS[target], updated, actor, from_status=order.status, reason=reason)
    await tx.request_replan(f"work order {target}")
    return updated


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


async def on_prediction(tx: Tx, p: Prediction, settings: SchedulerSettings) -> str:
    """Apply one prediction; returns what it did (for logs and metrics)."""
    a = assess(p, settings)
    await tx.see_asset(p.asset_id, p.asset_type, a.as_of)
    active = await tx.active_orders(p.asset_id, "predictive")
    if not a.at_risk:
        return await _healthy(tx, active, p, a.as_of, settings)
    completed = await tx.last_completed_at(p.asset_id)
    if completed is not None and a.as_of < completed + timedelta(seconds=settings.reopen_grace_s):
        return "ignored: just repaired"
    mode = choose_mode(a.modes, [o.failure_mode for o in active])
    risk = {
        "failure_probability": a.probability,
        "rul_p10_h": a.rul_h[0],
        "rul_p50_h": a.rul_h[1],
        "rul_p90_h": a.rul_h[2],
        "risk_as_of": a.as_of,
    }
    existing = next((o for o in active if o.failure_mode == mode), None)
    if existing is not None:
        if existing.risk_as_of is not None and a.as_of <= existing.risk_as_of:
            return "unchanged: not newer"
        changes: dict[str, Any] = {**risk, "healthy_since": None}
        material = existing.status in ("open", "scheduled") and (
            existing.due_by is None
            or a.due_by is None
            or abs(a.due_by - existing.due_by) >= MATERIAL_DUE_CHANGE
            or a.priority != existing.priority
        )
        if material:
            changes |= {"due_by": a.due_by, "priority": a.priority}
        updated = await tx.update_order(existing, changes)
        if material:
            await emit(tx, "work_order.updated", updated, SERVICE, reason=a.why)
            await tx.request_replan("prediction")
            return "updated"
        return "refreshed"
    cost = Costing(settings)
    created = await tx.insert_order(
        {
            "asset_id": p.asset_id,
            "asset_type": p.asset_type,
            "type": "predictive",
            "status": "open",
            "priority": a.priority,
            "source": "prediction",
            "source_ref": str(p.event_id),
            "failure_mode": mode,
            "title": f"{mode.replace('_', ' ')} predicted on {p.asset_id}",
            "description": a.why,
            "skill": cost.skill(mode),
            "estimated_hours": cost.hours(mode),
            "parts_cost": cost.parts(mode),
            "failure_cost": cost.failure_cost(p.asset_type),
            "downtime_cost_per_h": cost.downtime(p.asset_type),
            "due_by": a.due_by,
            **risk,
            "created_by": SERVICE,
        },
        conflict=PREDICTIVE_CONFLICT,
    )
    if created is None:
        return "unchanged: exists"
    await emit(tx, "work_order.created", created, SERVICE, reason=a.why)
    await tx.request_replan("prediction")
    return "opened"


async def _healthy(
    tx: Tx, active: list[WorkOrder], p: Prediction, as_of: datetime, settings: SchedulerSettings
) -> str:
    """A healthy prediction: orders not yet started count how long the asset has been
    healthy, and are cancelled once that is `healthy_cancel_after_h`."""
    outcome = "healthy"
    for order in active:
        if order.status not in ("open", "scheduled"):
            continue
        if order.risk_as_of is not None and as_of <= order.risk_as_of:
            continue
        since = order.healthy_since or as_of
        updated = await tx.update_order(
            order,
            {
                "healthy_since": since,
                "risk_as_of": as_of,
                "failure_probability": p.failure_probability,
            },
        )
        if as_of - since >= timedelta(hours=settings.healthy_cancel_after_h):
            reason = f"predicted healthy since {since.isoformat()}"
            await move(tx, updated, "cancelled", SERVICE, reason, {"cancelled_reason": reason})
            outcome = "cancelled"
    return outcome


# --------------------------------------------------------------------------------------------
# Alarms
# --------------------------------------------------------------------------------------------


async def on_alarm(tx: Tx, event: AlarmEvent, settings: SchedulerSettings) -> str:
    """A critical alarm opens one inspection, unless the asset already has active
    predictive, corrective or inspection work (the alarm is then about that work)."""
    if not wants_inspection(event):
        return "ignored"
    await tx.see_asset(event.asset_id, event.asset_type, event.opened_at)
    active = await tx.active_orders(event.asset_id)
    if any(o.type != "preventive" for o in active):
        return "covered"
    cost = Costing(settings)
    due = event.opened_at + timedelta(hours=settings.alarm_due_h)
    created = await tx.insert_order(
        {
            "asset_id": event.asset_id,
            "asset_type": event.asset_type,
            "type": "inspection",
            "status": "open",
            "priority": 3,
            "source": "alarm",
            "source_ref": str(event.alarm_id),
            "failure_mode": None,
            "title": f"Inspect {event.asset_id}: critical {event.condition} alarm",
            "description": f"{event.detector} score {event.score:.3g} (threshold "
            f"{event.threshold:.3g}); contributors: "
            + (", ".join(sorted(event.contributors)) or "none"),
            "skill": settings.default_skill,
            "estimated_hours": settings.default_hours,
            "parts_cost": 0.0,
            "failure_cost": cost.failure_cost(event.asset_type),
            "downtime_cost_per_h": cost.downtime(event.asset_type),
            "due_by": due,
            "created_by": SERVICE,
        },
        conflict="(source_ref) WHERE source = 'alarm'",
    )
    if created is None:
        return "unchanged: exists"
    await emit(tx, "work_order.created", created, SERVICE, reason=f"alarm {event.alarm_id}")
    await tx.request_replan("alarm")
    return "opened"


# --------------------------------------------------------------------------------------------
# Preventive plans
# --------------------------------------------------------------------------------------------


async def due_plan_orders(
    tx: Tx, plan: MaintenancePlan, now: datetime, horizon_h: int, created_at: datetime
) -> int:
    """Open the plan's occurrences due within the horizon (each once: unique index)."""
    opened = 0
    interval = timedelta(hours=plan.interval_hours)
    for asset_id, asset_type in await tx.plan_targets(plan):
        last = await tx.last_plan_due(plan.plan_id, asset_id)
        due = (last or max(created_at, now - interval)) + interval
        for _ in range(50):  # a short interval opens at most this many per tick
            if due > now + timedelta(hours=horizon_h):
                break
            created = await tx.insert_order(
                {
                    "asset_id": asset_id,
                    "asset_type": asset_type,
                    "type": "preventive",
                    "status": "open",
                    "priority": plan.priority,
                    "source": "plan",
                    "source_ref": plan.plan_id,
                    "title": f"{plan.name} on {asset_id}",
                    "skill": plan.skill,
                    "estimated_hours": plan.estimated_hours,
                    "parts_cost": plan.parts_cost,
                    "failure_cost": 0.0,
                    "downtime_cost_per_h": 0.0,
                    "due_by": due,
                    "created_by": SERVICE,
                },
                conflict="(source_ref, asset_id, due_by) WHERE source = 'plan'",
            )
            if created is not None:
                await emit(
                    tx, "work_order.created", created, SERVICE, reason=f"plan {plan.plan_id}"
                )
                opened += 1
            due += interval
    if opened:
        await tx.request_replan("plan")
    return opened


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def result(
    command: MaintenanceCommand, status: str, message: str | None = None, **parts: Any
) -> MaintenanceCommandResult:
    return MaintenanceCommandResult(
        source=SERVICE,
        command_id=command.command_id,
        action=command.action,
        status=status,
        message=message,
        **parts,
    )


async def create_order(
    tx: Tx, c: MaintenanceCommand, settings: SchedulerSettings
) -> MaintenanceCommandResult:
    f = c.fields
    assert f is not None and f.asset_id and f.type and f.title  # checked by `commands.check`
    cost = Costing(settings)
    due = f.due_by
    # derived from the command, so a command applied again finds the order it created
    work_order_id = uuid.uuid5(uuid.NAMESPACE_OID, f"pdm-work-order/{c.command_id}")
    values = {
        "work_order_id": work_order_id,
        "asset_id": f.asset_id,
        "asset_type": f.asset_type,
        "type": f.type,
        "status": "open",
        "priority": f.priority
        if f.priority is not None
        else (priority_for(due, _now()) if due else 1),
        "source": "person",
        "source_ref": str(c.command_id),
        "failure_mode": f.failure_mode,
        "title": f.title,
        "description": f.description,
        "skill": f.skill or cost.skill(f.failure_mode),
        "estimated_hours": f.estimated_hours or cost.hours(f.failure_mode),
        "parts_cost": f.parts_cost if f.parts_cost is not None else cost.parts(f.failure_mode),
        "failure_cost": f.failure_cost
        if f.failure_cost is not None
        else cost.failure_cost(f.asset_type),
        "downtime_cost_per_h": f.downtime_cost_per_h
        if f.downtime_cost_per_h is not None
        else cost.downtime(f.asset_type),
        "due_by": due,
        "technician_id": f.technician_id,
        "pinned": f.technician_id is not None,
        "created_by": c.actor,
    }
    if f.type == "predictive" and f.failure_mode is not None:
        created = await tx.insert_order(values, conflict=PREDICTIVE_CONFLICT)
        if created is None:
            active = await tx.active_orders(f.asset_id, "predictive")
            same = next((o for o in active if o.failure_mode == f.failure_mode), None)
            return result(
                c,
                "conflict",
                f"{f.asset_id} already has an active predictive order for {f.failure_mode}",
                work_order=same,
            )
    else:
        created = await tx.insert_order(values, conflict="(work_order_id)")
        if created is None:  # the same command applied before its answer was remembered
            created = await tx.order(work_order_id, lock=False)
            return result(c, "created", work_order=created)
    await emit(tx, "work_order.created", created, c.actor, reason=c.reason)
    await tx.request_replan("work order created")
    return result(c, "created", work_order=created)


async def update_order(tx: Tx, c: MaintenanceCommand) -> MaintenanceCommandResult:
    assert c.work_order_id is not None and c.fields is not None
    order = await tx.order(c.work_order_id)
    if order is None:
        return result(c, "not_found", f"no work order {c.work_order_id}")
    if order.status in ("completed", "cancelled"):
        return result(c, "conflict", f"the work order is {order.status}", work_order=order)
    given = c.fields.model_dump(exclude_unset=True)
    if "asset_id" in given and given["asset_id"] != order.asset_id:
        return result(c, "invalid", "fields.asset_id: an order's asset cannot change")
    given.pop("asset_id", None)
    if given.get("type", order.type) != order.type:
        return result(c, "invalid", "fields.type: an order's type cannot change")
    given.pop("type", None)
    if "technician_id" in given:
        given["pinned"] = given["technician_id"] is not None
    changes = {k: v for k, v in given.items() if getattr(order, k) != v}
    if not changes:
        return result(c, "unchanged", work_order=order)
    updated = await tx.update_order(order, changes)
    await emit(tx, "work_order.updated", updated, c.actor, reason=c.reason)
    await tx.request_replan("work order updated")
    return result(c, "updated", work_order=updated)


async def transition_order(tx: Tx, c: MaintenanceCommand) -> MaintenanceCommandResult:
    assert c.work_order_id is not None
    order = await tx.order(c.work_order_id)
    if order is None:
        return result(c, "not_found", f"no work order {c.work_order_id}")
    target = ACTION_TARGETS[c.action]
    if c.action == "resume" and order.status != "on_hold":
        return result(c, "conflict", f"only an on-hold order resumes; it is {order.status}")
    problem = transition_error(order.status, target)
    if problem is not None:
        return result(c, "conflict", problem, work_order=order)
    extra: dict[str, Any] = {}
    now = _now()
    if target == "in_progress":
        extra["started_at"] = order.started_at or now
        if c.technician_id is not None:
            extra |= {"technician_id": c.technician_id, "pinned": True}
        elif order.technician_id is None:
            return result(
                c,
                "invalid",
                "technician_id: the order has no technician; name who starts it",
                work_order=order,
            )
    elif target == "completed":
        assert c.findings is not None
        extra |= {"completed_at": now, "findings": c.findings.model_dump(mode="json")}
    elif target == "cancelled":
        extra["cancelled_reason"] = c.reason
    updated = await move(tx, order, target, c.actor, c.reason, extra)
    return result(c, "ok", work_order=updated)


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
