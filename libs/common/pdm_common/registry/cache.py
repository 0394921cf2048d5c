"""Champions served from memory, reloaded when the alias moves (`pdm.models.v1`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pdm_common.events import ModelAliasMoved
from pdm_common.registry.errors import RegistryError
from pdm_common.registry.loading import LoadedModel, load_champion
from pdm_common.registry.naming import CHAMPION


@dataclass(slots=True)
class _Miss:
    error: RegistryError
    at: float


class ChampionCache:
    """Champions per model name, loaded on first use and reloaded when the alias moves.

    `get` serves the cached model (no I/O after the first load). `reload(name)` is what a
    `pdm.models.v1` consumer calls; when the reload fails the previous model keeps serving.
    A miss (no champion, registry down) is remembered for `retry_after_s`, so a hot path that
    asks per batch does not hit the registry per batch. Per-name locks keep two callers from
    loading the same model twice; `aget`/`areload` run the blocking load in a thread so the
    event loop stays free.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        alias: str = CHAMPION,
        retry_after_s: float = 30.0,
        loader: Callable[[str, str, str], LoadedModel] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.retry_after_s = retry_after_s
        self._load = loader or (lambda name, uri, alias: load_champion(name, uri, alias=alias))
        self._entries: dict[str, LoadedModel] = {}
        self._misses: dict[str, _Miss] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def peek(self, name: str) -> LoadedModel | None:
        """The cached model, without any I/O."""
        return self._entries.get(name)

    def version(self, name: str) -> str | None:
        """The version being served for `name` (None: nothing loaded)."""
        entry = self._entries.get(name)
        return entry.version if entry else None

    def versions(self) -> dict[str, str]:
        """Every served model and its version (for `/ready`, metrics and logs)."""
        return {name: entry.version for name, entry in self._entries.items()}

    def get(self, name: str) -> LoadedModel:
        """The cached champion, loading it on first use. Raises the registry errors (a
        remembered miss is re-raised without I/O until `retry_after_s` has passed)."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        miss = self._misses.get(name)
        if miss is not None and time.monotonic() - miss.at < self.retry_after_s:
            raise miss.error.with_traceback(None)  # not an ever-growing traceback
        with self._lock(name):
            entry = self._entries.get(name)
            return entry if entry is not None else self._fetch(name)

    def reload(self, name: str, expected_version: str | None = None) -> LoadedModel:
        """Force a fresh load (the alias moved). With `expected_version` equal to what is
        already served, nothing is loaded (a redelivered event is a no-op)."""
        with self._lock(name):
            entry = self._entries.get(name)
            if entry is not None and entry.version == expected_version:
                return entry
            return self._fetch(name)

    def invalidate(self, name: str) -> None:
        with self._lock(name):
            self._entries.pop(name, None)
            self._misses.pop(name, None)

    def wants(self, event: ModelAliasMoved) -> bool:
        """Whether an alias-moved event concerns this cache (its alias, a model in use)."""
        return event.alias == self.alias and (
            event.model_name in self._entries or event.model_name in self._misses
        )

    async def aget(self, name: str) -> LoadedModel:
        entry = self._entries.get(name)
        return entry if entry is not None else await asyncio.to_thread(self.get, name)

    async def areload(self, name: str, expected_version: str | None = None) -> LoadedModel:
        return await asyncio.to_thread(self.reload, name, expected_version)

    async def on_alias_moved(self, event: ModelAliasMoved) -> LoadedModel | None:
        """Handle a `pdm.models.v1` event: reload when it concerns a model in use."""
        if not self.wants(event):
            return None
        return await self.areload(event.model_name, event.version)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _fetch(self, name: str) -> LoadedModel:
        try:
            entry = self._load(name, self.tracking_uri, self.alias)
        except RegistryError as exc:
            self._misses[name] = _Miss(exc, time.monotonic())
            raise
        self._entries[name] = entry
        self._misses.pop(name, None)
        return entry
