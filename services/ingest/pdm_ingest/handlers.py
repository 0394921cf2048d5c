"""The ingest batch processor: validate, store once, then announce what was stored.

Order of side effects per batch: database commit -> `pdm.readings.validated.v1` published and
acknowledged -> (caller) offsets committed. A crash between any two steps redelivers the
batch; the natural key makes the re-insert a no-op and downstream consumers ignore readings
they have seen (documented on `ReadingsValidated`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog

from pdm_common import topics
from pdm_common.db.pool import db_call
from pdm_common.delivery import (
    Delivery,
    DependencyUnavailable,
    Failure,
    Outgoing,
    PermanentError,
    Publisher,
)
from pdm_common.events import ReadingSnapshot, ReadingsValidated, ValidatedSnapshot
from pdm_common.telemetry import TRACE_HEADERS, metrics
from pdm_ingest.settings import IngestSettings
from pdm_ingest.storage import ReadingStore, WriteResult
from pdm_ingest.validation import Limits, validate_message

log = structlog.get_logger(__name__)
SERVICE = "ingest"

Item = tuple[Delivery, list[ReadingSnapshot]]
R = TypeVar("R")


def limits_from(settings: IngestSettings, max_message_bytes: int) -> Limits:
    return Limits(
        max_message_bytes=max_message_bytes,
        max_snapshots=settings.max_snapshots_per_message,
        max_sensors=settings.max_sensors_per_snapshot,
        max_future=timedelta(seconds=settings.max_future_s),
        max_age=timedelta(days=settings.max_age_days),
        value_abs_limit=settings.value_abs_limit,
    )


def validated_events(items: Sequence[Item], chunk: int) -> list[Outgoing]:
    """One `ReadingsValidated` per asset (time-ordered, chunked), keyed by asset id.

    Each event carries the W3C trace context of the first message that brought readings of
    its asset, so the trace continues across this hop (the publisher parents its span there).
    Input is validated already, hence `model_construct` (no second validation on the hot path).
    """
    by_asset: dict[str, list[ReadingSnapshot]] = defaultdict(list)
    trace_of: dict[str, dict[str, str]] = {}
    for delivery, snaps in items:
        for snap in snaps:
            by_asset[snap.asset_id].append(snap)
            if snap.asset_id not in trace_of:
                trace_of[snap.asset_id] = {
                    k: v for k, v in delivery.headers.items() if k in TRACE_HEADERS
                }
    out = []
    for asset_id, snaps in by_asset.items():
        snaps.sort(key=lambda s: s.ts)
        asset_type = next((s.asset_type for s in snaps if s.asset_type), None)
        for start in range(0, len(snaps), chunk):
            event = ReadingsValidated.model_construct(
                source=SERVICE,
                asset_id=asset_id,
                asset_type=asset_type,
                snapshots=[
                    ValidatedSnapshot.model_construct(ts=s.ts, readings=s.readings)
                    for s in snaps[start : start + chunk]
                ],
            )
            out.append(
                Outgoing(
                    topics.READINGS_VALIDATED,
                    event.to_json(),
                    asset_id.encode(),
                    {"content-type": "application/json", "event_type": event.event_type}
                    | trace_of[asset_id],
                )
            )
    return out


class IngestProcessor:
    """`delivery.BatchProcessor` for `pdm.readings.v1`."""

    def __init__(
        self,
        store: ReadingStore,
        publisher: Publisher,
        settings: IngestSettings,
        max_message_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.limits = limits_from(settings, max_message_bytes)
        self.clock = clock

    def decode(self, delivery: Delivery) -> list[ReadingSnapshot]:
        return validate_message(delivery.value, self.clock(), self.limits)

    async def process(self, items: Sequence[Item]) -> list[Failure]:
        failures: list[Failure] = []
        accepted = list(items)
        register = self.settings.unknown_assets == "register"
        if not register:
            accepted, failures = await self._reject_unknown(accepted)
        if not accepted:
            return failures
        try:
            result = await self._write([s for _, snaps in accepted for s in snaps], register)
        except PermanentError:
            # One message the database refuses must not sink its batch: find it.
            stored, refused = await self._write_one_by_one(accepted, register)
            accepted = stored
            failures += refused
        else:
            self._count(result)
        await self._announce(accepted)
        return failures

    async def _reject_unknown(self, items: list[Item]) -> tuple[list[Item], list[Failure]]:
        unknown = await db_call(
            self.store.unknown_assets({s.asset_id for _, ss in items for s in ss})
        )
        if not unknown:
            return items, []
        keep, failures = [], []
        for delivery, snaps in items:
            missing = sorted({s.asset_id for s in snaps} & unknown)
            if missing:
                failures.append(
                    Failure(
                        delivery,
                        PermanentError(
                            f"unknown asset(s) {', '.join(missing)}: register them first "
                            "(PDM_INGEST_UNKNOWN_ASSETS=reject), then `pdm dlq replay`",
                            reason="unknown_asset",
                        ),
                    )
                )
            else:
                keep.append((delivery, snaps))
        return keep, failures

    async def _write(self, snapshots: list[ReadingSnapshot], register: bool) -> WriteResult:
        return await db_call(self.store.write(snapshots, register))

    async def _write_one_by_one(
        self, items: list[Item], register: bool
    ) -> tuple[list[Item], list[Failure]]:
        stored: list[Item] = []
        refused: list[Failure] = []
        for delivery, snaps in items:
            try:
                self._count(await self._write(snaps, register))
                stored.append((delivery, snaps))
            except PermanentError as exc:
                refused.append(Failure(delivery, exc))
        return stored, refused

    async def _announce(self, items: list[Item]) -> None:
        if not items:
            return
        try:
            await self.publisher.publish_many(
                validated_events(items, self.settings.validated_chunk)
            )
        except Exception as exc:  # stored already; redoing the batch is idempotent
            raise DependencyUnavailable(f"cannot publish validated readings: {exc!r}") from exc

    def _count(self, result: WriteResult) -> None:
        metrics.rows_written.labels(SERVICE, "readings").inc(result.inserted)
        metrics.rows_duplicate.labels(SERVICE, "readings").inc(result.duplicates)
