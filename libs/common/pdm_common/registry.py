"""Model registry access (MLflow) shared by every trainer and serving process.

Conventions (DESIGN.md, Models):

* A registered model is named `<task>-<asset_type>` (`anomaly-pump`, `failure-ai4i`), see
  `model_name`. Every version carries the tags `task` (failure | rul | anomaly),
  `asset_type`, `dataset`, `feature_set`, plus `flavor`, `features` and `reference_sample`
  written here.
* Serving loads `models:/<name>@champion`; the alias only moves when a candidate is at least
  as good as the champion on the *same* evaluation (`promote_if_better`), and every decision
  is written on the candidate version as `promotion.*` tags.
* Errors are typed: `RegistryUnavailable` (the server cannot be reached: retry later) is not
  `ModelNotFound` / `NoChampion` (the registry answered: someone has to train first).

Heavy imports (mlflow ~4 s, pandas) happen inside the functions, so importing this module
is cheap. Loading runs blocking HTTP and file I/O: from asyncio use `ChampionCache.aget` /
`areload`, which run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import math
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol, runtime_checkable

from pdm_common.events import ModelAliasMoved

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

CHAMPION = "champion"
TASKS: tuple[str, ...] = ("failure", "rul", "anomaly")
#: Tags every registered version must carry (the drift and prediction services filter on them).
REQUIRED_TAGS = ("asset_type", "task", "dataset", "feature_set")
REFERENCE_SAMPLE_PATH = "reference/reference_sample.parquet"
FEATURES_PATH = "features.json"
PROMOTION_TAG_PREFIX = "promotion."
#: Tag of a classifier version: the probability at which it calls a failure (chosen in training).
THRESHOLD_TAG = "decision_threshold"
#: Artifact of a failure classifier version: its failure-mode model (JSON).
MODES_ARTIFACT = "failure_modes.json"
#: How a registry miss tells the operator what to run, per task (name = `<task>-<asset_type>`).
TRAIN_HINTS: dict[str, str] = {
    "anomaly": "pdm train anomaly --asset-type {asset_type}",
    "failure": "pdm train ai4i",
    "rul": "pdm train cmapss --subset FD001",
}
#: Asset types whose failure and RUL models come from `pdm train simulated`.
SIMULATED_TYPES = frozenset({"pump", "motor", "compressor"})
_HEALTH_TIMEOUT_S = 3.0
#: MLflow error codes that mean "the registry answered: no such thing".
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


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


def model_name(task: str, asset_type: str) -> str:
    """The platform's registered-model name for a task and asset type (`anomaly-pump`)."""
    return f"{task}-{asset_type}"


def train_hint(name: str) -> str:
    """What to run so that `name` gets a (champion) version."""
    task, _, asset_type = name.partition("-")
    template = TRAIN_HINTS.get(task)
    if task in ("failure", "rul") and asset_type in SIMULATED_TYPES:
        template = "pdm train simulated --asset-type {asset_type}"
    if template and asset_type:
        return f"run `{template.format(asset_type=asset_type)}`"
    return "run the training pipeline that registers it (`pdm train --help`)"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """Whether the alias moved to a candidate, and the evidence (also stored as tags)."""

    name: str
    candidate_version: str
    previous_version: str | None  # the champion before the decision
    moved: bool
    reason: str
    metric: str
    higher_is_better: bool
    candidate_score: float
    champion_score: float | None
    alias: str = CHAMPION
    tags: Mapping[str, str] = field(default_factory=dict)  # the candidate version's tags

    @property
    def champion_version(self) -> str | None:
        """The version the alias points at after the decision."""
        return self.candidate_version if self.moved else self.previous_version

    def to_event(self, source: str) -> ModelAliasMoved:
        """The `pdm.models.v1` event announcing the decision (publish it when `moved`)."""
        version = self.champion_version
        if version is None:
            raise ValueError(f"{self.name}: no version holds {self.alias}; nothing to announce")
        metrics = {f"candidate_{self.metric}": self.candidate_score}
        if self.champion_score is not None:
            metrics[f"champion_{self.metric}"] = self.champion_score
        return ModelAliasMoved(
            source=source,
            model_name=self.name,
            alias=self.alias,
            version=version,
            previous_version=self.previous_version if self.moved else None,
            task=self.tags.get("task"),
            asset_type=self.tags.get("asset_type"),
            metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
            decision=self.reason,
        )


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


@runtime_checkable
class DirectoryModel(Protocol):
    """A model saved as plain files and loaded by an importable module (MLflow's pyfunc
    `loader_module` workflow): no pickle, so a model outlives refactors of its class."""

    pyfunc_loader_module: ClassVar[str]

    def save(self, path: str | Path) -> None: ...


# --------------------------------------------------------------------------------------------
# Reachability and error translation
# --------------------------------------------------------------------------------------------


def check_reachable(tracking_uri: str, timeout: float = _HEALTH_TIMEOUT_S) -> None:
    """Fail fast with `RegistryUnavailable` when an HTTP tracking server does not answer.

    MLflow's own client retries a refused connection with back-off for about two minutes
    before it fails; one `GET /health` answers the question in milliseconds. Any HTTP answer
    counts as reachable (a proxy may not route /health); non-HTTP URIs are not probed.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        raise RegistryUnavailable(tracking_uri, getattr(exc, "reason", exc)) from exc


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in _NOT_FOUND_CODES


@contextmanager
def _translated(tracking_uri: str) -> Iterator[None]:
    """Turn transport failures inside MLflow calls into `RegistryUnavailable`."""
    import requests

    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RegistryUnavailable(tracking_uri, exc) from exc
    except Exception as exc:
        if "Max retries exceeded" in str(exc) or "Connection refused" in str(exc):
            raise RegistryUnavailable(tracking_uri, exc) from exc
        raise


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """Run fluent MLflow calls (log_model, start_run) against `tracking_uri`, then restore."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri), _translated(tracking_uri):
        yield


# --------------------------------------------------------------------------------------------
# Logging and registering
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Reading the registry
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Promotion
# --------------------------------------------------------------------------------------------


def _is_better_or_equal(candidate: float, champion: float, higher_is_better: bool) -> bool:
    if math.isnan(candidate):
        return False
    return candidate >= champion if higher_is_better else candidate <= champion


def decide(
    candidate: float, champion: float | None, *, metric: str, higher_is_better: bool
) -> tuple[bool, str]:
    """The promotion rule alone: move when at least as good, or when nothing to beat."""
    if champion is None or math.isnan(champion):
        if math.isnan(candidate):
            return False, f"candidate has no valid {metric}"
        return True, f"no comparable champion {metric}; candidate {metric}={candidate:.4g}"
    better = _is_better_or_equal(candidate, champion, higher_is_better)
    relation = "at least as good as" if better else "worse than"
    arrow = "higher" if higher_is_better else "lower"
    return better, (
        f"candidate {metric}={candidate:.4g} is {relation} champion {champion:.4g} "
        f"({arrow} is better)"
    )


def promote_if_better(
    name: str,
    version: str,
    *,
    metric: str,
    higher_is_better: bool,
    evaluate_champion: Callable[[RegisteredVersion], float] | None = None,
    candidate_score: float | None = None,
    alias: str = CHAMPION,
    tracking_uri: str,
) -> PromotionDecision:
    """Move `alias` to `version` if it is at least as good as the current holder.

    The candidate's score is `candidate_score` or its run's `metric`. The champion's score is
    `evaluate_champion(champion)` when given (the fair comparison: the same held-out data the
    candidate was scored on) or else the champion run's logged `metric`. No champion, or a
    champion without that metric, means promotion (a renamed metric must not freeze the
    alias forever). The decision and both scores are written on the candidate version as
    `promotion.*` tags. Two trainers promoting at the same moment can race (the registry has
    no compare-and-set); the last writer wins and both decisions stay recorded.
    """
    client = _client(tracking_uri)
    with _translated(tracking_uri):
        candidate = _get_version(client, name, version=version, alias=None)
        score = candidate_score if candidate_score is not None else candidate.metrics.get(metric)
        if score is None:
            raise ValueError(f"{candidate.uri}: its run has no metric {metric!r} to compare")
        try:
            champion: RegisteredVersion | None = _get_version(
                client, name, version=None, alias=alias
            )
        except NoChampion:
            champion = None
        champion_score: float | None = None
        if champion is not None and champion.version == candidate.version:
            moved, reason = False, f"version {version} already holds {alias}"
            champion_score = score
        else:
            if champion is not None:
                champion_score = (
                    float(evaluate_champion(champion))
                    if evaluate_champion is not None
                    else champion.metrics.get(metric)
                )
            moved, reason = decide(
                float(score), champion_score, metric=metric, higher_is_better=higher_is_better
            )
            if moved:
                client.set_registered_model_alias(name, alias, version)
        decision = PromotionDecision(
            name=name,
            candidate_version=version,
            previous_version=champion.version if champion else None,
            moved=moved,
            reason=reason,
            metric=metric,
            higher_is_better=higher_is_better,
            candidate_score=float(score),
            champion_score=champion_score,
            alias=alias,
            tags=candidate.tags,
        )
        for key, value in promotion_tags(decision).items():
            client.set_model_version_tag(name, version, key, value)
    return decision


def promotion_tags(decision: PromotionDecision) -> dict[str, str]:
    """The evidence of a decision, as version tags (`promotion.*`)."""
    p = PROMOTION_TAG_PREFIX
    verdict = "promoted" if decision.moved else "rejected"
    return {
        f"{p}decision": verdict,
        f"{p}reason": decision.reason,
        f"{p}metric": decision.metric,
        f"{p}higher_is_better": str(decision.higher_is_better).lower(),
        f"{p}candidate_score": repr(decision.candidate_score),
        f"{p}champion_score": repr(decision.champion_score)
        if decision.champion_score is not None
        else "none",
        f"{p}champion_version": decision.previous_version or "none",
        f"{p}decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# Loading and caching
# --------------------------------------------------------------------------------------------


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


def describe(decision: PromotionDecision) -> str:
    """One line for logs and CLIs."""
    verdict = "promoted" if decision.moved else "kept"
    champion = decision.champion_version or "none"
    return (
        f"{decision.name} v{decision.candidate_version}: {verdict} "
        f"({decision.reason}); {decision.alias} = v{champion}"
    )
