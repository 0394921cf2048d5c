"""Scheduler service benchmark: predictions to work orders to stored plans, through the real
service (`python -m pdm_scheduler`) on a fresh broker and PostgreSQL.

Seeds `--technicians` technicians by `technician.upsert` commands (1-2 of mechanical /
electrical / machining; two shifts each, 40 h a week: three days 06-14 h and two days 14-22 h,
or the reverse, 5 days on and 2 off, staggered), then measures:

1. a burst of `--orders` at-risk predictions, one per asset (pumps, motors, compressors,
   milling machines; failure modes across the three skills; RUL p10 4-200 h, p50 1.5-2.5 x
   p10, p90 1.3-1.8 x p50, within the 14-day horizon): the time until all N work orders exist
   (orders/s, from the first publish), the time from the last publish until a stored plan
   covers all N orders (`schedule` rows of the newest plan), and that plan's figures
   (`schedule_plans.summary`);
2. the same N predictions published again (duplicates): how long the service takes to consume
   them (its `pdm_scheduler_inputs_total` counter) and that nothing changes (work orders,
   plans, outbox, re-plan requests);
3. the in-process ceiling: `pdm_scheduler.planning.make_plan` on the same inputs read back
   from the database (same `now`, same previous plan, same solver limit), timed in this
   process while the service is idle; service plan wall time / in-process wall time;
4. one urgent prediction (RUL p10 2 h): the time from its publish until its order is
   `scheduled` in a stored plan (includes the re-plan debounce, `--debounce`);
5. the service process's peak RSS and CPU seconds (per phase), and the warnings and errors in
   its log.

    .venv/bin/python bench/scheduler_service.py                # 500 orders, 50 technicians
    .venv/bin/python bench/scheduler_service.py --quick        # 100 orders
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from psycopg.rows import dict_row

import benchkit
from pdm_common import topics
from pdm_common.events import Prediction
from pdm_common.maintenance import MaintenanceCommandResult, PlannedOrder
from pdm_common.request_reply import ReplyClient

HEADERS = [("event_type", b"prediction.made"), ("content-type", b"application/json")]
SKILLS = ("mechanical", "electrical", "machining")
#: asset type -> failure modes its predictions name (skills: see SchedulerSettings.mode_skills)
MODES = {
    "pump": ("bearing_degradation", "seal_leak"),
    "motor": ("motor_overheating", "bearing_degradation"),
    "compressor": ("seal_leak", "bearing_degradation", "motor_overheating"),
    "milling": ("tool_wear", "TWF", "HDF", "PWF", "OSF"),
}
TYPES = tuple(MODES)
INPUTS_METRIC = 'pdm_scheduler_inputs_total{kind="prediction"'


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def technician(i: int, rng: random.Random) -> dict[str, Any]:
    primary = SKILLS[(0, 0, 1, 1, 2)[i % 5]]  # 2/5 mechanical, 2/5 electrical, 1/5 machining
    extra = [s for s in SKILLS if s != primary and rng.random() < 0.25]
    off = i % 7  # first of the two days off, staggered
    on = [(off + 2 + k) % 7 for k in range(5)]
    early, late = {"start": "06:00", "end": "14:00"}, {"start": "14:00", "end": "22:00"}
    first, second = (early, late) if i % 2 == 0 else (late, early)
    return {
        "technician_id": f"T{i:03d}",
        "name": f"Technician {i:03d}",
        "skills": [primary, *extra],
        "shifts": [{"days": sorted(on[:3])} | first, {"days": sorted(on[3:])} | second],
        "hourly_cost": float(rng.randrange(40, 85, 5)),
    }


def prediction(
    asset: str, asset_type: str, rng: random.Random, as_of: datetime, p10: float | None = None
) -> dict[str, Any]:
    modes = MODES[asset_type]
    top = rng.choice(modes)
    share = round(rng.uniform(0.5, 0.9), 2)
    others = [m for m in modes if m != top]
    failure_modes = {top: share} | (
        {others[0]: round(1 - share, 2)} if others else {}
    )  # the top mode is the order's
    p10 = round(rng.uniform(4, 200), 1) if p10 is None else p10
    p50 = round(min(p10 * rng.uniform(1.5, 2.5), 300.0), 1)
    p90 = round(min(p50 * rng.uniform(1.3, 1.8), 330.0), 1)
    probability = round(rng.uniform(0.55, 0.97), 3)
    return Prediction(
        source="prediction",
        trigger="periodic",
        asset_id=asset,
        asset_type=asset_type,
        as_of=as_of,
        failure_probability=probability,
        failure_predicted=True,
        decision_threshold=0.5,
        failure_modes=failure_modes,
        rul_p10=p10,
        rul_p50=max(p10, p50),
        rul_p90=max(p10, p50, p90),
        rul_unit="hours",
        health_score=round(100 * (1 - probability), 1),
        health_formula="bench",
        confidence=0.9,
    ).model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# Broker and database helpers
# --------------------------------------------------------------------------------------------


async def _publish(bootstrap: str, events: list[dict[str, Any]]) -> tuple[float, float]:
    """Publish as the prediction service does (keyed by asset, acks=all); returns the
    perf_counter of the first send and of the last acknowledgement."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        first = time.perf_counter()
        futures = [
            await producer.send(
                topics.PREDICTIONS,
                json.dumps(e, separators=(",", ":")).encode(),
                key=e["asset_id"].encode(),
                headers=HEADERS,
            )
            for e in events
        ]
        await asyncio.gather(*futures)
        return first, time.perf_counter()
    finally:
        await producer.stop()


def publish(bootstrap: str, events: list[dict[str, Any]]) -> tuple[float, float]:
    return asyncio.run(_publish(bootstrap, events))


async def _seed(bootstrap: str, techs: list[dict[str, Any]]) -> dict[str, Any]:
    """Upsert the technicians by command; the first call waits for the consumer group."""
    async with ReplyClient(bootstrap) as client:

        async def ask(body: dict[str, Any], timeout_s: float) -> str:
            [reply], _ = await client.call(
                topics.MAINTENANCE_COMMANDS, body, key=body["technician"]["technician_id"],
                timeout_s=timeout_s,
            )  # fmt: skip
            return MaintenanceCommandResult.model_validate_json(reply).status

        bodies = [{"action": "technician.upsert", "actor": "bench", "technician": t} for t in techs]
        statuses = [await ask(bodies[0], 120)]
        first_answered = time.perf_counter()
        statuses += await asyncio.gather(*(ask(b, 60) for b in bodies[1:]))
        rest_s = time.perf_counter() - first_answered
    answers: dict[str, int] = {}
    for s in statuses:
        answers[s] = answers.get(s, 0) + 1
    return {"answers": answers, "first_answered": first_answered, "rest_s": round(rest_s, 3)}


class Db:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return row

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return next(iter(self.one(sql, params).values()))

    def newest_plan(self) -> dict[str, Any] | None:
        return self.conn.execute(
            "SELECT p.plan_id, p.created_at, p.trigger, p.summary, "
            "(SELECT count(*) FROM schedule s WHERE s.plan_id = p.plan_id) AS rows "
            "FROM schedule_plans p ORDER BY p.plan_id DESC LIMIT 1"
        ).fetchone()

    def counts(self) -> dict[str, Any]:
        return self.one(
            "SELECT (SELECT count(*) FROM work_orders) AS work_orders, "
            "(SELECT count(*) FROM work_order_transitions) AS transitions, "
            "(SELECT coalesce(max(plan_id), 0) FROM schedule_plans) AS newest_plan, "
            "(SELECT count(*) FROM maintenance_outbox) AS outbox, "
            "(SELECT dirty_since IS NOT NULL FROM scheduler_state) AS replan_requested"
        )


class Stuck(Exception):
    """A wait ran out (or the service exited): what was awaited, for how long, and why."""


def poll(cond, timeout: float, what: str, proc, every: float = 0.05) -> Any:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while True:
        result = cond()
        if result:
            return result
        waited = time.monotonic() - started
        if proc.poll() is not None:
            raise Stuck(f"the service exited ({proc.returncode}) after {waited:.0f} s of {what}")
        if waited > timeout:
            raise Stuck(f"gave up waiting for {what} after {waited:.0f} s")
        time.sleep(every)


def ready(port: int) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"null")
    except OSError as exc:
        return repr(exc)


def plan_figures(summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "trigger", "method", "solver_status", "objective", "best_bound", "gap", "wall_time_s",
        "scheduled", "unschedulable", "late", "expected_failure_cost", "risk_removed",
    )  # fmt: skip
    out = {k: summary.get(k) for k in keys}
    out["moves"] = len(summary.get("moves") or [])
    return out


def plans_since(db: Db, after: int) -> list[dict[str, Any]]:
    return [
        {"plan_id": r["plan_id"], "orders": r["rows"]}
        | {k: r["summary"].get(k) for k in ("trigger", "method", "solver_status", "wall_time_s")}
        for r in db.all(
            "SELECT p.plan_id, p.summary, "
            "(SELECT count(*) FROM schedule s WHERE s.plan_id = p.plan_id) AS rows "
            "FROM schedule_plans p WHERE p.plan_id > %s ORDER BY p.plan_id",
            (after,),
        )
    ]


# --------------------------------------------------------------------------------------------
# In-process ceiling
# --------------------------------------------------------------------------------------------


async def _read_inputs(url: str, previous_plan: int | None) -> tuple[Any, Any, Any, list[Any]]:
    from psycopg_pool import AsyncConnectionPool

    from pdm_scheduler.storage import SchedulerStore

    pool = AsyncConnectionPool(url, min_size=1, max_size=2, open=False)
    await pool.open()
    try:
        store = SchedulerStore(pool)
        orders, technicians, windows = await store.planning_inputs()
        previous: list[PlannedOrder] = []
        if previous_plan is not None:
            async with pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    "SELECT work_order_id, asset_id, status, technician_id, start_at AS start, "
                    "end_at AS end, due_by, lateness_h, bound_by, expected_failure_cost, "
                    "risk_removed, frozen, reason, detail FROM schedule WHERE plan_id = %s",
                    (previous_plan,),
                )
                previous = [PlannedOrder.model_validate(r) for r in await cur.fetchall()]
    finally:
        await pool.close()
    return orders, technicians, windows, previous


def in_process(db: Db, url: str, plan: dict[str, Any], time_limit_s: float) -> dict[str, Any]:
    """`make_plan` on the inputs of the service's plan `plan`: its orders as read back now
    (open and scheduled are planned alike), its `now`, the plan before it as warm start."""
    import pdm_scheduling as opt
    from pdm_scheduler.planning import Inputs, make_plan
    from pdm_scheduler.settings import SchedulerSettings

    settings = SchedulerSettings()
    before = db.value(
        "SELECT max(plan_id) AS id FROM schedule_plans WHERE plan_id < %s", (plan["plan_id"],)
    )
    orders, technicians, windows, previous = asyncio.run(_read_inputs(url, before))
    summary = plan["summary"]
    trigger = str(summary["trigger"])
    full = trigger in ("timer", "first plan")
    inputs = Inputs(
        now=datetime.fromisoformat(summary["created_at"]),
        orders=orders,
        technicians=technicians,
        windows=windows,
        horizon_h=settings.horizon_h,
        frozen_horizon_h=settings.frozen_horizon_h,
        budget_per_week=settings.budget_per_week,
        lateness_cost_per_h=settings.lateness_cost_per_h,
    )
    params = opt.SolverParams(time_limit_s=time_limit_s)
    started = time.perf_counter()
    result, violations, _ = make_plan(inputs, previous, params, trigger=trigger, full=full)
    seconds = time.perf_counter() - started
    figures = plan_figures(result.model_dump(mode="json"))
    return {
        "orders": len(result.orders),
        "warm_start_orders": sum(1 for p in previous if p.status == "scheduled"),
        "full": full,
        "make_plan_s": round(seconds, 3),
        "valid": not violations,
        **figures,
    }


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def log_problems(path: Path) -> dict[str, Any]:
    levels: dict[str, int] = {}
    lines: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            level = str(record.get("level", "")).lower()
        except (json.JSONDecodeError, AttributeError):
            level = "traceback" if "Traceback" in line or "Error" in line else ""
        if level in ("warning", "error", "critical", "exception", "traceback"):
            levels[level] = levels.get(level, 0) + 1
            if len(lines) < 20:
                lines.append(line[:400])
    return {"by_level": levels, "first": lines}


def run(
    args: argparse.Namespace, stack: benchkit.Stack, proc: Any, port: int, started: float
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    db = Db(stack.database_url)
    cpu: dict[str, float] = {}
    out: dict[str, Any] = {}

    def mark(phase: str) -> None:
        cpu[phase] = round(benchkit.cpu_seconds(proc.pid) - sum(cpu.values()), 2)

    def consumed() -> float:
        return benchkit.metric(benchkit.scrape(port), INPUTS_METRIC)

    # -- 0. technicians, and a warm consumer -------------------------------------------------
    techs = [technician(i, rng) for i in range(args.technicians)]
    seeded = asyncio.run(_seed(stack.bootstrap, techs))
    statuses = seeded["answers"]
    out["technicians"] = {
        "count": args.technicians,
        "answers": statuses,
        "first_answer_after_start_s": round(seeded["first_answered"] - started, 2),
        "other_upserts_s": seeded["rest_s"],
    }
    healthy = prediction("warmup-0", "pump", rng, datetime.now(UTC)) | {
        "failure_probability": 0.01,
        "failure_predicted": False,
        "rul_p10": 900.0,
        "rul_p50": 1000.0,
        "rul_p90": 1100.0,
    }
    publish(stack.bootstrap, [healthy])
    poll(lambda: consumed() >= 1, 120, "the predictions consumer", proc)
    poll(
        lambda: (p := db.newest_plan()) is not None and not db.counts()["replan_requested"] and p,
        60,
        "a quiet planner",
        proc,
    )
    mark("start_and_seed")
    print(f"seeded {args.technicians} technicians: {statuses}", flush=True)

    # -- 1. a burst of N at-risk predictions -------------------------------------------------
    n = args.orders
    as_of = datetime.now(UTC).replace(microsecond=0)
    events = [prediction(f"asset-{i:05d}", TYPES[i % len(TYPES)], rng, as_of) for i in range(n)]
    before = db.counts()
    first, last = publish(stack.bootstrap, events)

    def orders_count() -> int:
        return int(db.value("SELECT count(*) FROM work_orders WHERE type = 'predictive'"))

    poll(lambda: orders_count() >= n, 300, f"{n} work orders", proc)
    orders_at = time.perf_counter()
    progress = {"next": time.monotonic() + 15}

    def covering_plan() -> dict[str, Any] | None:
        plan = db.newest_plan()
        if plan is not None and plan["rows"] >= n:
            return plan
        if time.monotonic() > progress["next"]:  # a slow plan: say what the service is doing
            progress["next"] += 15
            newest = None if plan is None else (plan["plan_id"], plan["rows"], plan["trigger"])
            print(f"  waiting: newest plan {newest}, {db.counts()}, /ready {ready(port)}")
        return None

    covering = poll(
        covering_plan,
        120 + 6 * args.solver_time_limit,
        f"a plan of {n} orders",
        proc,
    )
    plan_at = time.perf_counter()
    mark("burst")
    out["burst"] = {
        "orders": n,
        "publish_s": round(last - first, 3),
        "orders_exist_s": round(orders_at - first, 3),
        "orders_per_s": round(n / (orders_at - first)),
        "plan_after_last_publish_s": round(plan_at - last, 2),
        "work_orders": orders_count(),
        "plan_id": covering["plan_id"],
        "plan": plan_figures(covering["summary"]),
        "plans_made": plans_since(db, before["newest_plan"]),
    }
    print(f"burst: {json.dumps(out['burst'])}", flush=True)

    # -- 2. the same N predictions again -----------------------------------------------------
    time.sleep(args.debounce + 1.5)  # let the planner settle (a plan may follow the covering one)
    before = db.counts()
    seen = consumed()
    first, last = publish(stack.bootstrap, events)
    poll(lambda: consumed() >= seen + n, 300, "the duplicates consumed", proc)
    done_at = time.perf_counter()
    time.sleep(args.debounce + 2.0)  # a re-plan, if one were requested, would have started
    after = db.counts()
    text = benchkit.scrape(port)
    out["duplicates"] = {
        "published": n,
        "consumed_s": round(done_at - first, 3),
        "per_s": round(n / (done_at - first)),
        "unchanged_outcomes": benchkit.metric(
            text, 'pdm_scheduler_inputs_total{kind="prediction",outcome="unchanged"}'
        ),
        "before": before,
        "after": after,
        "nothing_changed": before == after,
    }
    mark("duplicates")
    print(f"duplicates: {json.dumps(out['duplicates'], default=str)}", flush=True)

    # -- 3. the in-process ceiling, while the service is idle ----------------------------------
    ceiling = in_process(db, stack.database_url, covering, args.solver_time_limit)
    service_wall = covering["summary"].get("wall_time_s")
    out["in_process"] = ceiling | {
        "service_wall_over_in_process": round(service_wall / ceiling["wall_time_s"], 2)
        if service_wall and ceiling["wall_time_s"]
        else None
    }
    mark("in_process_idle")
    print(f"in process: {json.dumps(out['in_process'])}", flush=True)

    # -- 4. one urgent prediction ---------------------------------------------------------------
    before_plan = db.counts()["newest_plan"]
    urgent = prediction("urgent-00001", "pump", rng, datetime.now(UTC), p10=2.0)
    urgent["failure_modes"] = {"bearing_degradation": 0.9, "seal_leak": 0.1}
    urgent["rul_p50"], urgent["rul_p90"] = 6.0, 12.0
    first, last = publish(stack.bootstrap, [urgent])
    order = poll(
        lambda: db.all(
            "SELECT work_order_id, due_by, priority FROM work_orders WHERE asset_id = %s",
            ("urgent-00001",),
        ),
        60,
        "the urgent order",
        proc,
        every=0.02,
    )[0]
    order_at = time.perf_counter()

    def placed() -> dict[str, Any] | None:
        row = db.conn.execute(
            "SELECT s.status, s.technician_id, s.start_at, s.due_by, s.lateness_h, s.reason, "
            "p.plan_id, p.summary FROM schedule s JOIN schedule_plans p USING (plan_id) "
            "WHERE p.plan_id = (SELECT max(plan_id) FROM schedule_plans) AND s.work_order_id = %s",
            (order["work_order_id"],),
        ).fetchone()
        return row

    slot = poll(placed, 120 + 3 * args.solver_time_limit, "the urgent order planned", proc, 0.02)
    slot_at = time.perf_counter()
    mark("urgent")
    out["urgent"] = {
        "debounce_s": args.debounce,
        "order_exists_s": round(order_at - last, 3),
        "planned_s": round(slot_at - last, 3),
        "status": slot["status"],
        "reason": slot["reason"],
        "technician": slot["technician_id"],
        "start": slot["start_at"].isoformat() if slot["start_at"] else None,
        "due_by": slot["due_by"].isoformat() if slot["due_by"] else None,
        "lateness_h": slot["lateness_h"],
        "plan_id": slot["plan_id"],
        "plan": plan_figures(slot["summary"]),
        "plans_made": plans_since(db, before_plan),
    }
    print(f"urgent: {json.dumps(out['urgent'], default=str)}", flush=True)

    metrics = benchkit.scrape(port)
    out["service"] = {
        "peak_rss_mib": benchkit.peak_rss_mib(proc.pid),
        "cpu_s": round(benchkit.cpu_seconds(proc.pid), 2),
        "cpu_s_by_phase": cpu,
        "plans_stored": benchkit.metric(metrics, 'pdm_scheduler_plans_total{outcome="stored"}'),
        "plan_errors": benchkit.metric(metrics, 'pdm_scheduler_plans_total{outcome="error"}'),
        "plans_refused": benchkit.metric(metrics, 'pdm_scheduler_plans_total{outcome="refused"}'),
        "plan_seconds_sum": round(benchkit.metric(metrics, "pdm_scheduler_plan_seconds_sum"), 2),
    }
    db.conn.close()
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def table(r: dict[str, Any]) -> None:
    b, d, c, u, s = r["burst"], r["duplicates"], r["in_process"], r["urgent"], r["service"]
    p = b["plan"]
    rows = [
        ("service start to first command answered", f"{r['technicians']['first_answer_after_start_s']} s"),
        ("technicians seeded (commands)", f"{r['technicians']['count']}, {r['technicians']['other_upserts_s']} s after the first"),
        ("burst: orders", b["orders"]),
        ("  all work orders exist after", f"{b['orders_exist_s']} s ({b['orders_per_s']} orders/s)"),
        ("  plan covering all, after last publish", f"{b['plan_after_last_publish_s']} s"),
        ("  plans made meanwhile", len(b["plans_made"])),
        ("  plan: trigger / method / status", f"{p['trigger']} / {p['method']} / {p['solver_status']}"),
        ("  plan: objective / gap", f"{p['objective']} / {_pct(p['gap'])}"),
        ("  plan: solver wall time", f"{p['wall_time_s']} s"),
        ("  plan: scheduled / unschedulable / late", f"{p['scheduled']} / {p['unschedulable']} / {p['late']}"),
        ("in process: make_plan", f"{c['make_plan_s']} s (wall_time_s {c['wall_time_s']})"),
        ("  in process: status / objective / gap", f"{c['solver_status']} / {c['objective']} / {_pct(c['gap'])}"),
        ("  service / in-process wall time", c["service_wall_over_in_process"]),
        ("duplicates consumed in", f"{d['consumed_s']} s ({d['per_s']}/s)"),
        ("  nothing changed", d["nothing_changed"]),
        ("urgent order (p10 2 h): planned after", f"{u['planned_s']} s (debounce {u['debounce_s']} s)"),
        ("  its status / lateness", f"{u['status']} / {u['lateness_h']} h"),
        ("  plan: trigger / method / wall / moves", f"{u['plan']['trigger']} / {u['plan']['method']} / {u['plan']['wall_time_s']} s / {u['plan']['moves']}"),
        ("service peak RSS", f"{s['peak_rss_mib']} MiB"),
        ("service CPU", f"{s['cpu_s']} s {s['cpu_s_by_phase']}"),
    ]  # fmt: skip
    for label, value in rows:
        print(f"{label:42s} {value}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--orders", type=int, default=500, help="assets predicted at risk")
    ap.add_argument("--technicians", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="100 orders")
    ap.add_argument("--debounce", type=float, default=0.5, help="PDM_SCHEDULER_REPLAN_DEBOUNCE_S")
    ap.add_argument(
        "--solver-time-limit", type=float, default=10.0, help="PDM_SCHEDULER_SOLVER_TIME_LIMIT_S"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep-log", metavar="PATH", help="copy the service's log here")
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.orders = 100

    env = {
        "PDM_LOG_FORMAT": "json",
        "PDM_SCHEDULER_REPLAN_DEBOUNCE_S": str(args.debounce),
        "PDM_SCHEDULER_SOLVER_TIME_LIMIT_S": str(args.solver_time_limit),
    }
    with benchkit.fresh_stack("scheduler-service") as stack:
        load_before = os.getloadavg()
        started = time.perf_counter()
        failure = None
        with benchkit.service(stack, "scheduler", env) as (proc, port):
            try:
                figures = run(args, stack, proc, port, started)
            except Stuck as exc:
                figures = {"failure": str(exc), "ready": ready(port)}
                with contextlib.suppress(Exception):
                    db = Db(stack.database_url)
                    figures |= {"counts": db.counts(), "plans": plans_since(db, 0)}
                if proc.poll() is None:
                    figures["peak_rss_mib"] = benchkit.peak_rss_mib(proc.pid)
                failure = exc
        log = stack.state / "scheduler.log"
        figures["service_log"] = log_problems(log)
        if args.keep_log:
            Path(args.keep_log).write_bytes(log.read_bytes())
        if failure is not None:
            print(json.dumps(figures, indent=2, default=str))
            tail = [
                line[:600]
                for line in log.read_text(errors="replace").splitlines()
                if "aiokafka" not in line and '"predictive order"' not in line
            ][-25:]
            print("service log, last lines:", *tail, sep="\n")
            raise SystemExit(str(failure))

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": benchkit.machine(),
        "command": "python bench/scheduler_service.py " + " ".join(sys.argv[1:]),
        "settings": env,
        "load_average_1m": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        **figures,
    }
    print(json.dumps(result, indent=2, default=str))
    table(result)
    if figures["service_log"]["by_level"]:
        print("service log:", json.dumps(figures["service_log"], indent=2))
    previous = benchkit.save(
        "scheduler_service",
        json.loads(json.dumps(result, default=str)),
        as_baseline=args.save_baseline,
    )
    if previous:
        print("baseline:", benchkit.BASELINES / "scheduler_service.json")
        for key in ("burst", "urgent"):
            print(f"  {key}: now {result.get(key)}  baseline {previous.get(key)}")


if __name__ == "__main__":
    main()
