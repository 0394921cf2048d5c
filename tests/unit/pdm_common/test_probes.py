"""Every service's `/ready` answers within a second whatever is down: a check that hangs
counts as failed, one that raises too."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pdm_common.service import ready_app


async def answer(app: Any) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": "/ready"}, None, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_a_hanging_or_failing_check_makes_ready_answer_503_within_a_second() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    async def fails() -> bool:
        raise ConnectionError("broker gone")

    async def ok() -> bool:
        return True

    app = ready_app("svc", {"database": hangs, "broker": fails, "schema": ok})
    started = time.monotonic()
    status, body = await answer(app)
    assert time.monotonic() - started < 1.0
    assert status == 503
    assert body["checks"] == {"database": False, "broker": False, "schema": True}


async def test_every_check_passing_is_ready() -> None:
    async def ok() -> bool:
        return True

    assert (await answer(ready_app("svc", {"a": ok, "b": ok})))[0] == 200
