"""Typed registry failures: unreachable (retry later) is not missing (train first)."""

from __future__ import annotations

from pdm_common.registry.naming import CHAMPION, train_hint


class RegistryError(Exception):
    """Base class of every registry failure."""


class RegistryUnavailable(RegistryError):
    """The tracking server cannot be reached (down, wrong URI, network): retry later."""

    def __init__(self, tracking_uri: str, cause: object) -> None:
        super().__init__(
            f"MLflow registry at {tracking_uri} is unreachable ({cause}). Is the stack up? "
            "Run `pdm stack up`, or point PDM_MLFLOW_TRACKING_URI at the registry."
        )
        self.tracking_uri = tracking_uri


class ModelNotFound(RegistryError):
    """The registry answered, but the registered model (or the version) does not exist."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        super().__init__(detail or f"no registered model {name!r}: {train_hint(name)}")
        self.name = name


class NoChampion(ModelNotFound):
    """The registered model exists but no version holds the alias yet."""

    def __init__(self, name: str, alias: str = CHAMPION) -> None:
        super().__init__(name, f"no {alias} for {name} yet: {train_hint(name)}")
        self.alias = alias
