"""Shapes every domain's routes share: a keyset page and the 202 of a published command."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field


class Page(BaseModel):
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class Accepted(BaseModel):
    """A command was published; its owner applies it asynchronously."""

    command_id: uuid.UUID
    status: Literal["accepted"] = "accepted"
    detail: str
