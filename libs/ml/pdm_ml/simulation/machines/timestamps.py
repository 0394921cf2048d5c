"""Timestamps in and out of the simulation: timezone-aware in, ISO 8601 UTC out."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(t: datetime) -> str:
    return _aware(t, "time").astimezone(UTC).isoformat()


def _iso_or_none(t: datetime | None) -> str | None:
    return None if t is None else iso_utc(t)


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {t.isoformat()}")
    return t
