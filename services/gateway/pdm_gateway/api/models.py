"""Model lifecycle: the served models (from the MLflow registry), their alias history,
retrains and live performance, drift reports, and the commands of the drift service (check,
retrain, promote, rollback).

Reads come from the registry (`GET /v1/models`, in a worker thread under
`PDM_GATEWAY_REGISTRY_TIMEOUT_S`) and from the drift service's tables (CQRS read side); every
change is a `pdm.drift.commands.v1` command answered by the drift service through Kafka
request/reply, mapped to HTTP as its status says (ok 200, accepted 202, not_found 404,
conflict 409 e.g. a retrain in cooldown, invalid 422, unavailable 503; 504 when it does not
answer in time). As for maintenance commands, an `Idempotency-Key` answers a repeat from the
stored answer and derives the command id, which the drift service applies once.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from pdm_common import registry, topics
from pdm_common.drift import (
    MODEL_NAME_PATTERN,
    DriftAction,
    DriftCommand,
    DriftCommandResult,
    LivePerformance,
    PerformanceRole,
    PerformanceSpan,
)
from pdm_gateway import cursors, replies
from pdm_gateway.api.deps import CursorQuery, LimitQuery, bus, decode_cursor, page_limit, stores
from pdm_gateway.api.maintenance import command_id
from pdm_gateway.api.readings import IDEMPOTENCY_KEY
from pdm_gateway.api.schemas.models import (
    AliasHistoryEntry,
    DriftCheckBody,
    DriftCommandOutcome,
    DriftReportDetail,
    DriftReportPage,
    DriftReportSummary,
    ModelHistory,
    ModelList,
    ModelPerformance,
    ModelVersionInfo,
    PromoteBody,
    ReportKind,
    RetrainBody,
    RetrainJob,
    RollbackBody,
    ServedModelInfo,
)
from pdm_gateway.idempotency import IdempotentRequest
from pdm_gateway.keys import Principal
from pdm_gateway.model_registry import ModelRegistryView
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.ratelimit import RateLimiter, retry_after_header
from pdm_gateway.security import ADMIN, READ, WRITE
from pdm_gateway.store.drift import DriftReader

router = APIRouter(prefix="/v1")
#: Drift command result status -> HTTP status.
STATUS = {
    "ok": 200,
    "accepted": 202,
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
    "unavailable": 503,
}
DRIFT_SERVICE = "drift service"
#: Retrains listed with the first page of a model's history.
RETRAINS_SHOWN = 20
NamePath = Annotated[
    str,
    Path(
        pattern=MODEL_NAME_PATTERN,
        description="Registered model name `<task>-<asset type>`, e.g. `failure-pump`.",
    ),
]
WRITE_ERRORS = (401, 403, 404, 409, 413, 422, 429, 502, 503, 504)
COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = problem_responses(*WRITE_ERRORS) | {
    202: {"model": DriftCommandOutcome, "description": "Accepted: under way in the drift service"}
}


class CheckLimiter:
    """The tight per-key limit of `POST /v1/drift/check` (a check reads every served model's
    recent features): `per_min` a minute, no burst. A retry of an admitted request (same
    Idempotency-Key, so the same command id, e.g. after a 504) is not charged again."""

    def __init__(self, per_min: float, remember: int = 10_000) -> None:
        self.rate = per_min / 60.0
        self.limiter = RateLimiter(burst_s=1.0)
        self.remember = remember
        self._admitted: OrderedDict[uuid.UUID, None] = OrderedDict()

    def admit(self, key_id: str, command: uuid.UUID | None) -> float:
        """0.0 when the request may go ahead, else the seconds until it may."""
        if command is not None and command in self._admitted:
            return 0.0
        wait = self.limiter.acquire(key_id, self.rate)
        if wait == 0.0 and command is not None:
            self._admitted[command] = None
            while len(self._admitted) > self.remember:
                self._admitted.popitem(last=False)
        return wait


def drift_reader(request: Request) -> DriftReader:
    return DriftReader(stores(request).db)


def model_registry(request: Request) -> ModelRegistryView:
    view: ModelRegistryView = request.app.state.model_registry
    return view


class _Stored(BaseModel):
    """What an Idempotency-Key keeps: the HTTP status and the body answered."""

    status: int
    body: Any


async def _command(
    request: Request,
    response: Response,
    who: Principal,
    idempotency_key: str | None,
    action: DriftAction,
    model_name: str | None,
    **fields: Any,
) -> Any:
    """Send one drift command and answer with its outcome; problems for refusals."""
    fingerprint = f"{request.method} {request.url.path}\n".encode() + await request.body()
    idempotent = IdempotentRequest(
        stores(request).idempotency, who.key_id, idempotency_key, fingerprint
    )
    stored = await idempotent.begin()
    if stored is not None:
        response.status_code = int(stored["status"])
        response.headers["Idempotent-Replayed"] = "true"
        return stored["body"]
    command = DriftCommand(
        command_id=command_id(who.key_id, idempotency_key),
        action=action,
        model_name=model_name,
        actor=who.name[:128] or "operator",
        **fields,
    )
    try:
        (reply, *_) = await bus(request).call(
            topics.DRIFT_COMMANDS,
            command.model_dump(mode="json", exclude_none=True),
            model_name or "all",
            DRIFT_SERVICE,
            replies.DRIFT_COMMAND,
        )
        status = _status(reply)
    except Exception:
        await idempotent.abandon()  # a repeat is the same command id: the service dedupes
        raise
    answer = DriftCommandOutcome(
        command_id=command.command_id,
        action=reply.action or action,
        status="accepted" if status == 202 else "ok",
        message=reply.message,
        reports=reply.reports,
        job_id=reply.job_id,
        alias_change=reply.alias_change,
    )
    response.status_code = status
    await idempotent.finish(status, _Stored(status=status, body=answer.model_dump(mode="json")))
    return answer


def _status(reply: DriftCommandResult) -> int:
    """The HTTP status of a reply; `Problem` for a refusal."""
    status = STATUS.get(reply.status)
    if status is None:
        raise Problem(502, f"the {DRIFT_SERVICE} answered an unknown status", slug="bad-upstream")
    if status >= 400:
        headers = {"Retry-After": "10"} if status == 503 else None
        slug = "drift-unavailable" if status == 503 else reply.status.replace("_", "-")
        raise Problem(status, reply.message or reply.status, slug=slug, headers=headers)
    return status


# --- models -----------------------------------------------------------------------------------


def _version(found: registry.ServedModel, alias: str) -> ModelVersionInfo | None:
    v = found.versions.get(alias)
    if v is None:
        return None
    return ModelVersionInfo(
        version=v.version, uri=v.uri, run_id=v.run_id, tags=dict(v.tags), metrics=dict(v.metrics)
    )


def served_model(found: registry.ServedModel) -> ServedModelInfo:
    task, _, asset_type = found.name.partition("-")
    return ServedModelInfo(
        name=found.name,
        task=task,
        asset_type=asset_type,
        description=found.description,
        tags=dict(found.tags),
        aliases=dict(found.aliases),
        champion=_version(found, "champion"),
        challenger=_version(found, "challenger"),
        previous=_version(found, "previous"),
        latest_version=found.latest_version,
        updated_at=found.updated_at,
    )


@router.get(
    "/models",
    response_model=ModelList,
    tags=["models"],
    responses=problem_responses(401, 403, 422, 429, 502, 503),
)
async def list_models(
    request: Request,
    task: Annotated[
        Literal["failure", "rul", "anomaly"] | None, Query(description="Only this task.")
    ] = None,
    _: Principal = READ,
) -> ModelList:
    """Every registered model the platform serves (`failure-*`, `rul-*`, `anomaly-*`) with
    the versions behind its `champion`, `challenger` and `previous` aliases (run metrics and
    tags), from the MLflow registry; 503 with `Retry-After` while the registry is away."""
    view = model_registry(request)
    found = await view.models()
    items = [served_model(m) for m in found if task is None or m.name.startswith(f"{task}-")]
    return ModelList(items=items, registry=view.public_uri)


@router.get(
    "/models/{name}/history",
    response_model=ModelHistory,
    tags=["models"],
    responses=problem_responses(400, 401, 403, 404, 422, 429, 503),
)
async def model_history(
    request: Request,
    name: NamePath,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> ModelHistory:
    """Which version served when: every alias move of the model (champion, challenger,
    previous) newest first, who or what moved it, why, with the metrics then; and, on the
    first page, its newest retrains. 404 when the drift service has recorded nothing for it."""
    after = decode_cursor(cursor, (datetime, str))
    limit = page_limit(request, limit)
    reader = drift_reader(request)
    rows = await reader.history(name, after, limit + 1)
    retrains = await reader.retrains(name, RETRAINS_SHOWN) if after is None else []
    if after is None and not rows and not retrains:
        raise Problem(
            404,
            f"no alias history for {name!r}: the drift service records every alias move it "
            "makes or sees on pdm.models.v1 (GET /v1/models lists the registry)",
            slug="not-found",
        )
    items = [AliasHistoryEntry.model_validate(r) for r in rows[:limit]]
    last = items[-1] if items else None
    more = len(rows) > limit
    return ModelHistory(
        model_name=name,
        items=items,
        retrains=[RetrainJob.model_validate(r) for r in retrains],
        next_cursor=cursors.encode(last.moved_at, str(last.change_id)) if more and last else None,
    )


@router.get(
    "/models/{name}/performance",
    response_model=ModelPerformance,
    tags=["models"],
    responses=problem_responses(400, 401, 403, 404, 422, 429, 503),
)
async def model_performance(
    request: Request,
    name: NamePath,
    role: Annotated[
        PerformanceRole | None,
        Query(description="`served` (published as champion) or `shadow` (as challenger)."),
    ] = None,
    span: Annotated[
        PerformanceSpan | None,
        Query(description="`all` (the whole look-back) or `recent` (its last part)."),
    ] = None,
    version: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,9}$", description="Only this model version.")
    ] = None,
    latest: Annotated[
        bool, Query(description="Only the newest computation (the rows of its last check).")
    ] = False,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> ModelPerformance:
    """How the model's versions do in production, newest computation first: at each timed
    drift check the drift service joins the stored predictions (and shadow predictions of a
    challenger) of its look-back window with the outcome labels (work orders completed with
    their findings, failures) and keeps, per version, role and span, the figures: for failure
    models precision and recall of the alarms at `horizon_h` and the lead time before the
    failures caught; for RUL models the error (MAE, bias, in hours) of the median and how often
    the p10-p90 band held the real failure. `degraded` marks a significant drop of the recent
    part against the part before it (`reason` says which test). 404 when the first page is
    empty: nothing computed yet for the model, or nothing the filters select."""
    after = decode_cursor(cursor, (datetime, str, str, str))
    limit = page_limit(request, limit)
    filters = {"role": role, "span": span, "model_version": version}
    rows = await drift_reader(request).performance(name, filters, latest, after, limit + 1)
    if after is None and not rows:
        asked = [f"{k}={v}" for k, v in filters.items() if v is not None]
        asked += ["latest"] if latest else []
        which = f" matching {', '.join(asked)}" if asked else ""
        raise Problem(
            404,
            f"no live performance of {name!r}{which}: the drift service computes it at each "
            "timed drift check from the stored predictions joined with outcome labels "
            "(completed work orders, failures), so it needs served predictions and labels "
            "within its look-back (PDM_DRIFT_PERFORMANCE_DAYS)",
            slug="not-found",
        )
    items = [LivePerformance.model_validate(r) for r in rows[:limit]]
    last = items[-1] if items else None
    more = len(rows) > limit
    return ModelPerformance(
        model_name=name,
        items=items,
        next_cursor=(
            cursors.encode(last.computed_at, last.model_version, last.role, last.span)
            if more and last
            else None
        ),
    )


@router.post(
    "/models/{name}/retrain",
    response_model=DriftCommandOutcome,
    tags=["models"],
    responses=COMMAND_RESPONSES,
)
async def retrain(
    request: Request,
    response: Response,
    name: NamePath,
    body: RetrainBody | None = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = ADMIN,
) -> Any:
    """Retrain the model now with its training pipeline (202 with the job id); the
    challenger is judged against the champion on the same held-out data. Refused (409)
    during the model's cooldown unless `force`."""
    body = body or RetrainBody()
    return await _command(
        request, response, who, idempotency_key, "retrain", name,
        reason=body.reason, force=body.force,
    )  # fmt: skip


@router.post(
    "/models/{name}/promote",
    response_model=DriftCommandOutcome,
    tags=["models"],
    responses=COMMAND_RESPONSES,
)
async def promote(
    request: Request,
    response: Response,
    name: NamePath,
    body: PromoteBody | None = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = ADMIN,
) -> Any:
    """Move `champion` to `version` (default: the `challenger`); the old champion becomes
    `previous` and serving follows within seconds (`pdm.models.v1`)."""
    body = body or PromoteBody()
    return await _command(
        request, response, who, idempotency_key, "promote", name,
        version=body.version, reason=body.reason,
    )  # fmt: skip


@router.post(
    "/models/{name}/rollback",
    response_model=DriftCommandOutcome,
    tags=["models"],
    responses=COMMAND_RESPONSES,
)
async def rollback(
    request: Request,
    response: Response,
    name: NamePath,
    body: RollbackBody | None = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = ADMIN,
) -> Any:
    """Move `champion` back to the `previous` version (404 when there is none)."""
    body = body or RollbackBody()
    return await _command(
        request, response, who, idempotency_key, "rollback", name, reason=body.reason
    )


# --- drift reports ----------------------------------------------------------------------------


@router.get(
    "/drift/reports",
    response_model=DriftReportPage,
    tags=["drift"],
    responses=problem_responses(400, 401, 403, 422, 429, 503),
)
async def list_reports(
    request: Request,
    model_name: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN)] = None,
    kind: ReportKind | None = None,
    asset_type: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] = None,
    drift_detected: bool | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> DriftReportPage:
    """Drift checks newest first (summaries: the verdicts per column are in
    `GET /v1/drift/reports/{report_id}`), filtered by model, kind (`features` of a model,
    raw `sensors` of an asset type), asset type and verdict."""
    after = decode_cursor(cursor, (datetime, str))
    limit = page_limit(request, limit)
    filters = {
        "model_name": model_name,
        "kind": kind,
        "asset_type": asset_type,
        "drift_detected": drift_detected,
    }
    rows = await drift_reader(request).reports(filters, after, limit + 1)
    items = [DriftReportSummary.model_validate(r) for r in rows[:limit]]
    last = items[-1] if items else None
    more = len(rows) > limit
    return DriftReportPage(
        items=items,
        next_cursor=cursors.encode(last.created_at, str(last.report_id)) if more and last else None,
    )


@router.get(
    "/drift/reports/{report_id}",
    response_model=DriftReportDetail,
    tags=["drift"],
    responses=problem_responses(401, 403, 404, 422, 429, 503),
)
async def get_report(
    request: Request, report_id: uuid.UUID, _: Principal = READ
) -> DriftReportDetail:
    """A drift report with its headlines and every column's verdict (method, statistic,
    threshold, PSI, importance, mean and median shifts)."""
    row = await drift_reader(request).report(report_id)
    if row is None:
        raise Problem(404, f"no drift report {report_id}", slug="not-found")
    return DriftReportDetail.model_validate(row)


@router.get(
    "/drift/reports/{report_id}/html",
    response_class=HTMLResponse,
    tags=["drift"],
    responses={
        200: {
            "description": "The Evidently report",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403, 404, 422, 429, 503),
    },
)
async def get_report_html(
    request: Request, report_id: uuid.UUID, _: Principal = READ
) -> HTMLResponse:
    """The stored Evidently report of a check, as a page (sandboxed: its scripts run in an
    opaque origin). 404 when the report does not exist or has no HTML."""
    found, html = await drift_reader(request).report_html(report_id)
    if not found:
        raise Problem(404, f"no drift report {report_id}", slug="not-found")
    if html is None:
        raise Problem(
            404, f"drift report {report_id} has no stored Evidently report", slug="not-found"
        )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": "sandbox allow-scripts allow-popups",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post(
    "/drift/check",
    response_model=DriftCommandOutcome,
    tags=["drift"],
    responses=COMMAND_RESPONSES,
)
async def check_drift(
    request: Request,
    response: Response,
    body: DriftCheckBody | None = None,
    idempotency_key: IDEMPOTENCY_KEY = None,
    who: Principal = WRITE,
) -> Any:
    """Check drift now: of `model_name`, or of every served model. Answers the reports
    written (200) or 202 when the check goes on after the answer. Limited per key to
    `PDM_GATEWAY_DRIFT_CHECK_PER_MIN` (429 with `Retry-After`); a retry with the same
    Idempotency-Key is not charged again."""
    limiter: CheckLimiter = request.app.state.drift_checks
    cid = command_id(who.key_id, idempotency_key) if idempotency_key is not None else None
    wait = limiter.admit(who.key_id, cid)
    if wait > 0:
        raise Problem(
            429,
            f"drift checks are limited to {limiter.rate * 60:g} a minute per key "
            f"(PDM_GATEWAY_DRIFT_CHECK_PER_MIN); the service also checks on its own timer. "
            f"Retry in {wait:.0f} s",
            slug="rate-limited",
            headers={"Retry-After": retry_after_header(wait)},
        )
    model_name = body.model_name if body else None
    return await _command(request, response, who, idempotency_key, "check", model_name)
