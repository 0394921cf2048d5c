"""Which detectors the service runs: the univariate factory, and the multivariate champion
models per asset type served from the MLflow registry (reloaded on `pdm.models.v1`)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence

import structlog
from pydantic import ValidationError

from pdm_anomaly.detectors.univariate import UnivariateConfig, UnivariateDetector
from pdm_anomaly.state import SnapshotModel, StreamingDetector
from pdm_anomaly.storage import SERVICE
from pdm_common.delivery import Delivery, DependencyUnavailable, Failure, PermanentError
from pdm_common.events import ModelAliasMoved
from pdm_common.registry import ChampionCache, RegistryError, RegistryUnavailable, model_name
from pdm_common.telemetry import metrics

log = structlog.get_logger(__name__)


def detector_factory(config: UnivariateConfig | None = None) -> Callable[[str], StreamingDetector]:
    """One univariate detector per (asset, sensor), all with the same a-priori defaults."""
    config = config or UnivariateConfig()

    def make(sensor: str) -> StreamingDetector:
        return UnivariateDetector(config, sensor=sensor)

    return make


class SnapshotModels:
    """Champion `anomaly-<asset_type>` models. `get` never blocks a batch: a model that is
    not loaded yet is fetched in the background and used from the next batch on; an asset
    type without a champion is simply scored by the univariate and limit detectors."""

    def __init__(self, tracking_uri: str, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.cache = ChampionCache(tracking_uri)
        self.instance = f"{socket.gethostname()}-{os.getpid()}"
        self._loading: dict[str, asyncio.Task[None]] = {}

    def get(self, asset_type: str | None) -> SnapshotModel | None:
        if not self.enabled or not asset_type:
            return None
        name = model_name("anomaly", asset_type)
        loaded = self.cache.peek(name)
        if loaded is not None:
            model: SnapshotModel = loaded.model
            return model
        if name not in self._loading:
            self._loading[name] = asyncio.get_running_loop().create_task(self._load(name))
        return None

    async def _load(self, name: str) -> None:
        try:
            loaded = await self.cache.aget(name)
            self.serving(name, loaded.version)
        except RegistryError as exc:
            log.info("no multivariate model in use", model=name, reason=str(exc))
        finally:
            self._loading.pop(name, None)

    def serving(self, name: str, version: str, previous: str | None = None) -> None:
        if previous is not None and previous != version:
            metrics.model_in_use.labels(SERVICE, name, previous).set(0)
        metrics.model_in_use.labels(SERVICE, name, version).set(1)
        log.info("model in use", model=name, version=version, previous=previous)


class ModelsProcessor:
    """`delivery.BatchProcessor` for `pdm.models.v1`: reload a champion whose alias moved."""

    def __init__(self, models: SnapshotModels) -> None:
        self.models = models

    def decode(self, delivery: Delivery) -> ModelAliasMoved:
        try:
            return ModelAliasMoved.model_validate_json(delivery.value)
        except ValidationError as exc:
            raise PermanentError(str(exc.errors(include_url=False)[0]), reason="invalid") from None

    async def process(self, items: Sequence[tuple[Delivery, ModelAliasMoved]]) -> list[Failure]:
        failures: list[Failure] = []
        for delivery, event in items:
            if not event.model_name.startswith("anomaly-"):
                continue
            previous = self.models.cache.version(event.model_name)
            try:
                loaded = await self.models.cache.on_alias_moved(event)
            except RegistryUnavailable as exc:
                raise DependencyUnavailable(str(exc)) from exc
            except RegistryError as exc:
                failures.append(Failure(delivery, PermanentError(str(exc), reason="model_missing")))
                continue
            if loaded is not None:
                self.models.serving(event.model_name, loaded.version, previous)
        return failures
