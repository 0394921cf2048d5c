"""Registry access of the drift service, off the event loop: versions by alias, loaded
models and their logged reference samples (both cached per version: a version never
changes), and alias moves."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import pandas as pd

from pdm_common import registry
from pdm_common.registry import CHAMPION, ModelNotFound, RegisteredVersion

#: Loaded models and reference samples kept per process (a few types x two tasks x versions).
CACHE_SIZE = 16


class _Lru(OrderedDict[tuple[str, str], Any]):
    def put(self, key: tuple[str, str], value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > CACHE_SIZE:
            self.popitem(last=False)
        return value


class Models:
    def __init__(self, tracking_uri: str) -> None:
        self.uri = tracking_uri
        self._models = _Lru()
        self._references = _Lru()

    async def champion(self, name: str) -> RegisteredVersion | None:
        """The champion version; None when the model or its champion does not exist.
        Raises `RegistryUnavailable`."""
        try:
            return await asyncio.to_thread(
                registry.get_version, name, alias=CHAMPION, tracking_uri=self.uri
            )
        except ModelNotFound:
            return None

    async def version(self, name: str, version: str) -> RegisteredVersion:
        """Raises `ModelNotFound` (model or version missing), `RegistryUnavailable`."""
        return await asyncio.to_thread(
            registry.get_version, name, version=version, alias=None, tracking_uri=self.uri
        )

    async def alias(self, name: str, alias: str) -> str | None:
        """The version `alias` points at (None: none). Raises `ModelNotFound`."""
        return await asyncio.to_thread(registry.alias_version, name, alias, tracking_uri=self.uri)

    async def set_alias(self, name: str, alias: str, version: str) -> None:
        await asyncio.to_thread(registry.set_alias, name, alias, version, tracking_uri=self.uri)

    async def load(self, version: RegisteredVersion) -> Any:
        key = (version.name, version.version)
        if key not in self._models:
            loaded = await asyncio.to_thread(registry.load_version, version, self.uri)
            self._models.put(key, loaded.model)
        return self._models[key]

    async def reference(self, version: RegisteredVersion) -> pd.DataFrame:
        """The training-feature sample the version's run logged."""
        key = (version.name, version.version)
        if key not in self._references:
            frame = await asyncio.to_thread(registry.load_reference_sample, version, self.uri)
            self._references.put(key, frame)
        frame_: pd.DataFrame = self._references[key]
        return frame_
