"""From requests to predictions, many at once: route each asset to its champions, read the
features' inputs for the whole batch in one query per model part, score each part with one
model call per batch, assemble one `Prediction` (or a typed `ServingError`) per request.

The maths is in `serving` (pure); this module is the I/O around it: the champion cache, the
`readings` queries and the thread the model calls run on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, cast

import structlog

from pdm_common.db.pool import db_call
from pdm_common.delivery import DependencyUnavailable
from pdm_common.drift import CHALLENGER
from pdm_common.events import ModelRef, Prediction, PredictionRequest
from pdm_common.model_events import AliasMovedProcessor, record_model_in_use
from pdm_common.registry import (
    MODES_ARTIFACT,
    THRESHOLD_TAG,
    ChampionCache,
    LoadedModel,
    ModelNotFound,
    RegistryError,
    RegistryUnavailable,
    load_champion,
)
from pdm_ml.features import machining
from pdm_prediction import SERVICE
from pdm_prediction.serving import (
    FAILURE,
    RUL,
    RUL_CAP,
    Confidence,
    FailureResult,
    FailureScorer,
    FailureServable,
    HistoryModel,
    ModeBoosters,
    ServingError,
    failure_features,
    freshness,
    health,
    health_formula,
    history_columns,
    history_features,
    milling_snapshot,
    model_refs,
    predict_failures,
    predict_rul,
    route,
    rul_cap,
    rul_unit,
    sampling_period,
)
from pdm_prediction.settings import PredictionSettings
from pdm_prediction.storage import PredictionStore

log = structlog.get_logger(__name__)

#: Stable namespace: a prediction's event id derives from its request id, so a redelivered
#: request republishes the same event id (consumers dedupe on it).
PREDICTION_NS = uuid.UUID("6f1d3c52-64a4-4c3e-9f55-4f1f0b7f2a11")
#: Stored sensors a milling (AI4I-style) failure prediction reads.
MILLING_SENSORS: tuple[str, ...] = (*machining.SENSORS, "quality_code")

Outcome: TypeAlias = Prediction | ServingError


# --------------------------------------------------------------------------------------------
# Champion models
# --------------------------------------------------------------------------------------------


def load_failure_model(name: str, tracking_uri: str, alias: str) -> LoadedModel:
    """The champion classifier plus its threshold tag and its run's failure-mode models; a
    history model (the simulated fleet's) carries all of that itself."""
    loaded = load_champion(name, tracking_uri, alias=alias)
    if isinstance(loaded.model, HistoryModel):
        return loaded
    threshold = float(loaded.tags.get(THRESHOLD_TAG, "0.5"))
    modes: ModeBoosters | None = None
    if loaded.run_id:
        try:
            import mlflow.artifacts

            with tempfile.TemporaryDirectory(prefix="pdm-modes-") as tmp:
                path = mlflow.artifacts.download_artifacts(
                    run_id=loaded.run_id,
                    artifact_path=MODES_ARTIFACT,
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                )
                with open(path) as fh:
                    modes = ModeBoosters.from_json(json.load(fh))
        except Exception as exc:  # the probability is still served without modes
            log.warning("failure modes not loaded", model=name, error=repr(exc))
    return replace(loaded, model=FailureServable(loaded.model, threshold, modes))


def _load(name: str, tracking_uri: str, alias: str) -> LoadedModel:
    if name.startswith(f"{FAILURE}-"):
        return load_failure_model(name, tracking_uri, alias)
    return load_champion(name, tracking_uri, alias=alias)


class ServedModels:
    """Champions by name, loaded off the event loop; reports the versions in use."""

    def __init__(self, tracking_uri: str, cache: ChampionCache | None = None) -> None:
        self.cache = cache or ChampionCache(tracking_uri, loader=_load, retry_after_s=10.0)

    async def get(self, name: str) -> LoadedModel:
        first = self.cache.peek(name) is None
        loaded = await self.cache.aget(name)
        if first:
            record_model_in_use(SERVICE, name, loaded.version)
        return loaded

    def processor(self) -> AliasMovedProcessor:
        """Reloads for `pdm.models.v1`."""
        return AliasMovedProcessor(self.cache, SERVICE)

    async def preload(self, names: Iterable[str], retry_s: float = 30.0) -> None:
        """Load every routed champion in the background from start-up, so the first request
        is as fast as the hundredth; a name without a champion yet is retried every
        `retry_s` (a promotion event loads it sooner)."""
        pending = sorted(set(names))
        while pending:
            for name in list(pending):
                try:
                    await self.get(name)
                except RegistryError as exc:
                    log.info("champion not loaded yet", model=name, reason=str(exc))
                    continue
                except Exception as exc:  # a broken artifact must not stop the others
                    log.warning("champion failed to load", model=name, error=repr(exc))
                    continue
                pending.remove(name)
            if pending:
                await asyncio.sleep(retry_s)

    def status(self, names: Iterable[str]) -> dict[str, str | None]:
        """Served version per routed model name (None: not loaded yet), for `/ready`."""
        return {name: self.cache.version(name) for name in sorted(set(names))}


# --------------------------------------------------------------------------------------------
# Batch prediction
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    """One request on its way through the parts its asset type is served by."""

    request: PredictionRequest
    parts: dict[str, LoadedModel]
    confidence: Confidence = field(default_factory=Confidence)
    fields: dict[str, Any] = field(default_factory=dict)
    times: list[datetime] = field(default_factory=list)
    rul_cap: float = RUL_CAP
    history_checked: bool = False  # freshness of its stored history applied (once per job)


#: Stored histories fetched within one batch, per (anchor, sensors): both parts of a
#: simulated machine read the same rows, so they are fetched once.
Fetched: TypeAlias = dict[
    tuple[str, tuple[str, ...]], dict[str, tuple[list[dict[str, float]], list[datetime]]]
]


def rul_sensors(model: Any) -> tuple[str, list[str]]:
    """(anchor sensor that counts the rows, every stored sensor read) of an RUL model."""
    return history_columns(model)


class Predictor:
    """Scores batches of requests; every request ends as a `Prediction` or a `ServingError`.

    Raises `DependencyUnavailable` (the whole batch is retried) when the registry or the
    database is unreachable: that is not the request's fault.
    """

    def __init__(
        self, store: PredictionStore, models: ServedModels, settings: PredictionSettings
    ) -> None:
        self.store = store
        self.models = models
        self.settings = settings

    async def predict_many(self, requests: Sequence[PredictionRequest]) -> list[Outcome]:
        now = datetime.now(UTC)
        outcomes: list[Outcome | None] = [None] * len(requests)
        jobs: dict[int, _Job] = {}
        loaded: dict[str, LoadedModel | ServingError] = {}
        for i, request in enumerate(requests):
            try:
                parts = route(request.asset_type, self.settings.routes)
                for name in parts.values():
                    if name not in loaded:
                        loaded[name] = await self._model(name)
                models = {part: loaded[name] for part, name in parts.items()}
                for model in models.values():
                    if isinstance(model, ServingError):
                        raise model
                jobs[i] = _Job(
                    request, {p: m for p, m in models.items() if isinstance(m, LoadedModel)}
                )
            except ServingError as exc:
                outcomes[i] = exc

        fetched: Fetched = {}
        await self._failure_part(jobs, outcomes, now, fetched)
        await self._rul_part(jobs, outcomes, now, fetched)
        for i, job in jobs.items():
            if outcomes[i] is None:
                outcomes[i] = self._assemble(job)
        return [o for o in outcomes if o is not None]

    # -- parts ------------------------------------------------------------------------------

    async def _failure_part(
        self,
        jobs: Mapping[int, _Job],
        outcomes: list[Outcome | None],
        now: datetime,
        fetched: Fetched,
    ) -> None:
        by_model: dict[str, list[int]] = {}
        for i, job in jobs.items():
            if FAILURE in job.parts:
                by_model.setdefault(job.parts[FAILURE].name, []).append(i)
        for indices in by_model.values():
            model = jobs[indices[0]].parts[FAILURE].model
            if isinstance(model, HistoryModel):
                await self._history_failure(model, indices, jobs, outcomes, now, fetched)
                continue
            stored = [jobs[i].request.asset_id for i in indices if jobs[i].request.readings is None]
            latest = await self._latest(stored) if stored else {}
            rows: list[dict[str, float]] = []
            scored: list[int] = []
            for i in indices:
                job = jobs[i]
                try:
                    readings = self._snapshot(job, latest, now)
                    snapshot = milling_snapshot(readings, job.request.attributes)
                    rows.append(failure_features(snapshot))
                    scored.append(i)
                except ServingError as exc:
                    outcomes[i] = exc
            if not scored:
                continue
            servable: FailureServable = jobs[scored[0]].parts[FAILURE].model
            results = await asyncio.to_thread(
                predict_failures,
                servable,
                rows,
                self.settings.top_factors,
                self.settings.factors_min_probability,
            )
            for i, result in zip(scored, results, strict=True):
                jobs[i].fields |= failure_fields(result)

    def _snapshot(
        self,
        job: _Job,
        latest: Mapping[str, Mapping[str, tuple[datetime, float]]],
        now: datetime,
    ) -> Mapping[str, float]:
        """Inline readings (no times: they are current), or the latest stored per sensor."""
        request = job.request
        if request.readings is not None:
            return request.readings
        found = latest.get(request.asset_id)
        if not found:
            raise ServingError(
                "missing_sensors",
                f"no readings of {request.asset_id} in the last "
                f"{self.settings.readings_max_age_hours:g} h and none in the request",
                list(MILLING_SENSORS),
            )
        times = [t for t, _ in found.values()]
        self._freshness(job.confidence, times, now)
        job.times += times
        return {s: v for s, (_, v) in found.items()}

    async def _history_failure(
        self,
        model: HistoryModel,
        indices: Sequence[int],
        jobs: Mapping[int, _Job],
        outcomes: list[Outcome | None],
        now: datetime,
        fetched: Fetched,
    ) -> None:
        """Failure part of history models: featurise each asset's recent rows, score all."""
        inputs = await self._histories(model, indices, jobs, outcomes, now, fetched)
        if not inputs:
            return
        results = await asyncio.to_thread(self._score_history_failure, model, inputs, jobs)
        for i, result in results.items():
            if isinstance(result, ServingError):
                outcomes[i] = result
            else:
                jobs[i].fields |= failure_fields(result)

    def _score_history_failure(
        self,
        model: HistoryModel,
        inputs: Sequence[tuple[int, list[dict[str, float]]]],
        jobs: Mapping[int, _Job],
    ) -> dict[int, FailureResult | ServingError]:
        out: dict[int, FailureResult | ServingError] = {}
        rows: list[dict[str, float]] = []
        scored: list[int] = []
        for i, history in inputs:
            try:
                rows.append(
                    history_features(
                        model, history, jobs[i].confidence, self.settings.min_history_rows
                    )
                )
                scored.append(i)
            except ServingError as exc:
                out[i] = exc
        results = predict_failures(
            cast(FailureScorer, model),  # a history failure model scores like any other
            rows,
            self.settings.top_factors,
            self.settings.factors_min_probability,
        )
        out.update(zip(scored, results, strict=True))
        return out

    async def _histories(
        self,
        model: Any,
        indices: Sequence[int],
        jobs: Mapping[int, _Job],
        outcomes: list[Outcome | None],
        now: datetime,
        fetched: Fetched,
    ) -> list[tuple[int, list[dict[str, float]]]]:
        """Each job's history for `model`: inline rows, or its stored rows (fetched once per
        batch and sensor set). A job without any gets `insufficient_history`; freshness and
        the sampling period of stored rows are judged once per job."""
        anchor, sensors = history_columns(model)
        cache = fetched.setdefault((anchor, tuple(sensors)), {})
        stored = [jobs[i].request.asset_id for i in indices if jobs[i].request.history is None]
        wanted = [a for a in dict.fromkeys(stored) if a not in cache]
        if wanted:
            found = await self._history(wanted, anchor, sensors)
            cache.update({a: found.get(a, ([], [])) for a in wanted})
        inputs: list[tuple[int, list[dict[str, float]]]] = []
        for i in indices:
            job = jobs[i]
            if job.request.history is not None:
                inputs.append((i, [dict(r) for r in job.request.history]))
                continue
            rows, times = cache.get(job.request.asset_id, ([], []))
            if not rows:
                outcomes[i] = ServingError(
                    "insufficient_history",
                    f"no stored history of {job.request.asset_id} (sensor {anchor!r}) in "
                    f"the last {self.settings.readings_max_age_hours:g} h and none in the "
                    "request",
                    [anchor],
                )
                continue
            if not job.history_checked:
                self._freshness(job.confidence, times[-1:], now)
                job.times += times[-1:]
                job.history_checked = True
            sampling_period(job.confidence, times, model)
            inputs.append((i, rows))
        return inputs

    async def _rul_part(
        self,
        jobs: Mapping[int, _Job],
        outcomes: list[Outcome | None],
        now: datetime,
        fetched: Fetched,
    ) -> None:
        by_model: dict[str, list[int]] = {}
        for i, job in jobs.items():
            if RUL in job.parts and outcomes[i] is None:
                by_model.setdefault(job.parts[RUL].name, []).append(i)
        for indices in by_model.values():
            model = jobs[indices[0]].parts[RUL].model
            inputs = await self._histories(model, indices, jobs, outcomes, now, fetched)
            results = await asyncio.to_thread(self._score_rul, model, inputs, jobs)
            for i, result in results.items():
                if isinstance(result, ServingError):
                    outcomes[i] = result
                else:
                    jobs[i].fields |= result

    def _score_rul(
        self,
        model: Any,
        inputs: Sequence[tuple[int, list[dict[str, float]]]],
        jobs: Mapping[int, _Job],
    ) -> dict[int, dict[str, Any] | ServingError]:
        out: dict[int, dict[str, Any] | ServingError] = {}
        for i, history in inputs:
            try:
                rul = predict_rul(
                    model, history, jobs[i].confidence, self.settings.min_history_rows
                )
            except ServingError as exc:
                out[i] = exc
                continue
            jobs[i].rul_cap = rul_cap(model)
            out[i] = {
                "rul_p10": rul["p10"],
                "rul_p50": rul["p50"],
                "rul_p90": rul["p90"],
                "rul_unit": rul_unit(model),
            }
        return out

    # -- assembly ---------------------------------------------------------------------------

    def _assemble(self, job: _Job) -> Prediction:
        request, fields = job.request, job.fields
        score, contributors = health(
            fields.get("failure_probability"), fields.get("rul_p50"), cap=job.rul_cap
        )
        return Prediction(
            source=SERVICE,
            event_id=uuid.uuid5(PREDICTION_NS, str(request.request_id)),
            request_id=request.request_id,
            trigger=request.trigger,
            asset_id=request.asset_id,
            asset_type=request.asset_type,
            as_of=max(job.times, default=None),
            models=refs(tuple((p, m.name, m.version) for p, m in job.parts.items())),
            health_score=score,
            health_formula=health_formula(job.rul_cap),
            health_contributors=contributors,
            confidence=job.confidence.value,
            confidence_reasons=job.confidence.reasons,
            **fields,
        )

    # -- I/O --------------------------------------------------------------------------------

    def _freshness(self, confidence: Confidence, times: Sequence[datetime], now: datetime) -> None:
        freshness(
            confidence,
            times,
            now,
            stale_after_s=self.settings.stale_after_s,
            max_skew_s=self.settings.max_skew_s,
        )

    def _since(self) -> datetime:
        return datetime.now(UTC) - timedelta(hours=self.settings.readings_max_age_hours)

    async def _latest(
        self, asset_ids: Sequence[str]
    ) -> dict[str, dict[str, tuple[datetime, float]]]:
        return await db_call(self.store.latest(asset_ids, MILLING_SENSORS, self._since()))

    async def _history(
        self, asset_ids: Sequence[str], anchor: str, sensors: Sequence[str]
    ) -> dict[str, tuple[list[dict[str, float]], list[datetime]]]:
        return await db_call(
            self.store.history(
                asset_ids, anchor, sensors, self.settings.history_rows, self._since()
            )
        )

    async def _model(self, name: str) -> LoadedModel | ServingError:
        try:
            return await self.models.get(name)
        except RegistryUnavailable as exc:
            raise DependencyUnavailable(str(exc)) from exc
        except ModelNotFound as exc:
            return ServingError("no_champion", f"{name}: {exc}")


@functools.lru_cache(maxsize=256)
def refs(parts: tuple[tuple[str, str, str], ...]) -> dict[str, ModelRef]:
    """The `models` field for a combination of served versions (shared, built once)."""
    return model_refs({part: (name, version) for part, name, version in parts})


def failure_fields(result: FailureResult) -> dict[str, Any]:
    return {
        "failure_probability": result.probability,
        "failure_horizon": result.horizon,
        "failure_predicted": result.predicted,
        "decision_threshold": result.threshold,
        "failure_modes": result.modes,
        "failure_modes_basis": result.modes_basis,
        "top_factors": result.factors,
    }


# --------------------------------------------------------------------------------------------
# Shadow scoring
# --------------------------------------------------------------------------------------------

#: Namespace of shadow prediction ids: one per (request, challenger versions).
SHADOW_NS = uuid.UUID("0b6f1f4e-4d7e-4a61-9b6a-2b0c8f1f5d3e")


class _Challengers(ServedModels):
    """The challenger versions: loaded like champions, but not reported as models in use."""

    async def get(self, name: str) -> LoadedModel:
        return await self.cache.aget(name)


class ShadowScorer:
    """While a model has a `challenger`, score it on the same requests as the champion, by
    the same code path (`Predictor` over the challenger versions), for the drift service's
    live comparison. A request is shadow-scored only when every model its asset type routes
    to has a challenger that is not the champion itself. Shadow predictions are stored, never
    published: they open no work order and answer no client."""

    def __init__(self, store: PredictionStore, settings: PredictionSettings, tracking_uri: str):
        self.models = _Challengers(
            tracking_uri,
            ChampionCache(tracking_uri, loader=_load, alias=CHALLENGER, retry_after_s=60.0),
        )
        self.predictor = Predictor(store, self.models, settings)
        self.settings = settings

    def processor(self) -> AliasMovedProcessor:
        """Reloads a challenger when its alias moves (`pdm.models.v1`)."""
        return AliasMovedProcessor(self.models.cache, SERVICE)

    async def score(
        self, champions: Sequence[tuple[PredictionRequest, Prediction]]
    ) -> list[tuple[Prediction, uuid.UUID]]:
        """(shadow prediction, champion prediction id) for the requests with challengers."""
        wanted: list[tuple[PredictionRequest, Prediction]] = []
        for request, champion in champions:
            if await self._has_challengers(request, champion):
                wanted.append((request, champion))
        if not wanted:
            return []
        outcomes = await self.predictor.predict_many([r for r, _ in wanted])
        shadows: list[tuple[Prediction, uuid.UUID]] = []
        for (request, champion), outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, Prediction):
                versions = ",".join(f"{m.name}:{m.version}" for m in outcome.models.values())
                shadow_id = uuid.uuid5(SHADOW_NS, f"{request.request_id}|{versions}")
                shadow = outcome.model_copy(update={"event_id": shadow_id})
                shadows.append((shadow, champion.event_id))
        return shadows

    async def _has_challengers(self, request: PredictionRequest, champion: Prediction) -> bool:
        try:
            parts = route(request.asset_type, self.settings.routes)
        except ServingError:
            return False
        served = {ref.name: ref.version for ref in champion.models.values()}
        for name in parts.values():
            try:
                loaded = await self.models.cache.aget(name)
            except RegistryError:
                return False
            if loaded.version == served.get(name):
                return False  # the challenger was promoted: nothing to compare
        return True
