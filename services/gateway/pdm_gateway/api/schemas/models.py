"""Bodies of the model-lifecycle routes (`/v1/models`, `/v1/drift`). Drift reports, alias
moves, live performance and command results are the drift service's contract
(`pdm_common.drift`); the registry listing, pages and request bodies are the gateway's own."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pdm_common.drift import AliasChange, ColumnDrift, LivePerformance, ModelName, Text, Version
from pdm_gateway.api.schemas.common import Page

ReportKind = Literal["features", "sensors"]


class ModelVersionInfo(BaseModel):
    """One registered version: its number, the run that produced it, tags and run metrics."""

    version: str
    uri: str = Field(description="`models:/<name>/<version>`.")
    run_id: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class ServedModelInfo(BaseModel):
    """A registered model the platform serves (`failure-*`, `rul-*`, `anomaly-*`)."""

    name: str
    task: str = Field(description="failure, rul or anomaly (the name's prefix).")
    asset_type: str = Field(description="The name's suffix (`pump`, `milling`, ...).")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Every alias of the model -> version number."
    )
    champion: ModelVersionInfo | None = Field(None, description="What serving loads.")
    challenger: ModelVersionInfo | None = Field(
        None, description="A retrained candidate awaiting its verdict."
    )
    previous: ModelVersionInfo | None = Field(
        None, description="The champion before the last move (the rollback target)."
    )
    latest_version: str | None = None
    updated_at: datetime | None = None


class ModelList(BaseModel):
    items: list[ServedModelInfo]
    registry: str = Field(
        description="The MLflow tracking URI the list comes from (without credentials)."
    )


class AliasHistoryEntry(AliasChange):
    """One alias move as the drift service recorded it."""

    change_id: uuid.UUID


class RetrainJob(BaseModel):
    """A retrain of the model (running, finished with a challenger and a decision, or
    failed)."""

    job_id: uuid.UUID
    model_name: str
    trigger: str
    reason: str | None = None
    status: Literal["running", "finished", "failed"]
    claimed_by: str
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None = None
    challenger_version: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class ModelHistory(Page):
    """Which version served when, who or what moved it and why (newest first, keyset
    pages), with the model's newest retrains (on the first page only)."""

    model_name: str
    items: list[AliasHistoryEntry]
    retrains: list[RetrainJob] = Field(default_factory=list)


class ModelPerformance(Page):
    """Live figures of the model's versions as the drift service computed them at its timed
    checks (newest computation first, keyset pages)."""

    model_name: str
    items: list[LivePerformance]


class DriftReportSummary(BaseModel):
    """A drift check of one model's features or one asset type's raw sensors."""

    report_id: uuid.UUID
    kind: ReportKind
    model_name: str | None = None
    model_version: str | None = None
    asset_type: str | None = None
    trigger: str
    window_start: datetime
    window_end: datetime
    reference_rows: int
    current_rows: int
    drifted_share: float = Field(description="Share of columns whose verdict is drift.")
    weighted_share: float = Field(
        description="Share of the model's feature importance carried by drifted columns."
    )
    drift_detected: bool
    created_at: datetime
    has_html: bool = Field(
        description="An Evidently report is stored: `GET /v1/drift/reports/{id}/html`."
    )


class DriftReportPage(Page):
    items: list[DriftReportSummary]


class DriftReportDetail(DriftReportSummary):
    """A drift report with its headlines and every column's verdict."""

    headlines: list[str] = Field(default_factory=list)
    columns: list[ColumnDrift] = Field(default_factory=list)


class DriftCheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: ModelName | None = Field(
        None, description="Check this model only (default: every served model)."
    )


class RetrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(None, description="Recorded with the retrain.")
    force: bool = Field(False, description="Retrain even during the model's cooldown.")


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version | None = Field(
        None, description="The version to make champion (default: the `challenger`)."
    )
    reason: Text | None = Field(None, description="Recorded in the alias history.")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text | None = Field(None, description="Recorded in the alias history.")


class DriftCommandOutcome(BaseModel):
    """What the drift service answered: `ok` (done: e.g. the alias moved, the reports
    written) or `accepted` (under way: e.g. a retrain, its job id)."""

    command_id: uuid.UUID
    action: str
    status: Literal["ok", "accepted"]
    message: str | None = None
    reports: list[uuid.UUID] = Field(
        default_factory=list, description="Drift reports written by a check."
    )
    job_id: uuid.UUID | None = Field(None, description="The retrain job started.")
    alias_change: AliasChange | None = Field(None, description="The alias move made.")
