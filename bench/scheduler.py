"""Schedule optimiser benchmark (`pdm_scheduling`), in process, no services.

A deterministic instance (`--seed`): 50 technicians with 1-3 of 5 skills, in an early (6-14 h)
or a late (14-22 h) crew, 5 days on / 2 off, staggered; 14 days at hourly granularity (336 h);
200 assets, 25 % of them with production windows (80 % a daily changeover of 4-6 h, 20 % a
weekend stop); open
orders of 1-6 h (a few of 10 h, and a few needing a skill nobody has), 40 % with a due hour,
70 % with RUL quantiles; a weekly budget that binds in the first week; 20 orders frozen inside
the first 8 hours (the frozen horizon); a late hour costs 100,000 (times 1 + priority).

Measured:

1. the CP-SAT plan for `--orders` orders with `--time-limit` seconds of search: time from the
   problem to a plan that passes the validator (solve + validate), objective, bound, gap,
   expected failure cost, lateness, unscheduled; next to the earliest-deadline-first greedy
   baseline on the same instance;
2. inserting one urgent order (due in 12 h) into that plan with `replan` (neighbourhood);
3. the curve: the same for 100 / 500 / 1,000 / 2,000 orders;
4. peak memory: the process's max RSS (CP-SAT's C++ memory included), and Python's
   tracemalloc peak in a separate, second solve of the main instance (tracemalloc slows Python
   down, so the timed solve runs without it).

    .venv/bin/python bench/scheduler.py
    .venv/bin/python bench/scheduler.py --orders 500 --time-limit 5
    .venv/bin/python bench/scheduler.py --quick           # 200 orders, 2 s, no curve
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pdm_scheduling import (
    Budget,
    Order,
    Plan,
    Problem,
    SolverParams,
    Technician,
    Window,
    freeze_started,
    replan,
    schedule_edf,
    solve,
    validate,
)

SKILLS = ("mechanical", "electrical", "hydraulic", "instrumentation", "lubrication")
SKILL_WEIGHTS = (0.35, 0.25, 0.15, 0.15, 0.10)
HORIZON = 336
FROZEN_UNTIL = 8


def technicians(n: int, rng: random.Random) -> list[Technician]:
    out = []
    for i in range(n):
        primary = SKILLS[i % len(SKILLS)]
        extra = rng.sample([s for s in SKILLS if s != primary], k=rng.choice((0, 1, 1, 2)))
        early = i % 2 == 0
        off = i % 7  # first of the two days off, staggered
        shifts = []
        for day in range(HORIZON // 24):
            if (day - off) % 7 in (0, 1):
                continue
            start = day * 24 + (6 if early else 14)
            shifts.append((start, start + 8))
        out.append(
            Technician(
                id=f"T{i:03d}",
                skills=frozenset({primary, *extra}),
                shifts=tuple(shifts),
                hourly_cost=float(rng.randrange(40, 85, 5)),
            )
        )
    return out


def windows(n_assets: int, rng: random.Random) -> list[Window]:
    out = []
    for a in range(n_assets):
        if rng.random() >= 0.25:
            continue
        if rng.random() < 0.8:  # a daily changeover of 4-6 h during the day
            start = rng.randrange(8, 16)
            length = rng.randrange(4, 7)
            spans = tuple((d * 24 + start, d * 24 + start + length) for d in range(HORIZON // 24))
        else:  # weekend stops: Saturday 6 h to Sunday 22 h
            spans = tuple((w * 168 + 126, w * 168 + 166) for w in range(HORIZON // 168))
        out.append(Window(f"A{a:03d}", spans))
    return out


def order(i: int, rng: random.Random, n_assets: int) -> Order:
    skill = rng.choices(SKILLS, SKILL_WEIGHTS)[0]
    duration = rng.choices((1, 2, 3, 4, 5, 6), (20, 30, 20, 15, 10, 5))[0]
    if i % 97 == 13:
        skill = "welding-cert"  # nobody has it
    if i % 89 == 7:
        duration = 10  # longer than every shift
    p50 = rng.uniform(24, 600)
    quantiles = (
        {
            0.1: round(p50 * rng.uniform(0.3, 0.6), 1),
            0.5: round(p50, 1),
            0.9: round(p50 * rng.uniform(1.5, 2.5), 1),
        }
        if rng.random() < 0.7
        else None
    )
    due = rng.randrange(12, HORIZON) if rng.random() < 0.4 else None
    return Order(
        id=f"WO{i:05d}",
        asset_id=f"A{rng.randrange(n_assets):03d}",
        skill=skill,
        duration_h=duration,
        due_h=due,
        parts_cost=float(rng.randrange(50, 2000, 10)),
        failure_cost=float(round(rng.lognormvariate(9.5, 0.8), -1)),  # median ~13k
        rul_quantiles=quantiles,
        priority=rng.choices((0, 1, 2), (80, 15, 5))[0],
        downtime_cost_per_h=float(rng.randrange(0, 500, 25)),
    )


def instance(n_orders: int, seed: int = 7) -> Problem:
    rng = random.Random(seed)
    techs = technicians(50, rng)
    n_assets = 200
    wins = windows(n_assets, rng)
    orders = [order(i, rng, n_assets) for i in range(n_orders)]
    # 20 orders in progress or promised inside the frozen horizon: early-crew technicians
    # on shift at 6 h today
    on_shift = [t for t in techs if any(s == 6 for s, _ in t.shifts)]
    frozen = 0
    for idx, o in enumerate(orders):
        if frozen == min(20, n_orders // 10):
            break
        tech = on_shift[frozen % len(on_shift)]
        if (
            o.skill in tech.skills
            and o.duration_h <= 2
            and o.asset_id not in {w.asset_id for w in wins}
        ):
            start = 6 + 2 * (frozen // len(on_shift))
            orders[idx] = dataclasses.replace(o, frozen_start=start, frozen_technician=tech.id)
            frozen += 1
    spend = sum(o.parts_cost + 62.5 * o.duration_h for o in orders)
    weekly = round(0.6 * spend, -3)  # 60 % of all the work may start in one week: binds in week 1
    return Problem(
        horizon_h=HORIZON,
        technicians=tuple(techs),
        orders=tuple(orders),
        windows=tuple(wins),
        budgets=(Budget("default", 168, weekly),),
        frozen_until_h=FROZEN_UNTIL,
        lateness_cost_per_h=100_000.0,  # a late hour weighs like a large failure
    )


def urgent(problem: Problem) -> Problem:
    """The same problem with one urgent order: mechanical, 3 h, due in 12 h, costly failure."""
    extra = Order(
        id="URGENT",
        asset_id="A999",
        skill="mechanical",
        duration_h=3,
        due_h=FROZEN_UNTIL + 12,
        parts_cost=500.0,
        failure_cost=200_000.0,
        rul_quantiles={0.1: 6, 0.5: 20, 0.9: 48},
        priority=2,
        downtime_cost_per_h=300.0,
    )
    return dataclasses.replace(problem, orders=(*problem.orders, extra))


def summary(problem: Problem, plan: Plan, seconds: float) -> dict[str, object]:
    violations = validate(problem, plan)
    s = plan.stats
    return {
        "seconds_to_valid_plan": round(seconds, 2),
        "valid": not violations,
        "violations": violations[:5],
        "status": s.status,
        "objective": s.objective,
        "best_bound": None if s.best_bound is None else round(s.best_bound),
        "gap": None if s.gap is None else round(s.gap, 4),
        "solver_s": round(s.solver_time_s, 2),
        "expected_failure_cost": round(plan.expected_failure_cost),
        "risk_removed": round(plan.risk_removed),
        "late_orders": plan.late_orders,
        "lateness_h": plan.lateness_h,
        "unscheduled": len(plan.unschedulable),
        "unscheduled_by_reason": _reasons(plan),
        "objective_terms": breakdown(problem, plan),
        "repaired": s.repaired,
        "method": s.method,
        "notes": list(s.notes),
        "phases_s": dict(s.phases_s),
    }


def breakdown(problem: Problem, plan: Plan) -> dict[str, int]:
    """The plan's objective by term (see pdm_scheduling.costs)."""
    from pdm_scheduling.costs import labour, order_costs
    from pdm_scheduling.precheck import Reason

    costs = order_costs(problem)
    out = {"failure": 0, "labour": 0, "downtime": 0, "lateness": 0, "left_out_penalty": 0}
    orders = {o.id: o for o in problem.orders}
    for a in plan.assignments:
        oc = costs[a.order_id]
        if a.start_h is None or a.technician_id is None:
            if a.reason == Reason.NO_CAPACITY:
                out["left_out_penalty"] += oc.penalty
            continue
        tech = problem.technician(a.technician_id)
        assert tech is not None
        out["failure"] += oc.failure(a.start_h)
        out["labour"] += labour(orders[a.order_id], tech)
        out["downtime"] += oc.downtime
        out["lateness"] += oc.lateness(a.start_h)
    return out


def side_by_side(run: dict[str, object]) -> None:
    c, g = run["cp_sat"], run["edf_greedy"]
    assert isinstance(c, dict) and isinstance(g, dict)
    rows = [
        ("time to a valid plan, s", "seconds_to_valid_plan"),
        ("objective", "objective"),
        ("best bound", "best_bound"),
        ("gap", "gap"),
        ("expected failure cost", "expected_failure_cost"),
        ("late orders", "late_orders"),
        ("lateness, h", "lateness_h"),
        ("unscheduled", "unscheduled"),
    ]
    print(f"{'':28s}{'cp-sat':>16s}{'edf greedy':>16s}")
    for label, key in rows:
        print(f"{label:28s}{c[key]!s:>16s}{g[key]!s:>16s}")


def _reasons(plan: Plan) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in plan.unschedulable:
        out[str(a.reason)] = out.get(str(a.reason), 0) + 1
    return dict(sorted(out.items()))


def timed(problem: Problem, run) -> tuple[Plan, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    plan = run(problem)
    validate(problem, plan)
    return plan, time.perf_counter() - started


def measure(n_orders: int, params: SolverParams, seed: int) -> dict[str, object]:
    problem = instance(n_orders, seed)
    greedy, g_s = timed(problem, schedule_edf)
    cpsat, c_s = timed(problem, lambda p: solve(p, params))
    return {
        "orders": n_orders,
        "cp_sat": summary(problem, cpsat, c_s),
        "edf_greedy": summary(problem, greedy, g_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=8.0, help="CP-SAT search limit, s")
    ap.add_argument("--workers", type=int, default=1, help="CP-SAT num_workers")
    ap.add_argument("--strategy", default="auto", choices=("auto", "full", "lns"))
    ap.add_argument(
        "--replan-limit", type=float, default=0.5, help="CP-SAT limit of the insertion, s"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--curve", default="100,500,1000,2000", help="order counts ('' for none)")
    ap.add_argument("--quick", action="store_true", help="200 orders, 2 s, no curve")
    ap.add_argument("--save-baseline", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.orders, args.time_limit, args.curve = 200, 2.0, ""
    params = SolverParams(
        time_limit_s=args.time_limit, num_workers=args.workers, strategy=args.strategy
    )

    problem = instance(args.orders, args.seed)
    print(
        f"instance: {len(problem.orders)} orders, {len(problem.technicians)} technicians, {problem.horizon_h} h",
        flush=True,
    )
    greedy, g_s = timed(problem, schedule_edf)
    plan, c_s = timed(problem, lambda p: solve(p, params))
    main_run = {
        "orders": args.orders,
        "cp_sat": summary(problem, plan, c_s),
        "edf_greedy": summary(problem, greedy, g_s),
    }
    print(json.dumps(main_run, indent=2), flush=True)
    side_by_side(main_run)

    bigger = urgent(problem)
    started = time.perf_counter()
    inserted = replan(
        plan, bigger, SolverParams(time_limit_s=args.replan_limit, num_workers=args.workers)
    )
    insert_s = time.perf_counter() - started
    violations = validate(freeze_started(plan, bigger), inserted)
    slot = inserted.by_order()["URGENT"]
    from pdm_scheduling import diff

    moved = [m for m in diff(plan, inserted) if m.order_id != "URGENT"]
    insertion = {
        "seconds": round(insert_s, 3),
        "valid": not violations,
        "violations": violations[:5],
        "urgent": {
            "status": slot.status,
            "technician": slot.technician_id,
            "start_h": slot.start_h,
            "lateness_h": slot.lateness_h,
        },
        "orders_moved": len(moved),
        "status": inserted.stats.status,
        "notes": list(inserted.stats.notes),
    }
    print("insert one urgent order:", json.dumps(insertion, indent=2), flush=True)

    curve = []
    for n in [int(x) for x in args.curve.split(",") if x]:
        print(f"curve: {n} orders ...", flush=True)
        row = measure(n, params, args.seed)
        curve.append(row)
        c, g = row["cp_sat"], row["edf_greedy"]
        assert isinstance(c, dict) and isinstance(g, dict)
        print(
            f"  {n:5d} orders: cp-sat {c['seconds_to_valid_plan']} s {c['status']} obj {c['objective']} "
            f"gap {c['gap']} E[fail] {c['expected_failure_cost']} late {c['late_orders']} "
            f"unsched {c['unscheduled']} | edf {g['seconds_to_valid_plan']} s obj {g['objective']} "
            f"E[fail] {g['expected_failure_cost']} late {g['late_orders']} unsched {g['unscheduled']}",
            flush=True,
        )

    peak_rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    tracemalloc.start()
    solve(problem, params)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    import benchkit

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": benchkit.machine(),
        "command": "python " + " ".join(sys.argv),
        "params": dataclasses.asdict(params),
        "main": main_run,
        "insert_urgent": insertion,
        "curve": curve,
        "peak_rss_mib": peak_rss,
        "tracemalloc_peak_mib_solve": round(traced_peak / 2**20, 1),
    }
    print(
        f"peak RSS {peak_rss} MiB, tracemalloc peak of a solve {result['tracemalloc_peak_mib_solve']} MiB"
    )
    previous = benchkit.save("scheduler", result, as_baseline=args.save_baseline)
    if previous is not None:
        print("baseline:", benchkit.BASELINES / "scheduler.json")


if __name__ == "__main__":
    main()
