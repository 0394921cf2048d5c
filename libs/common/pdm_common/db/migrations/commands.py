"""The three commands behind `pdm migrate`: apply (`migrate`), inspect (`status`) and
preview (`plan`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pdm_common.db.migrations.branch import Variant, choose_variant, timescale_available
from pdm_common.db.migrations.database import (
    _CREATE_TABLE,
    Applied,
    Echo,
    _apply,
    advisory_lock,
    connect,
    policy_statements,
    read_applied,
    recorded_variant,
    verify_checksums,
)
from pdm_common.db.migrations.discovery import Migration, load_migrations
from pdm_common.db.settings import StorageSettings

log = logging.getLogger("pdm_common.db.migrations")


@dataclass
class MigrateResult:
    variant: Variant
    applied: list[str] = field(default_factory=list)
    policies_synced: bool = False


def _noop(_msg: str) -> None:
    pass


PLAIN_WARNING = (
    "TimescaleDB is not available: readings and predictions stay plain PostgreSQL tables (no "
    "compression, retention or continuous aggregate) and readings_1h is an ordinary view"
)
OFF_WARNING = (
    "PDM_TIMESCALE=off: TimescaleDB is installed on this server but not used; readings and "
    "predictions stay plain PostgreSQL tables (no compression, retention or continuous "
    "aggregate) and readings_1h is an ordinary view"
)


def plain_warning(mode: str, available: bool) -> str | None:
    """Why this database runs the plain branch; None when the warning is already logged (a
    database recorded as plain on a server that has TimescaleDB now, see choose_variant)."""
    if not available:
        return PLAIN_WARNING
    return OFF_WARNING if mode == "off" else None


def migrate(
    database_url: str,
    settings: StorageSettings | None = None,
    *,
    migrations: Sequence[Migration] | None = None,
    echo: Echo = _noop,
) -> MigrateResult:
    """Apply pending migrations (each in its own transaction) and re-apply Timescale policies."""
    settings = settings or StorageSettings()
    migrations = list(migrations) if migrations is not None else load_migrations()
    with connect(database_url) as conn, advisory_lock(conn, settings.migrate_lock_wait_s, echo):
        applied = read_applied(conn)
        verify_checksums(applied, migrations)
        available = timescale_available(conn)
        variant = choose_variant(
            settings.timescale, available, recorded_variant(applied, migrations)
        )
        conn.execute(_CREATE_TABLE)
        echo(
            f"storage branch: {variant} (PDM_TIMESCALE={settings.timescale}, "
            f"timescaledb {'available' if available else 'not available'})"
        )
        warning = plain_warning(settings.timescale, available) if variant == "plain" else None
        if warning:
            log.warning(warning)
        result = MigrateResult(variant)
        for m in migrations:
            if m.version in applied:
                continue
            started = time.perf_counter()
            record = (m.version, m.name, m.checksum(variant), variant)
            _apply(conn, m.label, m.render(variant, settings), record)
            ms = (time.perf_counter() - started) * 1000
            echo(f"applied {m.label}{f' [{variant}]' if m.generated else ''} ({ms:.0f} ms)")
            result.applied.append(m.label)
        policies = policy_statements(applied, migrations, settings)
        if policies:
            _apply(conn, "Timescale policies", policies)
            echo("re-applied Timescale policies from settings")
            result.policies_synced = True
        return result


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    state: Literal["applied", "pending", "changed", "unknown"]
    variant: Variant | None = None
    applied_at: datetime | None = None


@dataclass(frozen=True)
class StatusReport:
    migrations: list[MigrationStatus]
    timescale_available: bool
    recorded_variant: Variant | None


def status(
    database_url: str,
    *,
    migrations: Sequence[Migration] | None = None,
) -> StatusReport:
    """Read-only: what is applied, pending, changed since applied, or unknown to this code."""
    migrations = list(migrations) if migrations is not None else load_migrations()
    with connect(database_url) as conn:
        applied = read_applied(conn)
        available = timescale_available(conn)
    rows: list[MigrationStatus] = []
    known = {m.version for m in migrations}
    for m in migrations:
        done = applied.get(m.version)
        if done is None:
            rows.append(MigrationStatus(m.version, m.name, "pending"))
            continue
        state: Literal["applied", "changed"] = (
            "applied" if done.checksum == m.checksum(done.variant) else "changed"
        )
        rows.append(MigrationStatus(m.version, m.name, state, done.variant, done.applied_at))
    for version in sorted(set(applied) - known):
        done = applied[version]
        rows.append(MigrationStatus(version, done.name, "unknown", done.variant, done.applied_at))
    rows.sort(key=lambda r: r.version)
    return StatusReport(rows, available, recorded_variant(applied, migrations))


@dataclass(frozen=True)
class PlannedStep:
    label: str
    statements: list[str]


@dataclass(frozen=True)
class Plan:
    variant: Variant
    steps: list[PlannedStep]
    note: str | None = None


def plan(
    database_url: str | None,
    settings: StorageSettings | None = None,
    *,
    variant: Variant | None = None,
    migrations: Sequence[Migration] | None = None,
) -> Plan:
    """The SQL `migrate` would run, without running it.

    `variant` previews that branch: against a database already on the other branch, or with
    `database_url=None`, every migration is shown as for an empty database.
    """
    settings = settings or StorageSettings()
    migrations = list(migrations) if migrations is not None else load_migrations()
    applied: dict[int, Applied] = {}
    note = None
    if database_url is not None:
        with connect(database_url) as conn:
            applied = read_applied(conn)
            recorded = recorded_variant(applied, migrations)
            if variant is None:
                variant = choose_variant(settings.timescale, timescale_available(conn), recorded)
            elif recorded is not None and recorded != variant:
                note = f"this database uses branch {recorded!r}; showing {variant!r} from scratch"
                applied = {}
    if variant is None:
        raise ValueError("without a database, pass the variant to plan for")
    steps = [
        PlannedStep(m.label, m.render(variant, settings))
        for m in migrations
        if m.version not in applied
    ]
    policies = policy_statements(applied, migrations, settings)
    if policies:
        steps.append(PlannedStep("Timescale policies", policies))
    return Plan(variant, steps, note)
