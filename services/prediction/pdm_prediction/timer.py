"""The periodic per-asset re-assessment: every `periodic_interval_s`, one replica (whichever
claims the round in `prediction_timer`) queues a `trigger=periodic` request for each asset of
a served type that reported since `readings_max_age_hours`. The requests go through
`pdm.prediction.requests.v1` like a client's, so the consumer group spreads the scoring over
the replicas and the retry/DLQ path is the same one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import Counter

from pdm_common import topics
from pdm_common.delivery import Outgoing, Publisher, event_outgoing
from pdm_common.events import PredictionRequest
from pdm_common.service import BackgroundTask
from pdm_common.telemetry import REGISTRY
from pdm_prediction.settings import PredictionSettings
from pdm_prediction.storage import PredictionStore

log = structlog.get_logger(__name__)

QUEUED = Counter(
    "pdm_prediction_periodic_queued_total", "Periodic requests queued.", registry=REGISTRY
)
#: Requests published per `publish_many` call while queueing a round.
CHUNK = 5000


def periodic_requests(assets: Sequence[tuple[str, str]]) -> list[Outgoing]:
    """One `trigger=periodic` request per `(asset_id, asset_type)`, keyed by asset id."""
    return [
        event_outgoing(
            topics.PREDICTION_REQUESTS,
            PredictionRequest(asset_id=asset_id, asset_type=asset_type, trigger="periodic"),
            asset_id,
        )
        for asset_id, asset_type in assets
    ]


class PeriodicScorer:
    def __init__(
        self, store: PredictionStore, publisher: Publisher, settings: PredictionSettings
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self._task = BackgroundTask("periodic-predictions", self._loop)

    async def round(self) -> int:
        """Queue one round if this replica claims it; returns the requests queued."""
        interval = self.settings.periodic_interval_s
        if not await self.store.claim_tick(interval):
            return 0
        since = datetime.now(UTC) - timedelta(hours=self.settings.readings_max_age_hours)
        assets = await self.store.periodic_assets(sorted(self.settings.routes), since)
        messages = periodic_requests(assets)
        for i in range(0, len(messages), CHUNK):
            await self.publisher.publish_many(messages[i : i + CHUNK])
        QUEUED.inc(len(messages))
        log.info("periodic round queued", assets=len(messages))
        return len(messages)

    async def _loop(self) -> None:
        interval = self.settings.periodic_interval_s
        check = min(interval / 4, 15.0)
        while True:
            try:
                await self.round()
            except Exception as exc:  # database or broker away: try again next check
                log.warning("periodic round not queued", error=repr(exc))
            await asyncio.sleep(check * random.uniform(0.8, 1.2))

    def start(self) -> None:
        if self.settings.periodic_interval_s > 0:
            self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
