"""Bodies of the readings routes: latest values, raw pages, buckets, HTTP ingestion."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pdm_gateway.api.schemas.common import Page


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
    source: Literal["readings", "readings_1h", "readings_1h+readings"] = Field(
        description="Which table answered: `readings` (raw rows), `readings_1h` (the hourly "
        "aggregate; on TimescaleDB the only source for hours older than the raw retention), "
        "or `readings_1h+readings` (the aggregate, with hours changed since they were "
        "materialised read raw)."
    )
    items: list[Bucket]


class ReadingsAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    messages: int = Field(description="Snapshots published to pdm.readings.v1.")
    readings: int
    idempotency_key: str | None = None
    replayed: bool = Field(
        False, description="True when this answer repeats the first request with this key."
    )
