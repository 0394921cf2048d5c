"""Sensor semantics: counters judged by rate and resets, categorical codes not judged, and a
context change re-learned instead of alarmed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pdm_ml.detectors.counter import CounterDetector, SilentDetector
from pdm_ml.detectors.factory import detector_for
from pdm_ml.detectors.semantics import SensorCatalog, load_catalog, parse, simulated_catalog
from pdm_ml.detectors.univariate import UnivariateConfig, UnivariateDetector


def _alarms(detector: object, values: np.ndarray, start: float = 0.0) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if detector.update(start + i, float(v)).severity is not None:  # type: ignore[attr-defined]
            out.append(i)
    return out


def tool_wear(n: int, seed: int, rate: float = 1.0) -> np.ndarray:
    """A tool-wear counter: +2/3/5 per part, a new tool (reset to 0) past ~220 min."""
    rng = np.random.default_rng(seed)
    wear, out = 0.0, []
    for _ in range(n):
        wear += rate * float(rng.choice([2.0, 3.0, 5.0], p=[0.5, 0.3, 0.2]))
        if wear > 220.0:
            wear = 0.0
        out.append(wear)
    return np.asarray(out)


def test_a_counter_that_resets_raises_nothing_and_counts_its_resets() -> None:
    values = tool_wear(20_000, seed=1)
    counter = CounterDetector(sensor="tool_wear")
    assert _alarms(counter, values) == []
    assert counter.resets == int((np.diff(values) < 0).sum()) > 100
    # the level detector the service ran before alarms on the same healthy counter
    assert _alarms(UnivariateDetector(sensor="tool_wear"), values) != []


def test_a_counter_whose_rate_changes_is_caught() -> None:
    values = np.concatenate([tool_wear(6000, seed=2), 1000 + tool_wear(2000, seed=3, rate=4.0)])
    hits = _alarms(CounterDetector(sensor="tool_wear"), values)
    assert hits and hits[0] >= 6000


def test_categorical_codes_are_never_judged() -> None:
    silent = SilentDetector("quality_code")
    assert not silent.ready
    assert _alarms(silent, np.asarray([0, 2, 1, 9, -5] * 100, dtype=float)) == []


def test_the_factory_picks_the_detector_by_kind() -> None:
    make = detector_for(simulated_catalog(), "milling")
    assert isinstance(make("tool_wear"), CounterDetector)
    assert isinstance(make("quality_code"), SilentDetector)
    assert isinstance(make("torque"), UnivariateDetector)
    assert isinstance(detector_for(simulated_catalog(), "unknown-type")("x"), UnivariateDetector)


def test_a_rebaselined_setpoint_step_is_not_an_alarm_but_the_same_step_unannounced_is() -> None:
    rng = np.random.default_rng(4)
    config = UnivariateConfig(envelope_block_s=0.0, mature_range_s=0.0)
    before = 50 + rng.normal(0, 1, 4000)
    after = 80 + rng.normal(0, 1, 3000)
    announced = UnivariateDetector(config, sensor="flow")
    _alarms(announced, before)
    announced.rebaseline(4000.0)
    assert _alarms(announced, after, start=4000.0) == []
    silent_change = UnivariateDetector(config, sensor="flow")
    _alarms(silent_change, before)
    assert _alarms(silent_change, after, start=4000.0) != []


def test_a_thermal_settling_time_quiets_only_the_level_test() -> None:
    det = UnivariateDetector(UnivariateConfig(envelope_block_s=0.0), sensor="winding")
    rng = np.random.default_rng(5)
    _alarms(det, 60 + rng.normal(0, 0.2, 3000))
    det.rebaseline(3000.0, settle_s=1000.0)
    # a first-order rise to a new steady state inside the settling time: no alarm
    rise = 60 + 15 * (1 - np.exp(-np.arange(900) / 200.0)) + rng.normal(0, 0.2, 900)
    assert _alarms(det, rise, start=3000.0) == []
    # a spike is still a spike while the level settles
    assert _alarms(det, np.asarray([75.0 + 40.0]), start=3900.0) == [0]


def test_declarations_file_overrides_per_sensor_and_bad_ones_say_where(tmp_path: Path) -> None:
    path = tmp_path / "sensors.json"
    path.write_text(json.dumps({"pump": {"flow": {"kind": "level"}, "hours": {"kind": "counter"}}}))
    catalog = load_catalog(path)
    assert catalog.of("pump", "flow").kind == "level"
    assert catalog.of("pump", "hours").kind == "counter"
    assert catalog.of("pump", "bearing_temperature").kind == "thermal"
    assert catalog.of("pump", "unknown").kind == "level"
    with pytest.raises(ValueError, match=r"pump\.flow: kind 'gauge'"):
        parse({"pump": {"flow": {"kind": "gauge"}}})
    with pytest.raises(ValueError, match=r"motor\.t: settle_s"):
        parse({"motor": {"t": {"kind": "thermal", "settle_s": -1}}})
    assert parse({"m": {"t": {"kind": "thermal"}}})["m"]["t"].settle_s > 0
    assert SensorCatalog().of(None, "x").kind == "level"
