"""Database access of the scheduler: its own tables only (see `0009_scheduler.sql`).

Every change goes through a `Tx` (one transaction): the row change, its lifecycle record
(`work_order_transitions`), its event (`maintenance_outbox`, published afterwards by the
relay) and the re-plan request (`scheduler_state.dirty_since`) commit together or not at
all, so a crash at any point leaves either all of them or none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pdm_common.db.pool import tables_exist
from pdm_common.events import Envelope
from pdm_common.maintenance import (
    ACTIVE_STATUSES,
    MaintenancePlan,
    PlannedOrder,
    ProductionWindow,
    ScheduleSummary,
    Technician,
    WorkOrder,
    WorkOrderStatus,
)
from pdm_common.outbox import drain_outbox
from pdm_scheduler import SERVICE

#: The advisory lock one planner (of all replicas) holds while it plans.
PLANNER_LOCK = 0x5D_0C_4E_D1
ORDER_SELECT = (
    "SELECT w.*, w.estimated_hours * t.hourly_cost AS labour_cost_estimate "
    "FROM work_orders w LEFT JOIN technicians t ON t.technician_id = w.technician_id"
)
#: Columns a create may set (besides the ones every insert sets).
ORDER_COLUMNS = (
    "asset_id", "asset_type", "type", "status", "priority", "source", "source_ref",
    "failure_mode", "title", "description", "skill", "estimated_hours", "parts_cost",
    "failure_cost", "downtime_cost_per_h", "due_by", "failure_probability", "rul_p10_h",
    "rul_p50_h", "rul_p90_h", "risk_as_of", "technician_id", "pinned", "created_by",
)  # fmt: skip
UPDATABLE = frozenset(
    {
        "asset_type", "priority", "failure_mode", "title", "description", "skill",
        "estimated_hours", "parts_cost", "failure_cost", "downtime_cost_per_h", "due_by",
        "failure_probability", "rul_p10_h", "rul_p50_h", "rul_p90_h", "risk_as_of",
        "healthy_since", "technician_id", "pinned", "scheduled_start", "scheduled_end",
        "bound_by", "schedule_note", "findings", "started_at", "completed_at",
        "cancelled_reason", "status",
    }
)  # fmt: skip


def order_from_row(row: dict[str, Any]) -> WorkOrder:
    return WorkOrder.model_validate(row)


def _json(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value  # findings; lists are text[]


class Tx:
    """One transaction of the scheduler's changes (see the module docstring)."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn
        self.events = 0

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.cursor(row_factory=dict_row)
        await cur.execute(sql, params)
        return list(await cur.fetchall())

    # -- work orders --------------------------------------------------------------------------

    async def order(self, work_order_id: uuid.UUID, *, lock: bool = True) -> WorkOrder | None:
        sql = f"{ORDER_SELECT} WHERE w.work_order_id = %s" + (" FOR UPDATE OF w" if lock else "")
        found = await self.rows(sql, (work_order_id,))
        return order_from_row(found[0]) if found else None

    async def active_orders(self, asset_id: str, order_type: str | None = None) -> list[WorkOrder]:
        sql = f"{ORDER_SELECT} WHERE w.asset_id = %s AND w.status = ANY(%s)"
        params: list[Any] = [asset_id, list(ACTIVE_STATUSES)]
        if order_type is not None:
            sql += " AND w.type = %s"
            params.append(order_type)
        return [order_from_row(r) for r in await self.rows(sql + " FOR UPDATE OF w", params)]

    async def last_completed_at(self, asset_id: str) -> datetime | None:
        found = await self.rows(
            "SELECT max(completed_at) AS at FROM work_orders "
            "WHERE asset_id = %s AND status = 'completed'",
            (asset_id,),
        )
        at: datetime | None = found[0]["at"] if found else None
        return at

    async def insert_order(self, values: dict[str, Any], *, conflict: str) -> WorkOrder | None:
        """Insert one order; None when `conflict` (a unique index's ON CONFLICT target)
        says an equal one exists (a duplicate event, a race between replicas)."""
        work_order_id = values.pop("work_order_id", None) or uuid.uuid4()
        cols = ["work_order_id", *ORDER_COLUMNS]
        values.setdefault("pinned", False)
        params = [work_order_id, *(_json(values.get(c)) for c in ORDER_COLUMNS)]
        cur = await self.conn.execute(
            f"INSERT INTO work_orders ({', '.join(cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}) ON CONFLICT {conflict} DO NOTHING",
            params,
        )
        if cur.rowcount == 0:
            return None
        await self.transition(work_order_id, None, values["status"], values["created_by"], None)
        return await self.order(work_order_id, lock=False)

    async def update_order(self, order: WorkOrder, changes: dict[str, Any]) -> WorkOrder:
        """Apply `changes` (columns of `UPDATABLE`) and bump the version."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if not changes:
            return order
        sets = ", ".join(f"{c} = %s" for c in changes)
        await self.conn.execute(
            f"UPDATE work_orders SET {sets}, version = version + 1, "
            "updated_at = now() WHERE work_order_id = %s",
            [*(_json(v) for v in changes.values()), order.work_order_id],
        )
        updated = await self.order(order.work_order_id, lock=False)
        assert updated is not None
        return updated

    async def transition(
        self,
        work_order_id: uuid.UUID,
        from_status: WorkOrderStatus | None,
        to_status: WorkOrderStatus,
        actor: str,
        reason: str | None,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO work_order_transitions "
            "(work_order_id, from_status, to_status, actor, reason) VALUES (%s, %s, %s, %s, %s)",
            (work_order_id, from_status, to_status, actor, reason),
        )

    # -- events and re-plan requests ---------------------------------------------------------

    async def emit(self, event: Envelope, key: str) -> None:
        """Queue `event` in the outbox (published after the commit by the relay)."""
        await self.conn.execute(
            "INSERT INTO maintenance_outbox (event_id, key, event_type, payload) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
            (event.event_id, key, event.event_type, Jsonb(event.model_dump(mode="json"))),
        )
        self.events += 1

    async def request_replan(self, reason: str, *, now: bool = False) -> None:
        """Ask for a re-plan (debounced: the first request since the last plan counts;
        `now` makes it due at once)."""
        await self.conn.execute(
            "UPDATE scheduler_state SET "
            "dirty_since = CASE WHEN %s THEN '-infinity'::timestamptz "
            "                   ELSE coalesce(dirty_since, now()) END, "
            "reasons = (SELECT array_agg(DISTINCT r) FROM unnest(reasons || %s::text) AS r)",
            (now, reason),
        )

    # -- reference data ----------------------------------------------------------------------

    async def see_asset(self, asset_id: str, asset_type: str | None, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO scheduler_assets (asset_id, asset_type, last_seen) VALUES (%s, %s, %s) "
            "ON CONFLICT (asset_id) DO UPDATE SET "
            "asset_type = coalesce(EXCLUDED.asset_type, scheduler_assets.asset_type), "
            "last_seen = greatest(scheduler_assets.last_seen, EXCLUDED.last_seen)",
            (asset_id, asset_type, at),
        )

    async def technicians(self, *, only_active: bool = False) -> list[Technician]:
        sql = "SELECT technician_id, name, skills, shifts, hourly_cost, active FROM technicians" + (
            " WHERE active" if only_active else ""
        )
        return [Technician.model_validate(r) for r in await self.rows(sql + " ORDER BY 1")]

    async def upsert_technician(self, technician: Technician, actor: str) -> str:
        cur = await self.conn.execute(
            "INSERT INTO technicians (technician_id, name, skills, shifts, hourly_cost, active, "
            "updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (technician_id) DO UPDATE SET name = EXCLUDED.name, "
            "skills = EXCLUDED.skills, shifts = EXCLUDED.shifts, "
            "hourly_cost = EXCLUDED.hourly_cost, active = EXCLUDED.active, "
            "updated_by = EXCLUDED.updated_by, updated_at = now() RETURNING (xmax = 0) AS new",
            (
                technician.technician_id,
                technician.name,
                technician.skills,
                Jsonb([s.model_dump(mode="json") for s in technician.shifts]),
                technician.hourly_cost,
                technician.active,
                actor,
            ),
        )
        row = await cur.fetchone()
        return "created" if row and row[0] else "updated"

    async def remove_technician(self, technician_id: str) -> bool:
        """Delete the technician; orders not yet started lose the assignment (re-planned)."""
        await self.conn.execute(
            "UPDATE work_orders SET technician_id = NULL, pinned = false, version = version + 1, "
            "updated_at = now() WHERE technician_id = %s AND status IN ('open', 'scheduled')",
            (technician_id,),
        )
        cur = await self.conn.execute(
            "DELETE FROM technicians WHERE technician_id = %s", (technician_id,)
        )
        return cur.rowcount > 0

    async def plans(self, *, only_active: bool = False) -> list[MaintenancePlan]:
        sql = (
            "SELECT plan_id, name, asset_id, asset_type, interval_hours, skill, estimated_hours, "
            "parts_cost, priority, active FROM maintenance_plans"
            + (" WHERE active" if only_active else "")
        )
        return [MaintenancePlan.model_validate(r) for r in await self.rows(sql + " ORDER BY 1")]

    async def upsert_plan(self, plan: MaintenancePlan, actor: str) -> str:
        cur = await self.conn.execute(
            "INSERT INTO maintenance_plans (plan_id, name, asset_id, asset_type, interval_hours, "
            "skill, estimated_hours, parts_cost, priority, active, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (plan_id) DO UPDATE SET name = EXCLUDED.name, "
            "asset_id = EXCLUDED.asset_id, asset_type = EXCLUDED.asset_type, "
            "interval_hours = EXCLUDED.interval_hours, skill = EXCLUDED.skill, "
            "estimated_hours = EXCLUDED.estimated_hours, parts_cost = EXCLUDED.parts_cost, "
            "priority = EXCLUDED.priority, active = EXCLUDED.active, "
            "updated_by = EXCLUDED.updated_by RETURNING (xmax = 0) AS new",
            (
                plan.plan_id,
                plan.name,
                plan.asset_id,
                plan.asset_type,
                plan.interval_hours,
                plan.skill,
                plan.estimated_hours,
                plan.parts_cost,
                plan.priority,
                plan.active,
                actor,
            ),
        )
        row = await cur.fetchone()
        return "created" if row and row[0] else "updated"

    async def remove_plan(self, plan_id: str) -> bool:
        cur = await self.conn.execute(
            "DELETE FROM maintenance_plans WHERE plan_id = %s", (plan_id,)
        )
        return cur.rowcount > 0

    async def plan_targets(self, plan: MaintenancePlan) -> list[tuple[str, str | None]]:
        """(asset, type) a plan applies to: its asset, or every known asset of its type."""
        if plan.asset_id is not None:
            found = await self.rows(
                "SELECT asset_type FROM scheduler_assets WHERE asset_id = %s", (plan.asset_id,)
            )
            return [(plan.asset_id, found[0]["asset_type"] if found else None)]
        rows = await self.rows(
            "SELECT asset_id, asset_type FROM scheduler_assets WHERE asset_type = %s ORDER BY 1",
            (plan.asset_type,),
        )
        return [(r["asset_id"], r["asset_type"]) for r in rows]

    async def last_plan_due(self, plan_id: str, asset_id: str) -> datetime | None:
        found = await self.rows(
            "SELECT max(due_by) AS due FROM work_orders "
            "WHERE source = 'plan' AND source_ref = %s AND asset_id = %s",
            (plan_id, asset_id),
        )
        due: datetime | None = found[0]["due"] if found else None
        return due

    async def set_windows(self, asset_id: str, windows: Sequence[ProductionWindow]) -> None:
        await self.conn.execute("DELETE FROM production_windows WHERE asset_id = %s", (asset_id,))
        for w in windows:
            await self.conn.execute(
                "INSERT INTO production_windows (asset_id, start_at, end_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (asset_id, start_at) DO UPDATE SET end_at = EXCLUDED.end_at",
                (asset_id, w.start, w.end),
            )

    # -- commands ----------------------------------------------------------------------------

    async def applied(self, command_id: uuid.UUID) -> dict[str, Any] | None:
        found = await self.rows(
            "SELECT result FROM maintenance_commands_applied WHERE command_id = %s", (command_id,)
        )
        result: dict[str, Any] | None = found[0]["result"] if found else None
        return result

    async def remember(self, command_id: uuid.UUID, result: dict[str, Any]) -> None:
        await self.conn.execute(
            "INSERT INTO maintenance_commands_applied (command_id, result) VALUES (%s, %s) "
            "ON CONFLICT (command_id) DO NOTHING",
            (command_id, Jsonb(result)),
        )


class SchedulerStore:
    """The pool, the transactions, and the reads the planner and the relay need."""

    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("SchedulerStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(self.pool, ("work_orders", "technicians", "maintenance_outbox"))

    def connection(self) -> Any:
        return self._pool.connection()

    # -- planner reads -----------------------------------------------------------------------

    async def planning_inputs(
        self,
    ) -> tuple[list[WorkOrder], list[Technician], dict[str, list[ProductionWindow]]]:
        async with self._pool.connection() as conn:
            tx = Tx(conn)
            orders = [
                order_from_row(r)
                for r in await tx.rows(
                    f"{ORDER_SELECT} WHERE w.status IN ('open', 'scheduled', 'in_progress') "
                    "ORDER BY w.created_at, w.work_order_id"
                )
            ]
            technicians = await tx.technicians(only_active=True)
            windows: dict[str, list[ProductionWindow]] = {}
            for r in await tx.rows(
                "SELECT asset_id, start_at, end_at FROM production_windows "
                "WHERE end_at > now() ORDER BY asset_id, start_at"
            ):
                windows.setdefault(r["asset_id"], []).append(
                    ProductionWindow(start=r["start_at"], end=r["end_at"])
                )
        return orders, technicians, windows

    async def current_plan(self) -> tuple[int | None, list[PlannedOrder]]:
        async with self._pool.connection() as conn:
            tx = Tx(conn)
            newest = await tx.rows("SELECT max(plan_id) AS id FROM schedule_plans")
            plan_id = newest[0]["id"] if newest else None
            if plan_id is None:
                return None, []
            rows = await tx.rows(
                "SELECT work_order_id, asset_id, status, technician_id, start_at AS start, "
                "end_at AS end, due_by, lateness_h, bound_by, expected_failure_cost, "
                "risk_removed, frozen, reason, detail FROM schedule WHERE plan_id = %s",
                (plan_id,),
            )
        return plan_id, [PlannedOrder.model_validate(r) for r in rows]

    async def replan_due(self, debounce_s: float, interval_s: float) -> str | None:
        """Why a plan is due now (None: it is not): a change older than the debounce, no
        plan yet, or the newest plan older than the interval."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT s.dirty_since <= now() - make_interval(secs => %s), s.reasons, "
                "(SELECT max(created_at) FROM schedule_plans) AS last, "
                "(SELECT max(created_at) FROM schedule_plans) < now() - make_interval(secs => %s)"
                " FROM scheduler_state s",
                (debounce_s, interval_s),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        dirty, reasons, last, stale = row
        if dirty:
            return ",".join(sorted(reasons or [])) or "change"
        if last is None:
            return "first plan"
        return "timer" if stale else None

    async def store_plan(
        self,
        plan: ScheduleSummary,
        changes: Iterable[tuple[WorkOrder, dict[str, Any], WorkOrderStatus | None]],
        started_at: datetime,
        keep: int,
        published: Callable[[int], Envelope],
        moved: Callable[[WorkOrder, WorkOrderStatus], Envelope],
    ) -> int:
        """Store `plan` as the current one, apply its order changes (status moves with their
        transitions), queue `emit`, clear the re-plan requests it covered, prune old plans."""
        async with self._pool.connection() as conn, conn.transaction():
            tx = Tx(conn)
            cur = await conn.execute(
                "INSERT INTO schedule_plans (anchor, horizon_h, trigger, summary) "
                "VALUES (%s, %s, %s, %s) RETURNING plan_id",
                (
                    plan.anchor,
                    plan.horizon_h,
                    plan.trigger,
                    Jsonb(plan.model_dump(mode="json", exclude={"orders"})),
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            plan_id = int(row[0])
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO schedule (plan_id, work_order_id, asset_id, status, "
                    "technician_id, start_at, end_at, due_by, lateness_h, bound_by, "
                    "expected_failure_cost, risk_removed, frozen, reason, detail) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            plan_id,
                            o.work_order_id,
                            o.asset_id,
                            o.status,
                            o.technician_id,
                            o.start,
                            o.end,
                            o.due_by,
                            o.lateness_h,
                            o.bound_by,
                            o.expected_failure_cost,
                            o.risk_removed,
                            o.frozen,
                            o.reason,
                            o.detail,
                        )
                        for o in plan.orders
                    ],
                )
            for order, values, status_from in changes:
                # only orders still waiting to be started: one a person moved meanwhile is
                # left alone (its change asked for the next plan already)
                cur = await conn.execute(
                    "SELECT version FROM work_orders WHERE work_order_id = %s FOR UPDATE",
                    (order.work_order_id,),
                )
                now_row = await cur.fetchone()
                if now_row is None or now_row[0] != order.version:
                    continue
                updated = await tx.update_order(order, values)
                if status_from is not None and "status" in values:
                    await tx.transition(
                        order.work_order_id, status_from, values["status"], SERVICE, "plan"
                    )
                    await tx.emit(moved(updated, status_from), updated.asset_id)
            await tx.emit(published(plan_id), "schedule")
            await conn.execute(
                "UPDATE schedule_plans SET "
                "summary = jsonb_set(summary, '{plan_id}', to_jsonb(plan_id)) WHERE plan_id = %s",
                (plan_id,),
            )
            await conn.execute(
                "UPDATE scheduler_state SET dirty_since = NULL, reasons = '{}' "
                "WHERE dirty_since <= %s",
                (started_at,),
            )
            await conn.execute("DELETE FROM schedule_plans WHERE plan_id <= %s", (plan_id - keep,))
        return plan_id

    # -- outbox ------------------------------------------------------------------------------

    async def drain_outbox(self, limit: int, publish: Any) -> int:
        """Publish up to `limit` queued events in order and stamp them (`OutboxRelay`)."""
        return await drain_outbox(self._pool, "maintenance_outbox", limit, publish)
