"""Features of machine-tool (milling) snapshots: one code path for training and serving.

A snapshot is the five process sensors a milling machine publishes plus the product quality
of the part being made (AI4I 2020 layout). Training calls `features_frame` on a DataFrame;
serving calls `features_row` on one dict of sensor values. Both evaluate the same expressions
(`_derive`) in the same order in IEEE float64, so the same input gives bit-identical features.

Derived features are the physical quantities the failure mechanisms of the AI4I 2020 data
set depend on (Matzka 2020, its generation rules): heat dissipation needs the process-air
temperature difference, power failures depend on mechanical power, overstrain on tool wear x
torque, and the overstrain limit depends on the product quality.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from lightgbm import LGBMClassifier

#: Sensor names a simulated milling machine publishes (units: K, K, rpm, Nm, min).
SENSORS: tuple[str, ...] = (
    "air_temperature",
    "process_temperature",
    "rotational_speed",
    "torque",
    "tool_wear",
)
#: Metadata of the snapshot: product quality variant, L(ow) / M(edium) / H(igh).
QUALITY = "quality"
QUALITY_CODES: dict[str, int] = {"L": 0, "M": 1, "H": 2}
#: AI4I 2020 column -> platform name.
AI4I_COLUMNS: dict[str, str] = {
    "Type": QUALITY,
    "Air temperature [K]": "air_temperature",
    "Process temperature [K]": "process_temperature",
    "Rotational speed [rpm]": "rotational_speed",
    "Torque [Nm]": "torque",
    "Tool wear [min]": "tool_wear",
}
RPM_TO_RAD_S = 2.0 * math.pi / 60.0
DERIVED: tuple[str, ...] = ("temperature_difference", "power", "overstrain")
#: Model inputs, in order (raw sensors, encoded quality, derived).
FEATURES: tuple[str, ...] = (*SENSORS, "quality_code", *DERIVED)
FEATURE_SET = "machining:v1"


class MissingSensorError(ValueError):
    """A snapshot lacks a sensor (or the quality) the features need: say which."""


def _derive(air: Any, process: Any, speed: Any, torque: Any, wear: Any) -> dict[str, Any]:
    """The derived features; the one place their formulas live (scalars or Series alike)."""
    return {
        "temperature_difference": process - air,
        "power": torque * speed * RPM_TO_RAD_S,  # W = Nm * rad/s
        "overstrain": wear * torque,  # min * Nm
    }


def _quality_code(value: object) -> int:
    code = QUALITY_CODES.get(str(value).strip().upper())
    if code is None:
        raise ValueError(f"quality {value!r} is not one of {sorted(QUALITY_CODES)}")
    return code


def rename_ai4i(frame: pd.DataFrame) -> pd.DataFrame:
    """AI4I 2020 columns renamed to the platform's sensor names (other columns kept)."""
    return frame.rename(columns=AI4I_COLUMNS)


def features_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Features of every row of `frame` (platform sensor names plus `quality`), float64.

    Only `FEATURES` are returned, so labels and identifiers in `frame` can never leak in.
    """
    import pandas as pd

    missing = [c for c in (*SENSORS, QUALITY) if c not in frame.columns]
    if missing:
        raise MissingSensorError(
            f"snapshot frame lacks {missing}; needs {[*SENSORS, QUALITY]} "
            "(AI4I columns: call rename_ai4i first)"
        )
    raw = {s: frame[s].astype("float64") for s in SENSORS}
    if raw_nan := [s for s, v in raw.items() if v.isna().any()]:
        raise MissingSensorError(f"sensors {raw_nan} have missing values")
    out = pd.DataFrame(raw, index=frame.index)
    out["quality_code"] = frame[QUALITY].map(_quality_code).astype("float64")
    for name, values in _derive(*(raw[s] for s in SENSORS)).items():
        out[name] = values
    return out[list(FEATURES)]


def features_row(values: Mapping[str, object]) -> dict[str, float]:
    """Features of one snapshot `{sensor: value, ..., "quality": "L"}` (serving path)."""
    missing = [s for s in (*SENSORS, QUALITY) if values.get(s) is None or _is_nan(values.get(s))]
    if missing:
        raise MissingSensorError(
            f"snapshot lacks {missing}; a milling snapshot needs {[*SENSORS, QUALITY]}"
        )
    raw = {s: float(values[s]) for s in SENSORS}  # type: ignore[arg-type]
    out: dict[str, float] = dict(raw)
    out["quality_code"] = float(_quality_code(values[QUALITY]))
    out.update({k: float(v) for k, v in _derive(*(raw[s] for s in SENSORS)).items()})
    return {name: out[name] for name in FEATURES}


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def top_contributions(
    model: LGBMClassifier, features: pd.DataFrame | Mapping[str, float], k: int = 3
) -> list[list[tuple[str, float]]]:
    """Per row, the `k` features with the largest |TreeSHAP| contribution (log-odds).

    Accepts a feature frame or one `features_row` dict (serving).
    """
    frame = features if isinstance(features, pd.DataFrame) else pd.DataFrame([dict(features)])
    frame = frame[list(FEATURES)]
    contrib = np.asarray(model.predict(frame, pred_contrib=True), dtype=float)[:, :-1]  # bias
    out = []
    for row in contrib:
        order = np.argsort(-np.abs(row))[:k]
        out.append([(FEATURES[i], float(row[i])) for i in order])
    return out
