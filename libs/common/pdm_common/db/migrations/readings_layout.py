"""The generated step 0002: `readings` as a compressed hypertable with retention and the
continuous aggregate `readings_1h` (Timescale branch), or `readings_1h` as an ordinary view
with the same columns and answers (plain branch)."""

from __future__ import annotations

from typing import LiteralString

from psycopg import sql

from pdm_common.db.migrations.branch import Variant
from pdm_common.db.migrations.rendering import (
    _compression_retention,
    _interval,
    _render,
    _replace_if_changed,
    _retention,
    _sha256,
)
from pdm_common.db.queries import aggregate_expression, bucket_expression
from pdm_common.db.settings import StorageSettings

_READINGS_1H_SELECT: LiteralString = (
    "SELECT {bucket} AS bucket, asset_id, sensor, avg(value) AS avg_value, "
    "min(value) AS min_value, max(value) AS max_value, count(*) AS sample_count, "
    "{last} AS last_value FROM readings GROUP BY bucket, asset_id, sensor"
)
_PLAIN_LAYOUT: tuple[LiteralString, ...] = ("CREATE VIEW readings_1h AS " + _READINGS_1H_SELECT,)
_TIMESCALE_SCHEMA: tuple[LiteralString, ...] = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    # No default time index: chunk exclusion plus the BRIN index of 0001 cover time ranges.
    "SELECT create_hypertable('readings', by_range('time', {chunk_interval}), "
    "create_default_indexes => false, migrate_data => true, if_not_exists => true)",
    "ALTER TABLE readings SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'asset_id, sensor', "
    "timescaledb.compress_orderby = 'time DESC')",
    # materialized_only = false (real-time aggregation; off by default since TimescaleDB 2.13)
    # so the newest, not yet materialised hours answer like the plain view. WITH NO DATA lets
    # it run inside the migration's transaction; the refresh policy fills it.
    "CREATE MATERIALIZED VIEW readings_1h "
    "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
    + _READINGS_1H_SELECT
    + " WITH NO DATA",
)
_SET_CHUNK: LiteralString = "SELECT set_chunk_time_interval('readings', {chunk_interval})"
_RM_REFRESH_CALL: LiteralString = "remove_continuous_aggregate_policy({table}, if_exists => true)"
_SAME_REFRESH: LiteralString = (
    "(config->>'start_offset')::interval = {start_offset} "
    "AND (config->>'end_offset')::interval = {end_offset} "
    "AND schedule_interval = {schedule_interval}"
)
_ADD_REFRESH: LiteralString = (
    "SELECT add_continuous_aggregate_policy('readings_1h', start_offset => {start_offset}, "
    "end_offset => {end_offset}, schedule_interval => {schedule_interval}, "
    "if_not_exists => true)"
)


def _readings_1h_params(timescale: bool) -> dict[str, sql.Composable]:
    # Through the query layer, so the aggregate and ad-hoc queries bucket identically.
    return {
        "bucket": bucket_expression("1h", timescale),
        "last": aggregate_expression("last", timescale),
    }


def timescale_policy_statements(settings: StorageSettings) -> list[str]:
    """Chunk interval and policies of `readings` and `readings_1h` from `settings`
    (idempotent); a policy whose settings did not change keeps its job."""
    out = [_render(_SET_CHUNK, chunk_interval=_interval(settings.readings_chunk_interval))]
    out += _compression_retention(
        "readings", settings.readings_compress_after_days, settings.readings_retention_days
    )
    # The hourly aggregate's own horizon: kept longer than raw readings, it is downsampled
    # history that hour/day reads still answer from.
    out += _retention("readings_1h", settings.readings_1h_retention_days)
    offsets = {
        "start_offset": _interval(settings.readings_1h_refresh_start_offset),
        "end_offset": _interval(settings.readings_1h_refresh_lag),
        "schedule_interval": _interval(settings.readings_1h_refresh_interval),
    }
    same = sql.SQL(_SAME_REFRESH).format(**offsets)
    cagg = sql.Literal("readings_1h")
    out.append(
        _replace_if_changed(cagg, "policy_refresh_continuous_aggregate", _RM_REFRESH_CALL, same)
    )
    out.append(_render(_ADD_REFRESH, **offsets))
    return out


def timescale_statements(settings: StorageSettings) -> list[str]:
    """Everything the Timescale branch runs the first time: hypertable, compression,
    continuous aggregate, then the policies."""
    params = {
        "chunk_interval": _interval(settings.readings_chunk_interval),
        **_readings_1h_params(timescale=True),
    }
    schema = [sql.SQL(t).format(**params).as_string() for t in _TIMESCALE_SCHEMA]
    return schema + timescale_policy_statements(settings)


def plain_statements(settings: StorageSettings) -> list[str]:
    """The plain-PostgreSQL branch: `readings_1h` as an ordinary view."""
    del settings  # nothing to tune without TimescaleDB
    params = _readings_1h_params(timescale=False)
    return [sql.SQL(t).format(**params).as_string() for t in _PLAIN_LAYOUT]


def layout_statements(variant: Variant, settings: StorageSettings) -> list[str]:
    return timescale_statements(settings) if variant == "timescale" else plain_statements(settings)


def _layout_checksum(variant: Variant) -> str:
    # The templates and the query-layer expressions, not the rendered SQL: tuning settings
    # must not look like an edited migration. Policies are excluded: they are re-applied on
    # every run anyway.
    timescale = variant == "timescale"
    templates = _TIMESCALE_SCHEMA if timescale else _PLAIN_LAYOUT
    expressions = [c.as_string() for c in _readings_1h_params(timescale).values()]
    return _sha256("\n".join([*templates, *expressions]))
