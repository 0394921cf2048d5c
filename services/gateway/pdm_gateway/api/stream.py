"""`/v1/stream`: live platform events over a WebSocket, filtered by asset and type."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from pdm_gateway.keys import Principal
from pdm_gateway.problems import Problem
from pdm_gateway.security import Authenticator
from pdm_gateway.stream import STREAM_TYPES, StreamFilter, StreamHub, describe_filter, pump

router = APIRouter(tags=["stream"])
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


@router.websocket("/v1/stream")
async def stream(
    websocket: WebSocket,
    asset_id: Annotated[str | None, Query(max_length=4096)] = None,
    types: Annotated[str | None, Query(max_length=256)] = None,
    api_key: Annotated[str | None, Query(max_length=256)] = None,
) -> None:
    """Events as they happen: `?asset_id=a,b&types=alarm,prediction` (types: reading, alarm,
    prediction, maintenance, drift, model, truth). The key comes as a header or, for
    browsers (which cannot set WebSocket headers), as `?api_key=`. Each frame is
    `{"type", "topic", "asset_id", "event_type", "event"}`; a `{"type": "dropped"}` frame
    says how many events this client missed because it read too slowly."""
    auth: Authenticator = websocket.app.state.auth
    hub: StreamHub = websocket.app.state.hub
    token = api_key or websocket.headers.get("x-api-key")
    bearer = websocket.headers.get("authorization", "")
    if not token and bearer.lower().startswith("bearer "):
        token = bearer[7:].strip()
    try:
        principal: Principal = await auth.principal(token)
        auth.check(principal, "read")
        flt = StreamFilter.parse(asset_id, types)
    except (Problem, ValueError) as exc:
        await websocket.close(POLICY_VIOLATION, reason=str(exc)[:120])
        return
    await websocket.accept()
    client = hub.subscribe(flt)
    await websocket.send_json(
        {"type": "subscribed", **describe_filter(flt), "all": list(STREAM_TYPES)}
    )
    sender = asyncio.create_task(pump(client, websocket.send_text))
    receiver = asyncio.create_task(_drain(websocket))
    closed = asyncio.create_task(client.closed.wait())
    try:
        await asyncio.wait({sender, receiver, closed}, return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            with contextlib.suppress(Exception):
                await websocket.close(
                    TRY_AGAIN_LATER, reason=f"too slow: {client.dropped} events dropped"
                )
    finally:
        hub.unsubscribe(client)
        for task in (sender, receiver, closed):
            task.cancel()
        for task in (sender, receiver, closed):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) client frames so a disconnect is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
