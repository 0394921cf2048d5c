"""Serving side of `pdm.models.v1`: reload a champion when its alias moves, and say which
version a service serves (log line + the `pdm_model_in_use` metric)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from pdm_common.delivery import (
    Delivery,
    DependencyUnavailable,
    Failure,
    PermanentError,
    decode_json,
)
from pdm_common.events import ModelAliasMoved
from pdm_common.registry import ChampionCache, RegistryError, RegistryUnavailable
from pdm_common.telemetry import metrics

log = structlog.get_logger(__name__)


def record_model_in_use(service: str, name: str, version: str, previous: str | None = None) -> None:
    if previous is not None and previous != version:
        metrics.model_in_use.labels(service, name, previous).set(0)
    metrics.model_in_use.labels(service, name, version).set(1)
    log.info("model in use", model=name, version=version, previous=previous)


class AliasMovedProcessor:
    """`delivery.BatchProcessor` for `pdm.models.v1`: reload a champion whose alias moved.

    Registry down pauses the consumer (the event is not lost); an event naming a model the
    registry does not have is dead-lettered. Models a service does not serve are ignored.
    """

    def __init__(
        self,
        cache: ChampionCache,
        service: str,
        concerns: Callable[[str], bool] = lambda _name: True,
    ) -> None:
        self.cache = cache
        self.service = service
        self.concerns = concerns

    def decode(self, delivery: Delivery) -> ModelAliasMoved:
        return decode_json(delivery, ModelAliasMoved)

    async def process(self, items: Sequence[tuple[Delivery, ModelAliasMoved]]) -> list[Failure]:
        failures: list[Failure] = []
        for delivery, event in items:
            if not self.concerns(event.model_name):
                continue
            previous = self.cache.version(event.model_name)
            try:
                loaded = await self.cache.on_alias_moved(event)
            except RegistryUnavailable as exc:
                raise DependencyUnavailable(str(exc)) from exc
            except RegistryError as exc:
                failures.append(Failure(delivery, PermanentError(str(exc), reason="model_missing")))
                continue
            if loaded is not None:
                record_model_in_use(self.service, event.model_name, loaded.version, previous)
        return failures


class AliasFollowers:
    """One `pdm.models.v1` consumer feeding several caches (e.g. champions and challengers):
    each processor sees every event; a delivery fails (to the DLQ) once even if several
    processors refuse it."""

    def __init__(self, processors: Sequence[AliasMovedProcessor]) -> None:
        if not processors:
            raise ValueError("AliasFollowers needs at least one processor")
        self.processors = list(processors)

    def decode(self, delivery: Delivery) -> ModelAliasMoved:
        return decode_json(delivery, ModelAliasMoved)

    async def process(self, items: Sequence[tuple[Delivery, ModelAliasMoved]]) -> list[Failure]:
        failures: dict[int, Failure] = {}
        for processor in self.processors:
            for failure in await processor.process(items):
                failures.setdefault(id(failure.delivery), failure)
        return list(failures.values())
