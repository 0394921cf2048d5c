"""`work_orders` and `work_order_transitions` (owned by the scheduler service), read only:
every change of an order is a `pdm.maintenance.commands.v1` command to that service. Also the
reads the reliability routes need: confirmed failures (completed orders whose findings say a
failure was found) and the risk of the active predictive orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from pdm_common.maintenance import ACTIVE_STATUSES, Transition, WorkOrder
from pdm_gateway.store.database import Store

TABLE = "work_orders"
#: Fields of the contract that are not a column: computed in `SELECT_ORDER`.
COMPUTED = ("labour_cost_estimate",)
COLUMNS = ", ".join(f"wo.{name}" for name in WorkOrder.model_fields if name not in COMPUTED)
#: The order as the contract has it; the labour estimate is `estimated_hours` x the assigned
#: technician's rate, or the cheapest active qualified one's.
SELECT_ORDER = (
    "SELECT " + COLUMNS + ", wo.estimated_hours * COALESCE("
    "(SELECT t.hourly_cost FROM technicians t WHERE t.technician_id = wo.technician_id), "
    "(SELECT min(t.hourly_cost) FROM technicians t WHERE t.active AND wo.skill = ANY(t.skills))"
    ") AS labour_cost_estimate FROM work_orders wo"
)
TRANSITION_COLUMNS = ", ".join(Transition.model_fields)
#: Filters that are a plain equality on their column.
EQUALITY_FILTERS = ("asset_id", "type", "source", "technician_id")


class WorkOrderReader(Store):
    async def page(
        self, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Orders newest created first, after the keyset `(created_at, work_order_id)`;
        `filters` may hold `status` (a list: any of them) and `due_before` (due before)."""
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": limit}
        for column in EQUALITY_FILTERS:
            if filters.get(column) is not None:
                where.append(
                    sql.SQL("wo.{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = filters[column]
        if filters.get("status"):
            where.append(sql.SQL("wo.status = ANY(%(status)s)"))
            params["status"] = list(filters["status"])
        if filters.get("due_before") is not None:
            where.append(sql.SQL("wo.due_by < %(due_before)s"))
            params["due_before"] = filters["due_before"]
        if after is not None:
            where.append(
                sql.SQL("(wo.created_at, wo.work_order_id) < (%(after_t)s, %(after_id)s::uuid)")
            )
            params["after_t"], params["after_id"] = after
        query = sql.SQL(
            SELECT_ORDER + " WHERE {} "
            "ORDER BY wo.created_at DESC, wo.work_order_id DESC LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def get(self, work_order_id: uuid.UUID) -> dict[str, Any] | None:
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(SELECT_ORDER + " WHERE wo.work_order_id = %s", [work_order_id])
            return await cur.fetchone()

    async def transitions(self, work_order_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every recorded move of the order, oldest first."""
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + TRANSITION_COLUMNS + " FROM work_order_transitions "
                "WHERE work_order_id = %s ORDER BY id",
                [work_order_id],
            )
            return await cur.fetchall()

    async def upcoming(self, until: datetime, limit: int) -> list[dict[str, Any]]:
        """Scheduled orders starting before `until` and active orders due before it (overdue
        included), soonest first."""
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                SELECT_ORDER + " WHERE wo.status = ANY(%(active)s) AND ("
                "(wo.status = 'scheduled' AND wo.scheduled_start < %(until)s) "
                "OR wo.due_by < %(until)s) "
                "ORDER BY LEAST(wo.scheduled_start, wo.due_by), wo.work_order_id "
                "LIMIT %(limit)s",
                {"active": list(ACTIVE_STATUSES), "until": until, "limit": limit},
            )
            return await cur.fetchall()

    async def confirmed_failures(
        self, asset_type: str | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Completed orders whose findings say a failure was found: `asset_id`, `asset_type`
        (the registry's, else the order's), `mode` (the findings', else the order's, else
        `unknown`), `ts` (completion), `actual_cost`, `opened_at` (the order's creation)."""
        query = (
            "SELECT wo.asset_id, COALESCE(a.asset_type, wo.asset_type) AS asset_type, "
            "COALESCE(wo.findings->>'failure_mode', wo.failure_mode, 'unknown') AS mode, "
            "wo.completed_at AS ts, (wo.findings->>'actual_cost')::float8 AS actual_cost, "
            "wo.created_at AS opened_at "
            "FROM work_orders wo LEFT JOIN assets a ON a.asset_id = wo.asset_id "
            "WHERE wo.status = 'completed' AND wo.completed_at IS NOT NULL "
            "AND (wo.findings->>'failure_found')::boolean "
            "AND (%(asset_type)s::text IS NULL OR COALESCE(a.asset_type, wo.asset_type) = "
            "%(asset_type)s::text) "
            "AND (%(since)s::timestamptz IS NULL OR wo.completed_at >= %(since)s::timestamptz) "
            "ORDER BY wo.asset_id, wo.completed_at"
        )
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {"asset_type": asset_type, "since": since})
            return await cur.fetchall()

    async def fleet(self, asset_type: str) -> list[dict[str, Any]]:
        """Every asset of the type the platform knows (the registry, or a work order that
        names the type), with the first time it was seen (`first_seen`)."""
        query = (
            "SELECT asset_id, min(first_seen) AS first_seen FROM ("
            " SELECT asset_id, created_at AS first_seen FROM assets WHERE asset_type = %(t)s"
            " UNION ALL"
            " SELECT wo.asset_id, wo.created_at FROM work_orders wo"
            " LEFT JOIN assets a ON a.asset_id = wo.asset_id"
            " WHERE COALESCE(a.asset_type, wo.asset_type) = %(t)s"
            ") seen GROUP BY asset_id ORDER BY asset_id"
        )
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {"t": asset_type})
            return await cur.fetchall()

    async def predictive_risk(self, asset_type: str | None = None) -> list[dict[str, Any]]:
        """Active predictive orders with a failure probability: `work_order_id`, `asset_id`,
        `asset_type`, `failure_mode`, `failure_probability`, `consequence` (failure cost plus
        the downtime cost over the order's estimated hours), `due_by`, `status`."""
        query = (
            "SELECT work_order_id, asset_id, asset_type, failure_mode, failure_probability, "
            "failure_cost + downtime_cost_per_h * estimated_hours AS consequence, due_by, "
            "status, risk_as_of FROM work_orders "
            "WHERE type = 'predictive' AND status = ANY(%(active)s) "
            "AND failure_probability IS NOT NULL "
            "AND (%(asset_type)s::text IS NULL OR asset_type = %(asset_type)s::text) "
            "ORDER BY asset_id, failure_mode"
        )
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {"active": list(ACTIVE_STATUSES), "asset_type": asset_type})
            return await cur.fetchall()
