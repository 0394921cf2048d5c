"""Loading a registered version in its native form, bound to its registry identity."""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pdm_common.registry.client import _client, _translated
from pdm_common.registry.naming import CHAMPION
from pdm_common.registry.versions import RegisteredVersion, get_version


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model loaded from the registry, with the version it is (for logs, metrics, events)."""

    name: str
    version: str
    alias: str | None
    model: Any
    run_id: str | None
    tags: Mapping[str, str]
    load_seconds: float


@runtime_checkable
class RegistryBound(Protocol):
    """A loaded model that wants to know which registry version it is (e.g. to stamp it on
    every score it produces). `load_champion` calls this after loading."""

    def bind_registry(self, model_name: str, model_version: str) -> Any: ...


def _load_local(path: str, flavor: str | None) -> Any:
    """Load a downloaded model directory in its native form (not the generic pyfunc)."""
    import mlflow.pyfunc
    from mlflow.models import Model

    flavors = Model.load(path).flavors
    native = flavor if flavor in flavors and flavor != "python_function" else None
    native = native or next((f for f in ("lightgbm", "sklearn") if f in flavors), None)
    if native is not None:
        # e.g. the LightGBM flavour gives predict_proba; pyfunc would only give labels
        return importlib.import_module(f"mlflow.{native}").load_model(path)
    pyfunc = mlflow.pyfunc.load_model(path)
    try:
        return pyfunc.get_raw_model()
    except NotImplementedError:
        pass
    try:
        return pyfunc.unwrap_python_model()
    except Exception:
        return pyfunc


def load_version(
    version: RegisteredVersion, tracking_uri: str, alias: str | None = None
) -> LoadedModel:
    """Download and load one registered version; bind it to its registry identity.

    The storage location is resolved with an explicit client: MLflow's own `models:/`
    resolution ignores the `registry_uri` argument and falls back to the process-global
    registry (a local `./mlflow.db` when none is set), which also races between threads.
    """
    import mlflow.artifacts

    started = time.perf_counter()
    client = _client(tracking_uri)
    with _translated(tracking_uri), tempfile.TemporaryDirectory(prefix="pdm-load-") as tmp:
        location = client.get_model_version_download_uri(version.name, version.version)
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=tmp, tracking_uri=tracking_uri
        )
        model = _load_local(path, version.tags.get("flavor"))
    if isinstance(model, RegistryBound):
        model = model.bind_registry(version.name, version.version)
    return LoadedModel(
        name=version.name,
        version=version.version,
        alias=alias,
        model=model,
        run_id=version.run_id,
        tags=dict(version.tags),
        load_seconds=time.perf_counter() - started,
    )


def load_champion(name: str, tracking_uri: str, *, alias: str = CHAMPION) -> LoadedModel:
    """Load `models:/<name>@<alias>` in its native form (blocking: ~0.1 s warm + download).

    Resolves the alias once and loads exactly that version, so the version reported is the
    one served even if the alias moves meanwhile. Raises `RegistryUnavailable`,
    `ModelNotFound` or `NoChampion`.
    """
    version = get_version(name, alias=alias, tracking_uri=tracking_uri)
    loaded: LoadedModel = load_version(version, tracking_uri, alias=alias)
    return loaded
