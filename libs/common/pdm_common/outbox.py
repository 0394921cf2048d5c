"""The transactional outbox: a service writes its events in the same transaction as the
change they announce (a table with `event_id`, `seq`, `key`, `event_type`, `payload`,
`published_at`, optionally `topic`), and `OutboxRelay` publishes them in order afterwards,
woken after commits and every `interval_s` anyway (a crash, another replica's rows)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pdm_common.delivery import Outgoing, Publisher

log = structlog.get_logger(__name__)

Rows = Sequence[dict[str, Any]]


async def drain_outbox(
    pool: AsyncConnectionPool,
    table: str,
    limit: int,
    publish: Callable[[Rows], Awaitable[None]],
) -> int:
    """Publish up to `limit` unpublished rows of `table` in order and stamp them, in one
    transaction (`SKIP LOCKED`: replicas share the work without sending one twice)."""
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            sql.SQL(
                "SELECT * FROM {} WHERE published_at IS NULL ORDER BY seq LIMIT %s "
                "FOR UPDATE SKIP LOCKED"
            ).format(sql.Identifier(table)),
            (limit,),
        )
        rows = await cur.fetchall()
        if not rows:
            return 0
        await publish(rows)
        await conn.execute(
            sql.SQL("UPDATE {} SET published_at = now() WHERE event_id = ANY(%s)").format(
                sql.Identifier(table)
            ),
            ([r["event_id"] for r in rows],),
        )
    return len(rows)


class OutboxRelay:
    """Publishes an outbox's rows (to the row's `topic`, else `topic`) until cancelled; a
    broker or database outage leaves the rows queued and is retried with back-off."""

    def __init__(
        self,
        drain: Callable[[int, Callable[[Rows], Awaitable[None]]], Awaitable[int]],
        publisher: Publisher,
        interval_s: float,
        *,
        topic: str | None = None,
        batch: int = 500,
    ) -> None:
        self._drain = drain
        self.publisher = publisher
        self.interval_s = interval_s
        self.topic = topic
        self.batch = batch
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def publish(self, rows: Rows) -> None:
        await self.publisher.publish_many(
            [
                Outgoing(
                    r.get("topic") or self._topic(),
                    json.dumps(r["payload"], separators=(",", ":")).encode(),
                    r["key"].encode(),
                    {"content-type": "application/json", "event_type": r["event_type"]},
                )
                for r in rows
            ]
        )

    def _topic(self) -> str:
        if self.topic is None:
            raise ValueError("an outbox row without a topic, and the relay has no default")
        return self.topic

    async def drain(self) -> int:
        total = 0
        while n := await self._drain(self.batch, self.publish):
            total += n
        return total

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.drain()
                delay = 1.0
                await wait_or_wake(self._wake, self.interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database down: the rows stay queued
                log.warning("outbox relay failed; retrying", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


async def wait_or_wake(event: asyncio.Event, seconds: float) -> None:
    """Wait until `event` is set or `seconds` pass, then clear it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    event.clear()
