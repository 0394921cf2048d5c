"""Logging a training run and registering its model as a new version (the alias untouched)."""

from __future__ import annotations

import importlib
import importlib.metadata
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pdm_common.registry.client import _client, _tracking
from pdm_common.registry.naming import FEATURES_PATH, REFERENCE_SAMPLE_PATH, REQUIRED_TAGS, TASKS
from pdm_common.registry.versions import RegisteredVersion

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient


@runtime_checkable
class DirectoryModel(Protocol):
    """A model saved as plain files and loaded by an importable module (MLflow's pyfunc
    `loader_module` workflow): no pickle, so a model outlives refactors of its class."""

    pyfunc_loader_module: ClassVar[str]

    def save(self, path: str | Path) -> None: ...


def default_pip_requirements(flavor: str) -> list[str]:
    """Pinned requirements of a logged model, from this environment.

    Passing them explicitly skips MLflow's requirement inference, which loads the model in a
    subprocess (seconds per log, and it needs the platform's code importable there).
    """
    dists = ["mlflow", "numpy", "pandas", "scikit-learn", "scipy"]
    if flavor not in ("pyfunc", "sklearn"):
        dists.append(flavor)
    out = []
    for dist in dists:
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def validate_tags(tags: Mapping[str, str]) -> dict[str, str]:
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        raise ValueError(f"model version tags {missing} are required ({REQUIRED_TAGS})")
    if tags["task"] not in TASKS:
        raise ValueError(f"tag task={tags['task']!r} is not one of {TASKS}")
    return {str(k): str(v) for k, v in tags.items()}


def _signature(input_frame: pd.DataFrame, output: Any, optional_inputs: bool) -> Any:
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    signature = infer_signature(input_frame, output)
    if optional_inputs and signature.inputs is not None:
        signature.inputs = Schema(
            [ColSpec(c.type, c.name, required=False) for c in signature.inputs.inputs]
        )
    return signature


def _log_model(
    model: Any,
    flavor: str,
    *,
    signature: Any,
    input_example: Any,
    pip_requirements: Sequence[str],
    params: Mapping[str, Any],
    workdir: Path,
) -> Any:
    """`mlflow.<flavor>.log_model` with the arguments every flavor shares."""
    common: dict[str, Any] = {
        "name": "model",
        "signature": signature,
        "input_example": input_example,
        "pip_requirements": list(pip_requirements),
        "params": dict(params),
    }
    module = importlib.import_module(f"mlflow.{flavor}")
    if flavor != "pyfunc":
        return module.log_model(model, **common)
    if isinstance(model, DirectoryModel):
        data = workdir / "model"
        model.save(data)
        return module.log_model(
            loader_module=model.pyfunc_loader_module, data_path=str(data), **common
        )
    return module.log_model(python_model=model, **common)


def log_and_register(
    model: Any,
    *,
    name: str,
    flavor: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    signature_input: pd.DataFrame,
    input_example: pd.DataFrame | None = None,
    reference_sample: pd.DataFrame | None = None,
    signature_output: Any = None,
    optional_inputs: bool = False,
    features: Sequence[str] | None = None,
    artifacts: Sequence[str | Path] = (),
    pip_requirements: Sequence[str] | None = None,
    experiment: str | None = None,
    tracking_uri: str,
) -> RegisteredVersion:
    """Log one training run and register its model as a new version of `name`.

    The run gets `params`, `metrics`, the feature list (`features.json`), a signature (from
    `signature_input`/`signature_output`; `optional_inputs` lets callers omit columns, e.g.
    a sensor that is offline), the input example, the reference sample of the training
    features for drift checks (`reference/reference_sample.parquet`) and any extra
    `artifacts` (local files, e.g. an evaluation report). `flavor` is an MLflow flavor
    module (`lightgbm`, `sklearn`, `pyfunc`); a `DirectoryModel` is logged through pyfunc's
    loader module.
    The version gets `tags` (must include `REQUIRED_TAGS`) plus `flavor`, `features`,
    `reference_sample`. The alias is not touched: see `promote_if_better`.

    Not thread-safe: MLflow's logging API works on the process-global tracking URI, which is
    set for the duration of the call (trainers are one-shot processes; loading never uses it).
    """
    import mlflow

    version_tags = validate_tags(tags)
    features = list(features if features is not None else signature_input.columns)
    client = _client(tracking_uri)
    with _tracking(tracking_uri), tempfile.TemporaryDirectory(prefix="pdm-model-") as tmp:
        workdir = Path(tmp)
        experiment_id = _experiment_id(client, experiment or name)
        run_name = f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.set_tags(version_tags)
            mlflow.log_params(dict(params))
            mlflow.log_dict({"features": features}, FEATURES_PATH)
            info = _log_model(
                model,
                flavor,
                signature=_signature(signature_input, signature_output, optional_inputs),
                input_example=input_example,
                pip_requirements=pip_requirements or default_pip_requirements(flavor),
                params=params,
                workdir=workdir,
            )
            mlflow.log_metrics(dict(metrics), model_id=info.model_id)
            if reference_sample is not None:
                path = workdir / Path(REFERENCE_SAMPLE_PATH).name
                reference_sample.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), Path(REFERENCE_SAMPLE_PATH).parent.as_posix())
            for artifact in artifacts:
                mlflow.log_artifact(str(artifact))
            run_id = run.info.run_id
        version_tags |= {
            "flavor": flavor,
            "features": ",".join(features)[:4000],
            "reference_sample": f"runs:/{run_id}/{REFERENCE_SAMPLE_PATH}"
            if reference_sample is not None
            else "",
        }
        mv = mlflow.register_model(info.model_uri, name, tags=version_tags)
    return RegisteredVersion(
        name, str(mv.version), run_id, version_tags, {k: float(v) for k, v in metrics.items()}
    )


def _experiment_id(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(experiment))
    except Exception:  # created concurrently by another trainer
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return str(found.experiment_id)
