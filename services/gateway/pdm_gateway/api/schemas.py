"""Response and request bodies of the HTTP API (their JSON Schemas are in the OpenAPI
document). Events that already have a model in `pdm_common.events` are reused as they are."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from pdm_common.events import AssetFields, AssetId
from pdm_common.events import AssetRecord as Asset


class Page(BaseModel):
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class AssetCreate(AssetFields):
    """`POST /v1/assets`: the new asset's id and its descriptive fields."""

    asset_id: AssetId


class AssetPage(Page):
    items: list[Asset]


class HierarchyLine(BaseModel):
    line: str | None
    assets: int
    asset_types: dict[str, int]


class HierarchySite(BaseModel):
    site: str | None
    assets: int
    lines: list[HierarchyLine]


class Reading(BaseModel):
    time: datetime
    value: float


class LatestReadings(BaseModel):
    asset_id: str
    readings: dict[str, Reading] = Field(description="sensor -> newest reading")
    source: Literal["cache", "database"] = Field(
        description="`cache`: the gateway's live read model; `database`: read from `readings`."
    )


class RawReading(BaseModel):
    time: datetime
    sensor: str
    value: float


class RawReadingsPage(Page):
    asset_id: str
    items: list[RawReading]


class Bucket(BaseModel):
    bucket: datetime
    sensor: str
    value: float


class BucketedReadings(BaseModel):
    asset_id: str
    bucket: str
    agg: str
    items: list[Bucket]


class Alarm(BaseModel):
    alarm_id: uuid.UUID
    asset_id: str
    asset_type: str | None = None
    condition: str
    status: str
    severity: str
    detector: str
    score: float
    threshold: float
    contributors: dict[str, float] = Field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None
    opened_at: datetime
    last_anomalous_at: datetime
    cleared_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    assignee: str | None = None
    assigned_by: str | None = None
    assigned_at: datetime | None = None
    updated_at: datetime


class AlarmPage(Page):
    items: list[Alarm]


class Accepted(BaseModel):
    """A command was published; its owner applies it asynchronously."""

    command_id: uuid.UUID
    status: Literal["accepted"] = "accepted"
    detail: str


class PredictionPage(Page):
    asset_id: str
    items: list[dict[str, Any]] = Field(
        description="Stored `prediction.made` events, newest first."
    )


class ReadingsAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    messages: int = Field(description="Snapshots published to pdm.readings.v1.")
    readings: int
    idempotency_key: str | None = None
    replayed: bool = Field(
        False, description="True when this answer repeats the first request with this key."
    )


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Literal["read", "write", "admin"]] = Field(min_length=1)
    rate_limit_per_s: float | None = Field(None, gt=0, le=1_000_000)


class ApiKeyInfo(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    rate_limit_per_s: float | None = None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(BaseModel):
    key_id: str
    api_key: str = Field(description="Shown once: only its hash is stored.")
    scopes: list[str]


class AckBody(BaseModel):
    note: str | None = Field(None, max_length=2000)


class AssignBody(BaseModel):
    assignee: str = Field(min_length=1, max_length=128)
    note: str | None = Field(None, max_length=2000)
