"""The database side of a run: connecting, the advisory lock, the `schema_migrations`
table, checksums of applied steps, and applying statements in one transaction."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pdm_common.db.migrations.branch import Variant
from pdm_common.db.migrations.discovery import Migration
from pdm_common.db.migrations.errors import DatabaseUnreachable, MigrationError
from pdm_common.db.settings import StorageSettings

Echo = Callable[[str], None]

#: Arbitrary constant shared by every `pdm migrate` ("pdm-migr" in ASCII).
ADVISORY_LOCK_KEY = 0x70646D2D6D696772

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    variant    text NOT NULL CHECK (variant IN ('plain', 'timescale')),
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    variant: Variant
    applied_at: datetime


def describe_target(database_url: str) -> str:
    """`host:port/db as user`, never the password, for messages."""
    try:
        info = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "<unparsable PDM_DATABASE_URL>"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or '?'} as {info.get('user') or '?'}"


@contextmanager
def connect(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection; migrations open their own transactions."""
    try:
        conn = psycopg.connect(
            database_url, autocommit=True, connect_timeout=5, application_name="pdm-migrate"
        )
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        reason = lines[0].rstrip(".") if lines else type(exc).__name__
        raise DatabaseUnreachable(
            f"cannot reach PostgreSQL at {describe_target(database_url)}: {reason}. "
            "Is the stack up? Run `pdm stack up`, or point PDM_DATABASE_URL at your server."
        ) from exc
    with conn:
        yield conn


@contextmanager
def advisory_lock(conn: psycopg.Connection[Any], wait_s: float, echo: Echo) -> Iterator[None]:
    """Serialise `pdm migrate` runs; the second one waits, then finds nothing to do."""
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY]).fetchone()
        if row and row[0]:
            break
        if not announced:
            echo("another `pdm migrate` is running; waiting for it to finish ...")
            announced = True
        if time.monotonic() > deadline:
            raise MigrationError(
                f"gave up after {wait_s:.0f}s waiting for another `pdm migrate` (advisory "
                f"lock {ADVISORY_LOCK_KEY}); check pg_stat_activity for application_name "
                "'pdm-migrate'"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


def read_applied(conn: psycopg.Connection[Any]) -> dict[int, Applied]:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return {}
    rows = conn.execute(
        "SELECT version, name, checksum, variant, applied_at FROM schema_migrations"
    ).fetchall()
    return {r[0]: Applied(*r) for r in rows}


def recorded_variant(
    applied: dict[int, Applied], migrations: Sequence[Migration]
) -> Variant | None:
    """The branch of the generated steps already applied (they decide the layout)."""
    generated = [applied[m.version] for m in migrations if m.generated and m.version in applied]
    return generated[-1].variant if generated else None


def policy_statements(
    applied: dict[int, Applied], migrations: Sequence[Migration], settings: StorageSettings
) -> list[str]:
    """The Timescale policies of the generated steps already applied on that branch."""
    out: list[str] = []
    for m in migrations:
        done = applied.get(m.version)
        if m.policies is not None and done is not None and done.variant == "timescale":
            out += m.policies(settings)
    return out


def verify_checksums(applied: dict[int, Applied], migrations: Sequence[Migration]) -> None:
    for m in migrations:
        done = applied.get(m.version)
        if done is None:
            continue
        expected = m.checksum(done.variant)
        if done.checksum != expected:
            what = "its generator in pdm_common.db.migrations" if m.generated else "the file"
            raise MigrationError(
                f"migration {m.label} was changed after it was applied (checksum "
                f"{done.checksum[:12]} in the database, {expected[:12]} now). Applied "
                f"migrations are immutable: revert the edit to {what} and put the change "
                "in a new migration."
            )


def _explain(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip() or type(exc).__name__
    if "preload" in text:
        text += " (add timescaledb to shared_preload_libraries and restart PostgreSQL)"
    if diag.sqlstate == "42501":
        text += " (the migration role lacks a privilege; run pdm migrate as the schema owner)"
    return text


_RECORD = "INSERT INTO schema_migrations (version, name, checksum, variant) VALUES (%s, %s, %s, %s)"


def _apply(
    conn: psycopg.Connection[Any],
    label: str,
    statements: Sequence[str],
    record: Sequence[object] | None = None,
) -> None:
    """Run `statements` (and the schema_migrations row) in one transaction, or none of it."""
    try:
        with conn.transaction():
            for statement in statements:
                # bytes: the SQL comes from our files/generators; without parameters psycopg
                # uses the simple protocol, so a file may hold several statements.
                conn.execute(statement.encode())
            if record is not None:
                conn.execute(_RECORD, record)
    except psycopg.Error as exc:
        raise MigrationError(f"{label} failed and was rolled back: {_explain(exc)}") from exc
