"""What can be simulated: asset types, failure modes and severity levels."""

from __future__ import annotations

from typing import Literal, cast, get_args

AssetType = Literal["pump", "motor", "compressor", "milling"]
ASSET_TYPES: tuple[AssetType, ...] = get_args(AssetType)
FailureMode = Literal[
    "bearing_degradation", "motor_overheating", "sensor_interference", "tool_wear", "seal_leak"
]
FAILURE_MODES: tuple[FailureMode, ...] = get_args(FailureMode)
SeverityLevel = Literal["low", "medium", "high", "critical"]
SEVERITY_LEVELS: tuple[SeverityLevel, ...] = get_args(SeverityLevel)


def _asset_type(value: str) -> AssetType:
    if value not in ASSET_TYPES:
        raise ValueError(f"unknown asset type {value!r}; one of {list(ASSET_TYPES)}")
    return cast(AssetType, value)
