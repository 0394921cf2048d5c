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
from pdm_ml.detectors.factory import detector_for
from pdm_ml.detectors.semantics import SensorCatalog, simulated_catalog
from pdm_ml.detectors.univariate import UnivariateConfig

log = structlog.get_logger(__name__)


#: asset type (None when unknown) -> a factory `sensor -> detector` for that type's sensors.
DetectorFactory = Callable[[str | None], Callable[[str], StreamingDetector]]


def detector_factory(
    catalog: SensorCatalog | None = None, config: UnivariateConfig | None = None
) -> DetectorFactory:
    """The detector of each (asset type, sensor), chosen by what the sensor measures
    (`pdm_ml.detectors.semantics`: counters by rate, codes not at all, the rest by level), all
    with the same a-priori univariate defaults."""
    catalog = catalog or simulated_catalog()
    per_type: dict[str | None, Callable[[str], StreamingDetector]] = {}

    def for_type(asset_type: str | None) -> Callable[[str], StreamingDetector]:
        make = per_type.get(asset_type)
        if make is None:
            make = per_type[asset_type] = detector_for(catalog, asset_type, config)
        return make

    return for_type


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
