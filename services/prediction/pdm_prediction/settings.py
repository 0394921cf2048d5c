"""Prediction service settings (`PDM_PREDICTION_*`); connections come from `CommonSettings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings
from pdm_prediction.serving import DEFAULT_ROUTES


class PredictionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_PREDICTION_")

    group_id: str = Field(
        "pdm-prediction", description="Kafka consumer group of the prediction service."
    )
    http_port: int = Field(8003, description="Port of `/health`, `/ready` and `/metrics`.")
    batch_max_records: int = Field(200, ge=1, description="Most requests handled per batch.")
    routes: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_ROUTES.items()},
        description="Asset type -> {part (`failure`, `rul`): registered model name}, as JSON.",
    )
    history_rows: int = Field(
        64, ge=1, description="Stored rows (timestamps) read per asset for history models."
    )
    min_history_rows: int = Field(
        5, ge=1, description="Fewer rows of history than this is an `insufficient_history` error."
    )
    readings_max_age_hours: float = Field(
        24.0, gt=0, description="Stored readings older than this are not used."
    )
    stale_after_s: float = Field(
        900.0, gt=0, description="Readings older than this reduce the confidence."
    )
    max_skew_s: float = Field(
        300.0,
        gt=0,
        description="Sensors of one stored snapshot read further apart than this reduce the "
        "confidence.",
    )
    reply_part_size: int = Field(
        200,
        ge=1,
        le=1000,
        description="Predictions per reply message of a batch request (keeps each reply "
        "under the broker's message size limit).",
    )
    periodic_interval_s: float = Field(
        300.0,
        ge=0,
        description="Re-assess every asset of a served type that reported recently this "
        "often (one replica queues the round); 0 turns the timer off.",
    )
    top_factors: int = Field(3, ge=1, le=20, description="TreeSHAP factors per prediction.")
    shadow_scoring: bool = Field(
        True,
        description="While a model has a `challenger` version, also score it on the same "
        "requests and store the result in `shadow_predictions` (never published).",
    )
    factors_min_probability: float = Field(
        0.01,
        ge=0,
        le=1,
        description="TreeSHAP factors are computed for failure probabilities at or above this "
        "(below it `top_factors` is empty): SHAP costs ~0.12 ms per asset, most of a batch's "
        "time, and explains little on a healthy asset. 0 explains every prediction.",
    )
