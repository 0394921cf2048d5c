"""Scheduler service settings (`PDM_SCHEDULER_*`); connections come from `CommonSettings`.

The money figures are the defaults a plant replaces with its own (per asset type and per
failure mode); they only need to be right relative to each other for the optimiser to weigh
a failure against a visit.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_SCHEDULER_")

    group_id: str = Field("pdm-scheduler", description="Kafka consumer group of the scheduler.")
    http_port: int = Field(8005, description="Port of `/health`, `/ready` and `/metrics`.")
    batch_max_records: int = Field(500, ge=1, description="Most events handled per batch.")

    # -- planning ---------------------------------------------------------------------------
    horizon_h: int = Field(336, ge=1, le=24 * 60, description="Planning horizon, hours.")
    frozen_horizon_h: int = Field(
        4,
        ge=0,
        description="Orders a plan starts within this many hours are kept where they are by "
        "the next re-plan unless that is infeasible.",
    )
    replan_debounce_s: float = Field(
        5.0, ge=0, description="At most one re-plan per this many seconds after a change."
    )
    replan_interval_s: float = Field(
        900.0, gt=0, description="A full re-plan at least this often, changes or not."
    )
    solver_time_limit_s: float = Field(
        10.0, gt=0, le=300, description="CP-SAT time cap of a full re-plan (timer, first plan)."
    )
    replan_time_limit_s: float = Field(
        2.0,
        gt=0,
        le=300,
        description="CP-SAT time cap of a re-plan after a change (the neighbourhood of what "
        "changed, warm-started), so an urgent order is placed within seconds.",
    )
    what_if_time_limit_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Time limit of a what-if, and the most a request's `time_limit_s` can ask "
        "for (a what-if holds the command consumer while it solves).",
    )
    budget_per_week: float | None = Field(
        None, ge=0, description="Labour + parts spend allowed per week; empty: no limit."
    )
    lateness_cost_per_h: float | None = Field(
        None,
        ge=0,
        description="Cost of one hour late per order (x (1 + priority)); empty: the largest "
        "failure cost of the plan, so deadlines are kept wherever possible.",
    )
    keep_plans: int = Field(200, ge=1, description="Stored plans kept (the newest).")

    # -- work orders from predictions and alarms ---------------------------------------------
    rul_open_h: float = Field(
        48.0,
        gt=0,
        description="A prediction whose RUL p10 (hours) is at or below this opens a predictive "
        "order when its RUL p50 is too or its probability is at least half its model's "
        "decision threshold; a probability over the threshold opens one by itself.",
    )
    default_due_h: float = Field(
        72.0, gt=0, description="Deadline of a predictive order that has no RUL (hours)."
    )
    healthy_cancel_after_h: float = Field(
        24.0,
        gt=0,
        description="A predictive order not yet started is cancelled once its asset has been "
        "predicted healthy for this long.",
    )
    reopen_grace_s: float = Field(
        900.0,
        ge=0,
        description="After an order of an asset is completed, its predictions made within "
        "this many seconds open nothing (their history still holds the failure just repaired).",
    )
    alarm_due_h: float = Field(24.0, gt=0, description="Deadline of an alarm's inspection.")
    hours_per_cycle: float = Field(
        1.0, gt=0, description="Hours per cycle, for RUL models counted in cycles."
    )
    mode_skills: dict[str, str] = Field(
        default_factory=lambda: {
            "bearing_degradation": "mechanical",
            "seal_leak": "mechanical",
            "motor_overheating": "electrical",
            "tool_wear": "machining",
            "TWF": "machining",
            "HDF": "mechanical",
            "PWF": "electrical",
            "OSF": "mechanical",
        },
        description="Failure mode -> skill its work needs, as JSON.",
    )
    default_skill: str = Field("mechanical", description="Skill of other work (inspections).")
    mode_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "bearing_degradation": 4.0,
            "seal_leak": 3.0,
            "motor_overheating": 3.0,
            "tool_wear": 1.0,
        },
        description="Failure mode -> estimated hours of its repair, as JSON.",
    )
    default_hours: float = Field(2.0, gt=0, description="Estimated hours of other work.")
    mode_parts_cost: dict[str, float] = Field(
        default_factory=lambda: {
            "bearing_degradation": 800.0,
            "seal_leak": 300.0,
            "motor_overheating": 1200.0,
            "tool_wear": 150.0,
        },
        description="Failure mode -> parts cost of its repair, as JSON.",
    )
    default_parts_cost: float = Field(100.0, ge=0, description="Parts cost of other work.")
    failure_cost: dict[str, float] = Field(
        default_factory=lambda: {
            "pump": 20000.0,
            "motor": 15000.0,
            "compressor": 30000.0,
            "milling": 8000.0,
            "turbofan": 500000.0,
        },
        description="Asset type -> cost of a failure (repair, damage, scrap), as JSON.",
    )
    default_failure_cost: float = Field(10000.0, ge=0, description="Failure cost, other types.")
    downtime_cost_per_h: dict[str, float] = Field(
        default_factory=lambda: {
            "pump": 500.0,
            "motor": 400.0,
            "compressor": 800.0,
            "milling": 300.0,
        },
        description="Asset type -> production lost per hour of work on it, as JSON.",
    )
    default_downtime_cost_per_h: float = Field(200.0, ge=0, description="Other types.")

    # -- background loops --------------------------------------------------------------------
    plans_interval_s: float = Field(
        60.0, gt=0, description="How often preventive plans are turned into due orders."
    )
    outbox_interval_s: float = Field(
        1.0, gt=0, description="Longest wait before unpublished events are sent again."
    )
