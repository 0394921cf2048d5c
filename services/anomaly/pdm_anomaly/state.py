"""Per-asset detector state and the pure evaluation of one snapshot.

The service keeps one univariate detector per (asset, sensor) and remembers the last reading
time per sensor: a reading at or before it (a redelivery, a duplicate, a late out-of-order
value) is stored by ingest but not scored again, so duplicates change nothing and the
detectors only ever see time moving forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pdm_common.events import Severity
from pdm_ml.detectors.base import Score
from pdm_ml.detectors.limits import Limit

#: Severity reported for an excursion that continues (the lowest alarm-raising one: it keeps
#: an open alarm open and never escalates it).
ONGOING: Severity = "warning"


class StreamingDetector(Protocol):
    @property
    def ready(self) -> bool: ...

    def update(self, ts: float, value: float) -> Score: ...

    def warm(self, values: Sequence[float], timestamps: Sequence[float] | None = None) -> None: ...


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
    """Feed stored readings `(sensor, epoch_s, value)` (time-ordered) without scoring.

    Through the detector's `warm`, so an excursion that ended the history does not count as
    ongoing: it was judged (and alarmed) when it happened; the alarm book has its own state.
    """
    per_sensor: dict[str, tuple[list[float], list[float]]] = {}
    for sensor, ts, value in history:
        last = state.last_ts.get(sensor)
        if last is not None and ts <= last:
            continue
        state.last_ts[sensor] = ts
        times, values = per_sensor.setdefault(sensor, ([], []))
        times.append(ts)
        values.append(value)
    for sensor, (times, values) in per_sensor.items():
        detector = state.detectors.get(sensor)
        if detector is None:
            detector = state.detectors[sensor] = make_detector(sensor)
        detector.warm(values, times)
    return sum(len(v) for _, v in per_sensor.values())


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
            if score.severity is None and getattr(detector, "in_excursion", False):
                # The detector reports an excursion once (and on escalation) and then holds
                # its score down; for the alarm it is still ongoing, so it must not clear.
                score = replace(score, severity=ONGOING)
            out.append((f"{sensor}:{score.detector}", score))
        limit = limits.get(sensor)
        if limit is not None:
            out.append((f"{sensor}:limit", limit.check(value)))
    if model is not None and fresh:
        snapshot_score = model.score(readings)
        if snapshot_score is not None:
            out.append(("multivariate", snapshot_score))
    return out
