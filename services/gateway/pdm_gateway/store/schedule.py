"""The scheduler's other tables, read only: `technicians`, `maintenance_plans`,
`production_windows` and the published plans (`schedule_plans`, the newest being the current
plan, with its orders in `schedule`). Changes are commands to the scheduler service."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from pdm_common.maintenance import MaintenancePlan, Technician
from pdm_gateway.store.database import Store

TABLES = ("technicians", "maintenance_plans", "production_windows", "schedule_plans", "schedule")
TECHNICIAN_COLUMNS = ", ".join(Technician.model_fields)
PLAN_COLUMNS = ", ".join(MaintenancePlan.model_fields)
#: A `schedule` row under the names of `PlannedOrder`.
PLANNED_COLUMNS = (
    "work_order_id, asset_id, status, technician_id, start_at AS start, end_at AS end, "
    "due_by, lateness_h, bound_by, expected_failure_cost, risk_removed, frozen, reason, detail"
)


class ScheduleReader(Store):
    async def _all(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def technicians(self, active: bool | None = None) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT " + TECHNICIAN_COLUMNS + " FROM technicians "
            "WHERE %(active)s::boolean IS NULL OR active = %(active)s::boolean "
            "ORDER BY technician_id",
            {"active": active},
        )

    async def technician(self, technician_id: str) -> dict[str, Any] | None:
        rows = await self._all(
            "SELECT " + TECHNICIAN_COLUMNS + " FROM technicians WHERE technician_id = %s",
            [technician_id],
        )
        return rows[0] if rows else None

    async def plans(self) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT " + PLAN_COLUMNS + " FROM maintenance_plans ORDER BY plan_id"
        )

    async def plan(self, plan_id: str) -> dict[str, Any] | None:
        rows = await self._all(
            "SELECT " + PLAN_COLUMNS + " FROM maintenance_plans WHERE plan_id = %s", [plan_id]
        )
        return rows[0] if rows else None

    async def windows(self, asset_id: str) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT start_at AS start, end_at AS end FROM production_windows "
            "WHERE asset_id = %s ORDER BY start_at",
            [asset_id],
        )

    async def current_plan(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The newest plan's row (its `summary` merged with the row's own columns) and its
        orders by start (unschedulable ones last); None before the first plan."""
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT plan_id, created_at, anchor, horizon_h, trigger, summary "
                "FROM schedule_plans ORDER BY plan_id DESC LIMIT 1"
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await cur.execute(
                "SELECT " + PLANNED_COLUMNS + " FROM schedule WHERE plan_id = %s "
                "ORDER BY start_at NULLS LAST, work_order_id",
                [row["plan_id"]],
            )
            orders = await cur.fetchall()
        summary = dict(row.pop("summary") or {})
        summary.pop("orders", None)
        return summary | row, orders
