"""Ingest service settings (`PDM_INGEST_*`); connection settings come from `CommonSettings`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_INGEST_")

    group_id: str = Field("pdm-ingest", description="Kafka consumer group of the ingest service.")
    http_port: int = Field(8001, description="Port of `/health`, `/ready` and `/metrics`.")
    batch_max_records: int = Field(
        5000, ge=1, description="Most gateway messages handled (and committed) per batch."
    )
    unknown_assets: Literal["register", "reject"] = Field(
        "register",
        description="`register`: create unknown assets on first sight; `reject`: dead-letter "
        "readings of assets that were not registered first.",
    )
    max_future_s: float = Field(
        300.0, ge=0, description="Reject readings stamped more than this many seconds ahead."
    )
    max_age_days: float = Field(
        400.0, gt=0, description="Reject readings older than this many days (backfills allowed)."
    )
    max_snapshots_per_message: int = Field(
        1000, ge=1, description="Most snapshots one gateway message may carry."
    )
    max_sensors_per_snapshot: int = Field(
        256, ge=1, description="Most sensors one snapshot may carry."
    )
    value_abs_limit: float = Field(
        1e12, gt=0, description="Reject values whose magnitude exceeds this (garbage, not physics)."
    )
    validated_chunk: int = Field(
        500, ge=1, description="Most snapshots per `pdm.readings.validated.v1` event."
    )
