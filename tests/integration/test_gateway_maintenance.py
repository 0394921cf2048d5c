"""The gateway's maintenance and reliability API on the real broker and PostgreSQL: the read
side over rows put straight into the scheduler's tables, and the commands answered by the
real scheduler service (request/reply): create, update, lifecycle moves with findings,
technicians, plans, windows, replan and what-if; bad input as problem documents; a repeated
Idempotency-Key that changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from .harness import ServiceProcess, make_key
from .test_gateway import bearer

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
SCHEDULER_TABLES = (
    "work_order_transitions, work_orders, technicians, maintenance_plans, production_windows, "
    "scheduler_assets, schedule, schedule_plans, maintenance_outbox, maintenance_commands_applied"
)
SHIFT = {"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00:00", "end": "00:00:00"}


@pytest.fixture
def scheduler_db(db_url: str) -> str:
    """`db_url` with the scheduler's tables emptied too (whether or not the catalog knows
    the scheduler yet)."""
    with psycopg.connect(db_url) as conn:
        conn.execute(f"TRUNCATE {SCHEDULER_TABLES} CASCADE")
        conn.execute("UPDATE scheduler_state SET dirty_since = NULL, reasons = '{}'")
    return db_url


def insert_order(conn: psycopg.Connection[Any], **fields: Any) -> uuid.UUID:
    row: dict[str, Any] = {
        "work_order_id": uuid.uuid4(),
        "asset_id": "pump-1",
        "asset_type": "pump",
        "type": "corrective",
        "status": "open",
        "source": "person",
        "title": "check",
        "skill": "pump",
        "estimated_hours": 2.0,
        "created_by": "test",
    } | fields
    if isinstance(row.get("findings"), dict):
        row["findings"] = Jsonb(row["findings"])
    columns = ", ".join(row)
    values = ", ".join(f"%({c})s" for c in row)
    conn.execute(f"INSERT INTO work_orders ({columns}) VALUES ({values})", row)
    work_order_id: uuid.UUID = row["work_order_id"]
    return work_order_id


def seed(db_url: str, now: datetime) -> dict[str, Any]:
    """Technicians, orders in every state (with transitions), a plan, windows, confirmed
    failures for the Weibull fit and the Pareto, predictive orders for the risk ranking."""
    ids: dict[str, Any] = {}
    with psycopg.connect(db_url) as conn:
        for tech, skills, cost in (("tech-a", ["pump"], 50.0), ("tech-b", ["motor"], 40.0)):
            conn.execute(
                "INSERT INTO technicians (technician_id, name, skills, shifts, hourly_cost, "
                "updated_by) VALUES (%s, %s, %s, %s, %s, 'test')",
                [tech, tech.upper(), skills, Jsonb([SHIFT]), cost],
            )
        conn.execute(
            "INSERT INTO maintenance_plans (plan_id, name, asset_type, interval_hours, skill, "
            "estimated_hours, updated_by) VALUES ('lube', 'Lubricate', 'pump', 720, 'pump', 1, "
            "'test')"
        )
        conn.execute(
            "INSERT INTO production_windows (asset_id, start_at, end_at) VALUES "
            "('pump-1', %s, %s), ('pump-1', %s, %s)",
            [now + timedelta(hours=30), now + timedelta(hours=34),
             now + timedelta(hours=6), now + timedelta(hours=8)],
        )  # fmt: skip
        ids["scheduled"] = insert_order(
            conn, status="scheduled", technician_id="tech-a",
            scheduled_start=now + timedelta(hours=6), scheduled_end=now + timedelta(hours=8),
            due_by=now + timedelta(hours=100), created_at=now - timedelta(hours=5),
        )  # fmt: skip
        ids["due"] = insert_order(
            conn, asset_id="motor-1", asset_type="motor", skill="motor", type="inspection",
            due_by=now + timedelta(hours=20), created_at=now - timedelta(hours=4),
        )  # fmt: skip
        ids["later"] = insert_order(
            conn, status="open", due_by=now + timedelta(days=30),
            created_at=now - timedelta(hours=3), source="plan", type="preventive",
        )  # fmt: skip
        predicted = (
            (3.0, "seal_leak", "open", 1.0), (2.5, "bearing_degradation", "scheduled", 1.5),
        )  # fmt: skip
        for hours, mode, status, age_h in predicted:
            ids[mode] = insert_order(
                conn, type="predictive", source="prediction", status=status, failure_mode=mode,
                asset_id="pump-2", failure_probability=0.4, failure_cost=20_000.0,
                downtime_cost_per_h=1000.0, estimated_hours=hours,
                created_at=now - timedelta(hours=age_h),
            )  # fmt: skip
        ids["pump3"] = insert_order(
            conn, type="predictive", source="prediction", failure_mode="seal_leak",
            asset_id="pump-3", failure_probability=0.02, failure_cost=500.0,
            created_at=now - timedelta(hours=2),
        )  # fmt: skip
        # confirmed failures: seal leaks on three pumps, one bearing; one order found nothing
        failures = [
            ("pump-1", 900, "seal_leak", 1200.0), ("pump-1", 700, "seal_leak", 800.0),
            ("pump-1", 450, "seal_leak", 900.0), ("pump-4", 800, "seal_leak", 1000.0),
            ("pump-4", 520, "seal_leak", 1100.0), ("pump-5", 600, "seal_leak", 950.0),
            ("pump-5", 300, "seal_leak", 700.0), ("pump-4", 100, "bearing_degradation", 9000.0),
        ]  # fmt: skip
        for asset, ago_h, mode, cost in failures:
            done = now - timedelta(hours=ago_h)
            insert_order(
                conn, asset_id=asset, status="completed", completed_at=done,
                created_at=done - timedelta(hours=10), failure_mode=mode,
                findings={"failure_found": True, "failure_mode": mode, "actual_cost": cost},
            )  # fmt: skip
        insert_order(
            conn, asset_id="pump-5", status="completed", completed_at=now - timedelta(hours=50),
            created_at=now - timedelta(hours=1000), findings={"failure_found": False},
        )  # fmt: skip
        for from_status, to_status, ago in ((None, "open", 5), ("open", "scheduled", 4)):
            conn.execute(
                "INSERT INTO work_order_transitions (work_order_id, from_status, to_status, "
                "actor, reason, at) VALUES (%s, %s, %s, 'scheduler', %s, %s)",
                [ids["scheduled"], from_status, to_status, f"to {to_status}",
                 now - timedelta(hours=ago)],
            )  # fmt: skip
    return ids


def seed_plan(db_url: str, now: datetime, ids: dict[str, Any]) -> int:
    anchor = now.replace(minute=0, second=0, microsecond=0)
    summary = {
        "created_at": now.isoformat(), "anchor": anchor.isoformat(), "horizon_h": 168,
        "trigger": "test", "method": "cp-sat", "solver_status": "OPTIMAL", "objective": 123,
        "wall_time_s": 0.5, "expected_failure_cost": 42.0, "risk_removed": 7.0,
        "scheduled": 3, "unschedulable": 1, "late": 0, "moves": [],
    }  # fmt: skip
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO schedule_plans (anchor, horizon_h, trigger, summary) "
            "VALUES (%s, 168, 'test', %s) RETURNING plan_id",
            [anchor, Jsonb(summary)],
        ).fetchone()
        assert row is not None
        plan_id: int = row[0]
        placed = [
            (ids["scheduled"], "pump-1", "scheduled", "tech-a", 6),
            (ids["due"], "motor-1", "scheduled", "tech-b", 2),
            (ids["seal_leak"], "pump-2", "scheduled", "tech-a", 1),
            (ids["later"], "pump-1", "unschedulable", None, None),
        ]
        for wo, asset, status, tech, start_h in placed:
            start = anchor + timedelta(hours=start_h) if start_h is not None else None
            conn.execute(
                "INSERT INTO schedule (plan_id, work_order_id, asset_id, status, technician_id, "
                "start_at, end_at, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [plan_id, wo, asset, status, tech, start,
                 start + timedelta(hours=2) if start else None,
                 None if start else "no_window"],
            )  # fmt: skip
    return plan_id


async def test_maintenance_reads(scheduler_db, start_service):  # type: ignore[no-untyped-def]
    reader = make_key(scheduler_db, "read")
    gateway = start_service("gateway", PDM_GATEWAY_KEY_CACHE_S="0")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", timeout=30, headers=bearer(reader)
    ) as http:
        # --- nothing yet: empty lists, a 404 schedule, 409 for too little history ----------
        assert (await http.get("/v1/work-orders")).json() == {"items": [], "next_cursor": None}
        none = await http.get("/v1/schedule")
        assert none.status_code == 404 and none.headers["content-type"] == PROBLEM
        assert "no schedule yet" in none.json()["detail"]
        pareto = await http.get("/v1/reliability/pareto")
        assert pareto.status_code == 409 and pareto.json()["type"].endswith("insufficient-data")
        no_life = await http.get(
            "/v1/reliability/weibull", params={"asset_type": "pump", "failure_mode": "seal_leak"}
        )
        assert no_life.status_code == 409 and no_life.headers["content-type"] == PROBLEM

        now = datetime.now(UTC)
        ids = await asyncio.to_thread(seed, scheduler_db, now)

        # --- work orders: filters, keyset pages, one order with its moves ------------------
        active = await http.get("/v1/work-orders", params={"status": ["open", "scheduled"]})
        assert active.status_code == 200
        newest_first = [w["work_order_id"] for w in active.json()["items"]]
        assert newest_first[:3] == [str(ids["seal_leak"]), str(ids["bearing_degradation"]),
                                    str(ids["pump3"])]  # fmt: skip
        assert len(newest_first) == 6
        page1 = (await http.get("/v1/work-orders", params={"limit": 5})).json()
        page2 = (
            await http.get("/v1/work-orders", params={"limit": 5, "cursor": page1["next_cursor"]})
        ).json()
        page3 = (
            await http.get("/v1/work-orders", params={"limit": 5, "cursor": page2["next_cursor"]})
        ).json()
        everything = [w["work_order_id"] for p in (page1, page2, page3) for w in p["items"]]
        assert len(everything) == len(set(everything)) == 15 and page3["next_cursor"] is None
        by_tech = (await http.get("/v1/work-orders", params={"technician_id": "tech-a"})).json()
        assert [w["work_order_id"] for w in by_tech["items"]] == [str(ids["scheduled"])]
        assert by_tech["items"][0]["labour_cost_estimate"] == 100.0  # 2 h x tech-a's 50
        due_soon = await http.get(
            "/v1/work-orders",
            params={"due_before": (now + timedelta(days=2)).isoformat(), "type": "inspection"},
        )
        assert [w["asset_id"] for w in due_soon.json()["items"]] == ["motor-1"]
        plan_made = (await http.get("/v1/work-orders", params={"source": "plan"})).json()
        assert [w["type"] for w in plan_made["items"]] == ["preventive"]
        detail = (await http.get(f"/v1/work-orders/{ids['scheduled']}")).json()
        assert detail["status"] == "scheduled" and detail["technician_id"] == "tech-a"
        assert [(t["from_status"], t["to_status"]) for t in detail["transitions"]] == [
            (None, "open"), ("open", "scheduled"),
        ]  # fmt: skip
        unknown = await http.get(f"/v1/work-orders/{uuid.uuid4()}")
        assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
        bad_status = await http.get("/v1/work-orders", params={"status": "done"})
        assert bad_status.status_code == 422 and bad_status.headers["content-type"] == PROBLEM
        naive = await http.get("/v1/work-orders", params={"due_before": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and "UTC offset" in naive.json()["detail"]
        assert (await http.get("/v1/work-orders", params={"cursor": "%%"})).status_code == 400

        # --- upcoming: scheduled within the hours, or due within them ----------------------
        soon = (await http.get("/v1/maintenance/upcoming", params={"hours": 24})).json()
        assert {w["work_order_id"] for w in soon["items"]} == {str(ids["scheduled"]),
                                                              str(ids["due"])}  # fmt: skip
        assert soon["hours"] == 24
        assert (await http.get("/v1/maintenance/upcoming", params={"hours": 0})).status_code == 422

        # --- technicians, plans, windows ---------------------------------------------------
        techs = (await http.get("/v1/technicians")).json()
        assert [t["technician_id"] for t in techs] == ["tech-a", "tech-b"]
        assert techs[0]["shifts"] == [SHIFT] and techs[0]["skills"] == ["pump"]
        assert (await http.get("/v1/technicians/tech-b")).json()["hourly_cost"] == 40.0
        assert (await http.get("/v1/technicians/nobody")).status_code == 404
        plans = (await http.get("/v1/maintenance/plans")).json()
        assert plans[0]["plan_id"] == "lube" and plans[0]["asset_type"] == "pump"
        assert (await http.get("/v1/maintenance/plans/none")).status_code == 404
        windows = (await http.get("/v1/assets/pump-1/production-windows")).json()
        starts = [datetime.fromisoformat(w["start"]) for w in windows["windows"]]
        assert starts == [now + timedelta(hours=6), now + timedelta(hours=30)]
        assert (await http.get("/v1/assets/pump-9/production-windows")).json()["windows"] == []

        # --- the current plan, as it is and as Gantt lanes ---------------------------------
        plan_id = await asyncio.to_thread(seed_plan, scheduler_db, now, ids)
        plan = (await http.get("/v1/schedule")).json()
        assert plan["plan_id"] == plan_id and plan["solver_status"] == "OPTIMAL"
        assert plan["view"] == "plan" and len(plan["orders"]) == 4 and plan["lanes"] == []
        assert plan["orders"][-1]["status"] == "unschedulable"
        lanes = (await http.get("/v1/schedule", params={"view": "technician"})).json()
        assert [(lane["key"], len(lane["orders"])) for lane in lanes["lanes"]] == [
            ("tech-a", 2), ("tech-b", 1),
        ]  # fmt: skip
        assert lanes["lanes"][0]["busy_h"] == 4.0
        assert [o["work_order_id"] for o in lanes["orders"]] == [str(ids["later"])]
        assets = (await http.get("/v1/schedule", params={"view": "asset"})).json()
        assert [lane["key"] for lane in assets["lanes"]] == ["motor-1", "pump-1", "pump-2"]
        assert (await http.get("/v1/schedule", params={"view": "x"})).status_code == 422

        # --- reliability over the history --------------------------------------------------
        fit = await http.get(
            "/v1/reliability/weibull",
            params={"asset_type": "pump", "failure_mode": "seal_leak"},
        )
        assert fit.status_code == 200, fit.text
        body = fit.json()
        # intervals that start at a known failure: 200, 250 (pump-1), 280 (pump-4), 300
        # (pump-5) failed; since the last one: 450, 520, 300 running (censored)
        assert body["n_failures"] == 4 and body["n_censored"] == 3 and body["assets"] == 3
        assert body["b10"] < body["eta"] and body["unit"] == "hours"
        bearing = await http.get(
            "/v1/reliability/weibull",
            params={"asset_type": "pump", "failure_mode": "bearing_degradation"},
        )
        assert bearing.status_code == 409  # one failure: not enough for two parameters
        assert "at least 2 failures" in bearing.json()["detail"]
        missing = await http.get("/v1/reliability/weibull", params={"asset_type": "pump"})
        assert missing.status_code == 422
        pareto = (await http.get("/v1/reliability/pareto")).json()
        assert [(i["key"], i["value"]) for i in pareto["items"]] == [
            ("seal_leak", 7.0), ("bearing_degradation", 1.0),
        ]  # fmt: skip
        assert pareto["vital_few"] == ["seal_leak"]
        by_cost = (await http.get("/v1/reliability/pareto", params={"by": "cost"})).json()
        assert by_cost["items"][0] == {
            "key": "bearing_degradation", "value": 9000.0, "share": 9000.0 / 15650.0,
            "cumulative_share": 9000.0 / 15650.0, "vital_few": True,
        }  # fmt: skip
        ranking = (await http.get("/v1/reliability/risk")).json()
        top = ranking["items"][0]
        assert top["asset_id"] == "pump-2" and abs(top["probability"] - 0.64) < 1e-9
        assert top["failure_modes"] == ["bearing_degradation", "seal_leak"]
        assert abs(top["risk"] - (0.4 * 23_000 + 0.4 * 22_500)) < 1e-6
        assert top["level"] == "high"  # almost certain (64 %) x moderate (28 438)
        assert [i["asset_id"] for i in ranking["items"]] == ["pump-2", "pump-3"]
        assert ranking["items"][1]["level"] == "low"


async def command(http: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """The first command may meet the scheduler before its consumer joined the group (504 on
    the short timeout); retried with the same Idempotency-Key, it is the same command."""
    headers = kw.pop("headers", {}) | {"Idempotency-Key": kw.pop("key", str(uuid.uuid4()))}
    for _ in range(6):
        answer = await http.request(method, url, headers=headers, **kw)
        if answer.status_code != 504:
            return answer
    return answer


async def test_maintenance_commands_with_the_scheduler(
    scheduler_db: str, start_service: Callable[..., ServiceProcess]
) -> None:
    writer = make_key(scheduler_db, "read,write")
    reader = make_key(scheduler_db, "read")
    start_service("scheduler")
    gateway = start_service(
        "gateway", PDM_GATEWAY_KEY_CACHE_S="0", PDM_GATEWAY_REPLY_TIMEOUT_S="10"
    )
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", timeout=60, headers=bearer(writer)
    ) as http:
        # --- technicians first, so the order can be planned -------------------------------
        tech = {"name": "Ana", "skills": ["pump"], "shifts": [SHIFT], "hourly_cost": 50.0}
        made = await command(http, "PUT", "/v1/technicians/tech-a", json=tech)
        assert made.status_code == 201, made.text
        assert made.json() == tech | {"technician_id": "tech-a", "active": True}
        replaced = await command(
            http, "PUT", "/v1/technicians/tech-a", json=tech | {"hourly_cost": 60.0}
        )
        assert replaced.status_code == 200 and replaced.json()["hourly_cost"] == 60.0
        listed = (await http.get("/v1/technicians")).json()
        assert [(t["technician_id"], t["hourly_cost"]) for t in listed] == [("tech-a", 60.0)]
        denied = await http.put("/v1/technicians/tech-b", json=tech, headers=bearer(reader))
        assert denied.status_code == 403

        # --- create: 201, and a repeat with the same key changes nothing -------------------
        order = {
            "asset_id": "pump-1", "asset_type": "pump", "type": "corrective",
            "title": "Seal leaks at the drive end", "skill": "pump", "estimated_hours": 2,
            "priority": 2,
        }  # fmt: skip
        created = await command(http, "POST", "/v1/work-orders", json=order, key="create-1")
        assert created.status_code == 201, created.text
        wo = created.json()
        assert wo["status"] in ("open", "scheduled") and wo["source"] == "person"
        assert wo["created_by"] == "t-read,write"
        again = await command(http, "POST", "/v1/work-orders", json=order, key="create-1")
        assert again.status_code == 201
        assert again.json()["work_order_id"] == wo["work_order_id"]
        await asyncio.sleep(1.0)
        assert (
            await asyncio.to_thread(
                count_rows_in, scheduler_db, "work_orders", "asset_id = 'pump-1'"
            )
            == 1
        )
        clash = await http.post(
            "/v1/work-orders", json=order | {"title": "other"},
            headers={"Idempotency-Key": "create-1"},
        )  # fmt: skip
        assert clash.status_code == 422 and clash.headers["content-type"] == PROBLEM

        # --- bad input: refused as problems, nothing sent ----------------------------------
        no_title = await http.post("/v1/work-orders", json={"asset_id": "p", "type": "corrective"})
        assert no_title.status_code == 422 and no_title.headers["content-type"] == PROBLEM
        assert no_title.json()["errors"][0]["loc"] == ["body", "title"]
        bad_type = await http.post("/v1/work-orders", json=order | {"type": "magic"})
        assert bad_type.status_code == 422
        url = f"/v1/work-orders/{wo['work_order_id']}"
        no_findings = await http.post(f"{url}/transitions", json={"action": "complete"})
        assert no_findings.status_code == 422 and "findings" in no_findings.json()["detail"]

        # --- lifecycle: an impossible move is 409, then start, hold, resume, complete ------
        findings = {
            "failure_found": True, "failure_mode": "seal_leak", "cause": "worn seal",
            "remedy": "replaced the seal", "actual_hours": 1.5, "actual_cost": 300.0,
        }  # fmt: skip
        early = await command(
            http, "POST", f"{url}/transitions", json={"action": "complete", "findings": findings}
        )
        assert early.status_code == 409 and early.headers["content-type"] == PROBLEM
        patched = await command(http, "PATCH", url, json={"priority": 3})
        assert patched.status_code == 200 and patched.json()["priority"] == 3
        for action, status in (("start", "in_progress"), ("hold", "on_hold"),
                               ("resume", "open"), ("start", "in_progress")):  # fmt: skip
            move = {"action": action, "reason": "test"}
            if action == "start":
                move["technician_id"] = "tech-a"
            moved = await command(http, "POST", f"{url}/transitions", json=move)
            assert moved.status_code == 200, (action, moved.text)
            assert moved.json()["status"] == status
        done = await command(
            http, "POST", f"{url}/transitions", json={"action": "complete", "findings": findings},
            key="complete-1",
        )  # fmt: skip
        assert done.status_code == 200 and done.json()["status"] == "completed"
        assert done.json()["findings"]["failure_mode"] == "seal_leak"
        repeat = await command(
            http, "POST", f"{url}/transitions", json={"action": "complete", "findings": findings},
            key="complete-1",
        )  # fmt: skip
        assert repeat.status_code == 200 and repeat.json() == done.json()
        cancel = await command(
            http, "POST", f"{url}/transitions", json={"action": "cancel", "reason": "late"}
        )
        assert cancel.status_code == 409  # completed is final
        detail = (await http.get(url)).json()
        assert [t["to_status"] for t in detail["transitions"]][-5:] == [
            "in_progress", "on_hold", "open", "in_progress", "completed",
        ]  # fmt: skip
        assert detail["transitions"][-1]["actor"] == "t-read,write"
        nowhere = await command(
            http, "POST", f"/v1/work-orders/{uuid.uuid4()}/transitions", json={"action": "start"}
        )
        assert nowhere.status_code == 404 and nowhere.headers["content-type"] == PROBLEM
        assert (await command(http, "PATCH", f"/v1/work-orders/{uuid.uuid4()}",
                              json={"priority": 1})).status_code == 404  # fmt: skip

        # --- plans and windows ---------------------------------------------------------------
        plan = {"name": "Lubricate", "asset_type": "pump", "interval_hours": 720, "skill": "pump"}
        put_plan = await command(http, "PUT", "/v1/maintenance/plans/lube", json=plan)
        assert put_plan.status_code == 201, put_plan.text
        assert put_plan.json()["plan_id"] == "lube"
        assert [p["plan_id"] for p in (await http.get("/v1/maintenance/plans")).json()] == ["lube"]
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
        windows = {"windows": [{"start": start.isoformat(),
                                "end": (start + timedelta(hours=4)).isoformat()}]}  # fmt: skip
        put_windows = await command(
            http, "PUT", "/v1/assets/pump-2/production-windows", json=windows
        )
        assert put_windows.status_code == 200, put_windows.text
        stored = (await http.get("/v1/assets/pump-2/production-windows")).json()["windows"]
        assert [datetime.fromisoformat(w["start"]) for w in stored] == [start]

        # --- an open order to plan; what-if commits nothing; replan publishes --------------
        second = await command(http, "POST", "/v1/work-orders", json=order | {"asset_id": "pump-2"})
        assert second.status_code == 201, second.text
        plans_before = await asyncio.to_thread(count_rows_in, scheduler_db, "schedule_plans")
        what_if = await command(
            http, "POST", "/v1/schedule/what-if", json={"horizon_h": 48, "time_limit_s": 5}
        )
        assert what_if.status_code == 200, what_if.text
        assert what_if.json()["plan_id"] is None and what_if.json()["horizon_h"] == 48
        assert (
            await asyncio.to_thread(count_rows_in, scheduler_db, "schedule_plans") == plans_before
        )
        bad_what_if = await http.post("/v1/schedule/what-if", json={"horizon_h": 0})
        assert bad_what_if.status_code == 422
        replanned = await command(http, "POST", "/v1/schedule/replan", json={"reason": "test"})
        assert replanned.status_code in (200, 202), replanned.text
        for _ in range(60):
            current = await http.get("/v1/schedule", params={"view": "technician"})
            if current.status_code == 200:
                break
            await asyncio.sleep(0.5)
        assert current.status_code == 200, current.text
        lanes = current.json()["lanes"]
        assert all(lane["key"] == "tech-a" for lane in lanes)

        # --- removals --------------------------------------------------------------------------
        gone = await command(http, "DELETE", "/v1/maintenance/plans/lube")
        assert gone.status_code == 200 and gone.json() == {"plan_id": "lube", "status": "removed"}
        assert (await http.get("/v1/maintenance/plans")).json() == []
        fired = await command(http, "DELETE", "/v1/technicians/tech-a")
        assert fired.status_code == 200
        twice = await command(http, "DELETE", "/v1/technicians/nobody")
        assert twice.status_code == 404
    with psycopg.connect(scheduler_db) as conn:
        audit = conn.execute(
            "SELECT count(*) FROM audit_log WHERE path LIKE '/v1/work-orders%'"
        ).fetchone()
    assert audit is not None and audit[0] >= 10


def count_rows_in(db_url: str, table: str, where: str = "TRUE") -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
    return int(row[0]) if row else 0
