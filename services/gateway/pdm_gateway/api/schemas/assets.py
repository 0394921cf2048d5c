"""Bodies of the asset routes: an asset is the registry's own record (`AssetRecord`)."""

from __future__ import annotations

from pydantic import BaseModel

from pdm_common.events import AssetFields, AssetId
from pdm_common.events import AssetRecord as Asset
from pdm_gateway.api.schemas.common import Page


class AssetCreate(AssetFields):
    """`POST /v1/assets`: the new asset's id and its descriptive fields."""

    asset_id: AssetId


class AssetPage(Page):
    items: list[Asset]


class HierarchyLine(BaseModel):
    line: str | None
    assets: int
    asset_types: dict[str, int]


class HierarchySite(BaseModel):
    site: str | None
    assets: int
    lines: list[HierarchyLine]
