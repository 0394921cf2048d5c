"""API key administration (scope `admin`); `pdm apikey` does the same from a shell."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from pdm_gateway.api.deps import stores
from pdm_gateway.api.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyInfo
from pdm_gateway.keys import Principal, check_scopes
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import ADMIN

router = APIRouter(prefix="/v1/apikeys", tags=["admin"])
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


@router.get("", response_model=list[ApiKeyInfo], responses=problem_responses(401, 403, 429))
async def list_keys(request: Request, _: Principal = ADMIN) -> list[ApiKeyInfo]:
    return [ApiKeyInfo.model_validate(r) for r in await stores(request).keys.all_keys()]


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=201,
    responses=problem_responses(401, 403, 413, 422, 429),
)
async def create_key(request: Request, body: ApiKeyCreate, who: Principal = ADMIN) -> ApiKeyCreated:
    """Create a key; the answer holds the key itself, shown this once."""
    scopes = check_scopes(list(body.scopes))
    key = await stores(request).keys.create(
        body.name, scopes, f"key:{who.key_id}", body.rate_limit_per_s
    )
    return ApiKeyCreated(key_id=key.key_id, api_key=key.token, scopes=scopes)


@router.delete(
    "/{key_id}",
    status_code=200,
    response_model=None,
    responses=problem_responses(401, 403, 404, 429),
)
async def revoke_key(request: Request, key_id: KeyIdPath, _: Principal = ADMIN) -> dict[str, str]:
    """Revoke a key: refused by every replica within PDM_GATEWAY_KEY_CACHE_S seconds."""
    if not await stores(request).keys.revoke(key_id):
        raise Problem(404, f"no live key {key_id!r}", slug="not-found")
    return {"key_id": key_id, "status": "revoked"}
