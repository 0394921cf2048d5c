"""Maintenance schedule optimisation (OR-Tools CP-SAT): pure functions, no I/O.

`solve(problem)` returns the optimised `Plan`, `schedule_edf(problem)` the greedy baseline,
`replan(previous, problem)` a quick warm-started update, `validate(problem, plan)` the hard
constraint violations of any plan and `diff(old, new)` what moved between two plans.
"""

from pdm_scheduling.cpsat import solve
from pdm_scheduling.greedy import schedule_edf
from pdm_scheduling.model import Budget, Order, Problem, Technician, Window
from pdm_scheduling.params import SolverParams
from pdm_scheduling.plan import Assignment, Move, Plan, SolveStats, diff
from pdm_scheduling.precheck import Reason
from pdm_scheduling.replan import freeze_started, replan
from pdm_scheduling.risk import expected_failure_cost, failure_cdf, risk_removed, rul_cdf
from pdm_scheduling.validate import validate

__all__ = [
    "Assignment",
    "Budget",
    "Move",
    "Order",
    "Plan",
    "Problem",
    "Reason",
    "SolveStats",
    "SolverParams",
    "Technician",
    "Window",
    "diff",
    "expected_failure_cost",
    "failure_cdf",
    "freeze_started",
    "replan",
    "risk_removed",
    "rul_cdf",
    "schedule_edf",
    "solve",
    "validate",
]
