"""The planning loop, the preventive-plan tick, what-if plans and the outbox relay.

Re-plans are debounced through the database: any change that matters sets
`scheduler_state.dirty_since` in its own transaction; the loop (every replica runs one)
plans when that is older than `replan_debounce_s`, when there is no plan yet, or when the
newest plan is older than `replan_interval_s` (a full re-optimisation). One planner at a time
across replicas: a session advisory lock, released by PostgreSQL if the process dies. The
plan, the orders' moves, their events and the clearing of the requests it covered commit in
one transaction, so a planner killed mid-plan leaves the previous plan and the requests in
place, and the next one plans again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

import pdm_scheduling as opt
from pdm_common.maintenance import (
    PlannedOrder,
    SchedulePublished,
    ScheduleSummary,
    Technician,
    WhatIf,
    WorkOrder,
    WorkOrderEvent,
    WorkOrderStatus,
)
from pdm_common.outbox import wait_or_wake
from pdm_common.telemetry import REGISTRY
from pdm_scheduler import SERVICE
from pdm_scheduler.planning import Inputs, make_plan
from pdm_scheduler.settings import SchedulerSettings
from pdm_scheduler.storage import PLANNER_LOCK, SchedulerStore, Tx
from pdm_scheduler.workflow import due_plan_orders

log = structlog.get_logger(__name__)

PLANS = Counter(
    "pdm_scheduler_plans_total", "Plans made, by outcome.", ["outcome"], registry=REGISTRY
)
PLAN_SECONDS = Histogram(
    "pdm_scheduler_plan_seconds",
    "Wall time of one plan (read, solve, validate, store).",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 60),
    registry=REGISTRY,
)
UNSCHEDULABLE = Gauge(
    "pdm_scheduler_unschedulable_orders",
    "Orders the newest plan could not place.",
    registry=REGISTRY,
)
#: A published plan carries its orders up to this many (else summary and moves only: read
#: the whole plan from `GET /v1/schedule`), to stay well under the broker's message limit.
MAX_ORDERS_IN_EVENT = 1000


class Planner:
    def __init__(self, store: SchedulerStore, settings: SchedulerSettings) -> None:
        self.store = store
        self.settings = settings
        self._poke = asyncio.Event()
        self._plans_due = True
        self.last_error: str | None = None

    def poke(self) -> None:
        """Look for due work now rather than at the next tick."""
        self._poke.set()

    def plans_due(self) -> None:
        self._plans_due = True
        self._poke.set()

    def params(self, time_limit_s: float | None = None) -> opt.SolverParams:
        return opt.SolverParams(time_limit_s=time_limit_s or self.settings.solver_time_limit_s)

    async def run(self) -> None:
        """Forever: open due preventive orders, plan when a plan is due."""
        loop = asyncio.get_running_loop()
        next_plans = 0.0
        while True:
            try:
                if self._plans_due or loop.time() >= next_plans:
                    self._plans_due = False
                    next_plans = loop.time() + self.settings.plans_interval_s
                    await self.open_plan_orders()
                why = await self.store.replan_due(
                    self.settings.replan_debounce_s, self.settings.replan_interval_s
                )
                if why is not None:
                    await self.plan(why, full=why in ("timer", "first plan"))
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down, ...: try again at the next tick
                self.last_error = repr(exc)
                log.warning("planning failed; retrying", error=repr(exc))
                PLANS.labels("error").inc()
                await asyncio.sleep(5)
            await wait_or_wake(self._poke, 1.0)

    async def open_plan_orders(self) -> int:
        now = datetime.now(UTC)
        async with self.store.connection() as conn, conn.transaction():
            tx = Tx(conn)
            opened = 0
            for plan in await tx.plans(only_active=True):
                created = await tx.rows(
                    "SELECT created_at FROM maintenance_plans WHERE plan_id = %s", (plan.plan_id,)
                )
                opened += await due_plan_orders(
                    tx, plan, now, self.settings.horizon_h, created[0]["created_at"]
                )
        if opened:
            log.info("preventive orders opened", orders=opened)
        return opened

    async def plan(self, trigger: str, *, full: bool) -> int | None:
        """Make, validate and store a plan (None: another replica is planning, or the plan
        was refused by the validator and the previous one stays)."""
        async with self.store.connection() as lock_conn:
            await lock_conn.set_autocommit(True)
            cur = await lock_conn.execute("SELECT pg_try_advisory_lock(%s), now()", (PLANNER_LOCK,))
            row = await cur.fetchone()
            assert row is not None
            locked, started_at = row
            if not locked:
                return None
            try:
                return await self._plan(trigger, full, started_at)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (PLANNER_LOCK,))

    async def _plan(self, trigger: str, full: bool, started_at: datetime) -> int | None:
        with PLAN_SECONDS.time():
            orders, technicians, windows = await self.store.planning_inputs()
            _, previous = await self.store.current_plan()
            inputs = self._inputs(orders, technicians, windows)
            limit = None if full else self.settings.replan_time_limit_s
            summary, violations, planned = await asyncio.to_thread(
                make_plan, inputs, previous, self.params(limit), trigger=trigger, full=full
            )
            if violations:
                PLANS.labels("refused").inc()
                log.error("plan refused by the validator", violations=violations[:10])
                return None
            changes = plan_changes(summary.orders, planned)
            event_summary = summary
            if len(summary.orders) > MAX_ORDERS_IN_EVENT:
                event_summary = summary.model_copy(update={"orders": []})
            plan_id = await self.store.store_plan(
                summary,
                changes,
                started_at,
                self.settings.keep_plans,
                lambda pid: SchedulePublished(
                    source=SERVICE, schedule=event_summary.model_copy(update={"plan_id": pid})
                ),
                moved_event,
            )
        PLANS.labels("stored").inc()
        UNSCHEDULABLE.set(summary.unschedulable)
        log.info(
            "plan published",
            plan_id=plan_id,
            trigger=trigger,
            orders=len(summary.orders),
            scheduled=summary.scheduled,
            unschedulable=summary.unschedulable,
            late=summary.late,
            moves=len(summary.moves),
            gap=summary.gap,
            wall_time_s=summary.wall_time_s,
        )
        return plan_id

    def _inputs(
        self,
        orders: Sequence[WorkOrder],
        technicians: Sequence[Technician],
        windows: dict[str, Any],
        *,
        horizon_h: int | None = None,
        budget: float | None = None,
    ) -> Inputs:
        return Inputs(
            now=datetime.now(UTC),
            orders=orders,
            technicians=technicians,
            windows=windows,
            horizon_h=horizon_h or self.settings.horizon_h,
            frozen_horizon_h=self.settings.frozen_horizon_h,
            budget_per_week=budget if budget is not None else self.settings.budget_per_week,
            lateness_cost_per_h=self.settings.lateness_cost_per_h,
        )

    async def what_if(self, spec: WhatIf | None) -> ScheduleSummary:
        """A plan under other constraints, answered and never stored."""
        spec = spec or WhatIf()
        orders, technicians, windows = await self.store.planning_inputs()
        if spec.technicians is not None:
            wanted = set(spec.technicians)
            technicians = [t for t in technicians if t.technician_id in wanted]
        extra = {t.technician_id for t in spec.extra_technicians}
        technicians = [t for t in technicians if t.technician_id not in extra]
        technicians += spec.extra_technicians
        inputs = self._inputs(
            orders, technicians, windows, horizon_h=spec.horizon_h, budget=spec.budget_per_week
        )
        # Capped: a what-if holds the command consumer, so a caller may shorten it, never
        # lengthen it past the operator's setting.
        cap = self.settings.what_if_time_limit_s
        params = self.params(min(spec.time_limit_s or cap, cap))
        summary, violations, _ = await asyncio.to_thread(
            make_plan, inputs, (), params, trigger="what-if", full=True
        )
        if violations:
            log.error("what-if plan failed validation", violations=violations[:10])
        return summary


def plan_changes(
    placed: Sequence[PlannedOrder], planned: dict[str, WorkOrder]
) -> list[tuple[WorkOrder, dict[str, Any], WorkOrderStatus | None]]:
    """What a plan changes on each order still waiting to start: its slot, what binds it,
    and `open` <-> `scheduled` (with the status it leaves, for the transition record)."""
    out: list[tuple[WorkOrder, dict[str, Any], WorkOrderStatus | None]] = []
    for p in placed:
        wo = planned[str(p.work_order_id)]
        if wo.status not in ("open", "scheduled"):
            continue
        if p.status == "scheduled":
            target: dict[str, Any] = {
                "technician_id": p.technician_id,
                "scheduled_start": p.start,
                "scheduled_end": p.end,
                "bound_by": p.bound_by,
                "schedule_note": None,
                "status": "scheduled",
            }
        else:
            target = {
                "technician_id": wo.technician_id if wo.pinned else None,
                "scheduled_start": None,
                "scheduled_end": None,
                "bound_by": [],
                "schedule_note": f"unschedulable: {p.reason}"
                + (f" ({p.detail})" if p.detail else ""),
                "status": "open",
            }
        values = {k: v for k, v in target.items() if getattr(wo, k) != v}
        if values:
            out.append((wo, values, wo.status if "status" in values else None))
    return out


def moved_event(order: WorkOrder, from_status: WorkOrderStatus) -> WorkOrderEvent:
    kind = "work_order.scheduled" if order.status == "scheduled" else "work_order.unscheduled"
    return WorkOrderEvent(
        event_type=kind,
        source=SERVICE,
        work_order=order,
        actor=SERVICE,
        from_status=from_status,
        reason=order.schedule_note,
    )
