"""Bodies of the alarm routes. An alarm is the platform's alarm contract (`AlarmState` in
`pdm_common.events`): its fields are defined there once, not restated here."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pdm_common.events import AlarmState
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
