"""Database access of the drift service: its own tables (see `0010_drift.sql`), and
read-only windows over ingest's `readings` / `assets` (feature windows, as the prediction
service reads them) and the prediction service's `predictions` and `shadow_predictions`
(live performance).

Every change goes through a `Tx` (one transaction): a report with its event in the outbox, an
alias move with its history row and its `pdm.models.v1` event, a retrain claim with its
`retrain.started` event, a command with its remembered answer; so a crash at any point leaves
all of them or none, and the relay publishes what was committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pdm_common.db.pool import tables_exist
from pdm_common.drift import AliasChange, DriftReport, LivePerformance
from pdm_common.events import Envelope
from pdm_common.outbox import drain_outbox

#: The advisory lock one checker (of all replicas) holds while it runs the timed checks.
CHECK_LOCK = 0x5D_0D_21_F7
OWN_TABLES = (
    "drift_profiles",
    "drift_reports",
    "outcome_labels",
    "retrain_jobs",
    "model_alias_history",
    "drift_outbox",
    "drift_commands_applied",
    "model_performance",
)


class Tx:
    """One transaction of the drift service's changes (see the module docstring)."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.cursor(row_factory=dict_row)
        await cur.execute(sql, params)
        return list(await cur.fetchall())

    # -- outbox -------------------------------------------------------------------------------

    async def emit(self, topic: str, key: str, event: Envelope) -> None:
        """Queue `event` for `topic` (published by the relay after the commit); an event
        already queued (same id: a redelivered input) is not queued twice."""
        await self.conn.execute(
            "INSERT INTO drift_outbox (event_id, topic, key, event_type, payload) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
            (event.event_id, topic, key, event.event_type, Jsonb(event.model_dump(mode="json"))),
        )

    # -- profiles and reports -----------------------------------------------------------------

    async def profile(self, model_name: str, version: str) -> dict[str, Any] | None:
        found = await self.rows(
            "SELECT profile FROM drift_profiles WHERE model_name = %s AND model_version = %s",
            (model_name, version),
        )
        profile: dict[str, Any] | None = found[0]["profile"] if found else None
        return profile

    async def store_profile(self, model_name: str, version: str, profile: dict[str, Any]) -> bool:
        """Keep the first profile of a version (a concurrent builder's equal one is dropped)."""
        cur = await self.conn.execute(
            "INSERT INTO drift_profiles (model_name, model_version, profile) VALUES (%s, %s, %s) "
            "ON CONFLICT (model_name, model_version) DO NOTHING",
            (model_name, version, Jsonb(profile)),
        )
        return cur.rowcount > 0

    async def store_report(self, report: DriftReport, html: str | None) -> None:
        await self.conn.execute(
            "INSERT INTO drift_reports (report_id, kind, model_name, model_version, asset_type, "
            "trigger, window_start, window_end, reference_rows, current_rows, drifted_share, "
            "weighted_share, drift_detected, headlines, columns, html, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (report_id) DO NOTHING",
            (
                report.report_id,
                report.kind,
                report.model_name,
                report.model_version,
                report.asset_type,
                report.trigger,
                report.window_start,
                report.window_end,
                report.reference_rows,
                report.current_rows,
                report.drifted_share,
                report.weighted_share,
                report.drift_detected,
                Jsonb(report.headlines),
                Jsonb([c.model_dump(mode="json") for c in report.columns]),
                html,
                report.occurred_at,
            ),
        )

    async def prune_html(self, keep: int) -> None:
        """Keep the Evidently HTML (~4 MB each) of the newest `keep` reports only; the
        verdicts, headlines and columns of every report stay."""
        await self.conn.execute(
            "UPDATE drift_reports SET html = NULL WHERE report_id IN (SELECT report_id FROM "
            "drift_reports WHERE html IS NOT NULL ORDER BY created_at DESC OFFSET %s)",
            (keep,),
        )

    # -- labels -------------------------------------------------------------------------------

    async def store_label(
        self,
        label_id: uuid.UUID,
        *,
        asset_id: str,
        asset_type: str | None,
        source: str,
        failure_found: bool,
        failure_mode: str | None,
        occurred_at: datetime,
        ref: str | None,
    ) -> bool:
        cur = await self.conn.execute(
            "INSERT INTO outcome_labels (label_id, asset_id, asset_type, source, failure_found, "
            "failure_mode, occurred_at, ref) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (label_id) DO NOTHING",
            (label_id, asset_id, asset_type, source, failure_found, failure_mode, occurred_at, ref),
        )
        return cur.rowcount > 0

    # -- alias history ------------------------------------------------------------------------

    async def record_alias(self, change_id: uuid.UUID, change: AliasChange) -> bool:
        """One history row per move (`change_id`: the event id, so a redelivered or
        self-published event records nothing more)."""
        cur = await self.conn.execute(
            "INSERT INTO model_alias_history (change_id, model_name, alias, version, "
            "previous_version, moved_at, actor, trigger, reason, metrics) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (change_id) DO NOTHING",
            (
                change_id,
                change.model_name,
                change.alias,
                change.version,
                change.previous_version,
                change.moved_at,
                change.actor,
                change.trigger,
                change.reason,
                Jsonb(change.metrics),
            ),
        )
        return cur.rowcount > 0

    # -- retrain jobs -------------------------------------------------------------------------

    async def resolve_shadow(self, job_id: uuid.UUID, result: dict[str, Any]) -> bool:
        """Replace a finished job's result once its shadow judgement is made; False when it
        was made already (another replica, a repeated check)."""
        cur = await self.conn.execute(
            "UPDATE retrain_jobs SET result = %s WHERE job_id = %s "
            "AND result->>'pending' = 'shadow'",
            (Jsonb(result), job_id),
        )
        return cur.rowcount > 0

    async def running_job(self, model_name: str) -> dict[str, Any] | None:
        found = await self.rows(
            "SELECT job_id, started_at, claimed_by FROM retrain_jobs "
            "WHERE model_name = %s AND status = 'running'",
            (model_name,),
        )
        return found[0] if found else None

    async def cooldown_left_s(self, model_name: str, cooldown_s: float) -> float:
        """Seconds left of the model's cooldown (0: none): counted from the end of its newest
        finished or failed retrain (a failing retrain must not loop either)."""
        found = await self.rows(
            "SELECT extract(epoch FROM max(finished_at) + make_interval(secs => %s) - now()) "
            "AS left_s FROM retrain_jobs WHERE model_name = %s "
            "AND status IN ('finished', 'failed')",
            (cooldown_s, model_name),
        )
        left = found[0]["left_s"] if found else None
        return max(float(left), 0.0) if left is not None else 0.0

    async def since_last_model_change_s(self, model_name: str) -> float | None:
        """Seconds since the model last changed: its newest retrain ended or its champion
        last moved, whichever is later (None: neither is recorded)."""
        found = await self.rows(
            "SELECT extract(epoch FROM now() - greatest("
            "(SELECT max(finished_at) FROM retrain_jobs WHERE model_name = %s "
            "AND status IN ('finished', 'failed')), "
            "(SELECT max(moved_at) FROM model_alias_history WHERE model_name = %s "
            "AND alias = 'champion'))) AS age_s",
            (model_name, model_name),
        )
        age = found[0]["age_s"] if found else None
        return float(age) if age is not None else None

    async def claim_job(
        self, job_id: uuid.UUID, model_name: str, trigger: str, reason: str | None, by: str
    ) -> bool:
        """Claim the model's one running retrain (the partial unique index decides between
        replicas); False when one is running already."""
        cur = await self.conn.execute(
            "INSERT INTO retrain_jobs (job_id, model_name, trigger, reason, status, claimed_by) "
            "VALUES (%s, %s, %s, %s, 'running', %s) "
            "ON CONFLICT (model_name) WHERE status = 'running' DO NOTHING",
            (job_id, model_name, trigger, reason, by),
        )
        return cur.rowcount > 0

    async def end_job(
        self,
        job_id: uuid.UUID,
        status: str,
        *,
        challenger_version: str | None = None,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        cur = await self.conn.execute(
            "UPDATE retrain_jobs SET status = %s, finished_at = now(), challenger_version = %s, "
            "result = %s, error = %s WHERE job_id = %s AND status = 'running'",
            (
                status,
                challenger_version,
                Jsonb(result) if result is not None else None,
                error,
                job_id,
            ),
        )
        return cur.rowcount > 0

    # -- commands -----------------------------------------------------------------------------

    async def applied(self, command_id: uuid.UUID) -> dict[str, Any] | None:
        found = await self.rows(
            "SELECT result FROM drift_commands_applied WHERE command_id = %s", (command_id,)
        )
        result: dict[str, Any] | None = found[0]["result"] if found else None
        return result

    async def remember(self, command_id: uuid.UUID, result: dict[str, Any]) -> None:
        await self.conn.execute(
            "INSERT INTO drift_commands_applied (command_id, result) VALUES (%s, %s) "
            "ON CONFLICT (command_id) DO NOTHING",
            (command_id, Jsonb(result)),
        )


class DriftStore:
    """The pool, the transactions, the read-only windows and the outbox drain."""

    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("DriftStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(self.pool, (*OWN_TABLES, "readings", "assets"))

    def connection(self) -> Any:
        return self._pool.connection()

    async def run(self, work: Callable[[Tx], Awaitable[Any]]) -> Any:
        """`work` inside one transaction."""
        async with self._pool.connection() as conn, conn.transaction():
            return await work(Tx(conn))

    # -- read-only windows --------------------------------------------------------------------

    async def asset_types_since(self, since: datetime) -> list[str]:
        """Asset types (of registered assets) that sent a reading since `since`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT a.asset_type FROM assets a WHERE a.asset_type IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM readings r WHERE r.asset_id = a.asset_id "
                "AND r.time >= %s) ORDER BY 1",
                (since,),
            )
            return [str(t) for (t,) in await cur.fetchall()]

    async def type_readings(
        self,
        asset_type: str,
        start: datetime,
        end: datetime,
        sensors: Sequence[str] | None,
        limit: int,
    ) -> list[tuple[str, datetime, str, float]]:
        """`(asset_id, time, sensor, value)` of every asset of `asset_type` in `[start, end)`,
        the newest `limit` readings at most, in (asset, time) order."""
        sensor_filter = "AND r.sensor = ANY(%s)" if sensors is not None else ""
        params: list[Any] = [asset_type, start, end]
        if sensors is not None:
            params.append(list(sensors))
        params.append(limit)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT asset_id, time, sensor, value FROM ("
                "SELECT r.asset_id, r.time, r.sensor, r.value FROM readings r "
                "JOIN assets a ON a.asset_id = r.asset_id WHERE a.asset_type = %s "
                f"AND r.time >= %s AND r.time < %s {sensor_filter} "
                "ORDER BY r.time DESC LIMIT %s) w ORDER BY asset_id, time",
                params,
            )
            return [(str(a), t, str(s), float(v)) for a, t, s, v in await cur.fetchall()]

    async def predictions_with_labels(
        self, since: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Stored predictions since `since` (read only: the published ones as `served`, a
        challenger's shadow scores as `shadow`) and the outcome labels from then on, for
        `performance.evaluate`."""
        columns = (
            "asset_id, coalesce(as_of, time) AS as_of, failure_model, failure_model_version, "
            "failure_probability, (payload->>'decision_threshold')::float8 AS threshold, "
            "rul_model, rul_model_version, rul_p10, rul_p50, rul_p90, "
            "coalesce(payload->>'rul_unit', 'hours') AS rul_unit"
        )
        async with self._pool.connection() as conn:
            tx = Tx(conn)
            predictions = await tx.rows(
                f"SELECT {columns}, 'served' AS role FROM predictions WHERE time >= %s "
                f"UNION ALL SELECT {columns}, 'shadow' FROM shadow_predictions "
                "WHERE time >= %s ORDER BY 2",
                (since, since),
            )
            labels = await tx.rows(
                "SELECT asset_id, occurred_at, failure_found, failure_mode FROM outcome_labels "
                "WHERE occurred_at >= %s ORDER BY occurred_at",
                (since,),
            )
        return predictions, labels

    async def pending_shadow(self, period_s: float) -> list[dict[str, Any]]:
        """Finished retrains whose challenger waits for its live judgement and has been
        shadow-scored for at least `period_s`."""
        async with self._pool.connection() as conn:
            return await Tx(conn).rows(
                "SELECT job_id, model_name, trigger, reason, challenger_version, finished_at, "
                "result FROM retrain_jobs WHERE status = 'finished' "
                "AND result->>'pending' = 'shadow' "
                "AND finished_at <= now() - make_interval(secs => %s) ORDER BY finished_at",
                (period_s,),
            )

    async def shadow_pairs(
        self, task: str, model_name: str, version: str, since: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The requests `version` of `model_name` shadow-scored since `since`, each with its
        champion's prediction of the same request (challenger columns `s_*`, champion
        `c_*`), and the outcome labels from then on."""
        if task == "failure":
            picked = (
                "s.failure_probability AS s_p, (s.payload->>'decision_threshold')::float8 AS s_t, "
                "p.failure_probability AS c_p, (p.payload->>'decision_threshold')::float8 AS c_t"
            )
            which = "s.failure_model = %s AND s.failure_model_version = %s"
        else:
            picked = ", ".join(
                f"{table}.rul_{q} AS {prefix}_{q}"
                for table, prefix in (("s", "s"), ("p", "c"))
                for q in ("p10", "p50", "p90")
            )
            which = "s.rul_model = %s AND s.rul_model_version = %s"
        async with self._pool.connection() as conn:
            tx = Tx(conn)
            pairs = await tx.rows(
                f"SELECT s.asset_id, coalesce(s.as_of, s.time) AS as_of, {picked} "
                "FROM shadow_predictions s JOIN predictions p "
                "ON p.prediction_id = s.champion_prediction_id AND p.asset_id = s.asset_id "
                f"WHERE {which} AND s.time >= %s ORDER BY 2",
                (model_name, version, since),
            )
            labels = await tx.rows(
                "SELECT asset_id, occurred_at, failure_found FROM outcome_labels "
                "WHERE occurred_at >= %s ORDER BY occurred_at",
                (since,),
            )
        return pairs, labels

    async def store_performance(self, rows: Sequence[LivePerformance]) -> None:
        """One computation's rows (`model_performance`); a repeat of it changes nothing."""
        if not rows:
            return
        names = list(LivePerformance.model_fields)
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO model_performance ({', '.join(names)}) "
                f"VALUES ({', '.join(['%s'] * len(names))}) ON CONFLICT DO NOTHING",
                [tuple(getattr(r, n) for n in names) for r in rows],
            )

    # -- outbox -------------------------------------------------------------------------------

    async def drain_outbox(self, limit: int, publish: Any) -> int:
        """Publish up to `limit` queued events in order and stamp them (`OutboxRelay`)."""
        return await drain_outbox(self._pool, "drift_outbox", limit, publish)
