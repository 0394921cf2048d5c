"""Detectors for sensors that are not levels: counters and categorical codes.

A counter (tool wear, operating hours, cycle counts) only grows until it is reset: its level
always visits new territory, so a level detector alarms on it every day. What can be wrong
with a counter is its rate, so the increments are judged (by the univariate detector), and a
drop is a reset (tool change, roll-over) that teaches nothing and raises nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType

from pdm_ml.detectors.base import Score
from pdm_ml.detectors.univariate import DETECTOR_NAME, UnivariateConfig, UnivariateDetector

#: An exact repeat of an increment is taken as at least this likely.
COUNTER_REPEAT_FLOOR = 0.9


class CounterDetector:
    """Judges the increments of a counter; resets are counted, never alarmed."""

    __slots__ = ("_inner", "_prev", "resets")

    def __init__(self, config: UnivariateConfig | None = None, sensor: str | None = None) -> None:
        # A counter's increments repeat exactly by nature (one part, one wear step): a run of
        # equal increments is not a stuck sensor; a counter that stops is (increment 0 runs).
        # Its rate has no daily cycle to wander with, so a rate outside its range counts at
        # once, however young the range (a tool that is no longer changed, a counter racing).
        base = config or UnivariateConfig()
        config = replace(
            base,
            repeat_floor=COUNTER_REPEAT_FLOOR,
            young_level_fraction=base.min_level_fraction,
            provisional_level_fraction=base.min_level_fraction,
        )
        self._inner = UnivariateDetector(config, sensor=sensor)
        self._prev: float | None = None
        self.resets = 0

    @property
    def ready(self) -> bool:
        return self._inner.ready

    @property
    def in_excursion(self) -> bool:
        return self._inner.in_excursion

    @property
    def threshold(self) -> float:
        return self._inner.threshold

    def _increment(self, value: float) -> float | None:
        prev, self._prev = self._prev, float(value)
        if prev is None:
            return None
        if value < prev:
            self.resets += 1
            return None
        return float(value) - prev

    def update(self, ts: float, value: float) -> Score:
        increment = self._increment(value)
        if increment is None:
            return Score(DETECTOR_NAME, 0.0, self._inner.threshold, None, MappingProxyType({}))
        return self._inner.update(ts, increment)

    def warm(self, values: Sequence[float], timestamps: Sequence[float] | None = None) -> None:
        increments: list[float] = []
        times: list[float] = []
        for i, value in enumerate(values):
            increment = self._increment(value)
            if increment is not None:
                increments.append(increment)
                if timestamps is not None:
                    times.append(timestamps[i])
        self._inner.warm(increments, times if timestamps is not None else None)

    def rebaseline(self, ts: float, settle_s: float = 0.0) -> None:
        self._inner.rebaseline(ts, settle_s)


class SilentDetector:
    """For categorical codes (a product quality class): a number, but not a measurement whose
    size means anything. Never ready, so it never reports."""

    __slots__ = ("sensor",)

    def __init__(self, sensor: str | None = None) -> None:
        self.sensor = sensor

    ready = False
    in_excursion = False

    def update(self, ts: float, value: float) -> Score:
        return Score("categorical", 0.0, 1.0, None, MappingProxyType({}))

    def warm(self, values: Sequence[float], timestamps: Sequence[float] | None = None) -> None:
        return None
