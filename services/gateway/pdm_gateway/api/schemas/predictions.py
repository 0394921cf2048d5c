"""Bodies of the prediction routes: a prediction is the `Prediction` event as stored, so
only the page of stored ones is the gateway's own shape."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pdm_gateway.api.schemas.common import Page


class PredictionPage(Page):
    asset_id: str
    items: list[dict[str, Any]] = Field(
        description="Stored `prediction.made` events, newest first."
    )
