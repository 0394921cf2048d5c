"""A fleet of machines built deterministically and stepped together, their stable message
ids and the step times of a publishing rate."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pdm_ml.simulation.machines.ground_truth import GroundTruth
from pdm_ml.simulation.machines.kinds import _asset_type
from pdm_ml.simulation.machines.machine import Machine
from pdm_ml.simulation.machines.timestamps import _aware, iso_utc

_MESSAGE_NS = uuid.UUID("5f1d6c1e-3a55-4d0e-9a65-8c3f1d2b7e41")


def asset_id_for(asset_type: str, number: int) -> str:
    return f"{asset_type}-{number:03d}"


def message_id(asset_id: str, t: datetime) -> str:
    """Stable per (asset, time): a replay with the same seed republishes the same ids."""
    return str(uuid.uuid5(_MESSAGE_NS, f"{asset_id}/{iso_utc(t)}"))


def ticks(start: datetime, period: timedelta, count: int) -> list[datetime]:
    """`count` step times from `start`, `period` apart (the publishing rate)."""
    _aware(start, "start")
    if period <= timedelta(0):
        raise ValueError(f"period must be positive, got {period}")
    return [start + i * period for i in range(count)]


@dataclass(slots=True)
class Fleet:
    """Machines of several types, built deterministically, stepped together."""

    machines: dict[str, Machine] = field(default_factory=dict)

    @classmethod
    def build(cls, counts: Mapping[str, int], seed: int = 0, scenario: str = "normal") -> Fleet:
        """`{"pump": 2, "milling": 1}` -> pump-001, pump-002, milling-001, each seeded
        from (seed, asset id), so adding machines never changes the others' streams."""
        fleet = cls()
        for asset_type, count in counts.items():
            checked = _asset_type(asset_type)
            if count < 0:
                raise ValueError(f"count of {asset_type} must be >= 0, got {count}")
            for number in range(1, count + 1):
                asset_id = asset_id_for(checked, number)
                fleet.machines[asset_id] = Machine(asset_id, checked, seed, scenario)
        return fleet

    def __getitem__(self, asset_id: str) -> Machine:
        try:
            return self.machines[asset_id]
        except KeyError:
            raise KeyError(f"no asset {asset_id!r} in the fleet") from None

    def set_scenario(self, name: str, asset_ids: Iterable[str] | None = None) -> None:
        for asset_id in self.machines if asset_ids is None else asset_ids:
            self[asset_id].set_scenario(name)

    def snapshots(self, t: datetime) -> list[dict[str, Any]]:
        """One gateway message per machine at `t` (the `ReadingSnapshot` shape)."""
        ts = iso_utc(t)
        return [
            {
                "asset_id": m.asset_id,
                "ts": ts,
                "readings": m.step(t),
                "message_id": message_id(m.asset_id, t),
                "asset_type": m.asset_type,
            }
            for m in self.machines.values()
        ]

    def drain_truth(self) -> list[GroundTruth]:
        return [truth for m in self.machines.values() for truth in m.drain_truth()]
