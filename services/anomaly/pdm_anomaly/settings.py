"""Anomaly service settings (`PDM_ANOMALY_*`); connection settings come from `CommonSettings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings


class AnomalySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_ANOMALY_")

    group_id: str = Field("pdm-anomaly", description="Kafka consumer group of the anomaly service.")
    http_port: int = Field(8002, description="Port of `/health`, `/ready` and `/metrics`.")
    batch_max_records: int = Field(
        2000, ge=1, description="Most validated-reading events handled per batch."
    )
    warmup_readings: int = Field(
        1024,
        ge=0,
        description="Stored readings per (asset, sensor) replayed into the detectors when this "
        "consumer first sees an asset (start-up, rebalance); the univariate detector needs 512.",
    )
    warmup_max_age_hours: float = Field(
        168.0,
        gt=0,
        description="Readings older than this (before the first new one) are not replayed.",
    )
    clear_after_s: float = Field(
        600.0,
        gt=0,
        description="An alarm clears after its condition has been quiet this long (reading "
        "time): the hysteresis that stops flapping input from storming.",
    )
    open_after: int = Field(
        1, ge=1, description="Anomalous evaluations in a row needed to open an alarm."
    )
    group_window_s: float = Field(
        120.0,
        ge=0,
        description="Flood control: a condition of an asset that goes into alarm within this "
        "long (reading time) of the opening of an alarm open on the asset joins that alarm "
        "instead of opening its own (0: one alarm per condition).",
    )
    shelf_max_hours: float = Field(
        168.0,
        gt=0,
        le=168.0,
        description="Longest a shelf may last (ISA-18.2 shelving is temporary); a shelve "
        "command expiring later is dead-lettered. At most the contract's 7 days.",
    )
    shelf_refresh_s: float = Field(
        2.0,
        gt=0,
        description="How often the readings consumer re-reads the shelves (another replica "
        "may have applied the command).",
    )
    limits_file: Path | None = Field(
        None, description="JSON file overriding static sensor limits per asset type."
    )
    sensors_file: Path | None = Field(
        None,
        description="JSON file declaring what sensors measure per asset type (counter, "
        "setpoint, thermal, categorical, level), over the simulated fleet's declarations.",
    )
    multivariate: bool = Field(
        True,
        description="Score snapshots with the `anomaly-<asset_type>@champion` model when the "
        "registry has one.",
    )
