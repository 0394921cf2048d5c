"""Assets: reads from `assets` (owned by ingest); writes are `pdm.asset.commands.v1`
commands to ingest, answered by Kafka request/reply so the client learns the outcome."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from pdm_common import topics
from pdm_common.events import AssetCommand, AssetFields
from pdm_gateway import cursors, replies
from pdm_gateway.api.deps import (
    AssetIdPath,
    CursorQuery,
    LimitQuery,
    bus,
    decode_cursor,
    page_limit,
    stores,
)
from pdm_gateway.api.schemas.assets import (
    Asset,
    AssetCreate,
    AssetPage,
    HierarchyLine,
    HierarchySite,
)
from pdm_gateway.keys import Principal
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import READ, WRITE

router = APIRouter(prefix="/v1", tags=["assets"])
#: Command result status -> HTTP status.
STATUS = {
    "created": 201,
    "updated": 200,
    "deleted": 200,
    "not_found": 404,
    "conflict": 409,
    "invalid": 422,
}


@router.get("/assets", response_model=AssetPage, responses=problem_responses(400, 401, 403, 429))
async def list_assets(
    request: Request,
    site: Annotated[str | None, Query(max_length=128)] = None,
    line: Annotated[str | None, Query(max_length=128)] = None,
    asset_type: Annotated[str | None, Query(max_length=64)] = None,
    criticality: Annotated[str | None, Query(max_length=16)] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
    _: Principal = READ,
) -> AssetPage:
    """Assets ordered by id, filtered by site, line, type and criticality."""
    after = _after(cursor)
    limit = page_limit(request, limit)
    filters = {
        "site": site,
        "line": line,
        "asset_type": asset_type,
        "criticality": criticality,
    }
    rows = await stores(request).assets.page(filters, after, limit + 1)
    items = [Asset.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return AssetPage(items=items, next_cursor=cursors.encode(items[-1].asset_id) if more else None)


def _after(cursor: str | None) -> str | None:
    decoded = decode_cursor(cursor, (str,))
    return decoded[0] if decoded else None


@router.get(
    "/hierarchy",
    response_model=list[HierarchySite],
    responses=problem_responses(401, 403, 429),
)
async def hierarchy(request: Request, _: Principal = READ) -> list[HierarchySite]:
    """Sites > lines > number of assets per type."""
    return build_hierarchy(await stores(request).assets.hierarchy())


def build_hierarchy(rows: list[dict[str, Any]]) -> list[HierarchySite]:
    """Rows of (site, line, asset_type, assets), ordered by site and line, as a tree."""
    sites: dict[str | None, HierarchySite] = {}
    for row in rows:
        site = sites.setdefault(row["site"], HierarchySite(site=row["site"], assets=0, lines=[]))
        if not site.lines or site.lines[-1].line != row["line"]:
            site.lines.append(HierarchyLine(line=row["line"], assets=0, asset_types={}))
        line = site.lines[-1]
        kind = row["asset_type"] or "unknown"
        line.asset_types[kind] = line.asset_types.get(kind, 0) + row["assets"]
        line.assets += row["assets"]
        site.assets += row["assets"]
    return list(sites.values())


@router.get(
    "/assets/{asset_id}",
    response_model=Asset,
    responses=problem_responses(401, 403, 404, 429),
)
async def get_asset(request: Request, asset_id: AssetIdPath, _: Principal = READ) -> Asset:
    row = await stores(request).assets.get(asset_id)
    if row is None:
        raise Problem(404, f"no asset {asset_id!r}", slug="not-found")
    return Asset.model_validate(row)


async def _command(
    request: Request, response: Response, action: str, asset_id: str, actor: str, fields: Any
) -> Asset | None:
    command = AssetCommand(action=action, asset_id=asset_id, actor=actor, fields=fields)
    (reply, *_) = await bus(request).call(
        topics.ASSET_COMMANDS,
        command.model_dump(mode="json"),
        asset_id,
        "ingest service",
        replies.ASSET_COMMAND,
    )
    status = STATUS[reply.status]
    if status >= 400:
        raise Problem(status, reply.message or reply.status, slug=reply.status)
    response.status_code = status
    return reply.asset


@router.post(
    "/assets",
    response_model=Asset,
    status_code=201,
    responses=problem_responses(401, 403, 409, 413, 422, 429, 503, 504),
)
async def create_asset(
    request: Request,
    response: Response,
    body: AssetCreate,
    who: Principal = WRITE,
) -> Asset | None:
    """Register an asset (or take over one ingest auto-registered from its readings)."""
    fields = AssetFields.model_validate(body.model_dump(exclude={"asset_id"}))
    return await _command(request, response, "create", body.asset_id, who.name, fields)


@router.patch(
    "/assets/{asset_id}",
    response_model=Asset,
    responses=problem_responses(401, 403, 404, 413, 422, 429, 503, 504),
)
async def update_asset(
    request: Request,
    response: Response,
    asset_id: AssetIdPath,
    body: AssetFields,
    who: Principal = WRITE,
) -> Asset | None:
    """Change the given fields of an asset (others are kept)."""
    return await _command(request, response, "update", asset_id, who.name, body)


@router.delete(
    "/assets/{asset_id}",
    status_code=200,
    response_model=None,
    responses=problem_responses(401, 403, 404, 429, 503, 504),
)
async def delete_asset(
    request: Request, response: Response, asset_id: AssetIdPath, who: Principal = WRITE
) -> dict[str, str]:
    """Remove an asset from the registry; its readings, alarms and predictions are kept."""
    await _command(request, response, "delete", asset_id, who.name, None)
    return {"asset_id": asset_id, "status": "deleted"}
