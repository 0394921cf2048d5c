"""Bodies of the alarm routes. An alarm is the platform's alarm contract (`AlarmState` in
`pdm_common.events`): its fields are defined there once, not restated here."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field

from pdm_common.events import AlarmShelf, AlarmState, AssetId, SensorName
from pdm_gateway.api.schemas.common import Page


class Alarm(AlarmState):
    pass  # the contract under the name the OpenAPI document has always given it


class AlarmPage(Page):
    items: list[Alarm]


class AckBody(BaseModel):
    note: str | None = Field(None, max_length=2000)


class AssignBody(BaseModel):
    assignee: str = Field(min_length=1, max_length=128)
    note: str | None = Field(None, max_length=2000)


class ShelfBody(BaseModel):
    """`POST /v1/alarms/shelves`: hold back new alarms of an asset (or one of its sensors)."""

    asset_id: AssetId
    sensor: SensorName | None = Field(None, description="Only this sensor; none: the asset.")
    reason: str = Field(min_length=1, max_length=2000, description="Why (required).")
    expires_at: AwareDatetime = Field(
        description="When the shelf ends by itself: in the future, at most 7 days away."
    )


class ShelfList(BaseModel):
    items: list[AlarmShelf]
