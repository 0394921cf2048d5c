"""The gateway's Kafka side for writes: commands and HTTP-ingested readings are published
(acknowledged by the broker before the client hears 202), and calls that need an answer go
through one shared `ReplyClient` (request/reply with a correlation id and a timeout); each
reply is parsed once into the type the caller names (`pdm_gateway.replies`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, TypeAdapter

from pdm_common.broker import BrokerPublisher
from pdm_common.delivery import Outgoing
from pdm_common.request_reply import ReplyClient, ReplyTimeout
from pdm_common.settings import CommonSettings
from pdm_gateway import SERVICE
from pdm_gateway.problems import Problem

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Bus:
    def __init__(self, common: CommonSettings, reply_timeout_s: float) -> None:
        self.common = common
        self.reply_timeout_s = reply_timeout_s
        self.publisher = BrokerPublisher(common, SERVICE)
        self._replies: ReplyClient | None = None
        self._connect: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect in the background: the gateway serves reads while Kafka is away."""
        self._connect = asyncio.create_task(self._open_replies(), name="gateway reply client")

    async def _open_replies(self) -> None:
        delay = 0.5
        while True:
            client = ReplyClient(
                self.common.kafka_bootstrap, fetch_max_wait_ms=self.common.kafka_fetch_max_wait_ms
            )
            try:
                self._replies = await client.__aenter__()
                return
            except Exception as exc:
                log.warning("reply client cannot connect; retrying", error=repr(exc), in_s=delay)
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        if self._connect is not None:
            self._connect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect
        if self._replies is not None:
            await self._replies.__aexit__(None, None, None)
        await self.publisher.stop()

    @property
    def replies_ready(self) -> bool:
        return self._replies is not None

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish and wait for the broker's acks; 503 when Kafka cannot take them."""
        try:
            await asyncio.wait_for(self.publisher.publish_many(messages), 15.0)
        except Exception as exc:
            log.warning("publish failed", error=repr(exc), messages=len(messages))
            raise Problem(
                503,
                "the message broker did not accept the request; nothing was published, "
                "retry later (with the same Idempotency-Key where one applies)",
                slug="broker-unavailable",
                headers={"Retry-After": "5"},
            ) from exc

    async def command(self, topic: str, command: BaseModel, key: str) -> None:
        await self.publish(
            [
                Outgoing(
                    topic,
                    command.model_dump_json().encode(),
                    key.encode(),
                    {"content-type": "application/json"},
                )
            ]
        )

    async def call(
        self,
        topic: str,
        body: Any,
        key: str | None,
        what: str,
        reply: TypeAdapter[T],
        *,
        work_s: float = 0.0,
    ) -> list[T]:
        """Kafka request/reply, each reply message parsed once as `reply`; 504 on timeout,
        503 while the reply channel is not up. `work_s`: how long the request itself asks
        the service to work (a what-if's solver limit), waited on top of the reply timeout."""
        if self._replies is None:
            raise Problem(
                503,
                "the gateway is not connected to the message broker yet; retry shortly",
                slug="broker-unavailable",
                headers={"Retry-After": "2"},
            )
        try:
            parts, _ms = await self._replies.call(
                topic, body, key=key, timeout_s=self.reply_timeout_s + work_s
            )
        except ReplyTimeout as exc:
            raise Problem(
                504,
                f"no answer from the {what} within {self.reply_timeout_s + work_s:g} s "
                f"(PDM_GATEWAY_REPLY_TIMEOUT_S): the service may be down, starting or "
                f"overloaded; check its /ready and retry",
                slug="upstream-timeout",
                service=what,
            ) from exc
        except Exception as exc:
            raise Problem(
                503,
                f"could not send the request to the {what}: {exc!r}",
                slug="broker-unavailable",
                headers={"Retry-After": "5"},
            ) from exc
        return [reply.validate_json(p) for p in parts]
