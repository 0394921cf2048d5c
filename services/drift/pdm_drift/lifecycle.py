"""Retrains and alias moves.

Retrain: claimed per model (a retrain of `failure-<type>` or `rul-<type>` trains and
registers both, as `pdm train simulated` does, so both are claimed: one `retrain_jobs` row
each, the partial unique index decides between replicas), refused during a cooldown unless
forced, run in a worker thread with the library pipeline (`pdm_ml.training.simulated`),
registered as `challenger`, judged against the champion re-scored on the same held-out
machines (`promote_failure` / `promote_rul`). With `auto_promote`, a challenger at least as
good is promoted at once, or, with a shadow period, after it: the prediction service
shadow-scores it meanwhile and `judge_shadowed` compares it live with the champion on the
same requests (`performance.compare_live`), keeping it when significantly worse. A
promotion moves `champion`, the old champion becomes `previous`, `pdm.models.v1` events go
into the outbox and the alias history records the trigger and the scores. A failure marks
the jobs failed (`retrain.failed`) and never promotes anything.

Promote / rollback (commands): `champion` <- a version or the `challenger` / <- `previous`;
the version that held `champion` becomes `previous`, so a rollback can be rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter

from pdm_common import topics
from pdm_common.drift import (
    CHALLENGER,
    PREVIOUS,
    AliasChange,
    DriftCommand,
    DriftCommandResult,
    DriftReport,
    DriftTrigger,
    LivePerformance,
    RetrainEvent,
)
from pdm_common.events import ModelAliasMoved
from pdm_common.registry import (
    CHAMPION,
    SIMULATED_TYPES,
    ModelNotFound,
    PromotionDecision,
    RegisteredVersion,
    decide,
)
from pdm_common.telemetry import REGISTRY
from pdm_drift import SERVICE
from pdm_drift.commands import result
from pdm_drift.frames import CHECKED_TASKS, pair_of, split_name
from pdm_drift.models import Models
from pdm_drift.performance import LiveVerdict, compare_live, from_rows
from pdm_drift.settings import DriftSettings
from pdm_drift.storage import DriftStore, Tx

log = structlog.get_logger(__name__)

RETRAINS = Counter(
    "pdm_drift_retrains_total",
    "Retrains by outcome (started, promoted, kept, failed, refused).",
    ["outcome"],
    registry=REGISTRY,
)
HEARTBEAT_S = 30.0


class Refused(Exception):
    """A request refused inside its transaction (rolled back), with its answer."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Retrain:
    """One retrain: the jobs (model name -> job id, the requested model first)."""

    jobs: dict[str, uuid.UUID]
    asset_type: str
    trigger: DriftTrigger
    reason: str | None
    actor: str

    @property
    def job_id(self) -> uuid.UUID:
        return next(iter(self.jobs.values()))


def retrain_problem(model_name: str) -> str | None:
    """Why `model_name` cannot be retrained here (None: it can)."""
    task, asset_type = split_name(model_name)
    if task not in CHECKED_TASKS:
        return f"{model_name}: only failure-* and rul-* models are retrained here"
    if asset_type not in SIMULATED_TYPES:
        return (
            f"{model_name}: only the simulated types ({', '.join(sorted(SIMULATED_TYPES))}) are "
            "retrained by the drift service; train it with its own pipeline (`pdm train --help`)"
        )
    return None


def job_ids(model_name: str, job_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """The job of each model a retrain of `model_name` covers (ids derived from the first)."""
    return {
        name: job_id if name == model_name else uuid.uuid5(job_id, name)
        for name in pair_of(model_name)
    }


def alias_event(
    name: str,
    alias: str,
    version: str,
    previous: str | None,
    *,
    event_id: uuid.UUID | None = None,
    asset_type: str | None = None,
    metrics: dict[str, float] | None = None,
    decision: str | None = None,
) -> ModelAliasMoved:
    task, _ = split_name(name)
    return ModelAliasMoved(
        event_id=event_id or uuid.uuid4(),
        source=SERVICE,
        model_name=name,
        alias=alias,
        version=version,
        previous_version=previous,
        task=task,
        asset_type=asset_type or split_name(name)[1],
        metrics=metrics or {},
        decision=decision,
    )


def change_of(event: ModelAliasMoved, actor: str, trigger: str, reason: str | None) -> AliasChange:
    return AliasChange(
        model_name=event.model_name,
        alias=event.alias,
        version=event.version,
        previous_version=event.previous_version,
        moved_at=event.occurred_at,
        actor=actor,
        trigger=trigger,
        reason=reason,
        metrics=event.metrics,
    )


async def record_moves(
    tx: Tx, events: list[ModelAliasMoved], actor: str, trigger: str, reason: str | None
) -> None:
    """History rows and `pdm.models.v1` events of alias moves, in the caller's transaction."""
    for event in events:
        why = reason if event.alias != CHAMPION or not event.decision else event.decision
        await tx.record_alias(event.event_id, change_of(event, actor, trigger, why))
        await tx.emit(topics.MODELS, event.model_name, event)


class Lifecycle:
    def __init__(
        self,
        store: DriftStore,
        models: Models,
        settings: DriftSettings,
        wake: Callable[[], None],
        instance: str,
    ) -> None:
        self.store = store
        self.models = models
        self.settings = settings
        self.wake = wake
        self.instance = instance
        self.tasks: set[asyncio.Task[None]] = set()

    # -- retrain ------------------------------------------------------------------------------

    async def on_drift(self, report: DriftReport) -> None:
        """A features report over the threshold: retrain (unless refused: cooldown, running)."""
        if not self.settings.auto_retrain or report.model_name is None:
            return
        if retrain_problem(report.model_name) is not None:
            return
        reason = (
            f"weighted drifted share {report.weighted_share:.2f} >= "
            f"{self.settings.retrain_weighted_share:g} (report {report.report_id})"
        )
        status, message, _ = await self.request_retrain(
            report.model_name, "drift", reason, actor=SERVICE, job_id=uuid.uuid4()
        )
        log.info("retrain on drift", model=report.model_name, status=status, message=message)

    async def on_degraded(self, row: LivePerformance) -> None:
        """A champion whose live performance dropped significantly: retrain (unless off or
        refused: cooldown, running, a type the service does not retrain)."""
        if not self.settings.retrain_on_performance:
            return
        if retrain_problem(row.model_name) is not None:
            return
        reason = f"live performance of v{row.model_version} degraded: {row.reason}"
        status, message, _ = await self.request_retrain(
            row.model_name, "performance", reason[:2000], actor=SERVICE, job_id=uuid.uuid4()
        )
        log.info("retrain on performance", model=row.model_name, status=status, message=message)

    async def retrain_scheduled(self) -> list[str]:
        """The simulated types whose models have not changed for `retrain_every_days`:
        retrained (trigger `schedule`; the cooldown and the claim still apply). Returns the
        models a retrain started for."""
        days = self.settings.retrain_every_days
        if days <= 0:
            return []
        started = []
        for asset_type in sorted(SIMULATED_TYPES):
            name = f"failure-{asset_type}"  # its retrain covers rul-<type> too

            async def age(tx: Tx, model: str = name) -> float | None:
                return await tx.since_last_model_change_s(model)

            age_s = await self.store.run(age)
            if age_s is None or age_s < days * 86400:
                continue
            reason = f"no retrain or champion move for {age_s / 86400:.1f} days (every {days:g})"
            status, message, _ = await self.request_retrain(
                name, "schedule", reason, actor=SERVICE, job_id=uuid.uuid4()
            )
            log.info("scheduled retrain", model=name, status=status, message=message)
            if status == "accepted":
                started.append(name)
        return started

    async def request_retrain(
        self,
        model_name: str,
        trigger: DriftTrigger,
        reason: str | None,
        *,
        actor: str,
        job_id: uuid.UUID,
        force: bool = False,
        remember: Callable[[Tx, DriftCommandResult], Any] | None = None,
        command: DriftCommand | None = None,
    ) -> tuple[str, str, uuid.UUID | None]:
        """Claim and start a retrain: ("accepted" | "conflict" | "invalid", message, job)."""
        problem = retrain_problem(model_name)
        if problem is not None:
            return "invalid", problem, None
        _, asset_type = split_name(model_name)
        job = Retrain(job_ids(model_name, job_id), asset_type, trigger, reason, actor)
        message = f"retrain {job.job_id} of {', '.join(job.jobs)} started ({trigger})"

        async def claim(tx: Tx) -> None:
            for name in job.jobs:
                running = await tx.running_job(name)
                if running is not None:
                    raise Refused(
                        "conflict",
                        f"a retrain of {name} is running (job {running['job_id']}, since "
                        f"{running['started_at'].isoformat(timespec='seconds')})",
                    )
            if not force:
                left = await tx.cooldown_left_s(model_name, self.settings.retrain_cooldown_s)
                if left > 0:
                    raise Refused(
                        "conflict",
                        f"{model_name} is in its retrain cooldown for {left / 60:.0f} more "
                        "min (force=true overrides)",
                    )
            for name, jid in job.jobs.items():
                if not await tx.claim_job(jid, name, trigger, reason, self.instance):
                    raise Refused("conflict", f"a retrain of {name} was just claimed")
                await tx.emit(
                    topics.DRIFT,
                    name,
                    RetrainEvent(
                        event_type="retrain.started",
                        source=SERVICE,
                        job_id=jid,
                        model_name=name,
                        trigger=trigger,
                        reason=reason,
                    ),
                )
            if remember is not None and command is not None:
                await remember(tx, result(command, "accepted", message, job_id=job.job_id))

        try:
            await self.store.run(claim)
        except Refused as exc:
            RETRAINS.labels("refused").inc()
            return exc.status, exc.message, None
        RETRAINS.labels("started").inc()
        self.wake()
        task = asyncio.create_task(self._run(job), name=f"retrain {model_name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "accepted", message, job.job_id

    async def _run(self, job: Retrain) -> None:
        beat = asyncio.create_task(self._heartbeat(job))
        try:
            outcome = await self._train_and_judge(job)
        except asyncio.CancelledError:
            raise  # shutdown: the jobs stay running and go stale (marked failed later)
        except Exception as exc:
            log.error("retrain failed", job_id=str(job.job_id), error=repr(exc))
            RETRAINS.labels("failed").inc()
            error = exc
            with contextlib.suppress(Exception):
                await self.store.run(lambda tx: self._failed(tx, job, error))
                self.wake()
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        RETRAINS.labels("promoted" if outcome else "kept").inc()

    async def _heartbeat(self, job: Retrain) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(Exception):
                async with self.store.connection() as conn:
                    await conn.execute(
                        "UPDATE retrain_jobs SET heartbeat_at = now() "
                        "WHERE job_id = ANY(%s) AND status = 'running'",
                        (list(job.jobs.values()),),
                    )

    async def _failed(self, tx: Tx, job: Retrain, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        for name, jid in job.jobs.items():
            if await tx.end_job(jid, "failed", error=error):
                await tx.emit(
                    topics.DRIFT,
                    name,
                    RetrainEvent(
                        event_type="retrain.failed",
                        source=SERVICE,
                        job_id=jid,
                        model_name=name,
                        trigger=job.trigger,
                        reason=job.reason,
                        error=error,
                    ),
                )

    async def _train_and_judge(self, job: Retrain) -> bool:
        """Train, register, judge, maybe promote; True when a champion moved."""
        from pdm_ml.training import simulated as sim

        s = self.settings
        seed = s.retrain_seed if s.retrain_seed is not None else job.job_id.int % 1_000_000
        if s.quick_retrain:
            config = sim.SimConfig.quick(job.asset_type, seed)
        else:
            config = sim.SimConfig(job.asset_type, seed=seed)
        config.check()
        log.info("retrain started", job_id=str(job.job_id), models=list(job.jobs), seed=seed)
        training = await asyncio.to_thread(sim.train_simulated, config)
        uri = self.models.uri
        registered: dict[str, RegisteredVersion] = {}
        for name in job.jobs:
            task, _ = split_name(name)
            register = sim.register_failure if task == "failure" else sim.register_rul
            registered[name] = await asyncio.to_thread(register, training, uri)
        decisions: dict[str, PromotionDecision] = {}
        pending: set[str] = set()
        moves: list[ModelAliasMoved] = []
        for name, version in registered.items():
            old_challenger = await self.models.alias(name, CHALLENGER)
            await self.models.set_alias(name, CHALLENGER, version.version)
            moves.append(alias_event(name, CHALLENGER, version.version, old_challenger))
            decision, shadow = await asyncio.to_thread(self._judge, sim, training, version, uri)
            decisions[name] = decision
            if shadow:
                pending.add(name)
            if decision.moved and decision.previous_version is not None:
                old_previous = await self.models.alias(name, PREVIOUS)
                await self.models.set_alias(name, PREVIOUS, decision.previous_version)
                moves.append(alias_event(name, PREVIOUS, decision.previous_version, old_previous))
            if decision.moved:
                moves.append(decision.to_event(SERVICE))

        async def finish(tx: Tx) -> None:
            await record_moves(tx, moves, SERVICE, job.trigger, job.reason)
            for name, jid in job.jobs.items():
                d = decisions[name]
                summary = {
                    "metric": d.metric,
                    "higher_is_better": d.higher_is_better,
                    "challenger_version": d.candidate_version,
                    "challenger_score": _finite(d.candidate_score),
                    "champion_version": d.previous_version,
                    "champion_score": _finite(d.champion_score),
                    "promoted": d.moved,
                    "decision": d.reason,
                    "auto_promote": self.settings.auto_promote,
                    "pending": "shadow" if name in pending else None,
                }
                await tx.end_job(
                    jid, "finished", challenger_version=d.candidate_version, result=summary
                )
                await tx.emit(
                    topics.DRIFT,
                    name,
                    RetrainEvent(
                        event_type="retrain.finished",
                        source=SERVICE,
                        job_id=jid,
                        model_name=name,
                        trigger=job.trigger,
                        reason=job.reason,
                        challenger_version=d.candidate_version,
                        champion_version=d.champion_version,
                        metric=d.metric,
                        challenger_score=_finite(d.candidate_score),
                        champion_score=_finite(d.champion_score),
                        promoted=d.moved,
                        decision=d.reason,
                    ),
                )

        await self.store.run(finish)
        self.wake()
        for d in decisions.values():
            log.info(
                "retrain judged",
                model=d.name,
                challenger=d.candidate_version,
                champion_before=d.previous_version,
                metric=d.metric,
                challenger_score=d.candidate_score,
                champion_score=d.champion_score,
                promoted=d.moved,
                decision=d.reason,
            )
        return any(d.moved for d in decisions.values())

    def _judge(
        self, sim: Any, training: Any, version: RegisteredVersion, uri: str
    ) -> tuple[PromotionDecision, bool]:
        """`promote_failure` / `promote_rul` (the champion re-scored on the challenger's
        held-out machines); without auto-promote, or before a shadow period, the same
        comparison with nothing moved. True: the challenger waits for its live judgement."""
        task, _ = split_name(version.name)
        shadow = self.settings.auto_promote and self.settings.shadow_period_s > 0
        if self.settings.auto_promote and not shadow:
            promote = sim.promote_failure if task == "failure" else sim.promote_rul
            decision: PromotionDecision = promote(training, version, uri)
            return decision, False
        from pdm_common import registry
        from pdm_ml.training.simulated import registration

        if task == "failure":
            metric, higher, kind = sim.FAILURE_METRIC, True, sim.SimFailureModel
            score = float(training.failure_metrics[metric])
        else:
            metric, higher, kind = sim.RUL_METRIC, False, sim.SimRulModel
            score = float(training.rul_metrics.get(metric, math.nan))
        try:
            champion: RegisteredVersion | None = registry.get_version(
                version.name, alias=CHAMPION, tracking_uri=uri
            )
        except ModelNotFound:
            champion = None
        champion_score = None
        if champion is not None:
            evaluate = registration._champion_score(training, uri, lambda _line: None, kind)
            champion_score = float(evaluate(champion))
        better, reason = decide(score, champion_score, metric=metric, higher_is_better=higher)
        if not better:
            verdict = "kept"
        elif shadow:
            hours = self.settings.shadow_period_s / 3600
            verdict = f"shadow-scored for {hours:g} h, then judged live against the champion"
        else:
            verdict = "would be promoted (auto-promote off: promote it by command)"
        decision = PromotionDecision(
            name=version.name,
            candidate_version=version.version,
            previous_version=champion.version if champion else None,
            moved=False,
            reason=f"{reason}; {verdict}",
            metric=metric,
            higher_is_better=higher,
            candidate_score=score,
            champion_score=champion_score,
            tags=version.tags,
        )
        return decision, shadow and better

    # -- live judgement after the shadow period -------------------------------------------------

    async def judge_shadowed(self) -> list[str]:
        """Every challenger whose shadow period is over: judged live against the champion on
        the requests both scored (`performance.compare_live`), then promoted or kept; the
        job's result, the alias history and `retrain.judged` record the live figures."""
        if not self.settings.auto_promote or self.settings.shadow_period_s <= 0:
            return []
        verdicts = []
        for job in await self.store.pending_shadow(self.settings.shadow_period_s):
            verdicts.append(await self._judge_live(job))
        return verdicts

    async def _judge_live(self, job: dict[str, Any]) -> str:
        name, version = str(job["model_name"]), str(job["challenger_version"])
        task, _ = split_name(name)
        challenger = await self.models.alias(name, CHALLENGER)
        champion = await self.models.alias(name, CHAMPION)
        if challenger != version or champion == version:
            verdict = LiveVerdict(
                False,
                f"not judged: the challenger is now v{challenger}, the champion v{champion}",
                {},
            )
        else:
            pairs, labels = await self.store.shadow_pairs(task, name, version, job["finished_at"])
            _, outcomes = from_rows([], labels)
            s = self.settings
            verdict = await asyncio.to_thread(
                compare_live,
                task,
                pairs,
                outcomes,
                timedelta(hours=s.performance_horizon_h),
                datetime.now(UTC),
                min_events=s.performance_min_events,
                alpha=s.performance_alpha,
            )
        job_id = uuid.UUID(str(job["job_id"]))
        offline = dict(job["result"] or {})
        metrics = {
            f"{who}_{offline.get('metric')}": float(offline[f"{who2}_score"])
            for who, who2 in (("candidate", "challenger"), ("champion", "champion"))
            if offline.get(f"{who2}_score") is not None
        } | verdict.metrics  # offline scores (as an immediate promotion records) + live
        moves: list[ModelAliasMoved] = []
        if verdict.promote:
            moves = await self._move_champion(
                name, version, champion, job_id, metrics=metrics, decision=verdict.reason
            )
        result_now = offline | {
            "pending": None,
            "promoted": verdict.promote,
            "live_decision": verdict.reason,
            "live": verdict.metrics,
        }

        async def write(tx: Tx) -> None:
            if not await tx.resolve_shadow(job_id, result_now):
                return  # judged already (a repeated check, another replica)
            await record_moves(tx, moves, SERVICE, job["trigger"], job["reason"])
            await tx.emit(
                topics.DRIFT,
                name,
                RetrainEvent(
                    event_id=uuid.uuid5(job_id, "judged"),
                    event_type="retrain.judged",
                    source=SERVICE,
                    job_id=job_id,
                    model_name=name,
                    trigger=job["trigger"],
                    reason=job["reason"],
                    challenger_version=version,
                    champion_version=version if verdict.promote else champion,
                    promoted=verdict.promote,
                    decision=verdict.reason,
                ),
            )

        await self.store.run(write)
        self.wake()
        RETRAINS.labels("promoted" if verdict.promote else "kept").inc()
        log.info(
            "challenger judged live",
            model=name,
            version=version,
            promoted=verdict.promote,
            decision=verdict.reason,
        )
        return f"{name} v{version}: {verdict.reason}"

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- promote / rollback -------------------------------------------------------------------

    async def promote(
        self, c: DriftCommand, remember: Callable[[Tx, DriftCommandResult], Any]
    ) -> DriftCommandResult:
        assert c.model_name is not None
        name = c.model_name
        try:
            champion = await self.models.alias(name, CHAMPION)
            target = c.version or await self.models.alias(name, CHALLENGER)
            if target is None:
                return result(c, "not_found", f"{name} has no challenger to promote")
            await self.models.version(name, target)
        except ModelNotFound as exc:
            return result(c, "not_found", str(exc))
        if target == champion:
            answer = result(c, "ok", f"{name} v{target} already holds champion")
            await self.store.run(lambda tx: remember(tx, answer))
            return answer
        return await self._move(c, name, target, champion, remember)

    async def rollback(
        self, c: DriftCommand, remember: Callable[[Tx, DriftCommandResult], Any]
    ) -> DriftCommandResult:
        assert c.model_name is not None
        name = c.model_name
        try:
            champion = await self.models.alias(name, CHAMPION)
            previous = await self.models.alias(name, PREVIOUS)
        except ModelNotFound as exc:
            return result(c, "not_found", str(exc))
        if previous is None or previous == champion:
            return result(c, "conflict", f"{name} has no previous champion to roll back to")
        return await self._move(c, name, previous, champion, remember)

    async def _move_champion(
        self,
        name: str,
        target: str,
        champion: str | None,
        ids: uuid.UUID,
        *,
        metrics: dict[str, float] | None = None,
        decision: str | None = None,
    ) -> list[ModelAliasMoved]:
        """`champion` <- target and `previous` <- the old champion in the registry; the
        events of both moves (ids derived from `ids`, the champion's last)."""
        old_previous = await self.models.alias(name, PREVIOUS)
        await self.models.set_alias(name, CHAMPION, target)
        moves = []
        if champion is not None:
            await self.models.set_alias(name, PREVIOUS, champion)
            moves.append(
                alias_event(
                    name, PREVIOUS, champion, old_previous, event_id=uuid.uuid5(ids, PREVIOUS)
                )
            )
        moves.append(
            alias_event(
                name,
                CHAMPION,
                target,
                champion,
                event_id=uuid.uuid5(ids, CHAMPION),
                metrics=metrics,
                decision=decision,
            )
        )
        return moves

    async def _move(
        self,
        c: DriftCommand,
        name: str,
        target: str,
        champion: str | None,
        remember: Callable[[Tx, DriftCommandResult], Any],
    ) -> DriftCommandResult:
        """`champion` <- target, `previous` <- the old champion; history, events, answer."""
        assert c.action in ("promote", "rollback")
        trigger: DriftTrigger = "command"
        reason = c.reason or f"{c.action} by {c.actor}"
        moves = await self._move_champion(
            name, target, champion, c.command_id, decision=f"{c.action} by {c.actor}: {reason}"
        )
        moved = moves[-1]
        change = change_of(moved, c.actor, trigger, reason)
        verb = "promoted to" if c.action == "promote" else "rolled back to"
        answer = result(
            c,
            "ok",
            f"{name}: champion {verb} v{target}"
            + (f"; v{champion} is now {PREVIOUS}" if champion else ""),
            alias_change=change,
        )

        async def write(tx: Tx) -> None:
            for event in moves:
                await tx.record_alias(
                    event.event_id,
                    change if event is moved else change_of(event, c.actor, trigger, reason),
                )
                await tx.emit(topics.MODELS, name, event)
            await remember(tx, answer)

        await self.store.run(write)
        self.wake()
        log.info("alias moved", model=name, champion=target, previous=champion, by=c.actor)
        return answer


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
