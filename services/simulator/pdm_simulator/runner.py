"""The fleet as an IoT gateway: every 1/rate seconds one snapshot per machine on
`pdm.readings.v1` (one message per machine, keyed by asset id, as a gateway publishes them),
and every ground-truth change on `pdm.simulator.truth.v1`.

Ticks are scheduled on the wall clock (no drift); when a tick is late (broker slow) the
missed ones are skipped, not bunched: a live gateway does not replay the past either.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter

from pdm_common import topics
from pdm_common.delivery import Outgoing, Publisher
from pdm_common.service import BackgroundTask
from pdm_common.telemetry import REGISTRY
from pdm_ml.simulation.machines import Fleet, GroundTruth
from pdm_simulator.commands import truth_event

log = structlog.get_logger(__name__)

SENT = Counter("pdm_simulator_snapshots_total", "Snapshots published.", registry=REGISTRY)
TRUTH = Counter(
    "pdm_simulator_truth_total",
    "Ground-truth events published.",
    ["event_type"],
    registry=REGISTRY,
)
HEADERS = {"content-type": "application/json"}


def truth_message(truth: GroundTruth) -> Outgoing:
    """One ground-truth change on `pdm.simulator.truth.v1`, keyed by asset id.

    Content type only, as a gateway's messages: no `event_type` header (which
    `delivery.event_outgoing` would add), because the gateway's live stream shows that header
    and truth has always been streamed without one."""
    return Outgoing(
        topics.SIMULATOR_TRUTH, truth_event(truth).to_json(), truth.asset_id.encode(), HEADERS
    )


def tick_messages(fleet: Fleet, now: datetime) -> list[Outgoing]:
    """The readings of one tick, then the ground truth it produced."""
    out = [
        Outgoing(topics.READINGS, json.dumps(s).encode(), s["asset_id"].encode(), HEADERS)
        for s in fleet.snapshots(now)
    ]
    out += [truth_message(truth) for truth in fleet.drain_truth()]
    return out


class FleetRunner:
    def __init__(self, fleet: Fleet, publisher: Publisher, rate_hz: float) -> None:
        self.fleet = fleet
        self.publisher = publisher
        self.rate_hz = rate_hz
        self._task = BackgroundTask("fleet", self._loop)

    async def tick(self, now: datetime) -> int:
        return await self.publish(tick_messages(self.fleet, now))

    async def publish(self, messages: list[Outgoing]) -> int:
        """Publish and count; returns the number of readings among `messages`."""
        await self.publisher.publish_many(messages)
        readings = sum(1 for m in messages if m.topic == topics.READINGS)
        SENT.inc(readings)
        for m in messages:
            if m.topic == topics.SIMULATOR_TRUTH:
                TRUTH.labels(json.loads(m.value)["event_type"]).inc()
        return readings

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            try:
                await self.tick(datetime.now(UTC))
            except Exception as exc:  # broker away: the gateway keeps trying, like a real one
                log.warning("tick not published", error=repr(exc))
            next_at += 1.0 / self.rate_hz
            now = time.monotonic()
            if next_at < now:  # late: skip the missed ticks
                next_at = now
            await asyncio.sleep(next_at - now)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
