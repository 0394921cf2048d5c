"""Storage tunables: TimescaleDB use, chunking, compression, retention, `readings_1h` refresh
and retention.

They only shape what `pdm migrate` emits; services never read them. Intervals are plain
PostgreSQL interval strings restricted to `<n> <unit>` so they can be validated and compared
here instead of failing halfway through a migration.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pdm_common.settings import STACK_ENV_FILE

_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)
_UNIT = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
}


def _split(text: str) -> tuple[int, str]:
    match = _INTERVAL_RE.match(text)
    if match is None:
        raise ValueError(
            f"invalid interval {text!r}: use '<number> <unit>' with unit second, minute, "
            "hour, day or week (e.g. '1 day', '30 minutes')"
        )
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"invalid interval {text!r}: must be positive")
    return amount, match.group(2).lower()


def parse_interval(text: str) -> timedelta:
    """Parse `<n> <unit>` (seconds..weeks); months are refused because their length varies."""
    amount, unit = _split(text)
    return amount * _UNIT[unit]


def _normalise(text: str) -> str:
    amount, unit = _split(text)
    return f"{amount} {unit}{'s' if amount != 1 else ''}"


class StorageSettings(BaseSettings):
    """How `readings` and `predictions` are laid out; every field is a `PDM_`-prefixed
    environment variable."""

    model_config = SettingsConfigDict(
        env_prefix="PDM_", env_file=str(STACK_ENV_FILE), extra="ignore"
    )

    timescale: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="`auto`: use TimescaleDB when the server offers the extension; `on`: "
        "require it (migrate fails clearly without it); `off`: plain PostgreSQL tables.",
    )
    readings_chunk_interval: str = Field(
        default="1 day", description="Hypertable chunk width of `readings` (TimescaleDB only)."
    )
    readings_compress_after_days: int = Field(
        default=7,
        ge=0,
        description="Compress `readings` and `predictions` chunks older than this many days; "
        "0 = never (TimescaleDB only).",
    )
    readings_retention_days: int = Field(
        default=180,
        ge=0,
        description="Drop `readings` chunks older than this many days; 0 = keep forever "
        "(TimescaleDB only).",
    )
    predictions_retention_days: int = Field(
        default=180,
        ge=0,
        description="Drop `predictions` chunks (1 day each) older than this many days, and "
        "forget their request ids; 0 = keep forever (TimescaleDB only).",
    )
    readings_1h_retention_days: int = Field(
        default=0,
        ge=0,
        description="Drop `readings_1h` hours older than this many days; 0 = keep forever. "
        "Hour/day reads older than `PDM_READINGS_RETENTION_DAYS` come from this downsampled "
        "history, so it must be 0 or at least that long (TimescaleDB only).",
    )
    readings_1h_refresh_start_offset: str = Field(
        default="3 days",
        description="Oldest age the `readings_1h` refresh policy re-materialises on every run; "
        "older late data is refreshed by the stale-range job, and read raw until then "
        "(TimescaleDB only).",
    )
    readings_1h_refresh_lag: str = Field(
        default="1 hour",
        description="The newest part of `readings_1h` left to real-time aggregation "
        "(the policy's end_offset; TimescaleDB only).",
    )
    readings_1h_refresh_interval: str = Field(
        default="30 minutes", description="How often the `readings_1h` refresh policy runs."
    )
    readings_1h_stale_refresh_interval: str = Field(
        default="5 minutes",
        description="How often the job that re-materialises exactly the `readings_1h` hours "
        "touched by late or backfilled readings runs; hour/day reads read those hours raw "
        "until then (TimescaleDB only).",
    )
    migrate_lock_wait_s: float = Field(
        default=300.0,
        gt=0,
        description="How long `pdm migrate` waits for another running `pdm migrate` "
        "(PostgreSQL advisory lock) before giving up.",
    )

    @field_validator(
        "readings_chunk_interval",
        "readings_1h_refresh_start_offset",
        "readings_1h_refresh_lag",
        "readings_1h_refresh_interval",
        "readings_1h_stale_refresh_interval",
    )
    @classmethod
    def _valid_interval(cls, value: str) -> str:
        return _normalise(value)

    @model_validator(mode="after")
    def _consistent(self) -> StorageSettings:
        start = parse_interval(self.readings_1h_refresh_start_offset)
        lag = parse_interval(self.readings_1h_refresh_lag)
        if start < lag + timedelta(hours=2):
            # TimescaleDB requires a refresh window of at least two buckets.
            raise ValueError(
                "readings_1h_refresh_start_offset must exceed readings_1h_refresh_lag by at "
                "least 2 hours (two 1-hour buckets)"
            )
        if self.readings_retention_days and timedelta(days=self.readings_retention_days) <= start:
            # Otherwise the refresh would re-aggregate dropped chunks and erase rolled-up hours.
            raise ValueError(
                "readings_retention_days must be longer than readings_1h_refresh_start_offset"
            )
        keep_1h = self.readings_1h_retention_days
        if keep_1h and (not self.readings_retention_days or keep_1h < self.readings_retention_days):
            # Hour/day reads of a period the raw table still holds would miss those hours.
            raise ValueError(
                "readings_1h_retention_days must be 0 (keep forever) or at least "
                "readings_retention_days (which must then not be 0)"
            )
        return self
