"""The baseline the optimiser has to beat, and its warm start: earliest deadline first.

Orders are taken by deadline (`due_h`; for orders without one, the hour their RUL reaches its
first quantile, usually p10; orders with neither come last), then by higher priority, then id.
Each goes to its earliest free start over the technicians open to it (ties: lower hourly cost,
then technician id); frozen orders are placed first, as they are. An order with no free start
is left out (`no_capacity`). No look-ahead, no cost trade-offs.
"""

from __future__ import annotations

import time

from pdm_scheduling.explain import build_plan
from pdm_scheduling.model import Problem
from pdm_scheduling.plan import Plan
from pdm_scheduling.precheck import Prepared, prepare
from pdm_scheduling.timeline import Timeline, edf_key, insert_all


def greedy_timeline(prep: Prepared) -> Timeline:
    timeline = Timeline(prep)
    todo = sorted(
        (o for o in prep.problem.orders if o.id in prep.candidates and o.id not in prep.frozen),
        key=edf_key,
    )
    insert_all(timeline, todo)
    return timeline


def schedule_edf(problem: Problem) -> Plan:
    """The earliest-deadline-first plan for `problem`."""
    started = time.perf_counter()
    prep = prepare(problem)
    timeline = greedy_timeline(prep)
    return build_plan(
        prep,
        timeline,
        method="edf-greedy",
        status="HEURISTIC",
        best_bound=None,
        wall_time_s=time.perf_counter() - started,
    )
