"""Bodies of the API key administration routes (scope `admin`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from pdm_gateway.keys import Scope


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1)
    rate_limit_per_s: float | None = Field(None, gt=0, le=1_000_000)


class ApiKeyInfo(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    rate_limit_per_s: float | None = None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(BaseModel):
    key_id: str
    api_key: str = Field(description="Shown once: only its hash is stored.")
    scopes: list[str]
