"""Bodies and answers of the reliability routes (`pdm_reliability`'s results, typed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

Duration = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
Cost = Annotated[float, Field(ge=1e-6, le=1e12, allow_inf_nan=False)]
Life = Annotated[float, Field(ge=1e-6, le=1e9, allow_inf_nan=False)]
Confidence = Annotated[float, Field(gt=0.5, lt=1, description="Two-sided confidence level.")]
Rating = Annotated[StrictInt, Field(ge=1, le=10)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class WeibullFitRequest(BaseModel):
    """Lifetimes (any one unit, e.g. hours) and, per lifetime, whether it ended in a failure
    (`true`) or the unit was still running (`false`, right-censored); no flags: all failed."""

    model_config = ConfigDict(extra="forbid")

    durations: list[Duration] = Field(min_length=2, max_length=100_000)
    observed: list[bool] | None = Field(None, max_length=100_000)
    confidence: Confidence = 0.95

    @model_validator(mode="after")
    def _same_length(self) -> WeibullFitRequest:
        if self.observed is not None and len(self.observed) != len(self.durations):
            raise ValueError(
                f"`observed` has {len(self.observed)} flags for {len(self.durations)} durations"
            )
        return self


class WeibullResult(BaseModel):
    """A censored maximum-likelihood Weibull fit: shape `beta` (> 1 wear-out), scale `eta`
    (characteristic life, 63.2 % failed), Fisher-matrix bounds at `confidence`, B10 life
    (10 % failed) with bounds, and MTBF (mean life), all in the durations' unit."""

    beta: float
    eta: float
    beta_lower: float
    beta_upper: float
    eta_lower: float
    eta_upper: float
    confidence: float
    b10: float
    b10_lower: float
    b10_upper: float
    mtbf: float
    n_failures: int
    n_censored: int
    log_likelihood: float


class FleetWeibullResult(WeibullResult):
    """A fit from the fleet's history: lifetimes in hours between confirmed failures
    (completed work orders whose findings say a failure was found), per asset, the running
    time since the last one censored."""

    asset_type: str
    failure_mode: str
    assets: int
    as_of: datetime
    unit: Literal["hours"] = "hours"


class PMIntervalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beta: Annotated[float, Field(ge=0.05, le=50, allow_inf_nan=False, description="Shape.")]
    eta: Annotated[Life, Field(description="Scale (characteristic life, any time unit).")]
    cost_preventive: Annotated[Cost, Field(description="Cp: a planned replacement.")]
    cost_corrective: Annotated[Cost, Field(description="Cf: a failure and its consequences.")]


class PMIntervalResult(BaseModel):
    """The age-replacement optimum: `interval` (in eta's unit) minimising the long-run cost
    rate, or null with `reason` when running to failure is best (no wear-out, or Cp >= Cf)."""

    beta: float
    eta: float
    cost_preventive: float
    cost_corrective: float
    interval: float | None
    cost_rate: float | None
    reliability_at_interval: float | None
    run_to_failure_cost_rate: float
    saving: float | None = Field(description="Share of the run-to-failure cost rate saved.")
    reason: str | None


class AssetRiskItem(BaseModel):
    """An asset on the 5x5 risk matrix: probability of any predicted failure (from its active
    predictive orders), consequence (mean cost of a failure), `risk` their product (the
    expected loss), the bands and the level."""

    asset_id: str
    probability: float
    consequence: float
    risk: float
    probability_band: int
    consequence_band: int
    level: Literal["low", "medium", "high", "extreme"]
    failure_modes: list[str]
    work_order_ids: list[str]


class RiskRanking(BaseModel):
    items: list[AssetRiskItem]
    matrix: dict[str, object] = Field(description="Band edges, labels and the level grid.")


class ParetoItem(BaseModel):
    key: str
    value: float
    share: float
    cumulative_share: float
    vital_few: bool


class ParetoResult(BaseModel):
    """Failure modes of confirmed failures by count or cost, with the "vital few" reaching
    `threshold` of the total."""

    by: Literal["count", "cost"]
    items: list[ParetoItem]
    total: float
    threshold: float
    vital_few: list[str]


class FmeaRowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: Text
    failure_mode: Text
    effect: Text
    cause: Text
    current_controls: Annotated[str, StringConstraints(max_length=2000)] = ""
    severity: Rating
    occurrence: Rating
    detection: Rating


class FmeaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[FmeaRowIn] = Field(min_length=1, max_length=2000)


class FmeaRowOut(FmeaRowIn):
    rpn: int = Field(description="S x O x D, 1..1000.")
    action_priority: Literal["H", "M", "L"] = Field(
        description="AIAG & VDA (2019) action priority."
    )


class FmeaResult(BaseModel):
    """The rows in the order to work on them: action priority, then RPN, then severity."""

    rows: list[FmeaRowOut]
