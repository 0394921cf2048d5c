"""Validation of gateway messages: pure functions, every rejection with a stable reason code.

A message is the unit of acceptance: if any snapshot in it is invalid the whole message goes
to the DLQ (with the index of the offending snapshot), so a replay after a fix is all-or-nothing
and a gateway never has half a message stored without knowing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from pdm_common.delivery import PermanentError
from pdm_common.events import ReadingSnapshot, parse_gateway_message


class InvalidReading(PermanentError):
    reason = "invalid"


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    max_snapshots: int
    max_sensors: int
    max_future: timedelta
    max_age: timedelta
    value_abs_limit: float


def describe(exc: ValidationError, limit: int = 3) -> str:
    """A short, human-readable summary of a pydantic error (location: message)."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def validate_message(raw: bytes, now: datetime, limits: Limits) -> list[ReadingSnapshot]:
    """Parse and check one gateway message; raise `InvalidReading` with a reason code."""
    if len(raw) > limits.max_message_bytes:
        raise InvalidReading(
            f"message is {len(raw)} bytes; the limit is {limits.max_message_bytes}",
            reason="too_large",
        )
    if not raw.strip():
        raise InvalidReading("empty message", reason="undecodable")
    try:
        snapshots = parse_gateway_message(raw)
    except ValidationError as exc:
        reason = "undecodable" if _is_json_error(exc) else "invalid"
        raise InvalidReading(describe(exc), reason=reason) from None
    if not snapshots:
        raise InvalidReading("empty list of snapshots", reason="invalid")
    if len(snapshots) > limits.max_snapshots:
        raise InvalidReading(
            f"{len(snapshots)} snapshots; the limit is {limits.max_snapshots}", reason="too_large"
        )
    earliest, latest = now - limits.max_age, now + limits.max_future
    for i, snap in enumerate(snapshots):
        where = f"snapshot {i} ({snap.asset_id})"
        if len(snap.readings) > limits.max_sensors:
            raise InvalidReading(
                f"{where}: {len(snap.readings)} sensors; the limit is {limits.max_sensors}",
                reason="too_large",
            )
        if not earliest <= snap.ts <= latest:
            raise InvalidReading(
                f"{where}: ts {snap.ts.isoformat()} is outside the accepted window "
                f"[{earliest.isoformat()}, {latest.isoformat()}]",
                reason="ts_out_of_range",
            )
        for sensor, value in snap.readings.items():
            if not math.isfinite(value) or abs(value) > limits.value_abs_limit:
                raise InvalidReading(
                    f"{where}: {sensor}={value!r} exceeds ±{limits.value_abs_limit:g}",
                    reason="value_out_of_range",
                )
    return snapshots


def _is_json_error(exc: ValidationError) -> bool:
    return any(e["type"] in {"json_invalid", "json_type"} for e in exc.errors(include_url=False))
