"""Operating context: a change the plant made on purpose is not an anomaly.

When an asset's scenario (operating point) changes, or it is repaired, the detectors of its
context-following sensors (`setpoint`, `thermal` in `pdm_ml.detectors.semantics`) re-learn
the new normal instead of alarming on it. Today the simulator's ground truth announces such
changes (`pdm.simulator.truth.v1`: `scenario.changed`, `failure.cleared`); asset and work-order
events will announce them for real plants.
"""

from __future__ import annotations

from pdm_anomaly.state import AssetState
from pdm_ml.detectors.semantics import SensorCatalog


def rebaseline(state: AssetState, reason: str, ts: float, catalog: SensorCatalog) -> int:
    """Re-baseline the context-following detectors of one asset; how many were. `reason`
    (scenario, repair, start-up) is for the caller's log: every reason re-baselines alike."""
    count = 0
    for sensor, detector in state.detectors.items():
        semantics = catalog.of(state.asset_type, sensor)
        rebase = getattr(detector, "rebaseline", None)
        if semantics.follows_context and rebase is not None:
            rebase(ts, semantics.settle_s)
            count += 1
    return count
