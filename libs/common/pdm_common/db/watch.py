"""Knowing, without waiting, that PostgreSQL is down.

A pool checkout during an outage waits its whole timeout before failing, so an API that asks
the pool on every request answers each one late. `DatabaseWatch` pings on a connection of
its own (outside the pool, so a pool busy under load is never mistaken for an outage) once
per `interval_s`; a ping that fails or takes longer than `timeout_s` marks the database down
until a later one succeeds. A stopped server refuses at once; `timeout_s` only bounds how
long a hung one takes to be known, and is long enough that a loaded machine is not taken
for one. Callers check `down` and fail at once, and may `wake` the watch when a request of
theirs saw a connection error, so the outage is known sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg
import structlog

log = structlog.get_logger(__name__)


class DatabaseWatch:
    def __init__(self, database_url: str, *, interval_s: float = 1.0, timeout_s: float = 3.0):
        self.database_url = database_url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        #: Why the database is known to be down (None: up, or not known to be down).
        self.down: str | None = None
        #: Monotonic time of the first failed ping of the current outage.
        self.down_since: float | None = None
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Ping now rather than at the next tick (a request saw a connection error)."""
        self._wake.set()

    async def check(self) -> bool:
        """One ping, within `timeout_s`: updates `down` and answers whether it is up."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.database_url,
                        autocommit=True,
                        connect_timeout=max(1, round(self.timeout_s)),
                        application_name="pdm-watch",
                    )
                await self._conn.execute("SELECT 1")
        except (psycopg.Error, OSError) as exc:  # TimeoutError is an OSError
            await self._drop()
            if self.down is None:
                self.down_since = time.monotonic()
                log.warning("database down", error=repr(exc))
            self.down = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            return False
        if self.down is not None:
            log.info("database back", after_s=round(time.monotonic() - (self.down_since or 0), 1))
        self.down = self.down_since = None
        return True

    async def run(self) -> None:
        """Forever: ping every `interval_s`, or at once when woken."""
        try:
            while True:
                await self.check()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)
        finally:
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
