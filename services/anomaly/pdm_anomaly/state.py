"""Per-asset detector state and the pure evaluation of one snapshot.

The service keeps one univariate detector per (asset, sensor) and remembers the last reading
time per sensor: a reading at or before it (a redelivery, a duplicate, a late out-of-order
value) is stored by ingest but not scored again, so duplicates change nothing and the
detectors only ever see time moving forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pdm_anomaly.detectors.base import Score
from pdm_anomaly.detectors.limits import Limit


class StreamingDetector(Protocol):
    @property
    def ready(self) -> bool: ...

    def update(self, ts: float, value: float) -> Score: ...


class SnapshotModel(Protocol):
    def score(self, readings: Mapping[str, float]) -> Score | None: ...


@dataclass(slots=True)
class AssetState:
    asset_type: str | None = None
    detectors: dict[str, StreamingDetector] = field(default_factory=dict)
    last_ts: dict[str, float] = field(default_factory=dict)
    partition: int | None = None


def warm_up(
    state: AssetState,
    history: Iterable[tuple[str, float, float]],
    make_detector: Callable[[str], StreamingDetector],
) -> int:
    """Feed stored readings `(sensor, epoch_s, value)` (time-ordered) without scoring."""
    n = 0
    for sensor, ts, value in history:
        last = state.last_ts.get(sensor)
        if last is not None and ts <= last:
            continue
        detector = state.detectors.get(sensor)
        if detector is None:
            detector = state.detectors[sensor] = make_detector(sensor)
        detector.update(ts, value)
        state.last_ts[sensor] = ts
        n += 1
    return n


def evaluate(
    state: AssetState,
    ts: float,
    readings: Mapping[str, float],
    *,
    make_detector: Callable[[str], StreamingDetector],
    limits: Mapping[str, Limit],
    model: SnapshotModel | None,
) -> list[tuple[str, Score]]:
    """Score one snapshot: `(condition, score)` for every detector that has an opinion."""
    out: list[tuple[str, Score]] = []
    fresh: dict[str, float] = {}
    for sensor, value in readings.items():
        last = state.last_ts.get(sensor)
        if last is not None and ts <= last:
            continue
        state.last_ts[sensor] = ts
        fresh[sensor] = value
        detector = state.detectors.get(sensor)
        if detector is None:
            detector = state.detectors[sensor] = make_detector(sensor)
        score = detector.update(ts, value)
        if detector.ready:
            out.append((f"{sensor}:{score.detector}", score))
        limit = limits.get(sensor)
        if limit is not None:
            out.append((f"{sensor}:limit", limit.check(value)))
    if model is not None and fresh:
        snapshot_score = model.score(readings)
        if snapshot_score is not None:
            out.append(("multivariate", snapshot_score))
    return out
