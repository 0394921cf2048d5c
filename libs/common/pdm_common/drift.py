"""Model-lifecycle contracts: drift reports, retrains, alias moves and the commands of
`pdm.drift.commands.v1`.

The drift service owns the lifecycle of served models: it checks the features each champion
sees in production against the reference its training run logged (`DriftReport` on
`pdm.drift.v1`), retrains on triggers (`RetrainEvent`), registers a challenger and judges it
against the champion, and moves the `champion` / `previous` aliases (announced as
`ModelAliasMoved` on `pdm.models.v1`, kept in an alias history served by the API).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from pdm_common.events import Envelope

#: Registered model names the platform serves: `<task>-<asset type>` (failure-pump, ...).
MODEL_NAME_PATTERN = r"^(failure|rul|anomaly)-[a-z0-9][a-z0-9_-]{0,62}$"
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]
Text = Annotated[str, StringConstraints(max_length=2000)]

#: Alias of the version that held `champion` before the last move (rollback target).
PREVIOUS = "previous"
CHALLENGER = "challenger"

DriftAction = Literal["check", "retrain", "promote", "rollback"]
DriftTrigger = Literal["timer", "command", "champion", "drift", "performance", "labels", "schedule"]
CommandStatus = Literal["ok", "accepted", "not_found", "conflict", "invalid", "unavailable"]


class DriftCommand(BaseModel):
    """A command on `pdm.drift.commands.v1` (key: model name, or `all`), answered on the
    `reply_to` header's topic with a `DriftCommandResult` (request/reply).

    - `check`: a drift check now of `model_name` (empty: every served model);
    - `retrain`: retrain `model_name` (refused during its cooldown unless `force`);
    - `promote`: move `champion` to `version` (empty: the `challenger`);
    - `rollback`: move `champion` back to the `previous` version.

    A command is applied once per `command_id` (a redelivery answers the stored result).
    """

    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID
    action: DriftAction
    model_name: ModelName | None = None
    version: Version | None = None
    reason: Text | None = None
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)] = "operator"
    force: bool = False


class ColumnDrift(BaseModel):
    """One column's verdict in a report (see `pdm_ml.drift.check` for the methods)."""

    column: str
    method: str
    statistic: float | None
    threshold: float | None
    drifted: bool
    psi: float | None = None
    importance: float | None = None
    reference_mean: float | None = None
    current_mean: float | None = None
    mean_shift: float | None = None
    median_shift: float | None = None


class DriftReport(Envelope):
    """A drift check of one model's features (or one asset type's raw sensors) on
    `pdm.drift.v1` (key: model name or `sensors-<asset type>`)."""

    event_type: Literal["drift.report"] = "drift.report"
    report_id: uuid.UUID
    kind: Literal["features", "sensors"]
    model_name: str | None = None
    model_version: str | None = None
    asset_type: str | None = None
    trigger: DriftTrigger
    window_start: AwareDatetime
    window_end: AwareDatetime
    reference_rows: int
    current_rows: int
    drifted_share: float = Field(description="Share of columns whose verdict is drift.")
    weighted_share: float = Field(
        description="Share of the model's feature importance carried by drifted columns."
    )
    drift_detected: bool
    headlines: list[str] = Field(default_factory=list)
    columns: list[ColumnDrift] = Field(default_factory=list)


RetrainEventType = Literal[
    "retrain.started", "retrain.finished", "retrain.failed", "retrain.judged"
]


class RetrainEvent(Envelope):
    """A retrain of one model on `pdm.drift.v1` (key: model name). `finished` names the
    challenger and the decision (promoted or not, both scores on the same held-out data, or
    left to a live judgement after its shadow period); `judged` is that live judgement
    (champion and challenger on the same requests); `failed` never promotes anything."""

    event_type: RetrainEventType
    job_id: uuid.UUID
    model_name: str
    trigger: DriftTrigger
    reason: str | None = None
    challenger_version: str | None = None
    champion_version: str | None = None
    metric: str | None = None
    challenger_score: float | None = None
    champion_score: float | None = None
    promoted: bool | None = None
    decision: str | None = None
    error: str | None = None


class AliasChange(BaseModel):
    """One move of a registry alias, as the alias history keeps it (which version served
    production when, and why)."""

    model_name: str
    alias: str
    version: str
    previous_version: str | None = None
    moved_at: AwareDatetime
    actor: str
    trigger: str
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


PerformanceRole = Literal["served", "shadow"]
PerformanceSpan = Literal["all", "recent"]


class LivePerformance(BaseModel):
    """Live figures of one model version over one window: its stored predictions joined
    with what really happened (outcome labels). One row of the drift service's
    `model_performance`, served by `GET /v1/models/{name}/performance`.

    `role`: `served` for the predictions it published (as champion), `shadow` for what it
    scored as challenger next to the champion on the same requests. `span`: `all` is the
    whole look-back, `recent` its last part, tested against the part before it: a
    significant drop sets `degraded` with the test in `reason` (a retrain trigger).
    Failure models fill precision / recall at `horizon_h` and lead time; RUL models (hours)
    fill the error of the median and the p10-p90 coverage over predictions a found failure
    followed."""

    model_name: str
    model_version: str
    role: PerformanceRole
    span: PerformanceSpan
    computed_at: AwareDatetime
    window_start: AwareDatetime
    window_end: AwareDatetime
    horizon_h: float
    predictions: int
    alarms: int | None = None
    alarms_judged: int | None = Field(
        None, description="Alarms whose horizon is over or that a failure confirmed."
    )
    true_alarms: int | None = None
    failures: int | None = Field(
        None, description="Found failures of assets the version scored within the horizon."
    )
    caught: int | None = None
    precision: float | None = None
    recall: float | None = None
    lead_h_median: float | None = None
    lead_h_mean: float | None = None
    rul_judged: int | None = Field(
        None, description="RUL predictions a found failure of their asset followed."
    )
    rul_mae_h: float | None = None
    rul_bias_h: float | None = Field(
        None, description="Mean of predicted p50 minus the real time to failure (> 0: late)."
    )
    rul_coverage: float | None = Field(
        None, description="Share of judged predictions whose p10-p90 band held the failure."
    )
    degraded: bool = False
    reason: str | None = None


class DriftCommandResult(Envelope):
    """The reply to a `DriftCommand` (the gateway maps `status` to HTTP: ok 200, accepted 202,
    not_found 404, conflict 409 (e.g. a retrain in cooldown), invalid 422, unavailable 503)."""

    event_type: Literal["drift.command_result"] = "drift.command_result"
    command_id: uuid.UUID | None = None
    action: str | None = None
    status: CommandStatus
    message: str | None = None
    reports: list[uuid.UUID] = Field(default_factory=list)
    job_id: uuid.UUID | None = None
    alias_change: AliasChange | None = None
