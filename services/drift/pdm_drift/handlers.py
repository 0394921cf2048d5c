"""Batch processors of the drift service.

* `pdm.models.v1`: every alias move is recorded once in the alias history (`change_id` =
  the event id); a champion move of a failure-*/rul-* model builds that version's reference
  profile (once) and runs its baseline check (trigger `champion`).
* `pdm.maintenance.events.v1` (`work_order.completed`) and `pdm.simulator.truth.v1`
  (`failure.failed`): outcome labels, one per event, in one transaction per batch; other
  event types are skipped by their `event_type` header without being decoded.
* `pdm.drift.commands.v1`: one command at a time, applied once per `command_id` (the answer
  is remembered with the change it made), answered on its `reply_to` after the commit; a
  malformed command is dead-lettered and answered `invalid`, an unknown model `not_found`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from prometheus_client import Counter

from pdm_common.db.pool import db_call
from pdm_common.delivery import (
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    Delivery,
    DependencyUnavailable,
    Failure,
    PermanentError,
    Publisher,
    decode_json,
)
from pdm_common.drift import DriftCommand, DriftCommandResult
from pdm_common.events import GroundTruth, ModelAliasMoved
from pdm_common.maintenance import WorkOrderEvent
from pdm_common.registry import CHAMPION, ModelNotFound, RegistryUnavailable
from pdm_common.request_reply import reply_outgoing, send_replies
from pdm_common.telemetry import REGISTRY
from pdm_drift import SERVICE
from pdm_drift.checker import Checker, NothingToCheck
from pdm_drift.commands import Malformed, decode_command, delivery_command_id, result
from pdm_drift.frames import CHECKED_TASKS, sensors_name, split_name
from pdm_drift.labels import Label, from_truth, from_work_order
from pdm_drift.lifecycle import Lifecycle, change_of
from pdm_drift.storage import DriftStore, Tx

log = structlog.get_logger(__name__)

LABELS = Counter(
    "pdm_drift_labels_total",
    "Outcome labels stored, by source and whether a failure was found.",
    ["source", "failure_found"],
    registry=REGISTRY,
)
COMMANDS = Counter(
    "pdm_drift_commands_total",
    "Drift commands answered, by action and status.",
    ["action", "status"],
    registry=REGISTRY,
)
ALIAS_MOVES = Counter(
    "pdm_drift_alias_moves_total",
    "Alias moves recorded in the history, by alias.",
    ["alias"],
    registry=REGISTRY,
)


class ModelsProcessor:
    """`delivery.BatchProcessor` for `pdm.models.v1`."""

    def __init__(self, store: DriftStore, checker: Checker) -> None:
        self.store = store
        self.checker = checker

    def decode(self, delivery: Delivery) -> ModelAliasMoved:
        return decode_json(delivery, ModelAliasMoved)

    async def process(self, items: Sequence[tuple[Delivery, ModelAliasMoved]]) -> list[Failure]:
        events = [e for _, e in items]

        async def record(tx: Tx) -> list[bool]:
            return [
                await tx.record_alias(
                    e.event_id,
                    change_of(e, e.source, _trigger(e), e.decision),
                )
                for e in events
            ]

        recorded = await db_call(self.store.run(record))
        baselined: set[tuple[str, str]] = set()
        for event, new in zip(events, recorded, strict=True):
            if new:
                ALIAS_MOVES.labels(event.alias).inc()
            key = (event.model_name, event.version)
            if (
                event.alias != CHAMPION
                or split_name(event.model_name)[0] not in CHECKED_TASKS
                or key in baselined
            ):
                continue
            baselined.add(key)
            # a redelivered move (recorded before) re-runs only a baseline that never finished
            if new or not await self.has_profile(*key):
                await self.baseline(event)
        return []

    async def has_profile(self, name: str, version: str) -> bool:
        async def find(tx: Tx) -> bool:
            return await tx.profile(name, version) is not None

        found: bool = await db_call(self.store.run(find))
        return found

    async def baseline(self, event: ModelAliasMoved) -> None:
        """The new champion's reference profile and baseline check (once per version: a
        redelivered event finds the profile and checks again, which is harmless)."""
        try:
            version = await self.checker.models.version(event.model_name, event.version)
            await self.checker.profile(version)
            await self.checker.check_model(event.model_name, "champion", version)
        except RegistryUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        except NothingToCheck as exc:
            log.info("baseline check skipped", model=event.model_name, reason=str(exc))
        except ModelNotFound as exc:
            log.warning("champion not in the registry", model=event.model_name, error=str(exc))
        except Exception as exc:  # e.g. a version without a reference sample: no profile
            log.warning(
                "baseline failed", model=event.model_name, version=event.version, error=repr(exc)
            )


def _trigger(event: ModelAliasMoved) -> str:
    """Why a move announced by someone else happened, as far as the event tells."""
    if event.source == SERVICE:
        return "drift"
    return "training" if event.decision and "candidate" in event.decision else "announced"


class LabelsProcessor:
    """`delivery.BatchProcessor` for `pdm.maintenance.events.v1` or `pdm.simulator.truth.v1`."""

    def __init__(
        self,
        store: DriftStore,
        model: type[WorkOrderEvent] | type[GroundTruth],
        event_types: tuple[str, ...],
        to_label: Callable[[Any], Label | None],
    ) -> None:
        self.store = store
        self.model = model
        self.event_types = event_types
        self.to_label = to_label

    def decode(self, delivery: Delivery) -> Any:
        kind = delivery.headers.get("event_type")
        if kind is not None and kind not in self.event_types:
            return None
        return decode_json(delivery, self.model)

    async def process(self, items: Sequence[tuple[Delivery, Any]]) -> list[Failure]:
        labels = [label for _, e in items if e is not None and (label := self.to_label(e))]
        if not labels:
            return []

        async def store(tx: Tx) -> list[bool]:
            return [
                await tx.store_label(
                    label.label_id,
                    asset_id=label.asset_id,
                    asset_type=label.asset_type,
                    source=label.source,
                    failure_found=label.failure_found,
                    failure_mode=label.failure_mode,
                    occurred_at=label.occurred_at,
                    ref=label.ref,
                )
                for label in labels
            ]

        stored = await db_call(self.store.run(store))
        for label, new in zip(labels, stored, strict=True):
            if new:
                LABELS.labels(label.source, str(label.failure_found).lower()).inc()
        return []


def work_order_labels(store: DriftStore) -> LabelsProcessor:
    return LabelsProcessor(store, WorkOrderEvent, ("work_order.completed",), from_work_order)


def truth_labels(store: DriftStore) -> LabelsProcessor:
    return LabelsProcessor(store, GroundTruth, ("failure.failed",), from_truth)


class CommandsProcessor:
    """`delivery.BatchProcessor` for `pdm.drift.commands.v1`."""

    def __init__(
        self,
        store: DriftStore,
        publisher: Publisher,
        checker: Checker,
        lifecycle: Lifecycle,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.checker = checker
        self.lifecycle = lifecycle

    def decode(self, delivery: Delivery) -> DriftCommand | Malformed:
        origin = delivery.origin_headers()
        default_id = delivery_command_id(
            origin[H_ORIGINAL_TOPIC], origin[H_ORIGINAL_PARTITION], origin[H_ORIGINAL_OFFSET]
        )
        return decode_command(delivery.value, default_id)

    async def process(
        self, items: Sequence[tuple[Delivery, DriftCommand | Malformed]]
    ) -> list[Failure]:
        failures: list[Failure] = []
        for delivery, command in items:
            if isinstance(command, Malformed):
                failures.append(
                    Failure(delivery, PermanentError(command.error, reason=command.reason))
                )
                answer = DriftCommandResult(
                    source=SERVICE,
                    command_id=command.command_id,
                    action=command.action,
                    status="invalid",
                    message=command.error,
                )
            else:
                answer = await self.answer(command)
                log.info(
                    "drift command",
                    action=command.action,
                    model=command.model_name,
                    actor=command.actor,
                    status=answer.status,
                    message=answer.message,
                    correlation_id=delivery.headers.get("correlation_id"),
                )
            # one at a time: a check or a retrain claim answers as soon as it is done
            reply = reply_outgoing(delivery, answer)
            await send_replies(self.publisher, [reply] if reply is not None else [])
            COMMANDS.labels(answer.action or "unknown", answer.status).inc()
        return failures

    async def answer(self, c: DriftCommand) -> DriftCommandResult:
        remembered = await db_call(self.store.run(lambda tx: tx.applied(c.command_id)))
        if remembered is not None:
            return DriftCommandResult.model_validate(remembered)
        try:
            return await db_call(self._dispatch(c))
        except RegistryUnavailable as exc:  # not remembered: the same command may retry
            return result(c, "unavailable", str(exc))

    @staticmethod
    async def _remember(tx: Tx, answer: DriftCommandResult) -> None:
        if answer.command_id is not None:
            await tx.remember(answer.command_id, answer.model_dump(mode="json"))

    async def _dispatch(self, c: DriftCommand) -> DriftCommandResult:
        if c.action == "check":
            return await self._check(c)
        assert c.model_name is not None  # commands.check
        if await self.checker.models.champion(c.model_name) is None and not await self._exists(
            c.model_name
        ):
            return result(c, "not_found", f"no registered model {c.model_name}")
        if c.action == "retrain":
            status, message, job_id = await self.lifecycle.request_retrain(
                c.model_name,
                "command",
                c.reason or f"retrain requested by {c.actor}",
                actor=c.actor,
                job_id=_uuid5(c, "retrain"),
                force=c.force,
                remember=self._remember,
                command=c,
            )
            answer = result(c, status, message, job_id=job_id)
            if status == "conflict":
                await self.store.run(lambda tx: self._remember(tx, answer))
            return answer
        if c.action == "promote":
            return await self.lifecycle.promote(c, self._remember)
        return await self.lifecycle.rollback(c, self._remember)

    async def _exists(self, name: str) -> bool:
        try:
            await self.checker.models.alias(name, CHAMPION)
        except ModelNotFound:
            return False
        return True

    async def _check(self, c: DriftCommand) -> DriftCommandResult:
        if c.model_name is None:
            reports = await self.checker.check_all("command")
            # everything: the live performance figures too (as the timed check does)
            try:
                figures = await self.checker.performance()
                live = f"; live performance of {len({r.model_name for r in figures})} models"
                judged = await self.lifecycle.judge_shadowed()
                live += "".join(f"; {j}" for j in judged)
            except Exception as exc:  # the reports stand without the figures
                log.warning("live performance or judgement failed", error=repr(exc))
                live = f"; live performance or judgement failed: {exc!r}"[:300]
            answer = result(
                c,
                "ok",
                f"{len(reports)} reports: "
                + (", ".join(r.model_name or "?" for r in reports) or "nothing to check")
                + live,
                reports=[r.report_id for r in reports],
            )
        else:
            name = c.model_name
            if await self.checker.models.champion(name) is None:
                if not await self._exists(name):
                    return result(c, "not_found", f"no registered model {name}")
                return result(c, "not_found", f"{name} has no champion to check")
            try:
                report = await self.checker.check_model(name, "command")
            except NothingToCheck as exc:
                return result(c, "conflict", str(exc))
            reports = [report]
            # its asset type's sensors too: what moved, in the units people read
            with contextlib.suppress(NothingToCheck):
                reports.append(await self.checker.check_sensors(split_name(name)[1], "command"))
            answer = result(
                c,
                "ok",
                "; ".join(
                    f"{r.model_name or sensors_name(r.asset_type or '?')}: weighted drifted "
                    f"share {r.weighted_share:.2f}" + (" (drift)" if r.drift_detected else "")
                    for r in reports
                ),
                reports=[r.report_id for r in reports],
            )
        await self.store.run(lambda tx: self._remember(tx, answer))
        return answer


def _uuid5(c: DriftCommand, what: str) -> uuid.UUID:
    return uuid.uuid5(c.command_id, what)
