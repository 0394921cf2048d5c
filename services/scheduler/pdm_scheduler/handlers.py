"""Batch processors of the scheduler.

Predictions and alarms: a batch is applied in one transaction (work orders, their
transitions, their events in the outbox, the re-plan request); a redelivered batch changes
nothing (see `workflow`). Events other than `prediction.made` / `alarm.opened|escalated` are
skipped by their `event_type` header without being decoded. Commands: one transaction each,
applied once per `command_id`, answered on their `reply_to` after the commit; a malformed
command is dead-lettered and answered `invalid`.
"""

from __future__ import annotations

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
    Failure,
    PermanentError,
    Publisher,
    decode_json,
)
from pdm_common.events import AlarmEvent, Prediction
from pdm_common.maintenance import MaintenanceCommand, MaintenanceCommandResult
from pdm_common.request_reply import reply_outgoing, send_replies
from pdm_common.telemetry import REGISTRY
from pdm_scheduler import SERVICE
from pdm_scheduler.commands import Malformed, decode_command, delivery_command_id
from pdm_scheduler.planner import Planner
from pdm_scheduler.settings import SchedulerSettings
from pdm_scheduler.storage import SchedulerStore, Tx
from pdm_scheduler.workflow import (
    create_order,
    on_alarm,
    on_prediction,
    result,
    transition_order,
    update_order,
)

log = structlog.get_logger(__name__)

INPUTS = Counter(
    "pdm_scheduler_inputs_total",
    "Predictions and alarms the scheduler applied, by kind and what they did.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
COMMANDS = Counter(
    "pdm_scheduler_commands_total",
    "Maintenance commands answered, by action and status.",
    ["action", "status"],
    registry=REGISTRY,
)


class _EventsProcessor:
    """Shared shape of the predictions and alarms processors."""

    kind = ""
    event_types: tuple[str, ...] = ()

    def __init__(
        self, store: SchedulerStore, settings: SchedulerSettings, wake: Callable[[], None]
    ):
        self.store = store
        self.settings = settings
        self.wake = wake  # the outbox relay: events were queued

    def skip(self, delivery: Delivery) -> bool:
        kind = delivery.headers.get("event_type")
        return kind is not None and kind not in self.event_types

    async def apply(self, tx: Tx, event: Any) -> str:
        raise NotImplementedError

    async def process(self, items: Sequence[tuple[Delivery, Any]]) -> list[Failure]:
        events = [e for _, e in items if e is not None]
        if not events:
            return []
        outcomes = await db_call(self._apply_all(events))
        for outcome in outcomes:
            INPUTS.labels(self.kind, outcome.split(":")[0]).inc()
        self.wake()
        return []

    async def _apply_all(self, events: Sequence[Any]) -> list[str]:
        async with self.store.connection() as conn, conn.transaction():
            tx = Tx(conn)
            return [await self.apply(tx, e) for e in events]


class PredictionsProcessor(_EventsProcessor):
    """`delivery.BatchProcessor` for `pdm.predictions.v1`."""

    kind = "prediction"
    event_types = ("prediction.made",)

    def decode(self, delivery: Delivery) -> Prediction | None:
        return None if self.skip(delivery) else decode_json(delivery, Prediction)

    async def apply(self, tx: Tx, event: Prediction) -> str:
        outcome = await on_prediction(tx, event, self.settings)
        if outcome in ("opened", "cancelled", "updated"):
            log.info("predictive order", asset_id=event.asset_id, outcome=outcome)
        return outcome


class AlarmsProcessor(_EventsProcessor):
    """`delivery.BatchProcessor` for `pdm.anomalies.v1`."""

    kind = "alarm"
    event_types = ("alarm.opened", "alarm.escalated")

    def decode(self, delivery: Delivery) -> AlarmEvent | None:
        return None if self.skip(delivery) else decode_json(delivery, AlarmEvent)

    async def apply(self, tx: Tx, event: AlarmEvent) -> str:
        outcome = await on_alarm(tx, event, self.settings)
        if outcome == "opened":
            log.info("inspection opened", asset_id=event.asset_id, alarm_id=str(event.alarm_id))
        return outcome


class CommandsProcessor:
    """`delivery.BatchProcessor` for `pdm.maintenance.commands.v1`."""

    def __init__(
        self,
        store: SchedulerStore,
        publisher: Publisher,
        planner: Planner,
        settings: SchedulerSettings,
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.planner = planner
        self.settings = settings
        self.wake = wake

    def decode(self, delivery: Delivery) -> MaintenanceCommand | Malformed:
        origin = delivery.origin_headers()
        default_id = delivery_command_id(
            origin[H_ORIGINAL_TOPIC], origin[H_ORIGINAL_PARTITION], origin[H_ORIGINAL_OFFSET]
        )
        return decode_command(delivery.value, default_id)

    async def process(
        self, items: Sequence[tuple[Delivery, MaintenanceCommand | Malformed]]
    ) -> list[Failure]:
        failures: list[Failure] = []
        answers: list[tuple[Delivery, MaintenanceCommandResult]] = []
        for delivery, command in items:
            if isinstance(command, Malformed):
                failures.append(
                    Failure(delivery, PermanentError(command.error, reason=command.reason))
                )
                answer = MaintenanceCommandResult(
                    source=SERVICE,
                    command_id=command.command_id,
                    action=command.action,
                    status="invalid",
                    message=command.error,
                )
            else:
                try:
                    answer = await self.answer(command)
                except PermanentError as exc:  # this command alone, e.g. a NUL in a string
                    failures.append(Failure(delivery, exc))
                    answer = result(command, "invalid", str(exc))
                log.info(
                    "maintenance command",
                    action=command.action,
                    actor=command.actor,
                    status=answer.status,
                    correlation_id=delivery.headers.get("correlation_id"),
                )
            answers.append((delivery, answer))
        self.wake()
        await send_replies(
            self.publisher, [r for d, a in answers if (r := reply_outgoing(d, a)) is not None]
        )
        for _, answer in answers:
            COMMANDS.labels(answer.action or "unknown", answer.status).inc()
        return failures

    async def answer(self, c: MaintenanceCommand) -> MaintenanceCommandResult:
        if c.action == "what_if":
            try:
                summary = await db_call(self.planner.what_if(c.what_if))
            except ValueError as exc:  # constraints the optimiser refuses: answered, not retried
                raise PermanentError(f"what-if refused: {exc}", reason="invalid") from exc
            return result(c, "ok", schedule=summary)
        return await db_call(self._apply(c))

    async def _apply(self, c: MaintenanceCommand) -> MaintenanceCommandResult:
        async with self.store.connection() as conn, conn.transaction():
            tx = Tx(conn)
            remembered = await tx.applied(c.command_id)
            if remembered is not None:
                return MaintenanceCommandResult.model_validate(remembered)
            answer = await self._dispatch(tx, c)
            if answer.status != "invalid":
                await tx.remember(c.command_id, answer.model_dump(mode="json"))
            return answer

    async def _dispatch(self, tx: Tx, c: MaintenanceCommand) -> MaintenanceCommandResult:
        a = c.action
        if a == "create":
            return await create_order(tx, c, self.settings)
        if a == "update":
            return await update_order(tx, c)
        if a in ("start", "hold", "resume", "complete", "cancel"):
            return await transition_order(tx, c)
        if a == "technician.upsert":
            assert c.technician is not None
            status = await tx.upsert_technician(c.technician, c.actor)
            await tx.request_replan("technicians")
            return result(c, status, technician=c.technician)
        if a == "technician.remove":
            assert c.technician_id is not None
            if not await tx.remove_technician(c.technician_id):
                return result(c, "not_found", f"no technician {c.technician_id}")
            await tx.request_replan("technicians")
            return result(c, "ok")
        if a == "plan.upsert":
            assert c.plan is not None
            status = await tx.upsert_plan(c.plan, c.actor)
            self.planner.plans_due()
            return result(c, status, plan=c.plan)
        if a == "plan.remove":
            assert c.plan_id is not None
            if not await tx.remove_plan(c.plan_id):
                return result(c, "not_found", f"no plan {c.plan_id}")
            return result(c, "ok")
        if a == "windows.set":
            assert c.asset_id is not None and c.windows is not None
            await tx.set_windows(c.asset_id, c.windows)
            await tx.request_replan("production windows")
            return result(c, "updated", message=f"{len(c.windows)} windows of {c.asset_id}")
        if a == "replan":
            await tx.request_replan("command", now=True)
            self.planner.poke()
            return result(c, "ok", message="a new plan is being made")
        return result(c, "invalid", f"action {a!r} is not handled")  # pragma: no cover
