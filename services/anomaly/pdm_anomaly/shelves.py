"""Shelving (ISA-18.2 / EEMUA 191): an operator's temporary, reasoned suppression of new
alarms of an asset or of one of its sensors, as a pure index the alarm book consults.

A shelf covers readings timed in `[shelved_at, ends_at)`: reading time, like every other
alarm decision, so a replay (or a restart mid-stream) suppresses exactly what the first run
did, and a shelf expires by itself without anybody acting on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


def sensor_of(condition: str) -> str | None:
    """The sensor a condition names (`vibration:limit` -> `vibration`); none for `multivariate`."""
    sensor, sep, _ = condition.partition(":")
    return sensor if sep else None


@dataclass(frozen=True, slots=True)
class Shelf:
    shelf_id: uuid.UUID
    asset_id: str
    #: None: every condition of the asset (multivariate included)
    sensor: str | None
    shelved_at: datetime
    #: `expires_at`, or when it was unshelved if that came first
    ends_at: datetime

    def covers(self, sensor: str | None, ts: datetime) -> bool:
        return (self.sensor is None or self.sensor == sensor) and (
            self.shelved_at <= ts < self.ends_at
        )


def check_expiry(expires_at: datetime, now: datetime, longest: timedelta) -> str | None:
    """Why a shelve's expiry is refused (past, or beyond `longest` from now), or None."""
    if expires_at <= now:
        return "expires_at is in the past"
    if expires_at - now > longest:
        return f"expires_at is more than {longest} away (the longest a shelf may last)"
    return None


class ShelfIndex:
    """The shelves of every asset, replaced from the database and updated by commands."""

    def __init__(self, shelves: Iterable[Shelf] = ()) -> None:
        self._by_asset: dict[str, dict[uuid.UUID, Shelf]] = {}
        self.replace_all(shelves)

    def replace_all(self, shelves: Iterable[Shelf]) -> None:
        """Adopt the database's view (another replica's consumer may have applied them)."""
        by_asset: dict[str, dict[uuid.UUID, Shelf]] = {}
        for shelf in shelves:
            by_asset.setdefault(shelf.asset_id, {})[shelf.shelf_id] = shelf
        self._by_asset = by_asset

    def put(self, shelf: Shelf) -> None:
        """A shelf created, changed or ended by a command this process applied."""
        self._by_asset.setdefault(shelf.asset_id, {})[shelf.shelf_id] = shelf

    def covering(self, asset_id: str, sensor: str | None, ts: datetime) -> Shelf | None:
        """The shelf that holds back a new alarm of (asset, sensor) at reading time `ts`;
        the earliest shelved when several do, so the answer does not depend on order."""
        shelves = self._by_asset.get(asset_id)
        if not shelves:
            return None
        found = [s for s in shelves.values() if s.covers(sensor, ts)]
        return min(found, key=lambda s: (s.shelved_at, str(s.shelf_id))) if found else None

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_asset.values())
