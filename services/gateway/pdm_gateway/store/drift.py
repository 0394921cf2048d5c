"""The drift service's tables, read only: `drift_reports`, `model_alias_history`,
`retrain_jobs` and `model_performance`. Checks, retrains and alias moves are
`pdm.drift.commands.v1` commands to that service.

These tables arrived with a later migration than the gateway's own: a database not migrated
that far answers 503 (run `pdm migrate`) on these routes only, and the gateway's readiness
does not depend on them (the rest of the API keeps working)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from pdm_gateway.problems import Problem
from pdm_gateway.store.database import Store

TABLES = ("drift_reports", "model_alias_history", "retrain_jobs", "model_performance")
#: A report as listed: its summary columns (no per-column verdicts, no HTML).
SUMMARY_COLUMNS = (
    "report_id, kind, model_name, model_version, asset_type, trigger, window_start, "
    "window_end, reference_rows, current_rows, drifted_share, weighted_share, drift_detected, "
    "created_at, html IS NOT NULL AS has_html"
)
HISTORY_COLUMNS = (
    "change_id, model_name, alias, version, previous_version, moved_at, actor, trigger, "
    "reason, metrics"
)
RETRAIN_COLUMNS = (
    "job_id, model_name, trigger, reason, status, claimed_by, started_at, heartbeat_at, "
    "finished_at, challenger_version, result, error"
)
#: A `model_performance` row as `pdm_common.drift.LivePerformance` reads it.
PERFORMANCE_COLUMNS = (
    "model_name, model_version, role, span, computed_at, window_start, window_end, horizon_h, "
    "predictions, alarms, alarms_judged, true_alarms, failures, caught, precision, recall, "
    "lead_h_median, lead_h_mean, rul_judged, rul_mae_h, rul_bias_h, rul_coverage, degraded, "
    "reason"
)
#: Report filters that are a plain equality on their column.
EQUALITY_FILTERS = ("model_name", "kind", "asset_type", "drift_detected")
#: Live performance filters that are a plain equality on their column.
PERFORMANCE_FILTERS = ("model_version", "role", "span")


class DriftReader(Store):
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        try:
            async with self.db.connection() as conn:
                yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise Problem(
                503,
                "the drift service's tables do not exist yet: the database is not migrated "
                "(run `pdm migrate`)",
                slug="schema-not-migrated",
                headers={"Retry-After": "30"},
            ) from exc

    async def _all(self, query: sql.Composed | str, params: Any = None) -> list[dict[str, Any]]:
        async with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def reports(
        self, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Report summaries newest first, after the keyset `(created_at, report_id)`."""
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": limit}
        for column in EQUALITY_FILTERS:
            if filters.get(column) is not None:
                where.append(
                    sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = filters[column]
        if after is not None:
            where.append(sql.SQL("(created_at, report_id) < (%(after_t)s, %(after_id)s::uuid)"))
            params["after_t"], params["after_id"] = after
        query = sql.SQL(
            "SELECT " + SUMMARY_COLUMNS + " FROM drift_reports WHERE {} "
            "ORDER BY created_at DESC, report_id DESC LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        return await self._all(query, params)

    async def report(self, report_id: uuid.UUID) -> dict[str, Any] | None:
        """A report with its headlines and column verdicts (no HTML)."""
        rows = await self._all(
            "SELECT " + SUMMARY_COLUMNS + ", headlines, columns FROM drift_reports "
            "WHERE report_id = %s",
            [report_id],
        )
        return rows[0] if rows else None

    async def report_html(self, report_id: uuid.UUID) -> tuple[bool, str | None]:
        """(the report exists, its stored Evidently HTML or None)."""
        rows = await self._all("SELECT html FROM drift_reports WHERE report_id = %s", [report_id])
        return (True, rows[0]["html"]) if rows else (False, None)

    async def history(
        self, model_name: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """The model's alias moves newest first, after the keyset `(moved_at, change_id)`."""
        params: dict[str, Any] = {"name": model_name, "limit": limit}
        keyset = ""
        if after is not None:
            keyset = "AND (moved_at, change_id) < (%(after_t)s, %(after_id)s::uuid) "
            params["after_t"], params["after_id"] = after
        return await self._all(
            "SELECT " + HISTORY_COLUMNS + " FROM model_alias_history "
            "WHERE model_name = %(name)s " + keyset + "ORDER BY moved_at DESC, change_id DESC "
            "LIMIT %(limit)s",
            params,
        )

    async def retrains(self, model_name: str, limit: int) -> list[dict[str, Any]]:
        """The model's newest retrain jobs."""
        return await self._all(
            "SELECT " + RETRAIN_COLUMNS + " FROM retrain_jobs WHERE model_name = %s "
            "ORDER BY started_at DESC, job_id DESC LIMIT %s",
            [model_name, limit],
        )

    async def performance(
        self,
        model_name: str,
        filters: dict[str, Any],
        latest: bool,
        after: tuple[datetime, str, str, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The model's live performance rows newest computation first, after the keyset
        `(computed_at, model_version, role, span)`: the primary key's order (after the
        name), so a page is a backward scan of its index. `latest`: only the rows of the
        newest computation for the model (whatever the filters select of them)."""
        where: list[sql.Composable] = [sql.SQL("model_name = %(name)s")]
        params: dict[str, Any] = {"name": model_name, "limit": limit}
        for column in PERFORMANCE_FILTERS:
            if filters.get(column) is not None:
                where.append(
                    sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = filters[column]
        if latest:
            where.append(
                sql.SQL(
                    "computed_at = (SELECT max(computed_at) FROM model_performance "
                    "WHERE model_name = %(name)s)"
                )
            )
        if after is not None:
            where.append(
                sql.SQL(
                    "(computed_at, model_version, role, span) "
                    "< (%(after_t)s, %(after_v)s, %(after_r)s, %(after_s)s)"
                )
            )
            params["after_t"], params["after_v"], params["after_r"], params["after_s"] = after
        query = sql.SQL(
            "SELECT " + PERFORMANCE_COLUMNS + " FROM model_performance WHERE {} "
            "ORDER BY computed_at DESC, model_version DESC, role DESC, span DESC "
            "LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        return await self._all(query, params)
