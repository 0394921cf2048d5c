"""Choosing the storage branch: TimescaleDB when the server has it, else plain PostgreSQL;
once recorded, a database keeps its branch."""

from __future__ import annotations

import logging
from typing import Any, Literal

import psycopg

from pdm_common.db.migrations.errors import MigrationError

log = logging.getLogger("pdm_common.db.migrations")

Variant = Literal["timescale", "plain"]


def choose_variant(
    mode: Literal["auto", "on", "off"], available: bool, recorded: Variant | None
) -> Variant:
    """The branch to use: the one already recorded, else what `mode` and the server allow."""
    if recorded == "plain" and mode == "on":
        raise MigrationError(
            "PDM_TIMESCALE=on, but this database was set up without TimescaleDB (branch "
            "'plain'); pdm migrate does not convert existing tables. Use a fresh database "
            "or set PDM_TIMESCALE=auto."
        )
    if recorded == "timescale" and mode == "off":
        raise MigrationError(
            "PDM_TIMESCALE=off, but this database already uses TimescaleDB (branch "
            "'timescale'). Set PDM_TIMESCALE=auto or on."
        )
    if recorded is not None:
        if recorded == "plain" and available:
            log.warning(
                "TimescaleDB is available now, but readings was created as a plain table; "
                "pdm migrate does not convert existing tables"
            )
        return recorded
    if mode == "off":
        return "plain"
    if mode == "on" and not available:
        raise MigrationError(
            "PDM_TIMESCALE=on, but the timescaledb extension is not available on this "
            "PostgreSQL server. Install TimescaleDB (and add it to shared_preload_libraries), "
            "or set PDM_TIMESCALE=auto to fall back to plain tables."
        )
    return "timescale" if available else "plain"


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None
