"""Latest readings per asset in memory, fed by `pdm.readings.validated.v1` (a read model).

An asset enters the cache on its first read, from the database (`latest_readings`); from then
on the live stream keeps it current, so a latest-reading read needs no database round trip.
Updates merge by reading time, so a late or redelivered older reading never replaces a newer
one, and a stream update racing the database load is kept. Readings are announced after
ingest committed them, so the cache is never ahead of the database.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

Latest = dict[str, tuple[datetime, float]]


def merge(into: Latest, sensor: str, ts: datetime, value: float) -> None:
    current = into.get(sensor)
    if current is None or ts >= current[0]:
        into[sensor] = (ts, value)


class LatestCache:
    def __init__(self, max_assets: int) -> None:
        self.max_assets = max_assets
        self._assets: OrderedDict[str, Latest] = OrderedDict()

    def get(self, asset_id: str) -> Latest | None:
        latest = self._assets.get(asset_id)
        if latest is not None:
            self._assets.move_to_end(asset_id)
        return latest

    def load(self, asset_id: str, rows: Latest) -> Latest:
        """Adopt what the database returned, merged with updates that arrived meanwhile."""
        if self.max_assets == 0:
            return rows
        latest = self._assets.setdefault(asset_id, {})
        for sensor, (ts, value) in rows.items():
            merge(latest, sensor, ts, value)
        self._assets.move_to_end(asset_id)
        while len(self._assets) > self.max_assets:
            self._assets.popitem(last=False)
        return latest

    def update(self, asset_id: str, snapshots: list[tuple[datetime, dict[str, float]]]) -> None:
        """Apply a validated readings event, for assets already cached only."""
        latest = self._assets.get(asset_id)
        if latest is None:
            return
        for ts, readings in snapshots:
            for sensor, value in readings.items():
                merge(latest, sensor, ts, value)
