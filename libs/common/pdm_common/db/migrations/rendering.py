"""Rendering and fingerprinting the SQL of the generated steps, and the compression and
retention policies that `readings` (0002) and `predictions` (0006) share."""

from __future__ import annotations

import hashlib
from typing import LiteralString

from psycopg import sql

# {table} is a literal: the policies of `readings` (0002) and `predictions` (0006) share these.
# A policy whose settings did not change is kept (same job id, same statistics): the remove
# runs only for a job whose config differs, and the add is a no-op for an existing one.
_RM_COMPRESSION_CALL: LiteralString = "remove_compression_policy({table}, if_exists => true)"
_RM_COMPRESSION: LiteralString = "SELECT " + _RM_COMPRESSION_CALL
_ADD_COMPRESSION: LiteralString = (
    "SELECT add_compression_policy({table}, {compress_after}, if_not_exists => true)"
)
_RM_RETENTION_CALL: LiteralString = "remove_retention_policy({table}, if_exists => true)"
_RM_RETENTION: LiteralString = "SELECT " + _RM_RETENTION_CALL
_ADD_RETENTION: LiteralString = (
    "SELECT add_retention_policy({table}, {drop_after}, if_not_exists => true)"
)
_RM_IF_CHANGED: LiteralString = (
    "SELECT {remove} FROM timescaledb_information.jobs WHERE proc_name = {proc} "
    "AND hypertable_schema = current_schema() AND hypertable_name = {table} "
    "AND NOT ({same})"
)
_SAME_COMPRESSION: LiteralString = "(config->>'compress_after')::interval = {compress_after}"
_SAME_RETENTION: LiteralString = "(config->>'drop_after')::interval = {drop_after}"


def _interval(text: str) -> sql.Composable:
    return sql.SQL("INTERVAL {}").format(sql.Literal(text))


def _days(n: int) -> sql.Composable:
    return _interval(f"{n} day" if n == 1 else f"{n} days")


def _render(template: LiteralString, **params: sql.Composable) -> str:
    return sql.SQL(template).format(**params).as_string()


def _replace_if_changed(
    table: sql.Composable, proc: str, remove: LiteralString, same: sql.Composable
) -> str:
    """Remove `table`'s `proc` policy only when its config is not `same`."""
    return _render(
        _RM_IF_CHANGED,
        remove=sql.SQL(remove).format(table=table),
        proc=sql.Literal(proc),
        table=table,
        same=same,
    )


def _compression_retention(table: str, compress_after_days: int, retention_days: int) -> list[str]:
    """Sync the compression and retention policies of hypertable (or continuous aggregate)
    `table` with the settings; 0 = none. Unchanged policies keep their jobs."""
    name = sql.Literal(table)
    out: list[str] = []
    if compress_after_days:
        compress_after = _days(compress_after_days)
        same = sql.SQL(_SAME_COMPRESSION).format(compress_after=compress_after)
        out.append(_replace_if_changed(name, "policy_compression", _RM_COMPRESSION_CALL, same))
        out.append(_render(_ADD_COMPRESSION, table=name, compress_after=compress_after))
    else:
        out.append(_render(_RM_COMPRESSION, table=name))
    out += _retention(table, retention_days)
    return out


def _retention(table: str, retention_days: int) -> list[str]:
    name = sql.Literal(table)
    if not retention_days:
        return [_render(_RM_RETENTION, table=name)]
    drop_after = _days(retention_days)
    same = sql.SQL(_SAME_RETENTION).format(drop_after=drop_after)
    return [
        _replace_if_changed(name, "policy_retention", _RM_RETENTION_CALL, same),
        _render(_ADD_RETENTION, table=name, drop_after=drop_after),
    ]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
