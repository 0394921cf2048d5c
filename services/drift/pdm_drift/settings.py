"""Drift service settings (`PDM_DRIFT_*`); connections (broker, database, MLflow) come from
`CommonSettings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings


class DriftSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_DRIFT_")

    group_id: str = Field("pdm-drift", description="Kafka consumer group of the drift service.")
    http_port: int = Field(8006, description="Port of `/health`, `/ready` and `/metrics`.")
    batch_max_records: int = Field(500, ge=1, description="Most events handled per batch.")

    # -- checks ------------------------------------------------------------------------------
    check_interval_s: float = Field(
        900.0,
        gt=0,
        description="A drift check of every served champion (and every asset type's sensors) "
        "this often; one replica checks (PostgreSQL advisory lock).",
    )
    window_s: float = Field(
        3600.0, gt=0, description="The current window of a check: readings of the last N s."
    )
    min_current_rows: int = Field(
        50,
        ge=1,
        description="A check needs at least this many current rows (feature rows, or "
        "snapshots for a sensors check); fewer: no report.",
    )
    max_current_readings: int = Field(
        500_000,
        ge=1000,
        description="Most stored readings one check reads (the newest of the window).",
    )
    warmup_rows: int = Field(
        4,
        ge=0,
        description="Per asset, the first rows of the window are left out of a features check "
        "(their trailing windows are still filling up).",
    )
    report_rows: int = Field(
        2000,
        ge=100,
        description="Rows per side of the stored Evidently HTML report (sampled).",
    )
    html_reports: bool = Field(
        True, description="Store Evidently's HTML report with every check (slower checks)."
    )
    html_max_columns: int = Field(
        10,
        ge=1,
        description="Columns in the Evidently HTML report: the most important (then the most "
        "drifted) ones. Evidently needs ~0.2 s and ~70 KB per column on top of ~4 MB per "
        "report; the verdicts in the report's row cover every column regardless.",
    )
    html_keep: int = Field(
        50,
        ge=1,
        description="Reports whose Evidently HTML is kept (the newest; ~4 MB each): older "
        "reports keep their verdicts, headlines and columns, not the page.",
    )
    sensors_min_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A raw sensor is checked when it is present in at least this share of "
        "an asset type's snapshots.",
    )

    # -- retraining --------------------------------------------------------------------------
    retrain_weighted_share: float = Field(
        0.3,
        ge=0,
        le=1,
        description="A features report whose importance-weighted drifted share is at least "
        "this triggers a retrain (when auto_retrain).",
    )
    retrain_cooldown_s: float = Field(
        6 * 3600.0,
        ge=0,
        description="After a retrain of a model ends (finished or failed), another one is "
        "refused for this long (a command with force=true overrides it).",
    )
    auto_retrain: bool = Field(
        False,
        description="Retrain on drift without a person asking. Off by default: the simulated "
        "fleet's models are trained on histories sampled every 60 s and served on 1 Hz "
        "readings, so their feature checks read as drifted on a healthy fleet (weighted "
        "share ~1.0) and a retrain on generated histories cannot change that.",
    )
    auto_promote: bool = Field(
        True,
        description="Move `champion` to a challenger at least as good as the champion on the "
        "same held-out machines (else it stays `challenger` for a person to promote).",
    )
    retrain_every_days: float = Field(
        0.0,
        ge=0,
        description="Retrain each simulated type's models on a schedule: when neither a "
        "retrain nor a champion move happened for this many days (0: no schedule). The "
        "challenger still has to win its judgement.",
    )
    shadow_period_s: float = Field(
        21600.0,
        ge=0,
        description="With auto-promote, a challenger at least as good offline is first "
        "shadow-scored for this long, then judged live against the champion on the same "
        "requests (kept when significantly worse on recall, precision or RUL coverage); 0: "
        "promoted on the offline comparison alone, at once.",
    )
    quick_retrain: bool = Field(
        False,
        description="Retrain with `SimConfig.quick` (seconds; tests and demos), not the full "
        "configuration (minutes).",
    )
    retrain_seed: int | None = Field(
        None,
        description="Seed of a retrain's generated fleet, split and LightGBM; empty: a new "
        "seed per retrain (from its job id), so each retrain draws new histories.",
    )
    stale_job_s: float = Field(
        3600.0,
        gt=0,
        description="A running retrain whose heartbeat is older than this is marked failed "
        "(its replica died), so the model can be retrained again.",
    )

    # -- live performance ------------------------------------------------------------------
    performance_days: float = Field(
        7.0,
        gt=0,
        description="Live performance (precision / recall at the horizon, lead time, RUL error "
        "and coverage per model version; stored in `model_performance` and exported as "
        "metrics) is computed at each timed check over this many past days of stored "
        "predictions and outcome labels.",
    )
    performance_horizon_h: float = Field(
        24.0, gt=0, description="Horizon of the live precision and recall, hours."
    )
    performance_recent_days: float = Field(
        1.0,
        gt=0,
        description="The recent part of the look-back, tested against the part before it: "
        "a significant drop of precision, recall or RUL coverage marks the version degraded.",
    )
    performance_min_events: int = Field(
        10,
        ge=1,
        description="Judged events (alarms, failures, RUL predictions) each part needs before "
        "a drop is tested.",
    )
    performance_alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Significance level of the one-sided Fisher exact test of a drop.",
    )
    retrain_on_performance: bool = Field(
        True,
        description="Retrain a simulated type's models when its champion's live performance "
        "is degraded (the cooldown and the one-retrain claim still apply).",
    )

    # -- background loops --------------------------------------------------------------------
    outbox_interval_s: float = Field(
        1.0, gt=0, description="Longest wait before unpublished events are sent again."
    )
