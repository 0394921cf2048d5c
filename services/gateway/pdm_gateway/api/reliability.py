"""Reliability analytics over posted data and over the fleet's maintenance history
(`pdm_reliability`): censored Weibull fits, the age-replacement PM interval, the asset risk
ranking, the Pareto of failure modes, FMEA action priorities. The history is the scheduler's
`work_orders`: a completed order whose findings say a failure was found is a confirmed failure
(the platform's ground-truth label). Too little data is a 422 (posted) or 409 (history)
problem naming what is missing, never a 500."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from pdm_common.events import SENSOR_PATTERN
from pdm_gateway.api.deps import FromQuery, aware, stores
from pdm_gateway.api.schemas.reliability import (
    AssetRiskItem,
    FleetWeibullResult,
    FmeaRequest,
    FmeaResult,
    FmeaRowOut,
    ParetoResult,
    PMIntervalRequest,
    PMIntervalResult,
    RiskRanking,
    WeibullFitRequest,
    WeibullResult,
)
from pdm_gateway.keys import Principal
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import READ
from pdm_gateway.store.work_orders import WorkOrderReader
from pdm_reliability import fmea, pm_interval, risk, weibull

router = APIRouter(prefix="/v1/reliability", tags=["reliability"])
TypeQuery = Annotated[str, Query(pattern=SENSOR_PATTERN, description="Asset type.")]
OptionalTypeQuery = Annotated[
    str | None, Query(pattern=SENSOR_PATTERN, description="Only this asset type.")
]


def _fit(durations: Any, observed: Any, confidence: float, status: int) -> dict[str, Any]:
    """`fit_weibull(...).to_dict()`, unusable data as a `status` problem."""
    try:
        return weibull.fit_weibull(durations, observed, confidence=confidence).to_dict()
    except weibull.WeibullDataError as exc:
        raise Problem(status, str(exc), slug="insufficient-data") from exc
    except weibull.WeibullFitError as exc:
        raise Problem(status, str(exc), slug="fit-failed") from exc
    except Exception as exc:  # numerical trouble with extreme inputs: the data's, not ours
        raise Problem(
            status, f"the fit failed on these lifetimes: {exc!r}", slug="fit-failed"
        ) from exc


@router.post(
    "/weibull", response_model=WeibullResult, responses=problem_responses(401, 403, 422, 429)
)
async def fit_posted(body: WeibullFitRequest, _: Principal = READ) -> WeibullResult:
    """Fit a 2-parameter Weibull to posted lifetimes, survivors (`observed: false`) counted as
    right-censored. Needs at least 2 failures."""
    fitted = await asyncio.to_thread(_fit, body.durations, body.observed, body.confidence, 422)
    return WeibullResult.model_validate(fitted)


def histories(
    fleet: Iterable[Mapping[str, Any]],
    failures: Iterable[Mapping[str, Any]],
    asset_type: str,
    in_service_known: bool = False,
) -> list[weibull.AssetHistory]:
    """One `AssetHistory` per asset of the fleet (rows of `asset_id`, `first_seen`) with its
    confirmed failures (rows of `asset_id`, `ts`, `mode`). An asset is in service from the
    earliest of its first sighting and its first failure; a failure of an asset not in the
    fleet adds the asset, in service from that failure on."""
    seen: dict[str, datetime] = {r["asset_id"]: r["first_seen"] for r in fleet}
    by_asset: dict[str, list[weibull.Failure]] = {a: [] for a in seen}
    for row in failures:
        by_asset.setdefault(row["asset_id"], []).append(weibull.Failure(row["ts"], row["mode"]))
    out = []
    for asset_id, found in sorted(by_asset.items()):
        stamps = [f.ts for f in found] + ([seen[asset_id]] if asset_id in seen else [])
        out.append(weibull.AssetHistory(asset_id, asset_type, min(stamps), found, in_service_known))
    return out


@router.get(
    "/weibull",
    response_model=FleetWeibullResult,
    responses=problem_responses(401, 403, 409, 422, 429),
)
async def fit_history(
    request: Request,
    asset_type: TypeQuery,
    failure_mode: Annotated[str, Query(pattern=SENSOR_PATTERN, description="e.g. `seal_leak`.")],
    in_service_known: Annotated[
        bool,
        Query(
            description="True when an asset's first sighting is its installation: the "
            "interval up to the first failure (and a never-failed asset's whole life) then "
            "counts. False (default): only intervals that start at a known failure count."
        ),
    ] = False,
    confidence: Annotated[float, Query(gt=0.5, lt=1)] = 0.95,
    _: Principal = READ,
) -> FleetWeibullResult:
    """Fit the life of one failure mode on one asset type from the fleet's history: times
    between confirmed failures per asset, the running time since the last one censored."""
    reader = WorkOrderReader(stores(request).db)
    fleet = await reader.fleet(asset_type)
    failures = await reader.confirmed_failures(asset_type)
    now = datetime.now(UTC)
    try:
        lives = weibull.lifetimes_from_history(
            histories(fleet, failures, asset_type, in_service_known), now
        )
    except ValueError as exc:  # e.g. a completion stamped in the future (clock skew)
        raise Problem(409, f"the history cannot be used: {exc}", slug="bad-history") from exc
    found = lives.get((asset_type, failure_mode))
    if found is None:
        raise Problem(
            409,
            f"no lifetimes of failure mode {failure_mode!r} on asset type {asset_type!r}: "
            f"{len(failures)} confirmed failures of the type in the history, none in that "
            "mode with a known start",
            slug="insufficient-data",
        )
    fitted = await asyncio.to_thread(_fit, found.durations, found.observed, confidence, 409)
    return FleetWeibullResult.model_validate(
        fitted
        | {
            "asset_type": asset_type,
            "failure_mode": failure_mode,
            "assets": len(set(found.asset_ids)),
            "as_of": now,
        }
    )


@router.post(
    "/pm-interval",
    response_model=PMIntervalResult,
    responses=problem_responses(401, 403, 422, 429),
)
async def pm(body: PMIntervalRequest, _: Principal = READ) -> PMIntervalResult:
    """The optimal age-replacement interval of a Weibull(beta, eta) life for the costs of a
    planned replacement (Cp) and a failure (Cf), and its saving against running to failure."""
    try:
        result = pm_interval.optimal_pm_interval(
            body.beta, body.eta, body.cost_preventive, body.cost_corrective
        )
    except (ValueError, ArithmeticError) as exc:
        raise Problem(422, f"no interval for these inputs: {exc}", slug="validation") from exc
    return PMIntervalResult.model_validate(result.to_dict())


def asset_risks(
    rows: Iterable[Mapping[str, Any]],
) -> list[tuple[str, float, float, list[str], list[str]]]:
    """Per asset, from its active predictive orders (rows of `asset_id`, `failure_probability`,
    `consequence`, `failure_mode`, `work_order_id`): the probability that any of the predicted
    failures happens (independent modes: `1 - prod(1 - p)`) and the mean consequence of a
    failure (`sum(p * c) / P`, so that probability x consequence is the expected loss), with
    the modes and order ids. Assets by id."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["asset_id"], []).append(row)
    out = []
    for asset_id in sorted(grouped):
        orders = grouped[asset_id]
        ps = [min(max(float(r["failure_probability"]), 0.0), 1.0) for r in orders]
        cs = [max(float(r["consequence"] or 0.0), 0.0) for r in orders]
        probability = -math.expm1(math.fsum(math.log1p(-p) if p < 1 else -math.inf for p in ps))
        loss = math.fsum(p * c for p, c in zip(ps, cs, strict=True))
        consequence = loss / probability if probability > 0 else max(cs, default=0.0)
        modes = sorted({str(r["failure_mode"] or "unknown") for r in orders})
        ids = [str(r["work_order_id"]) for r in orders]
        out.append((asset_id, probability, consequence, modes, ids))
    return out


@router.get("/risk", response_model=RiskRanking, responses=problem_responses(401, 403, 429))
async def risk_ranking(
    request: Request,
    asset_type: OptionalTypeQuery = None,
    _: Principal = READ,
) -> RiskRanking:
    """Assets most at risk first, from their active predictive orders: probability of a
    predicted failure x its consequence (failure cost plus downtime cost over the repair's
    estimated hours), placed on the default 5x5 risk matrix."""
    rows = await WorkOrderReader(stores(request).db).predictive_risk(asset_type)
    per_asset = asset_risks(rows)
    extra = {a: (modes, ids) for a, _p, _c, modes, ids in per_asset}
    ranked = risk.rank_assets((a, p, c) for a, p, c, _m, _i in per_asset)
    items = [
        AssetRiskItem.model_validate(
            r.to_dict()
            | {"failure_modes": extra[r.asset_id][0], "work_order_ids": extra[r.asset_id][1]}
        )
        for r in ranked
    ]
    return RiskRanking(items=items, matrix=risk.DEFAULT_MATRIX.to_dict())


@router.get(
    "/pareto",
    response_model=ParetoResult,
    responses=problem_responses(401, 403, 409, 422, 429),
)
async def failure_pareto(
    request: Request,
    by: Literal["count", "cost"] = "count",
    asset_type: OptionalTypeQuery = None,
    since: FromQuery = None,
    threshold: Annotated[float, Query(gt=0, le=1)] = 0.8,
    _: Principal = READ,
) -> ParetoResult:
    """Failure modes of the confirmed failures (completed orders with a failure found), by
    number or by their actual cost, and the vital few reaching `threshold` of the total."""
    rows = await WorkOrderReader(stores(request).db).confirmed_failures(
        asset_type, aware(since, "from")
    )
    pairs = [(r["mode"], 1.0 if by == "count" else float(r["actual_cost"] or 0.0)) for r in rows]
    try:
        result = risk.pareto(pairs, threshold)
    except ValueError as exc:
        what = "confirmed failures" if by == "count" else "failure costs (findings.actual_cost)"
        raise Problem(
            409,
            f"nothing to analyse: no {what} recorded yet ({len(rows)} confirmed failures)",
            slug="insufficient-data",
        ) from exc
    return ParetoResult.model_validate(result.to_dict() | {"by": by})


@router.post("/fmea", response_model=FmeaResult, responses=problem_responses(401, 403, 422, 429))
async def fmea_worksheet(body: FmeaRequest, _: Principal = READ) -> FmeaResult:
    """RPN (S x O x D) and the AIAG & VDA (2019) action priority of each posted PFMEA row,
    in the order to work on them (H, M, L; then RPN; then severity)."""
    try:
        rows = [fmea.FmeaRow(**r.model_dump()) for r in body.rows]
    except ValueError as exc:
        raise Problem(422, str(exc), slug="validation") from exc
    return FmeaResult(rows=[FmeaRowOut.model_validate(r.to_dict()) for r in fmea.worksheet(rows)])
