"""The ingest batch processors.

Readings (`pdm.readings.v1`): validate, store once, then announce what was stored. Order of
side effects per batch: database commit -> `pdm.readings.validated.v1` published and
acknowledged -> (caller) offsets committed. A crash between any two steps redelivers the
batch; the natural key makes the re-insert a no-op and downstream consumers ignore readings
they have seen (documented on `ReadingsValidated`).

Asset commands (`pdm.asset.commands.v1`, request/reply): each command in its own transaction,
in order -> the replies -> (caller) offsets committed. Decisions and idempotency are in
`commands.py`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from prometheus_client import Counter

from pdm_common import topics
from pdm_common.db.pool import db_call
from pdm_common.delivery import (
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    Delivery,
    Failure,
    Outgoing,
    PermanentError,
    Publisher,
    event_outgoing,
    publish_or_pause,
)
from pdm_common.events import (
    AssetCommand,
    AssetCommandResult,
    ReadingSnapshot,
    ReadingsValidated,
    ValidatedSnapshot,
)
from pdm_common.request_reply import reply_outgoing, send_replies
from pdm_common.telemetry import REGISTRY, metrics
from pdm_ingest import SERVICE
from pdm_ingest.commands import (
    Malformed,
    Outcome,
    ResultMemo,
    decode_command,
    delivery_command_id,
    invalid_result,
    result,
)
from pdm_ingest.settings import IngestSettings
from pdm_ingest.storage import AssetStore, ReadingStore, WriteResult
from pdm_ingest.validation import Limits, validate_message

log = structlog.get_logger(__name__)

Item = tuple[Delivery, list[ReadingSnapshot]]
R = TypeVar("R")

ASSET_COMMANDS = Counter(
    "pdm_asset_commands_total",
    "Asset commands answered, by action and status (`invalid` includes malformed ones).",
    ["action", "status"],
    registry=REGISTRY,
)


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
                trace_of[snap.asset_id] = delivery.trace_context()
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
                event_outgoing(topics.READINGS_VALIDATED, event, asset_id, trace_of[asset_id])
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
        # Stored already: if the broker is down, the batch is done again (idempotent).
        events = validated_events(items, self.settings.validated_chunk)
        await publish_or_pause(self.publisher, events, "validated readings")

    def _count(self, result: WriteResult) -> None:
        metrics.rows_written.labels(SERVICE, "readings").inc(result.inserted)
        metrics.rows_duplicate.labels(SERVICE, "readings").inc(result.duplicates)


# --------------------------------------------------------------------------------------------
# Asset commands
# --------------------------------------------------------------------------------------------


class AssetCommandsProcessor:
    """`delivery.BatchProcessor` for `pdm.asset.commands.v1` (create, update, delete).

    * A malformed command is dead-lettered (`undecodable`/`invalid`) and, when it names a
      `reply_to`, answered `invalid` with the reason; so is a command the database refuses
      (`rejected_by_database`).
    * Commands apply one transaction each, in batch order (one asset's commands share a key,
      hence a partition, hence that order). A database outage raises `DependencyUnavailable`:
      the whole batch is processed again once it is back, and the commands applied before
      it are answered from the `ResultMemo` instead of being applied twice.
    * Replies go out after every command of the batch is committed, before the offsets are.
      A reply that cannot be delivered is logged, not retried: the command is applied, and a
      client that timed out asks again (a repeated create answers `created`).
    """

    def __init__(
        self, store: AssetStore, publisher: Publisher, memo: ResultMemo | None = None
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.memo = memo or ResultMemo()

    def decode(self, delivery: Delivery) -> AssetCommand | Malformed:
        origin = delivery.origin_headers()
        default_id = delivery_command_id(
            origin[H_ORIGINAL_TOPIC], origin[H_ORIGINAL_PARTITION], origin[H_ORIGINAL_OFFSET]
        )
        return decode_command(delivery.value, default_id)

    async def process(
        self, items: Sequence[tuple[Delivery, AssetCommand | Malformed]]
    ) -> list[Failure]:
        failures: list[Failure] = []
        answers: list[tuple[Delivery, AssetCommandResult]] = []
        for delivery, command in items:
            if isinstance(command, Malformed):
                failures.append(
                    Failure(delivery, PermanentError(command.error, reason=command.reason))
                )
                answer = invalid_result(command, SERVICE)
            elif (remembered := self.memo.get(command)) is not None:
                answer = remembered
            else:
                try:
                    outcome = await db_call(self.store.apply(command))
                except PermanentError as exc:  # this command alone, e.g. a NUL in a string
                    failures.append(Failure(delivery, exc))
                    outcome = Outcome("invalid", str(exc))
                answer = result(command, outcome, SERVICE)
                if outcome.status != "invalid":  # a dead letter may be replayed after a fix
                    self.memo.put(command, answer)
                log.info(
                    "asset command",
                    asset_id=command.asset_id,
                    action=command.action,
                    actor=command.actor,
                    status=answer.status,
                    correlation_id=delivery.headers.get("correlation_id"),
                )
            answers.append((delivery, answer))
        await send_replies(
            self.publisher, [r for d, a in answers if (r := reply_outgoing(d, a)) is not None]
        )
        for _, answer in answers:
            ASSET_COMMANDS.labels(answer.action or "unknown", answer.status).inc()
        return failures
