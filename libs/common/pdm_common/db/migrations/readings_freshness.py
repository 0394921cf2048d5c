"""The generated step 0012: what keeps hour/day reads of `readings_1h` equal to the raw
table's answers whatever order readings arrive in (Timescale branch; nothing on the plain
branch, where `readings_1h` is a view and always current).

A continuous aggregate is exact only where it is materialised and not invalidated. Real-time
aggregation covers the hours after its watermark, but a reading written into an hour already
materialised (a late reading, a backfill, a row into a compressed chunk) only marks that
range invalid in TimescaleDB's invalidation logs; the refresh policy re-materialises it only
if it lies within its start offset. So:

* `readings_1h_stale_ranges(from, to)` lists, hour-aligned and coalesced, the ranges below
  the watermark that TimescaleDB has recorded as changed and not yet re-materialised.
  Ranges older than the `readings` retention horizon are left out: raw chunks dropped by
  retention are recorded as changed too, and there `readings_1h` is the downsampled history
  by design (`PDM_READINGS_1H_RETENTION_DAYS`). Hour/day reads read those ranges raw.
* `refresh_readings_1h_stale` (a TimescaleDB job every `PDM_READINGS_1H_STALE_REFRESH_INTERVAL`)
  refreshes exactly those ranges, one window each, so the fast path comes back without
  re-materialising the hours in between; it runs in the background, never on ingest.
* `readings_1h_freshness` is the view to watch (e.g. a postgres_exporter query):
  pending ranges and hours, and `refresh_lag_s`, an upper bound on how long the oldest pending
  change has waited (0 when nothing is pending).

The catalog tables read here are TimescaleDB's own (readable by every role); they are
named once, in this function, so a TimescaleDB upgrade that moves them changes one place.
"""

from __future__ import annotations

from typing import LiteralString

from pdm_common.db.migrations.branch import Variant
from pdm_common.db.migrations.rendering import _interval, _render, _sha256
from pdm_common.db.settings import StorageSettings

_FRESHNESS_TIMESCALE: tuple[LiteralString, ...] = (
    # One row: the last run of the stale-range refresh job.
    "CREATE TABLE readings_1h_refresh_state ("
    "id boolean PRIMARY KEY DEFAULT true CHECK (id), "
    "started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL, "
    "refreshed_ranges integer NOT NULL, refreshed_hours double precision NOT NULL)",
    # Invalidation entries are inclusive [lowest, greatest] in TimescaleDB's internal time
    # (Unix microseconds). Clipped to [from_time, to_time), to the retention horizon, to the
    # watermark (above it real-time aggregation reads raw anyway) and to the chunks that exist
    # (where there is no chunk there are no rows, and a refresh skips the range too, leaving
    # its entry behind), widened to whole hours, then merged where they overlap or touch.
    # Dynamic SQL because the catalog of in-progress refresh ranges only exists since
    # TimescaleDB 2.22: the function is created, and works, on older servers too.
    "CREATE FUNCTION readings_1h_stale_ranges(from_time timestamptz, to_time timestamptz) "
    "RETURNS TABLE (lo timestamptz, hi timestamptz) LANGUAGE plpgsql STABLE AS $$ BEGIN "
    "RETURN QUERY EXECUTE format($q$"
    "WITH cagg AS ("
    " SELECT c.raw_hypertable_id AS raw_id, c.mat_hypertable_id AS mat_id,"
    " _timescaledb_functions.cagg_watermark(c.mat_hypertable_id) AS watermark"
    " FROM _timescaledb_catalog.continuous_agg c"
    " WHERE c.user_view_schema = current_schema() AND c.user_view_name = 'readings_1h'"
    "), horizon AS ("
    " SELECT coalesce(max(now() - (j.config->>'drop_after')::interval), '-infinity') AS t"
    " FROM timescaledb_information.jobs j WHERE j.proc_name = 'policy_retention'"
    " AND j.hypertable_schema = current_schema() AND j.hypertable_name = 'readings'"
    "), bounds AS ("
    " SELECT cagg.*, greatest(_timescaledb_functions.to_unix_microseconds($1),"
    " _timescaledb_functions.to_unix_microseconds(horizon.t)) AS lo_us,"
    " least(_timescaledb_functions.to_unix_microseconds($2), cagg.watermark) AS hi_us"
    " FROM cagg, horizon"
    "), logged AS ("
    " SELECT l.lowest_modified_value AS lo, l.greatest_modified_value AS hi"
    " FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log l, bounds b"
    " WHERE l.hypertable_id = b.raw_id"
    " UNION ALL SELECT m.lowest_modified_value, m.greatest_modified_value"
    " FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log m, bounds b"
    " WHERE m.materialization_id = b.mat_id %s"
    "), slices AS ("
    " SELECT ds.range_start AS lo, ds.range_end AS hi"
    " FROM _timescaledb_catalog.dimension_slice ds"
    " JOIN _timescaledb_catalog.dimension d ON d.id = ds.dimension_id, bounds b"
    " WHERE d.hypertable_id = b.raw_id AND d.column_name = 'time'"
    "), clipped AS ("
    " SELECT time_bucket(INTERVAL '1 hour',"
    " _timescaledb_functions.to_timestamp(greatest(l.lo, s.lo, b.lo_us))) AS lo,"
    " time_bucket(INTERVAL '1 hour', _timescaledb_functions.to_timestamp("
    "least(l.hi, s.hi - 1, b.hi_us - 1))) + INTERVAL '1 hour' AS hi"
    " FROM logged l, slices s, bounds b"
    " WHERE greatest(l.lo, s.lo, b.lo_us) <= least(l.hi, s.hi - 1, b.hi_us - 1)"
    "), marked AS ("
    " SELECT lo, hi, CASE WHEN lo <= max(hi) OVER (ORDER BY lo, hi"
    " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) THEN 0 ELSE 1 END AS starts"
    " FROM clipped"
    "), islands AS ("
    " SELECT lo, hi, sum(starts) OVER (ORDER BY lo, hi) AS island FROM marked"
    ") SELECT min(lo), max(hi) FROM islands GROUP BY island ORDER BY 1$q$, "
    "CASE WHEN to_regclass('_timescaledb_catalog.continuous_aggs_materialization_ranges') "
    "IS NOT NULL THEN 'UNION ALL SELECT r.lowest_modified_value, r.greatest_modified_value "
    "FROM _timescaledb_catalog.continuous_aggs_materialization_ranges r, bounds b "
    "WHERE r.materialization_id = b.mat_id' ELSE '' END) USING from_time, to_time; "
    "END $$",
    # refresh_continuous_aggregate refuses to run inside a transaction block: this procedure
    # is called non-atomically by the job scheduler (or `CALL` outside a transaction) and
    # commits before each window; the ranges are read into arrays first so no portal is open.
    "CREATE PROCEDURE refresh_readings_1h_stale(job_id integer, config jsonb) "
    "LANGUAGE plpgsql AS $$ "
    "DECLARE started timestamptz := clock_timestamp(); los timestamptz[]; "
    "his timestamptz[]; hours double precision := 0; n integer; "
    "BEGIN "
    "SELECT array_agg(s.lo ORDER BY s.lo), array_agg(s.hi ORDER BY s.lo) INTO los, his "
    "FROM readings_1h_stale_ranges('-infinity', 'infinity') s; "
    "n := coalesce(array_length(los, 1), 0); "
    "FOR i IN 1 .. n LOOP "
    "COMMIT; "
    "CALL refresh_continuous_aggregate('readings_1h', "
    "CASE WHEN isfinite(los[i]) THEN los[i] END, his[i]); "
    "IF isfinite(los[i]) THEN hours := hours + extract(epoch FROM his[i] - los[i]) / 3600; "
    "END IF; "
    "END LOOP; "
    "INSERT INTO readings_1h_refresh_state AS s "
    "(started_at, finished_at, refreshed_ranges, refreshed_hours) "
    "VALUES (started, clock_timestamp(), n, hours) ON CONFLICT (id) DO UPDATE SET "
    "started_at = excluded.started_at, finished_at = excluded.finished_at, "
    "refreshed_ranges = excluded.refreshed_ranges, refreshed_hours = excluded.refreshed_hours; "
    "END $$",
    "CREATE VIEW readings_1h_freshness AS "
    "SELECT p.stale_ranges, p.stale_hours, p.oldest_stale, "
    "r.started_at AS last_refresh_started_at, r.finished_at AS last_refresh_finished_at, "
    "r.refreshed_ranges AS last_refreshed_ranges, r.refreshed_hours AS last_refreshed_hours, "
    "CASE WHEN p.stale_ranges = 0 THEN 0::double precision "
    "ELSE extract(epoch FROM now() - r.started_at)::double precision END AS refresh_lag_s "
    "FROM (SELECT count(*) AS stale_ranges, "
    "coalesce(sum(extract(epoch FROM hi - lo) / 3600) FILTER (WHERE isfinite(lo)), 0)"
    "::double precision AS stale_hours, min(lo) AS oldest_stale "
    "FROM readings_1h_stale_ranges('-infinity', 'infinity')) p "
    "LEFT JOIN readings_1h_refresh_state r ON true",
    "COMMENT ON VIEW readings_1h_freshness IS 'readings_1h ranges changed after they were "
    "materialised and not yet refreshed (hour/day reads read them raw), and refresh_lag_s: "
    "how long the oldest of them has waited at most (since the last refresh job started).'",
)

_RM_JOB: LiteralString = (
    "SELECT delete_job(job_id) FROM timescaledb_information.jobs "
    "WHERE proc_name = 'refresh_readings_1h_stale' AND NOT schedule_interval = {every}"
)
_ADD_JOB: LiteralString = (
    "SELECT add_job('refresh_readings_1h_stale', {every}) "
    "WHERE NOT EXISTS (SELECT FROM timescaledb_information.jobs "
    "WHERE proc_name = 'refresh_readings_1h_stale')"
)


def freshness_policy_statements(settings: StorageSettings) -> list[str]:
    """The stale-range refresh job on `settings`' schedule; an unchanged job is kept."""
    every = _interval(settings.readings_1h_stale_refresh_interval)
    return [_render(_RM_JOB, every=every), _render(_ADD_JOB, every=every)]


def freshness_timescale_statements(settings: StorageSettings) -> list[str]:
    return [_render(t) for t in _FRESHNESS_TIMESCALE] + freshness_policy_statements(settings)


def freshness_statements(variant: Variant, settings: StorageSettings) -> list[str]:
    """0012: nothing on the plain branch, where `readings_1h` is a view of `readings`."""
    if variant == "plain":
        return []
    return freshness_timescale_statements(settings)


def _freshness_checksum(variant: Variant) -> str:
    # As `_layout_checksum`: the templates, not the settings-dependent job.
    return _sha256("\n".join(_FRESHNESS_TIMESCALE if variant == "timescale" else ["plain"]))
