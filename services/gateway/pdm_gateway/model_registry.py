"""The gateway's view of the MLflow registry (`GET /v1/models`): the models the platform
serves with the versions behind their `champion`, `challenger` and `previous` aliases.

MLflow's client is blocking and, against a registry that accepts connections but does not
answer, retries for minutes: the listing runs in a worker thread under a timeout (503 with
`Retry-After` past it, never a hung request), one listing at a time however many clients ask
(they share it), and its answer is kept for a few seconds. Importing MLflow's client takes
seconds: it is done once, in a thread at start-up (`warm`), and is not counted against the
registry's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import urllib.parse
from collections.abc import Callable

import structlog

from pdm_common import registry
from pdm_common.drift import CHALLENGER, MODEL_NAME_PATTERN, PREVIOUS
from pdm_gateway.problems import Problem

log = structlog.get_logger(__name__)
ALIASES = (registry.CHAMPION, CHALLENGER, PREVIOUS)
Lister = Callable[[], list[registry.ServedModel]]


class ModelRegistryView:
    def __init__(
        self,
        tracking_uri: str,
        timeout_s: float,
        ttl_s: float = 5.0,
        lister: Lister | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.public_uri = redact(tracking_uri)
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.lister = lister or self._list
        self._import_client = lister is None
        self._imported: asyncio.Future[None] | None = None
        self.clock = clock
        self._cached: tuple[float, list[registry.ServedModel]] | None = None
        self._inflight: asyncio.Future[list[registry.ServedModel]] | None = None

    def _list(self) -> list[registry.ServedModel]:
        # Bound each of MLflow's HTTP calls too (an operator's own setting wins): a thread
        # the caller gave up on must not linger for MLflow's default two minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(self.timeout_s)))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        return registry.list_models(
            tracking_uri=self.tracking_uri, pattern=MODEL_NAME_PATTERN, aliases=ALIASES
        )

    async def warm(self) -> None:
        """Import MLflow's client (seconds, once) in a worker thread."""
        if self._imported is None:
            self._imported = asyncio.ensure_future(asyncio.to_thread(self._import))
        await asyncio.shield(self._imported)

    def _import(self) -> None:
        if self._import_client:
            from mlflow import MlflowClient  # noqa: F401

    async def models(self) -> list[registry.ServedModel]:
        """The served models (cached for `ttl_s`); `Problem` 503 when the registry cannot be
        reached or does not answer within `timeout_s`, 502 when it answers with an error."""
        now = self.clock()
        if self._cached is not None and self._cached[0] > now:
            return self._cached[1]
        await self.warm()
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self.lister))
            self._inflight.add_done_callback(_consume)
        try:
            found = await asyncio.wait_for(asyncio.shield(self._inflight), self.timeout_s)
        except TimeoutError:
            raise Problem(
                503,
                f"the model registry ({self.public_uri}) did not answer within "
                f"{self.timeout_s:g} s (PDM_GATEWAY_REGISTRY_TIMEOUT_S); retry shortly",
                slug="registry-unavailable",
                headers={"Retry-After": "5"},
            ) from None
        except registry.RegistryUnavailable as exc:
            log.warning("registry unreachable", error=repr(exc))
            raise Problem(
                503,
                f"the model registry ({self.public_uri}) is unreachable; retry shortly "
                "(PDM_MLFLOW_TRACKING_URI names it)",
                slug="registry-unavailable",
                headers={"Retry-After": "5"},
            ) from exc
        except Exception as exc:
            log.warning("registry error", error=repr(exc))
            raise Problem(
                502,
                f"the model registry ({self.public_uri}) failed to list the models; the "
                "error is in the gateway's log",
                slug="bad-upstream",
            ) from exc
        self._cached = (self.clock() + self.ttl_s, found)
        return found


def redact(uri: str) -> str:
    """The URI without credentials (`https://user:token@host` -> `https://host`)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _consume(future: asyncio.Future[list[registry.ServedModel]]) -> None:
    """Retrieve the outcome of a listing nobody waited for (no 'never retrieved' noise)."""
    with contextlib.suppress(BaseException):
        future.result()
