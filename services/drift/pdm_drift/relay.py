"""The outbox relay: publishes `drift_outbox` rows (to `pdm.drift.v1` or `pdm.models.v1`) in
order, then stamps them; woken after commits, and every `outbox_interval_s` anyway (a crash,
another replica's rows)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import structlog

from pdm_common.delivery import Outgoing, Publisher
from pdm_drift.storage import DriftStore

log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(self, store: DriftStore, publisher: Publisher, interval_s: float) -> None:
        self.store = store
        self.publisher = publisher
        self.interval_s = interval_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def publish(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.publisher.publish_many(
            [
                Outgoing(
                    r["topic"],
                    json.dumps(r["payload"], separators=(",", ":")).encode(),
                    r["key"].encode(),
                    {"content-type": "application/json", "event_type": r["event_type"]},
                )
                for r in rows
            ]
        )

    async def drain(self) -> int:
        total = 0
        while n := await self.store.drain_outbox(200, self.publish):
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
