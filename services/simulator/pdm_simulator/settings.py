"""Simulator settings (`PDM_SIMULATOR_*`); connections come from `CommonSettings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings


class SimulatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_SIMULATOR_")

    group_id: str = Field("pdm-simulator", description="Kafka consumer group of the simulator.")
    http_port: int = Field(8009, description="Port of `/health`, `/ready` and `/metrics`.")
    fleet: dict[str, int] = Field(
        default_factory=lambda: {"pump": 3, "motor": 2, "compressor": 2, "milling": 2},
        description="Machines per type (pump, motor, compressor, milling), as JSON; ids are "
        "`<type>-001`, `<type>-002`, ...",
    )
    seed: int = Field(42, description="Seed of every machine's noise: same seed, same stream.")
    rate_hz: float = Field(1.0, gt=0, le=100, description="Snapshots per machine per second.")
    scenario: str = Field(
        "normal",
        description="Operating point at start: normal, high_load, precision, "
        "cold_environment, high_speed.",
    )
