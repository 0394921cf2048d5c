"""Which detectors the service runs: the univariate factory, and the multivariate champion
models per asset type served from the MLflow registry (reloaded on `pdm.models.v1`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from pdm_anomaly import SERVICE
from pdm_anomaly.state import SnapshotModel, StreamingDetector
from pdm_common.model_events import AliasMovedProcessor, record_model_in_use
from pdm_common.registry import ChampionCache, RegistryError, model_name
from pdm_ml.detectors.univariate import UnivariateConfig, UnivariateDetector

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
            record_model_in_use(SERVICE, name, loaded.version)
        except RegistryError as exc:
            log.info("no multivariate model in use", model=name, reason=str(exc))
        finally:
            self._loading.pop(name, None)

    def processor(self) -> AliasMovedProcessor:
        """Reloads for `pdm.models.v1` (anomaly models only)."""
        return AliasMovedProcessor(self.cache, SERVICE, lambda name: name.startswith("anomaly-"))
