"""Drift checks: each served champion's features (its own `featurise` over the recent
readings of its asset type, against the profile of the reference sample its training run
logged, weighted by its gain importances) and each asset type's raw sensors (against a
baseline taken at the first check after its champion was seen).

A report is stored with Evidently's HTML and its `drift.report` event in the outbox, in one
transaction. Checks run on a timer (one replica: a session advisory lock), on command, and
when a champion moves (the baseline of the new version).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import structlog
from prometheus_client import Counter, Gauge, Histogram

from pdm_common import topics
from pdm_common.drift import DriftReport, DriftTrigger, LivePerformance
from pdm_common.registry import CHAMPION, RegisteredVersion, RegistryUnavailable
from pdm_common.telemetry import REGISTRY
from pdm_drift import SERVICE
from pdm_drift.frames import (
    CHECKED_TASKS,
    ROW,
    TIME,
    build_report,
    gain_importances,
    model_features,
    reference_frame,
    sensor_columns,
    sensors_name,
    snapshots_frame,
    split_name,
    wants_retrain,
)
from pdm_drift.models import Models
from pdm_drift.performance import Window, evaluate, from_rows, rul_from_rows
from pdm_drift.settings import DriftSettings
from pdm_drift.storage import CHECK_LOCK, DriftStore, Tx
from pdm_ml.drift import ReferenceProfile, build_profile, check, evidently_report

log = structlog.get_logger(__name__)

REPORTS = Counter(
    "pdm_drift_reports_total",
    "Drift reports stored, by kind, trigger and verdict.",
    ["kind", "trigger", "drift"],
    registry=REGISTRY,
)
WEIGHTED_SHARE = Gauge(
    "pdm_drift_weighted_share",
    "Importance-weighted drifted share of the newest report, per model (or sensors-<type>).",
    ["model"],
    registry=REGISTRY,
)
CHECK_SECONDS = Histogram(
    "pdm_drift_check_seconds",
    "Wall time of one check (read, featurise, test, report, store).",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
LIVE = Gauge(
    "pdm_drift_live_performance",
    "Live performance of a model version over the look-back, from stored predictions and "
    "outcome labels (precision and recall at the horizon, median lead time in hours, RUL MAE "
    "in hours and p10-p90 coverage); role: served or shadow.",
    ["model", "version", "role", "measure"],
    registry=REGISTRY,
)
OnDrift = Callable[[DriftReport], Awaitable[None]]
OnDegraded = Callable[[LivePerformance], Awaitable[None]]
#: Timer ticks at most this far apart (a check is due once per `check_interval_s`).
TICK_S = 30.0


class NothingToCheck(LookupError):
    """No champion (a features check), or too few current rows."""


class Checker:
    def __init__(
        self,
        store: DriftStore,
        models: Models,
        settings: DriftSettings,
        wake: Callable[[], None],
        on_drift: OnDrift | None = None,
        on_degraded: OnDegraded | None = None,
        after_timed: Sequence[Callable[[], Awaitable[list[str]]]] = (),
    ) -> None:
        self.store = store
        self.models = models
        self.settings = settings
        self.wake = wake  # the outbox relay: events were queued
        self.on_drift = on_drift
        self.on_degraded = on_degraded
        # after each timed check: challengers whose shadow period is over, scheduled retrains
        self.after_timed = after_timed
        self.last_error: str | None = None
        self._lock = asyncio.Lock()  # one check at a time in this process (CPU, memory)

    def _window(self) -> tuple[datetime, datetime]:
        end = datetime.now(UTC)
        return end - timedelta(seconds=self.settings.window_s), end

    # -- one features check -------------------------------------------------------------------

    async def profile(self, version: RegisteredVersion) -> ReferenceProfile:
        """The version's reference profile: stored once, built from its logged reference
        sample the first time (restricted to the model's features)."""
        stored = await self.store.run(lambda tx: tx.profile(version.name, version.version))
        if stored is not None:
            return ReferenceProfile.from_dict(stored)
        reference = await self.models.reference(version)
        model = await self.models.load(version)
        wanted = list(getattr(model, "features", reference.columns))
        columns = [c for c in wanted if c in reference.columns]
        meta = {"model_name": version.name, "model_version": version.version}
        profile = await asyncio.to_thread(
            build_profile, reference, columns, meta={**meta, "source": "reference_sample"}
        )
        data = profile.to_dict()
        if await self.store.run(lambda tx: tx.store_profile(version.name, version.version, data)):
            log.info("reference profile built", model=version.name, version=version.version)
        return profile

    async def check_model(
        self, name: str, trigger: DriftTrigger, version: RegisteredVersion | None = None
    ) -> DriftReport:
        """Check `name`'s champion (or `version`); raises `NothingToCheck`."""
        async with self._lock:
            return await self._check_model(name, trigger, version)

    async def _check_model(
        self, name: str, trigger: DriftTrigger, version: RegisteredVersion | None
    ) -> DriftReport:
        started = asyncio.get_running_loop().time()
        version = version or await self.models.champion(name)
        if version is None:
            raise NothingToCheck(f"{name} has no champion")
        model = await self.models.load(version)
        if not hasattr(model, "featurise") or not hasattr(model, "sensors"):
            raise NothingToCheck(
                f"{name} v{version.version} does not featurise histories itself "
                f"({type(model).__name__}); only its asset type's sensors are checked"
            )
        profile = await self.profile(version)
        _, asset_type = split_name(name)
        window = self._window()
        readings = await self.store.type_readings(
            asset_type, *window, list(model.sensors), self.settings.max_current_readings
        )
        current = await asyncio.to_thread(
            lambda: model_features(model, snapshots_frame(readings), self.settings.warmup_rows)
        )
        if len(current) < self.settings.min_current_rows:
            raise NothingToCheck(
                f"{name}: {len(current)} feature rows of {asset_type} in the last "
                f"{self.settings.window_s:g} s, fewer than {self.settings.min_current_rows}"
            )
        columns = list(profile.columns)
        importances = gain_importances(model, columns)
        result = await asyncio.to_thread(check, profile, current, importances)
        reference = await self.models.reference(version)
        report = build_report(
            SERVICE,
            result,
            kind="features",
            trigger=trigger,
            window=window,
            reference_rows=profile.n_rows,
            model_name=name,
            model_version=version.version,
            asset_type=asset_type,
        )
        html = await self._html(reference, current, report)
        await self._store(report, html, started)
        if self.on_drift is not None and wants_retrain(
            report, self.settings.retrain_weighted_share
        ):
            await self.on_drift(report)
        return report

    # -- one sensors check --------------------------------------------------------------------

    async def check_sensors(self, asset_type: str, trigger: DriftTrigger) -> DriftReport:
        """Check an asset type's raw sensors against its baseline (taken now when the
        current champion has none yet); raises `NothingToCheck`."""
        async with self._lock:
            return await self._check_sensors(asset_type, trigger)

    async def _check_sensors(self, asset_type: str, trigger: DriftTrigger) -> DriftReport:
        started = asyncio.get_running_loop().time()
        base = "none"
        for task in CHECKED_TASKS:
            champion = await self.models.champion(f"{task}-{asset_type}")
            if champion is not None:
                base = f"{champion.name}@{champion.version}"
                break
        window = self._window()
        readings = await self.store.type_readings(
            asset_type, *window, None, self.settings.max_current_readings
        )
        snapshots = snapshots_frame(readings)
        if len(snapshots) < self.settings.min_current_rows:
            raise NothingToCheck(
                f"{asset_type}: {len(snapshots)} snapshots in the last "
                f"{self.settings.window_s:g} s, fewer than {self.settings.min_current_rows}"
            )
        name = sensors_name(asset_type)
        stored = await self.store.run(lambda tx: tx.profile(name, base))
        if stored is None:
            columns = sensor_columns(snapshots, self.settings.sensors_min_share)
            meta = {"asset_type": asset_type, "baseline_of": base, "source": "readings"}
            meta |= {"window_start": window[0].isoformat(), "window_end": window[1].isoformat()}
            profile = await asyncio.to_thread(build_profile, snapshots, columns, meta=meta)
            data = profile.to_dict()
            await self.store.run(lambda tx: tx.store_profile(name, base, data))
            log.info("sensors baseline taken", asset_type=asset_type, baseline_of=base)
        else:
            profile = ReferenceProfile.from_dict(stored)
        current = snapshots.drop(columns=["asset_id", TIME, ROW])
        result = await asyncio.to_thread(check, profile, current)
        report = build_report(
            SERVICE,
            result,
            kind="sensors",
            trigger=trigger,
            window=window,
            reference_rows=profile.n_rows,
            model_name=name,
            model_version=base,
            asset_type=asset_type,
        )
        html = await self._html(reference_frame(profile), current, report)
        await self._store(report, html, started)
        return report

    # -- many ---------------------------------------------------------------------------------

    async def served(self) -> tuple[list[str], list[str]]:
        """(model names with a champion, asset types) of the types with recent readings."""
        since = datetime.now(UTC) - timedelta(seconds=self.settings.window_s)
        types = await self.store.asset_types_since(since)
        names = []
        for asset_type in types:
            for task in CHECKED_TASKS:
                if await self.models.champion(f"{task}-{asset_type}") is not None:
                    names.append(f"{task}-{asset_type}")
        return names, types

    async def check_all(self, trigger: DriftTrigger) -> list[DriftReport]:
        """Every served champion, then every asset type's sensors; a check that cannot run
        (too few rows, no reference) is logged and skipped."""
        names, types = await self.served()
        reports: list[DriftReport] = []
        jobs: list[tuple[str, Callable[[], Awaitable[DriftReport]]]] = [
            (n, functools.partial(self.check_model, n, trigger)) for n in names
        ]
        jobs += [
            (sensors_name(t), functools.partial(self.check_sensors, t, trigger)) for t in types
        ]
        for what, job in jobs:
            try:
                reports.append(await job())
            except NothingToCheck as exc:
                log.info("check skipped", what=what, reason=str(exc))
            except RegistryUnavailable:
                raise
            except Exception as exc:  # one broken model must not stop the others
                log.warning("check failed", what=what, error=repr(exc))
        return reports

    # -- the timer ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: when a timed check is due, one replica (advisory lock) checks all."""
        started = datetime.now(UTC)
        while True:
            await asyncio.sleep(min(TICK_S, self.settings.check_interval_s))
            try:
                await self.tick(started)
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or registry down: try at the next tick
                self.last_error = repr(exc)
                log.warning("timed check failed; retrying", error=repr(exc))

    async def tick(self, started: datetime) -> list[DriftReport] | None:
        """Check all when due: the newest timed report (or, before the first, this process's
        start) is older than the interval. None: another replica checks, or not due."""
        async with self.store.connection() as lock_conn:
            await lock_conn.set_autocommit(True)
            cur = await lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (CHECK_LOCK,))
            row = await cur.fetchone()
            if not (row and row[0]):
                return None
            try:
                await self.store.run(lambda tx: fail_stale_jobs(tx, self.settings.stale_job_s))
                if not await self.store.run(lambda tx: timer_due(tx, self.settings, started)):
                    return None
                reports = await self.check_all("timer")
                log.info("timed check", reports=len(reports))
                try:
                    await self.performance()
                    for after in self.after_timed:
                        await after()
                except Exception as exc:  # never fails the timed check
                    log.warning("live performance or judgement failed", error=repr(exc))
                return reports
            finally:
                with contextlib.suppress(Exception):
                    await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (CHECK_LOCK,))

    async def performance(self) -> list[LivePerformance]:
        """Live figures per model version and role (see `performance`), stored in
        `model_performance`, exported as metrics; a champion's significant drop is handed to
        `on_degraded` (a retrain trigger)."""
        s = self.settings
        now = datetime.now(UTC)
        window = Window(
            since=now - timedelta(days=s.performance_days),
            recent_from=now - timedelta(days=min(s.performance_recent_days, s.performance_days)),
            now=now,
            horizon=timedelta(hours=s.performance_horizon_h),
        )
        predictions, labels = await self.store.predictions_with_labels(window.since)
        preds, outcomes = from_rows(predictions, labels)
        rows = await asyncio.to_thread(
            evaluate,
            preds,
            rul_from_rows(predictions),
            outcomes,
            window,
            min_events=s.performance_min_events,
            alpha=s.performance_alpha,
        )
        await self.store.store_performance(rows)
        for r in rows:
            if r.span != "all":
                continue
            for measure, value in (
                ("precision", r.precision),
                ("recall", r.recall),
                ("lead_h_median", r.lead_h_median),
                ("rul_mae_h", r.rul_mae_h),
                ("rul_coverage", r.rul_coverage),
            ):
                if value is not None:
                    LIVE.labels(r.model_name, r.model_version, r.role, measure).set(value)
            log.info("live performance", **r.model_dump(mode="json"))
        for r in rows:
            if r.degraded and r.role == "served" and r.span == "recent":
                champion = await self.models.alias(r.model_name, CHAMPION)
                log.warning(
                    "live performance degraded",
                    model=r.model_name,
                    version=r.model_version,
                    champion=champion,
                    reason=r.reason,
                )
                if champion == r.model_version and self.on_degraded is not None:
                    await self.on_degraded(r)
        return rows

    # -- helpers ------------------------------------------------------------------------------

    async def _html(
        self, reference: pd.DataFrame, current: pd.DataFrame, report: DriftReport
    ) -> str | None:
        """Evidently's HTML on the report's leading columns (most important, most drifted)."""
        columns = [
            c.column
            for c in report.columns
            if c.column in current.columns and c.column in reference.columns
        ][: self.settings.html_max_columns]
        if not self.settings.html_reports or not columns:
            return None
        try:
            html, _ = await asyncio.to_thread(
                evidently_report, reference, current, columns, max_rows=self.settings.report_rows
            )
            return html
        except Exception as exc:  # the verdicts stand without the human-readable report
            log.warning("evidently report failed", error=repr(exc))
            return None

    async def _store(self, report: DriftReport, html: str | None, started: float) -> None:
        key = report.model_name or sensors_name(report.asset_type or "unknown")

        async def write(tx: Tx) -> None:
            await tx.store_report(report, html)
            await tx.emit(topics.DRIFT, key, report)
            if html is not None:
                await tx.prune_html(self.settings.html_keep)

        await self.store.run(write)
        self.wake()
        REPORTS.labels(report.kind, report.trigger, str(report.drift_detected).lower()).inc()
        WEIGHTED_SHARE.labels(key).set(report.weighted_share)
        CHECK_SECONDS.observe(asyncio.get_running_loop().time() - started)
        log.info(
            "drift report",
            model=key,
            version=report.model_version,
            kind=report.kind,
            trigger=report.trigger,
            current_rows=report.current_rows,
            drifted_share=report.drifted_share,
            weighted_share=report.weighted_share,
            drift=report.drift_detected,
            headlines=report.headlines[:3],
        )


async def fail_stale_jobs(tx: Tx, stale_s: float) -> int:
    """Running retrains whose heartbeat stopped (their replica died) are marked failed."""
    cur = await tx.conn.execute(
        "UPDATE retrain_jobs SET status = 'failed', finished_at = now(), "
        "error = 'abandoned: no heartbeat (the replica running it stopped)' "
        "WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => %s)",
        (stale_s,),
    )
    return cur.rowcount


async def timer_due(tx: Tx, settings: DriftSettings, started: datetime) -> bool:
    """Whether the newest timed report (before the first one: `started`) is older than
    (most of) the check interval."""
    found = await tx.rows(
        "SELECT coalesce(max(created_at), %s) < now() - make_interval(secs => %s) AS due "
        "FROM drift_reports WHERE trigger = 'timer'",
        (started, settings.check_interval_s * 0.9),
    )
    row: dict[str, Any] = found[0]
    return bool(row["due"])
