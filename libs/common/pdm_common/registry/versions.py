"""Looking versions up: by number or alias, with their tags, metrics and reference sample."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

from pdm_common.registry.client import _client, _is_not_found, _translated, check_reachable
from pdm_common.registry.errors import ModelNotFound, NoChampion, RegistryError
from pdm_common.registry.naming import CHAMPION, REFERENCE_SAMPLE_PATH

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import RegisteredModel


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


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A registered model as the platform serves it: its aliases and, for the aliases asked
    for, the version each points at (tags and run metrics)."""

    name: str
    description: str | None
    tags: Mapping[str, str]
    #: Every alias of the model -> version number.
    aliases: Mapping[str, str]
    #: The asked-for aliases that exist -> the version they point at.
    versions: Mapping[str, RegisteredVersion]
    latest_version: str | None
    updated_at: datetime | None


def list_models(
    *,
    tracking_uri: str,
    pattern: str | None = None,
    aliases: Sequence[str] = (CHAMPION,),
    max_models: int = 1000,
) -> list[ServedModel]:
    """Registered models by name (those whose name matches the regular expression `pattern`
    when given), each with the versions its `aliases` point at. Blocking HTTP: from asyncio
    run it in a worker thread with a timeout."""
    import re

    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    regex = re.compile(pattern) if pattern else None
    out: list[ServedModel] = []
    with _translated(tracking_uri):
        token: str | None = None
        found: list[RegisteredModel] = []
        while len(found) < max_models:
            try:
                page = client.search_registered_models(
                    max_results=min(1000, max_models - len(found)), page_token=token
                )
            except MlflowException as exc:
                raise RegistryError(f"registry error listing models: {exc}") from exc
            found += [m for m in page if regex is None or regex.match(m.name)]
            token = page.token
            if not token:
                break
        known: dict[tuple[str, str], RegisteredVersion] = {}
        for model in sorted(found, key=lambda m: m.name):
            all_aliases = {str(a): str(v) for a, v in dict(model.aliases or {}).items()}
            versions: dict[str, RegisteredVersion] = {}
            for alias in aliases:
                number = all_aliases.get(alias)
                if number is None:
                    continue
                if (model.name, number) not in known:
                    known[model.name, number] = _get_version(
                        client, model.name, version=number, alias=None
                    )
                versions[alias] = known[model.name, number]
            latest = [str(v.version) for v in model.latest_versions or []]
            out.append(
                ServedModel(
                    name=model.name,
                    description=model.description or None,
                    tags=dict(model.tags or {}),
                    aliases=all_aliases,
                    versions=versions,
                    latest_version=max(latest, key=int) if latest else None,
                    updated_at=_from_ms(model.last_updated_timestamp),
                )
            )
    return out


def _from_ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value else None
