"""Schema migrations: ordered SQL files plus generated, branch-specific steps.

`pdm migrate` (a Kubernetes Job in production; services never migrate on start) applies
`migrations/NNNN_name.sql` in order, each in its own transaction, under a PostgreSQL advisory
lock so concurrent runs are safe, and records version, checksum and branch in
`schema_migrations`. An applied file must never change: a checksum mismatch stops the run.

The storage layout of `readings` and `predictions` depends on the server. With the
`timescaledb` extension the generated steps (0002 for `readings`, 0006 for `predictions`) make
them compressed hypertables with retention, plus a continuous aggregate `readings_1h`; without
it `readings_1h` is an ordinary view with the same columns and the same answers, and
`predictions` stays as 0004 created it. The branch is chosen once (StorageSettings.timescale)
and recorded; the Timescale policies come from StorageSettings and are re-applied on every run,
so changing e.g. `PDM_READINGS_RETENTION_DAYS` takes effect with the next `pdm migrate`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pdm_common.db.queries import aggregate_expression, bucket_expression
from pdm_common.db.settings import StorageSettings

log = logging.getLogger(__name__)

Variant = Literal["timescale", "plain"]
Echo = Callable[[str], None]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Arbitrary constant shared by every `pdm migrate` ("pdm-migr" in ASCII).
ADVISORY_LOCK_KEY = 0x70646D2D6D696772
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration run cannot proceed; the message says what to do."""


class DatabaseUnreachable(MigrationError):
    """PostgreSQL could not be reached."""


# --- the generated layout step -------------------------------------------------------------

_READINGS_1H_SELECT: LiteralString = (
    "SELECT {bucket} AS bucket, asset_id, sensor, avg(value) AS avg_value, "
    "min(value) AS min_value, max(value) AS max_value, count(*) AS sample_count, "
    "{last} AS last_value FROM readings GROUP BY bucket, asset_id, sensor"
)
_PLAIN_LAYOUT: tuple[LiteralString, ...] = ("CREATE VIEW readings_1h AS " + _READINGS_1H_SELECT,)
_TIMESCALE_SCHEMA: tuple[LiteralString, ...] = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    # No default time index: chunk exclusion plus the BRIN index of 0001 cover time ranges.
    "SELECT create_hypertable('readings', by_range('time', {chunk_interval}), "
    "create_default_indexes => false, migrate_data => true, if_not_exists => true)",
    "ALTER TABLE readings SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'asset_id, sensor', "
    "timescaledb.compress_orderby = 'time DESC')",
    # materialized_only = false (real-time aggregation; off by default since TimescaleDB 2.13)
    # so the newest, not yet materialised hours answer like the plain view. WITH NO DATA lets
    # it run inside the migration's transaction; the refresh policy fills it.
    "CREATE MATERIALIZED VIEW readings_1h "
    "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
    + _READINGS_1H_SELECT
    + " WITH NO DATA",
)
_SET_CHUNK: LiteralString = "SELECT set_chunk_time_interval('readings', {chunk_interval})"
# {table} is a literal: the policies of `readings` (0002) and `predictions` (0006) share these.
_RM_COMPRESSION: LiteralString = "SELECT remove_compression_policy({table}, if_exists => true)"
_ADD_COMPRESSION: LiteralString = (
    "SELECT add_compression_policy({table}, {compress_after}, if_not_exists => true)"
)
_RM_RETENTION: LiteralString = "SELECT remove_retention_policy({table}, if_exists => true)"
_ADD_RETENTION: LiteralString = (
    "SELECT add_retention_policy({table}, {drop_after}, if_not_exists => true)"
)
_RM_REFRESH: LiteralString = (
    "SELECT remove_continuous_aggregate_policy('readings_1h', if_exists => true)"
)
_ADD_REFRESH: LiteralString = (
    "SELECT add_continuous_aggregate_policy('readings_1h', start_offset => {start_offset}, "
    "end_offset => {end_offset}, schedule_interval => {schedule_interval}, "
    "if_not_exists => true)"
)


def _interval(text: str) -> sql.Composable:
    return sql.SQL("INTERVAL {}").format(sql.Literal(text))


def _days(n: int) -> sql.Composable:
    return _interval(f"{n} day" if n == 1 else f"{n} days")


def _render(template: LiteralString, **params: sql.Composable) -> str:
    return sql.SQL(template).format(**params).as_string()


def _readings_1h_params(timescale: bool) -> dict[str, sql.Composable]:
    # Through the query layer, so the aggregate and ad-hoc queries bucket identically.
    return {
        "bucket": bucket_expression("1h", timescale),
        "last": aggregate_expression("last", timescale),
    }


def _compression_retention(table: str, compress_after_days: int, retention_days: int) -> list[str]:
    """Replace the compression and retention policies of hypertable `table`; 0 = none."""
    name = sql.Literal(table)
    out = [_render(_RM_COMPRESSION, table=name)]
    if compress_after_days:
        compress_after = _days(compress_after_days)
        out.append(_render(_ADD_COMPRESSION, table=name, compress_after=compress_after))
    out.append(_render(_RM_RETENTION, table=name))
    if retention_days:
        out.append(_render(_ADD_RETENTION, table=name, drop_after=_days(retention_days)))
    return out


def timescale_policy_statements(settings: StorageSettings) -> list[str]:
    """Chunk interval and policies of `readings` from `settings`; replaces existing policies
    (idempotent)."""
    out = [_render(_SET_CHUNK, chunk_interval=_interval(settings.readings_chunk_interval))]
    out += _compression_retention(
        "readings", settings.readings_compress_after_days, settings.readings_retention_days
    )
    out.append(_render(_RM_REFRESH))
    out.append(
        _render(
            _ADD_REFRESH,
            start_offset=_interval(settings.readings_1h_refresh_start_offset),
            end_offset=_interval(settings.readings_1h_refresh_lag),
            schedule_interval=_interval(settings.readings_1h_refresh_interval),
        )
    )
    return out


def timescale_statements(settings: StorageSettings) -> list[str]:
    """Everything the Timescale branch runs the first time: hypertable, compression,
    continuous aggregate, then the policies."""
    params = {
        "chunk_interval": _interval(settings.readings_chunk_interval),
        **_readings_1h_params(timescale=True),
    }
    schema = [sql.SQL(t).format(**params).as_string() for t in _TIMESCALE_SCHEMA]
    return schema + timescale_policy_statements(settings)


def plain_statements(settings: StorageSettings) -> list[str]:
    """The plain-PostgreSQL branch: `readings_1h` as an ordinary view."""
    del settings  # nothing to tune without TimescaleDB
    params = _readings_1h_params(timescale=False)
    return [sql.SQL(t).format(**params).as_string() for t in _PLAIN_LAYOUT]


def layout_statements(variant: Variant, settings: StorageSettings) -> list[str]:
    return timescale_statements(settings) if variant == "timescale" else plain_statements(settings)


def _layout_checksum(variant: Variant) -> str:
    # The templates and the query-layer expressions, not the rendered SQL: tuning settings
    # must not look like an edited migration. Policies are excluded: they are re-applied on
    # every run anyway.
    timescale = variant == "timescale"
    templates = _TIMESCALE_SCHEMA if timescale else _PLAIN_LAYOUT
    expressions = [c.as_string() for c in _readings_1h_params(timescale).values()]
    return _sha256("\n".join([*templates, *expressions]))


# --- the generated predictions step (0006) -------------------------------------------------
#
# On the Timescale branch `predictions` becomes a hypertable on `time` like `readings`. A
# hypertable's unique indexes must include its partitioning column, so 0004's
# `predictions_request (request_id)` cannot stay: it is replaced by `predictions_request_time
# (request_id, time)`. On its own that index would no longer dedupe: a prediction's `time` is
# the `occurred_at` of the attempt that made it, so two deliveries of one request give two
# different times and would both be stored (and SQL cannot make that time deterministic; it
# is chosen by the service). The uniqueness of `request_id` therefore moves to a small plain
# table, `prediction_requests (request_id PRIMARY KEY)`, filled by a BEFORE INSERT row trigger
# on `predictions`: the trigger claims the request id with INSERT ... ON CONFLICT DO NOTHING
# and drops the prediction row (RETURN NULL) when the id was already claimed. The primary key
# makes a concurrent redelivery wait for the first transaction and then skip, as the unique
# index does on the plain branch; a rolled-back insert releases its claim. The plain branch
# keeps 0004's index and is left untouched.

_PREDICTIONS_CHUNK_INTERVAL = "1 day"  # DESIGN.md: 1-day chunks, like `readings`' default
_PREDICTION_REQUESTS_PRUNE_EVERY = "1 day"
_PREDICTIONS_TIMESCALE: tuple[LiteralString, ...] = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    # The request ids already stored (unique under 0004's index) are claimed first.
    "CREATE TABLE prediction_requests (request_id uuid PRIMARY KEY, time timestamptz NOT NULL)",
    "CREATE INDEX prediction_requests_time ON prediction_requests (time)",
    "INSERT INTO prediction_requests (request_id, time) SELECT request_id, time "
    "FROM predictions WHERE request_id IS NOT NULL ON CONFLICT DO NOTHING",
    "CREATE FUNCTION predictions_claim_request() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "IF NEW.request_id IS NULL THEN RETURN NEW; END IF; "
    "INSERT INTO prediction_requests (request_id, time) VALUES (NEW.request_id, NEW.time) "
    "ON CONFLICT DO NOTHING; "
    "IF FOUND THEN RETURN NEW; END IF; "
    "RETURN NULL; "  # already stored: skip the row, as ON CONFLICT DO NOTHING would
    "END $$",
    # A hypertable's unique indexes must include `time`; see the comment above.
    "DROP INDEX predictions_request",
    "CREATE UNIQUE INDEX predictions_request_time ON predictions (request_id, time) "
    "WHERE request_id IS NOT NULL",
    "COMMENT ON INDEX predictions_request_time IS 'Replaces predictions_request (request_id): "
    "a hypertable''s unique indexes must include time. Not a dedupe: redeliveries of a request "
    "have different times; prediction_requests and the predictions_claim_request trigger "
    "dedupe.'",
    "COMMENT ON TABLE prediction_requests IS 'Request ids of stored predictions, claimed by the "
    "predictions_claim_request trigger so a redelivered request stores nothing; pruned with "
    "the predictions retention by prune_prediction_requests.'",
    # The primary key (asset_id, time, prediction_id) already includes `time`; no default
    # time index: chunk exclusion plus the BRIN index of 0004 cover time ranges.
    "SELECT create_hypertable('predictions', by_range('time', {chunk_interval}), "
    "create_default_indexes => false, migrate_data => true, if_not_exists => true)",
    # Row triggers on a hypertable propagate to its chunks (BEFORE INSERT ones also fire for
    # rows routed into compressed chunks).
    "CREATE TRIGGER predictions_claim_request BEFORE INSERT ON predictions "
    "FOR EACH ROW EXECUTE FUNCTION predictions_claim_request()",
    "ALTER TABLE predictions SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'asset_id', "
    "timescaledb.compress_orderby = 'time DESC')",
    # Retention drops prediction chunks; this job forgets their claims on the same horizon.
    "CREATE PROCEDURE prune_prediction_requests(job_id integer, config jsonb) "
    "LANGUAGE sql AS $$ DELETE FROM prediction_requests "
    "WHERE time < now() - (config->>'drop_after')::interval $$",
)
_RM_PRUNE_JOB: LiteralString = (
    "SELECT delete_job(job_id) FROM timescaledb_information.jobs "
    "WHERE proc_name = 'prune_prediction_requests'"
)
_ADD_PRUNE_JOB: LiteralString = (
    "SELECT add_job('prune_prediction_requests', {every}, "
    "config => jsonb_build_object('drop_after', {drop_after}))"
)


def predictions_policy_statements(settings: StorageSettings) -> list[str]:
    """Compression and retention of `predictions` (and the matching prune of
    `prediction_requests`) from `settings`; replaces existing ones (idempotent)."""
    retention = settings.predictions_retention_days
    out = _compression_retention("predictions", settings.readings_compress_after_days, retention)
    out.append(_render(_RM_PRUNE_JOB))
    if retention:
        every = _interval(_PREDICTION_REQUESTS_PRUNE_EVERY)
        out.append(_render(_ADD_PRUNE_JOB, every=every, drop_after=_days(retention)))
    return out


def predictions_timescale_statements(settings: StorageSettings) -> list[str]:
    """What the Timescale branch of 0006 runs: the request claim table and trigger, the index
    swap, the hypertable and its compression, then the policies."""
    chunk_interval = _interval(_PREDICTIONS_CHUNK_INTERVAL)
    schema = [_render(t, chunk_interval=chunk_interval) for t in _PREDICTIONS_TIMESCALE]
    return schema + predictions_policy_statements(settings)


def predictions_layout_statements(variant: Variant, settings: StorageSettings) -> list[str]:
    """0006: `predictions` as a hypertable on the Timescale branch.

    Plain branch: nothing to do. `predictions` stays the plain table of 0004, whose partial
    unique index `predictions_request (request_id)` keeps a redelivered request a no-op.

    Timescale branch: see `predictions_timescale_statements`. A hypertable's unique indexes
    must include `time`, so `predictions_request` becomes `predictions_request_time
    (request_id, time)`. That index alone would not dedupe: a prediction's `time` is its
    `occurred_at`, which differs between redeliveries of one request, so both would be stored.
    The request id is therefore made unique in the plain table `prediction_requests`, claimed
    by a BEFORE INSERT trigger that skips a prediction whose request was already claimed.
    Known limits of that branch: a claim outlives its prediction until the prune job runs
    (the same horizon as `PDM_PREDICTIONS_RETENTION_DAYS`, none when that is 0, so the claim
    table then grows by one small row per request, as `predictions` itself does); and a
    request redelivered after its prediction and claim were pruned is stored again.
    """
    if variant == "plain":
        return []
    return predictions_timescale_statements(settings)


def _predictions_layout_checksum(variant: Variant) -> str:
    # As `_layout_checksum`: the templates, not the settings-dependent policies.
    return _sha256("\n".join(_PREDICTIONS_TIMESCALE if variant == "timescale" else ["plain"]))


# --- migration discovery -------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One schema version. File migrations ignore the variant; generated ones depend on it."""

    version: int
    name: str
    render: Callable[[Variant, StorageSettings], list[str]] = field(repr=False)
    checksum: Callable[[Variant], str] = field(repr=False)
    generated: bool = False
    #: Timescale policies re-applied on every run once the step is applied on that branch.
    policies: Callable[[StorageSettings], list[str]] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_migration(path: Path) -> Migration:
    match = _FILE_RE.match(path.name)
    if match is None:
        raise MigrationError(f"bad migration file name {path.name!r}: expected NNNN_name.sql")
    text = path.read_text(encoding="utf-8")
    digest = _sha256(text)
    return Migration(
        version=int(match.group(1)),
        name=match.group(2),
        render=lambda _variant, _settings: [text],
        checksum=lambda _variant: digest,
    )


#: Steps whose SQL is produced by Python; their version numbers are reserved among the files.
GENERATED = (
    Migration(
        2,
        "readings_layout",
        layout_statements,
        _layout_checksum,
        generated=True,
        policies=timescale_policy_statements,
    ),
    Migration(
        6,
        "predictions_layout",
        predictions_layout_statements,
        _predictions_layout_checksum,
        generated=True,
        policies=predictions_policy_statements,
    ),
)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The SQL files of `directory` plus the generated steps, ordered by version."""
    found = [_file_migration(p) for p in sorted(directory.glob("*.sql"))]
    by_version: dict[int, Migration] = {}
    for m in [*found, *GENERATED]:
        if m.version in by_version:
            raise MigrationError(
                f"two migrations share version {m.version:04d}: "
                f"{by_version[m.version].label} and {m.label}"
            )
        by_version[m.version] = m
    return [by_version[v] for v in sorted(by_version)]


# --- choosing the branch -------------------------------------------------------------------


def choose_variant(
    mode: Literal["auto", "on", "off"], available: bool, recorded: Variant | None
) -> Variant:
    """The branch to use: the one already recorded, else what `mode` and the server allow."""
    if recorded == "plain" and mode == "on":
        raise MigrationError(
            "PDM_TIMESCALE=on, but this database was set up without TimescaleDB (branch "
            "'plain'); pdm migrate does not convert existing tables. Use a fresh database "
            "or set PDM_TIMESCALE=auto."
        )
    if recorded == "timescale" and mode == "off":
        raise MigrationError(
            "PDM_TIMESCALE=off, but this database already uses TimescaleDB (branch "
            "'timescale'). Set PDM_TIMESCALE=auto or on."
        )
    if recorded is not None:
        if recorded == "plain" and available:
            log.warning(
                "TimescaleDB is available now, but readings was created as a plain table; "
                "pdm migrate does not convert existing tables"
            )
        return recorded
    if mode == "off":
        return "plain"
    if mode == "on" and not available:
        raise MigrationError(
            "PDM_TIMESCALE=on, but the timescaledb extension is not available on this "
            "PostgreSQL server. Install TimescaleDB (and add it to shared_preload_libraries), "
            "or set PDM_TIMESCALE=auto to fall back to plain tables."
        )
    return "timescale" if available else "plain"


def timescale_available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


# --- database side -------------------------------------------------------------------------

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    variant    text NOT NULL CHECK (variant IN ('plain', 'timescale')),
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    variant: Variant
    applied_at: datetime


def describe_target(database_url: str) -> str:
    """`host:port/db as user`, never the password, for messages."""
    try:
        info = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "<unparsable PDM_DATABASE_URL>"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"{host}:{port}/{info.get('dbname') or '?'} as {info.get('user') or '?'}"


@contextmanager
def connect(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection; migrations open their own transactions."""
    try:
        conn = psycopg.connect(
            database_url, autocommit=True, connect_timeout=5, application_name="pdm-migrate"
        )
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        reason = lines[0].rstrip(".") if lines else type(exc).__name__
        raise DatabaseUnreachable(
            f"cannot reach PostgreSQL at {describe_target(database_url)}: {reason}. "
            "Is the stack up? Run `pdm stack up`, or point PDM_DATABASE_URL at your server."
        ) from exc
    with conn:
        yield conn


@contextmanager
def advisory_lock(conn: psycopg.Connection[Any], wait_s: float, echo: Echo) -> Iterator[None]:
    """Serialise `pdm migrate` runs; the second one waits, then finds nothing to do."""
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY]).fetchone()
        if row and row[0]:
            break
        if not announced:
            echo("another `pdm migrate` is running; waiting for it to finish ...")
            announced = True
        if time.monotonic() > deadline:
            raise MigrationError(
                f"gave up after {wait_s:.0f}s waiting for another `pdm migrate` (advisory "
                f"lock {ADVISORY_LOCK_KEY}); check pg_stat_activity for application_name "
                "'pdm-migrate'"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


def read_applied(conn: psycopg.Connection[Any]) -> dict[int, Applied]:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return {}
    rows = conn.execute(
        "SELECT version, name, checksum, variant, applied_at FROM schema_migrations"
    ).fetchall()
    return {r[0]: Applied(*r) for r in rows}


def recorded_variant(
    applied: dict[int, Applied], migrations: Sequence[Migration]
) -> Variant | None:
    """The branch of the generated steps already applied (they decide the layout)."""
    generated = [applied[m.version] for m in migrations if m.generated and m.version in applied]
    return generated[-1].variant if generated else None


def policy_statements(
    applied: dict[int, Applied], migrations: Sequence[Migration], settings: StorageSettings
) -> list[str]:
    """The Timescale policies of the generated steps already applied on that branch."""
    out: list[str] = []
    for m in migrations:
        done = applied.get(m.version)
        if m.policies is not None and done is not None and done.variant == "timescale":
            out += m.policies(settings)
    return out


def verify_checksums(applied: dict[int, Applied], migrations: Sequence[Migration]) -> None:
    for m in migrations:
        done = applied.get(m.version)
        if done is None:
            continue
        expected = m.checksum(done.variant)
        if done.checksum != expected:
            what = "its generator in migrations.py" if m.generated else "the file"
            raise MigrationError(
                f"migration {m.label} was changed after it was applied (checksum "
                f"{done.checksum[:12]} in the database, {expected[:12]} now). Applied "
                f"migrations are immutable: revert the edit to {what} and put the change "
                "in a new migration."
            )


# --- the three commands --------------------------------------------------------------------


@dataclass
class MigrateResult:
    variant: Variant
    applied: list[str] = field(default_factory=list)
    policies_synced: bool = False


def _noop(_msg: str) -> None:
    pass


def _explain(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip() or type(exc).__name__
    if "preload" in text:
        text += " (add timescaledb to shared_preload_libraries and restart PostgreSQL)"
    if diag.sqlstate == "42501":
        text += " (the migration role lacks a privilege; run pdm migrate as the schema owner)"
    return text


_RECORD = "INSERT INTO schema_migrations (version, name, checksum, variant) VALUES (%s, %s, %s, %s)"


def _apply(
    conn: psycopg.Connection[Any],
    label: str,
    statements: Sequence[str],
    record: Sequence[object] | None = None,
) -> None:
    """Run `statements` (and the schema_migrations row) in one transaction, or none of it."""
    try:
        with conn.transaction():
            for statement in statements:
                # bytes: the SQL comes from our files/generators; without parameters psycopg
                # uses the simple protocol, so a file may hold several statements.
                conn.execute(statement.encode())
            if record is not None:
                conn.execute(_RECORD, record)
    except psycopg.Error as exc:
        raise MigrationError(f"{label} failed and was rolled back: {_explain(exc)}") from exc


PLAIN_WARNING = (
    "TimescaleDB is not available: readings and predictions stay plain PostgreSQL tables (no "
    "compression, retention or continuous aggregate) and readings_1h is an ordinary view"
)


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
        if variant == "plain":
            log.warning(PLAIN_WARNING)
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
