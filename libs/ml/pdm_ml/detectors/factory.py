"""The streaming detector for one sensor, chosen by what the sensor measures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pdm_ml.detectors.counter import CounterDetector, SilentDetector
from pdm_ml.detectors.semantics import SensorCatalog
from pdm_ml.detectors.univariate import UnivariateConfig, UnivariateDetector

Detector = UnivariateDetector | CounterDetector | SilentDetector
#: How much larger a thermal sensor's level excess must be than a plain level's to count.
THERMAL_GATE = 2.0


def detector_for(
    catalog: SensorCatalog, asset_type: str | None, config: UnivariateConfig | None = None
) -> Callable[[str], Detector]:
    """A factory `sensor -> detector` for the sensors of one asset type."""
    config = config or UnivariateConfig()
    # A temperature follows the ambient through the day and the load through its lag: its
    # level counts once it leaves the day's band by half the band (twice it, while the band
    # has not seen a day yet); overheating failures move it by tens of kelvin.
    thermal = replace(
        config,
        min_level_fraction=THERMAL_GATE * config.min_level_fraction,
        young_level_fraction=THERMAL_GATE * config.young_level_fraction,
        provisional_level_fraction=THERMAL_GATE * config.provisional_level_fraction,
    )

    def make(sensor: str) -> Detector:
        kind = catalog.of(asset_type, sensor).kind
        if kind == "counter":
            return CounterDetector(config, sensor=sensor)
        if kind == "categorical":
            return SilentDetector(sensor)
        if kind == "thermal":
            return UnivariateDetector(thermal, sensor=sensor)
        return UnivariateDetector(config, sensor=sensor)

    return make
