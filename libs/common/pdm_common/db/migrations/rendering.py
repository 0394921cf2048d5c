"""Rendering and fingerprinting the SQL of the generated steps, and the compression and
retention policies that `readings` (0002) and `predictions` (0006) share."""

from __future__ import annotations

import hashlib
from typing import LiteralString

from psycopg import sql

# {table} is a literal: the policies of `readings` (0002) and `predictions` (0006) share these.
_RM_COMPRESSION: LiteralString = "SELECT remove_compression_policy({table}, if_exists => true)"
_ADD_COMPRESSION: LiteralString = (
    "SELECT add_compression_policy({table}, {compress_after}, if_not_exists => true)"
)
_RM_RETENTION: LiteralString = "SELECT remove_retention_policy({table}, if_exists => true)"
_ADD_RETENTION: LiteralString = (
    "SELECT add_retention_policy({table}, {drop_after}, if_not_exists => true)"
)


def _interval(text: str) -> sql.Composable:
    return sql.SQL("INTERVAL {}").format(sql.Literal(text))


def _days(n: int) -> sql.Composable:
    return _interval(f"{n} day" if n == 1 else f"{n} days")


def _render(template: LiteralString, **params: sql.Composable) -> str:
    return sql.SQL(template).format(**params).as_string()


def _compression_retention(table: str, compress_after_days: int, retention_days: int) -> list[str]:
    """Replace the compression and retention policies of hypertable `table`; 0 = none."""
    name = sql.Literal(table)
    out = [_render(_RM_COMPRESSION, table=name)]
    if compress_after_days:
        compress_after = _days(compress_after_days)
        out.append(_render(_ADD_COMPRESSION, table=name, compress_after=compress_after))
    out.append(_render(_RM_RETENTION, table=name))
    if retention_days:
        out.append(_render(_ADD_RETENTION, table=name, drop_after=_days(retention_days)))
    return out


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
