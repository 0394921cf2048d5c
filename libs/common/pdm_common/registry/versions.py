"""Looking versions up: by number or alias, with their tags, metrics and reference sample."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from pdm_common.registry.client import _client, _is_not_found, _translated, check_reachable
from pdm_common.registry.errors import ModelNotFound, NoChampion, RegistryError
from pdm_common.registry.naming import CHAMPION, REFERENCE_SAMPLE_PATH

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """One model version in the registry and the run that produced it."""

    name: str
    version: str
    run_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def get_version(
    name: str, *, version: str | None = None, alias: str | None = CHAMPION, tracking_uri: str
) -> RegisteredVersion:
    """A version by number or alias, with its tags and its run's metrics."""
    client = _client(tracking_uri)
    with _translated(tracking_uri):
        return _get_version(client, name, version=version, alias=alias)


def _get_version(
    client: MlflowClient, name: str, *, version: str | None, alias: str | None
) -> RegisteredVersion:
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            mv = client.get_model_version(name, version)
        else:
            mv = client.get_model_version_by_alias(name, alias or CHAMPION)
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise RegistryError(f"registry error for {name}: {exc}") from exc
        _raise_missing(client, name, version=version, alias=alias)
    metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            metrics = dict(client.get_run(mv.run_id).data.metrics)
        except MlflowException:
            metrics = {}  # run deleted: the version and its tags still stand
    return RegisteredVersion(name, str(mv.version), mv.run_id, dict(mv.tags), metrics)


def _raise_missing(
    client: MlflowClient, name: str, *, version: str | None, alias: str | None
) -> NoReturn:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _is_not_found(exc):
            raise ModelNotFound(name) from None
        raise RegistryError(f"registry error for {name}: {exc}") from exc
    if version is not None:
        raise ModelNotFound(name, f"{name} has no version {version}")
    raise NoChampion(name, alias or CHAMPION)


def load_reference_sample(version: RegisteredVersion, tracking_uri: str) -> pd.DataFrame:
    """The training-feature sample logged with a version (for drift checks)."""
    if not version.run_id:
        raise ModelNotFound(version.name, f"{version.uri} has no run, so no reference sample")
    import mlflow.artifacts
    import pandas as pd

    check_reachable(tracking_uri)
    with _translated(tracking_uri), tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            artifact_path=REFERENCE_SAMPLE_PATH,
            dst_path=tmp,
            tracking_uri=tracking_uri,
        )
        return pd.read_parquet(path)
