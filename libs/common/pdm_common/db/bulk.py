"""Idempotent bulk insert: binary COPY into a session-temporary stage, then one INSERT ... SELECT.

COPY cannot skip conflicting rows and per-row INSERTs are an order of magnitude slower, so
rows are streamed into a temporary staging table (no WAL, no indexes) and moved with a single
`INSERT ... ON CONFLICT DO NOTHING`. Redelivered batches and duplicates inside a batch are
therefore harmless; when two rows share a key the row already stored wins, and within a batch
the first row in stage order wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.pq import TransactionStatus


def _qualified(table: str) -> sql.Identifier:
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ValueError(f"table must be 'name' or 'schema.name', got {table!r}")
    return sql.Identifier(*parts)


def _stage_name(table: str, columns: Sequence[str]) -> str:
    """One stage per (table, column list); hashed so the name fits PostgreSQL's 63 bytes."""
    digest = hashlib.sha1(f"{table}|{','.join(columns)}".encode()).hexdigest()[:10]
    return f"pdm_stage_{table.replace('.', '_')[:40]}_{digest}"


async def copy_insert_ignore(
    conn: AsyncConnection[Any],
    table: str,
    columns: Sequence[str],
    pg_types: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    """Insert `rows` into `table`, skipping any whose key already exists; return rows inserted.

    Runs in the caller's transaction (the caller commits); on an autocommit connection outside
    a transaction it wraps itself in one, because the stage empties at every commit.
    `pg_types` are the PostgreSQL type names for binary COPY, e.g. `["timestamptz", "text",
    "text", "float8"]`. Safe on pooled connections: the stage is private to the session and
    created with `IF NOT EXISTS` on every call, so a rolled-back creation or a `DISCARD TEMP`
    never leaves a stale assumption behind.
    """
    if not columns or len(columns) != len(pg_types):
        raise ValueError("columns and pg_types must be non-empty and of the same length")
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        async with conn.transaction():
            return await _copy_insert(conn, table, columns, pg_types, rows)
    return await _copy_insert(conn, table, columns, pg_types, rows)


async def _copy_insert(
    conn: AsyncConnection[Any],
    table: str,
    columns: Sequence[str],
    pg_types: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> int:
    target = _qualified(table)
    stage = sql.Identifier(_stage_name(table, columns))
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    # CREATE ... AS SELECT copies the target's column types without spelling them out. The
    # DELETE empties rows an earlier call in this same transaction left behind (ON COMMIT
    # DELETE ROWS only empties the stage at commit); on the usual empty stage it costs
    # nothing, unlike TRUNCATE, which swaps the table's file every time. One round trip.
    await conn.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            "SELECT {cols} FROM {target} WITH NO DATA; DELETE FROM {stage}"
        ).format(stage=stage, cols=cols, target=target)
    )
    async with conn.cursor() as cur:
        copy_stmt = sql.SQL("COPY {stage} ({cols}) FROM STDIN (FORMAT BINARY)").format(
            stage=stage, cols=cols
        )
        async with cur.copy(copy_stmt) as copy:
            copy.set_types(list(pg_types))
            for row in rows:
                await copy.write_row(row)
        await cur.execute(
            sql.SQL(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
            ).format(target=target, cols=cols, stage=stage)
        )
        return max(cur.rowcount, 0)
