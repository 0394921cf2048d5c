"""Connection pool factory, liveness ping and the error classification consumers act on.

A service must start (and report not-ready) while PostgreSQL is down, and must heal by itself
after PostgreSQL restarts; the pool below does both. `classify_db_error` tells a consumer
whether to pause (database unavailable), retry with back-off (transient) or dead-letter the
batch (permanent: the same input will fail the same way again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Literal, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pdm_common.delivery import DependencyUnavailable, PermanentError, TransientError

DbErrorKind = Literal["unavailable", "transient", "permanent"]
R = TypeVar("R")

#: Server shutting down / crashed / starting up, and idle-session timeout: the session is gone.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "57P05"})
#: Undefined table/column/schema: the database is not migrated (a deployment fault, not the
#: message's). Pausing until `pdm migrate` has run loses nothing; dead-lettering would.
_SCHEMA_MISSING_STATES = frozenset({"42P01", "42703", "3F000"})
#: Lock not available (lock_timeout / NOWAIT) and query canceled (statement_timeout).
_TRANSIENT_STATES = frozenset({"55P03", "57014"})
#: 40 serialization/deadlock, 53 insufficient resources (disk full, out of memory, too many
#: connections): retrying later can succeed.
_TRANSIENT_CLASSES = frozenset({"40", "53"})
#: 22 data exception, 23 integrity, 42 syntax/undefined object, plus 21 cardinality, 44 check
#: option, 54 program limit (e.g. index row too large) and 0A feature not supported: the same
#: input fails the same way on every retry.
_PERMANENT_CLASSES = frozenset({"22", "23", "42", "21", "44", "54", "0A"})


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    name: str = "pdm",
    checkout_timeout: float = 10.0,
    connect_timeout: int = 5,
    statement_timeout_ms: int = 0,
    reconnect_timeout: float = 10.0,
) -> AsyncConnectionPool:
    """Open a pool without waiting for PostgreSQL, so start-up never blocks on the database.

    `check` runs a trivial query on every checkout and discards dead connections, which is
    what makes the pool recover after a PostgreSQL restart instead of handing out broken
    sockets. `checkout_timeout` bounds how long `pool.connection()` waits for one.
    `statement_timeout_ms` (0 = none) turns a hung statement into a transient error (57014).

    psycopg_pool retries a failed connection with a doubling delay for `reconnect_timeout`
    seconds (its default: 300) before dropping it and trying afresh on the next request; after
    a 20 s outage that delay alone kept the pool down ~9 s after PostgreSQL was back. A short
    `reconnect_timeout` caps the delay at a few seconds.
    """
    conn_kwargs: dict[str, object] = {"connect_timeout": connect_timeout, "application_name": name}
    if statement_timeout_ms:
        conn_kwargs["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=checkout_timeout,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=reconnect_timeout,
        kwargs=conn_kwargs,
    )
    await pool.open(wait=False)
    return pool


async def ping(pool: AsyncConnectionPool, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
    """True when a pooled connection answers `SELECT 1` within `timeout` seconds (readiness)."""
    try:
        async with asyncio.timeout(timeout):
            async with pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
    except (psycopg.Error, OSError):  # PoolTimeout is a psycopg.Error; TimeoutError an OSError
        return False
    return True


def classify_db_error(exc: BaseException) -> DbErrorKind:
    """Map an exception to what a consumer should do about it, by SQLSTATE first.

    psycopg derives several retryable errors (deadlock, lock timeout, statement timeout) from
    `OperationalError`, so the class alone cannot tell them from a lost connection. An
    exception raised `from` a database error is classified by its cause.
    """
    if not isinstance(exc, psycopg.Error | OSError) and exc.__cause__ is not None:
        return classify_db_error(exc.__cause__)
    if isinstance(exc, PoolTimeout):
        return "unavailable"
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return _classify_sqlstate(sqlstate)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        # No SQLSTATE: the client could not connect, or the connection broke mid-query.
        return "unavailable"
    if isinstance(exc, psycopg.DataError | psycopg.ProgrammingError | psycopg.NotSupportedError):
        # Raised client-side before anything reached the server (e.g. NUL in a string,
        # wrong number of parameters): retrying the same input cannot help.
        return "permanent"
    return "transient"


def _classify_sqlstate(sqlstate: str) -> DbErrorKind:
    cls = sqlstate[:2]
    if cls == "08" or sqlstate in _UNAVAILABLE_STATES or sqlstate in _SCHEMA_MISSING_STATES:
        return "unavailable"
    if cls in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_STATES:
        return "transient"
    if cls in _PERMANENT_CLASSES:
        return "permanent"
    return "transient"


async def tables_exist(
    pool: AsyncConnectionPool | None, tables: Sequence[str], within_s: float = 2.0
) -> bool:
    """Readiness: PostgreSQL answers *and* is migrated (the service's tables exist)."""
    if pool is None:
        return False
    try:
        async with asyncio.timeout(within_s), pool.connection(timeout=within_s) as conn:
            cur = await conn.execute(
                "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest(%s::text[]) AS t",
                (list(tables),),
            )
            row = await cur.fetchone()
    except (psycopg.Error, OSError):
        return False
    return bool(row and row[0])


async def db_call(awaitable: Awaitable[R]) -> R:
    """Await a database operation, turning its errors into the delivery errors that decide
    a consumed batch's fate: pause (unavailable), retry (transient) or dead-letter."""
    try:
        return await awaitable
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        kind = classify_db_error(exc)
        text = f"{type(exc).__name__}: {exc}".strip()
        if kind == "unavailable":
            raise DependencyUnavailable(f"database unavailable: {text}") from exc
        if kind == "permanent":
            raise PermanentError(
                f"database refused: {text}", reason="rejected_by_database"
            ) from exc
        raise TransientError(f"database: {text}", reason="database_transient") from exc
