"""The scheduler on the real broker and PostgreSQL: predictions and alarms become work orders
(once, whatever the duplicates and the order of arrival), the optimiser plans them with a
qualified technician before the deadline, commands move them through their life, bad
commands are dead-lettered, and a kill -9 or a database outage loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pdm_common.events import AlarmEvent, Prediction
from pdm_common.maintenance import MaintenanceCommandResult
from pdm_common.request_reply import ReplyClient
from pdm_tools.dlq_cli import list_dead_letters

from .harness import publish, read_topic

pytestmark = pytest.mark.integration
COMMANDS = "pdm.maintenance.commands.v1"
EVENTS = "pdm.maintenance.events.v1"
FAST = {
    "PDM_SCHEDULER_REPLAN_DEBOUNCE_S": "0.5",
    "PDM_SCHEDULER_SOLVER_TIME_LIMIT_S": "2",
    "PDM_SCHEDULER_OUTBOX_INTERVAL_S": "0.5",
    "PDM_SCHEDULER_REOPEN_GRACE_S": "0",
    "PDM_SCHEDULER_HEALTHY_CANCEL_AFTER_H": "0.001",  # 3.6 s
}
ALL_DAY = [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "00:00"}]


def prediction(asset: str, *, at_risk: bool, as_of: datetime, rul_p10: float = 6.0) -> dict:
    p = Prediction(
        source="prediction",
        asset_id=asset,
        asset_type="pump",
        as_of=as_of,
        failure_probability=0.9 if at_risk else 0.02,
        failure_predicted=at_risk,
        decision_threshold=0.5,
        failure_modes={"bearing_degradation": 0.8, "seal_leak": 0.2} if at_risk else {},
        rul_p10=rul_p10 if at_risk else 70.0,
        rul_p50=rul_p10 * 2 if at_risk else 72.0,
        rul_p90=rul_p10 * 4 if at_risk else 72.0,
        rul_unit="hours",
        health_score=20 if at_risk else 95,
        health_formula="test",
        confidence=1.0,
    )
    return p.model_dump(mode="json")


def rows(db_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(db_url, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def wait_until(check, what: str, service, timeout: float = 60) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except psycopg.OperationalError:
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; scheduler log:\n{service.tail()}")


class Client:
    def __init__(self, replies: ReplyClient, service) -> None:  # type: ignore[no-untyped-def]
        self.replies = replies
        self.service = service

    async def ask(self, body: dict, timeout_s: float = 20) -> MaintenanceCommandResult:
        try:
            [reply], _ = await self.replies.call(COMMANDS, body, timeout_s=timeout_s)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; scheduler log:\n{self.service.tail()}") from None
        return MaintenanceCommandResult.model_validate_json(reply)

    async def crew(self) -> None:
        for tid, skills in (("tech-mech", ["mechanical"]), ("tech-elec", ["electrical"])):
            body = {
                "action": "technician.upsert",
                "actor": "planner",
                "technician": {
                    "technician_id": tid,
                    "name": tid,
                    "skills": skills,
                    "shifts": ALL_DAY,
                    "hourly_cost": 60,
                },
            }
            answer = await self.ask(body, timeout_s=60)  # the first call waits for the group
            assert answer.status in ("created", "updated"), answer


async def maintenance_events(kafka: str) -> list[dict]:
    return [json.loads(r.value) for r in await read_topic(kafka, EVENTS, idle_ms=1000)]


async def eventually(check, what: str, service, timeout: float = 60) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; scheduler log:\n{service.tail()}")


async def test_predictions_alarms_commands_and_plans(kafka, db_url, start_service):
    scheduler = start_service("scheduler", **FAST)
    async with ReplyClient(kafka) as replies:
        client = Client(replies, scheduler)
        await client.crew()
        now = datetime.now(UTC)
        at_risk = prediction("pump-001", at_risk=True, as_of=now)
        older = prediction("pump-001", at_risk=True, as_of=now - timedelta(minutes=5), rul_p10=1)
        headers = {"event_type": "prediction.made"}
        # a duplicate and an older prediction delivered late: still one order, from the newest
        await publish(
            kafka,
            [at_risk, at_risk, prediction("pump-002", at_risk=False, as_of=now)],
            topic="pdm.predictions.v1",
            headers=headers,
        )
        await publish(kafka, [older], topic="pdm.predictions.v1", headers=headers)

        def scheduled() -> list[tuple]:
            return rows(
                db_url,
                "SELECT work_order_id, status, technician_id, scheduled_start, due_by, skill, "
                "failure_mode FROM work_orders WHERE asset_id = 'pump-001'",
            )

        found = wait_until(
            lambda: (r := scheduled()) and r[0][1] == "scheduled" and r,
            "a scheduled order",
            scheduler,
        )
        assert len(found) == 1, found
        order_id, _, tech, start, due, skill, mode = found[0]
        assert (tech, skill, mode) == ("tech-mech", "mechanical", "bearing_degradation")
        assert start <= due, (start, due)  # placed before the RUL p10 deadline
        assert due == now + timedelta(hours=6)  # from the newest prediction, not the late one
        assert rows(db_url, "SELECT count(*) FROM work_orders WHERE asset_id = 'pump-002'") == [
            (0,)
        ]  # the healthy pump gets no order

        # a critical alarm opens one inspection; its duplicate nothing more
        alarm = AlarmEvent(
            event_type="alarm.opened",
            source="anomaly",
            alarm_id=uuid.uuid4(),
            asset_id="pump-003",
            asset_type="pump",
            condition="vibration:limit",
            severity="critical",
            detector="limit",
            score=9.0,
            threshold=7.1,
            opened_at=now,
        ).model_dump(mode="json")
        await publish(
            kafka, [alarm, alarm], topic="pdm.anomalies.v1", headers={"event_type": "alarm.opened"}
        )
        inspections = wait_until(
            lambda: rows(
                db_url,
                "SELECT type, priority FROM work_orders WHERE asset_id = 'pump-003'",
            ),
            "an inspection",
            scheduler,
        )
        assert inspections == [("inspection", 3)]

        # lifecycle through commands
        complete = {
            "action": "complete",
            "actor": "tech-mech",
            "work_order_id": str(order_id),
            "findings": {
                "failure_found": True,
                "failure_mode": "bearing_degradation",
                "cause": "lubrication starved",
                "remedy": "bearing replaced",
                "actual_hours": 3.5,
                "actual_cost": 950,
                "root_cause": {
                    "problem": "bearing worn",
                    "whys": ["grease dried", "relubrication interval too long"],
                    "root_cause": "PM interval not adapted to duty",
                },
            },
        }
        too_early = await client.ask(complete | {"command_id": str(uuid.uuid4())})
        assert too_early.status == "conflict", too_early  # scheduled -> completed is not allowed
        started = await client.ask(
            {"action": "start", "actor": "tech-mech", "work_order_id": str(order_id)}
        )
        assert started.status == "ok" and started.work_order is not None
        assert started.work_order.status == "in_progress"
        no_findings = await client.ask(
            {"action": "complete", "actor": "tech-mech", "work_order_id": str(order_id)}
        )
        assert no_findings.status == "invalid" and "findings" in (no_findings.message or "")
        command_id = str(uuid.uuid4())
        done = await client.ask(complete | {"command_id": command_id})
        assert done.status == "ok" and done.work_order and done.work_order.status == "completed"
        again = await client.ask(complete | {"command_id": command_id})  # a redelivery
        assert again == done
        transitions = rows(
            db_url,
            "SELECT from_status, to_status, actor FROM work_order_transitions "
            "WHERE work_order_id = %s ORDER BY id",
            (order_id,),
        )
        assert transitions == [
            (None, "open", "scheduler"),
            ("open", "scheduled", "scheduler"),
            ("scheduled", "in_progress", "tech-mech"),
            ("in_progress", "completed", "tech-mech"),
        ]
        missing = await client.ask(
            {"action": "cancel", "actor": "x", "reason": "dup", "work_order_id": str(uuid.uuid4())}
        )
        assert missing.status == "not_found"

        # a what-if with no budget commits nothing and places nothing that costs money
        what_if = await client.ask(
            {"action": "what_if", "actor": "planner", "what_if": {"budget_per_week": 0}}
        )
        assert what_if.status == "ok" and what_if.schedule is not None
        assert what_if.schedule.scheduled == 0 and what_if.schedule.unschedulable >= 1
        assert {o.reason for o in what_if.schedule.orders} == {"over_budget"}
        # (a timer or command replan may store plans meanwhile: only the what-if's must not be)
        assert rows(db_url, "SELECT count(*) FROM schedule_plans WHERE trigger = 'what-if'") == [
            (0,)
        ]

        # predicted healthy for long enough: an order not started is cancelled
        await publish(
            kafka,
            [prediction("pump-004", at_risk=True, as_of=now)],
            topic="pdm.predictions.v1",
            headers=headers,
        )
        wait_until(
            lambda: rows(db_url, "SELECT 1 FROM work_orders WHERE asset_id = 'pump-004'"),
            "pump-004's order",
            scheduler,
        )
        healthy = [
            prediction("pump-004", at_risk=False, as_of=now + timedelta(seconds=s)) for s in (1, 10)
        ]
        await publish(kafka, healthy, topic="pdm.predictions.v1", headers=headers)
        cancelled = wait_until(
            lambda: rows(
                db_url,
                "SELECT cancelled_reason FROM work_orders WHERE asset_id = 'pump-004' "
                "AND status = 'cancelled'",
            ),
            "pump-004's order cancelled",
            scheduler,
        )
        assert "predicted healthy since" in cancelled[0][0]

    # poison commands: dead-lettered with the reason, nothing applied
    await publish(kafka, [b"{not json", {"action": "explode", "actor": "x"}], topic=COMMANDS)

    async def dead_letters() -> list | None:
        letters = await list_dead_letters(kafka, COMMANDS)
        return letters if len(letters) >= 3 else None

    letters = await eventually(dead_letters, "dead letters", scheduler)
    reasons = sorted(d.reason for d in letters)
    assert reasons.count("undecodable") == 1 and reasons.count("invalid") == 2, reasons

    # the events: each change once, in the outbox order, the completion with its findings
    async def all_events() -> list[dict] | None:
        found = await maintenance_events(kafka)
        return found if any(x["event_type"] == "work_order.cancelled" for x in found) else None

    events = await eventually(all_events, "the maintenance events", scheduler)
    kinds = [
        e["event_type"] for e in events if e.get("work_order", {}).get("asset_id") == "pump-001"
    ]
    assert kinds == [
        "work_order.created",
        "work_order.scheduled",
        "work_order.started",
        "work_order.completed",
    ]
    completed = next(e for e in events if e["event_type"] == "work_order.completed")
    assert completed["work_order"]["findings"]["failure_mode"] == "bearing_degradation"
    assert len({e["event_id"] for e in events}) == len(events)
    published = [e for e in events if e["event_type"] == "schedule.published"]
    assert any(p["schedule"]["orders"] for p in published)


@pytest.mark.slow
async def test_kill_and_database_outage_lose_and_duplicate_nothing(
    kafka, db_url, start_service, postgres
):
    scheduler = start_service("scheduler", **FAST)
    async with ReplyClient(kafka) as replies:
        await Client(replies, scheduler).crew()
    now = datetime.now(UTC)
    headers = {"event_type": "prediction.made"}
    first = [prediction(f"asset-{i:03d}", at_risk=True, as_of=now) for i in range(150)]
    await publish(kafka, first, topic="pdm.predictions.v1", headers=headers)

    def orders() -> int:
        return rows(db_url, "SELECT count(*) FROM work_orders")[0][0]

    wait_until(lambda: orders() >= 20, "some orders", scheduler)
    scheduler.kill()  # kill -9, mid-batch or mid-plan
    scheduler = start_service("scheduler", **FAST)
    await publish(kafka, first[:50], topic="pdm.predictions.v1", headers=headers)  # duplicates
    wait_until(lambda: orders() == 150, "150 orders after the restart", scheduler, timeout=90)

    postgres.stop()
    second = [prediction(f"asset-{i:03d}", at_risk=True, as_of=now) for i in range(150, 200)]
    await publish(kafka, second, topic="pdm.predictions.v1", headers=headers)
    await asyncio.sleep(8)
    postgres.start()
    wait_until(lambda: orders() == 200, "200 orders after the outage", scheduler, timeout=120)
    per_asset = rows(
        db_url, "SELECT asset_id, count(*) FROM work_orders GROUP BY 1 HAVING count(*) > 1"
    )
    assert per_asset == []
    wait_until(
        lambda: (
            rows(db_url, "SELECT count(*) FROM maintenance_outbox WHERE published_at IS NULL")[0][0]
            == 0
            and rows(
                db_url,
                "SELECT count(*) FROM schedule WHERE plan_id = (SELECT max(plan_id) FROM schedule_plans)",
            )[0][0]
            == 200
        ),
        "every event published and a plan of all 200 orders",
        scheduler,
        timeout=120,
    )
    created = {
        e["work_order"]["work_order_id"]
        for e in await maintenance_events(kafka)
        if e["event_type"] == "work_order.created"
    }
    assert len(created) == 200
