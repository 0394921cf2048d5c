"""The SQL the database layer emits (the Timescale branch cannot run here), the branch choice,
the query-layer validation and the error classification, all without a server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout
from pydantic import ValidationError

from pdm_common.db import migrations as mig
from pdm_common.db.bulk import _stage_name
from pdm_common.db.pool import classify_db_error
from pdm_common.db.queries import (
    aggregate_expression,
    bucket_expression,
    readings_bucketed,
    rollup_query,
)
from pdm_common.db.settings import StorageSettings, parse_interval


def settings(**overrides: Any) -> StorageSettings:
    """Defaults only: no environment variables or stack.env can leak into the assertions."""
    return StorageSettings.model_validate(overrides)


@pytest.fixture(autouse=True)
def _no_pdm_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .pdm/stack.env
    for key in [
        "PDM_TIMESCALE",
        "PDM_READINGS_CHUNK_INTERVAL",
        "PDM_READINGS_COMPRESS_AFTER_DAYS",
        "PDM_READINGS_RETENTION_DAYS",
        "PDM_PREDICTIONS_RETENTION_DAYS",
        "PDM_READINGS_1H_RETENTION_DAYS",
        "PDM_READINGS_1H_STALE_REFRESH_INTERVAL",
    ]:
        monkeypatch.delenv(key, raising=False)


# --- Timescale statements ------------------------------------------------------------------


def test_timescale_statements_default() -> None:
    stmts = mig.timescale_statements(settings())
    assert stmts[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    assert stmts[1] == (
        "SELECT create_hypertable('readings', by_range('time', INTERVAL '1 day'), "
        "create_default_indexes => false, migrate_data => true, if_not_exists => true)"
    )
    assert stmts[2] == (
        "ALTER TABLE readings SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'asset_id, sensor', "
        "timescaledb.compress_orderby = 'time DESC')"
    )
    cagg = stmts[3]
    assert cagg.startswith(
        "CREATE MATERIALIZED VIEW readings_1h "
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT "
        """time_bucket(INTERVAL '1 hour', "time") AS bucket, asset_id, sensor, """
    )
    for column in [
        "avg(value) AS avg_value",
        "min(value) AS min_value",
        "max(value) AS max_value",
        "count(*) AS sample_count",
        'last("value", "time") AS last_value',
    ]:
        assert column in cagg
    assert cagg.endswith("GROUP BY bucket, asset_id, sensor WITH NO DATA")
    policies = stmts[4:]
    assert policies == mig.timescale_policy_statements(settings())
    jobs = (
        " FROM timescaledb_information.jobs WHERE proc_name = {} "
        "AND hypertable_schema = current_schema() AND hypertable_name = {} AND NOT ({})"
    )
    assert policies == [
        "SELECT set_chunk_time_interval('readings', INTERVAL '1 day')",
        # A policy is removed only when its settings changed; the add is then a no-op.
        "SELECT remove_compression_policy('readings', if_exists => true)"
        + jobs.format(
            "'policy_compression'",
            "'readings'",
            "(config->>'compress_after')::interval = INTERVAL '7 days'",
        ),
        "SELECT add_compression_policy('readings', INTERVAL '7 days', if_not_exists => true)",
        "SELECT remove_retention_policy('readings', if_exists => true)"
        + jobs.format(
            "'policy_retention'",
            "'readings'",
            "(config->>'drop_after')::interval = INTERVAL '180 days'",
        ),
        "SELECT add_retention_policy('readings', INTERVAL '180 days', if_not_exists => true)",
        # The hourly aggregate is kept forever by default (PDM_READINGS_1H_RETENTION_DAYS=0).
        "SELECT remove_retention_policy('readings_1h', if_exists => true)",
        "SELECT remove_continuous_aggregate_policy('readings_1h', if_exists => true)"
        + jobs.format(
            "'policy_refresh_continuous_aggregate'",
            "'readings_1h'",
            "(config->>'start_offset')::interval = INTERVAL '3 days' "
            "AND (config->>'end_offset')::interval = INTERVAL '1 hour' "
            "AND schedule_interval = INTERVAL '30 minutes'",
        ),
        "SELECT add_continuous_aggregate_policy('readings_1h', "
        "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', "
        "schedule_interval => INTERVAL '30 minutes', if_not_exists => true)",
    ]


def test_timescale_statements_follow_settings() -> None:
    custom = settings(
        readings_chunk_interval="6 hours",
        readings_compress_after_days=1,
        readings_retention_days=30,
        readings_1h_refresh_start_offset="2 days",
        readings_1h_refresh_lag="15 minutes",
        readings_1h_refresh_interval="5 minutes",
        readings_1h_retention_days=400,
    )
    text = "\n".join(mig.timescale_statements(custom))
    assert "add_retention_policy('readings_1h', INTERVAL '400 days'," in text
    assert "by_range('time', INTERVAL '6 hours')" in text
    assert "set_chunk_time_interval('readings', INTERVAL '6 hours')" in text
    assert "add_compression_policy('readings', INTERVAL '1 day'," in text
    assert "add_retention_policy('readings', INTERVAL '30 days'," in text
    assert (
        "start_offset => INTERVAL '2 days', end_offset => INTERVAL '15 minutes', "
        "schedule_interval => INTERVAL '5 minutes'"
    ) in text


def test_zero_retention_and_compression_skip_their_policies_but_remove_old_ones() -> None:
    text = "\n".join(
        mig.timescale_statements(
            settings(readings_retention_days=0, readings_compress_after_days=0)
        )
    )
    assert "add_retention_policy" not in text
    assert "add_compression_policy" not in text
    # Switching to 0 later must drop a policy created earlier, whatever its config.
    lines = text.splitlines()
    assert "SELECT remove_retention_policy('readings', if_exists => true)" in lines
    assert "SELECT remove_compression_policy('readings', if_exists => true)" in lines


def test_plain_view_has_the_same_columns_with_date_bin() -> None:
    (view,) = mig.plain_statements(settings())
    assert view.startswith(
        "CREATE VIEW readings_1h AS SELECT date_bin(INTERVAL '1 hour', \"time\", "
        "TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket, asset_id, sensor, "
    )
    assert '(array_agg("value" ORDER BY "time" DESC))[1] AS last_value' in view
    cagg = mig.timescale_statements(settings())[3]

    def select_list(stmt: str) -> str:
        return stmt[stmt.index(" AS bucket") : stmt.index(" FROM readings")]

    assert select_list(view).replace(
        '(array_agg("value" ORDER BY "time" DESC))[1]', "LAST"
    ) == select_list(cagg).replace('last("value", "time")', "LAST")


def test_layout_checksum_ignores_settings_but_not_the_branch() -> None:
    layout = mig.GENERATED[0]
    a = layout.checksum("timescale")
    assert a == mig._layout_checksum("timescale")
    assert mig.layout_statements("timescale", settings(readings_retention_days=0)) != (
        mig.layout_statements("timescale", settings())
    )
    assert layout.checksum("plain") != a


# --- predictions layout (0006) -------------------------------------------------------------


def test_predictions_timescale_statements_default() -> None:
    stmts = mig.predictions_layout_statements("timescale", settings())
    assert stmts == mig.predictions_timescale_statements(settings())
    assert stmts[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    # The request-id claim that keeps redeliveries a no-op once (request_id) cannot be unique.
    assert stmts[1] == (
        "CREATE TABLE prediction_requests (request_id uuid PRIMARY KEY, time timestamptz NOT NULL)"
    )
    assert stmts[2] == "CREATE INDEX prediction_requests_time ON prediction_requests (time)"
    assert stmts[3] == (
        "INSERT INTO prediction_requests (request_id, time) SELECT request_id, time "
        "FROM predictions WHERE request_id IS NOT NULL ON CONFLICT DO NOTHING"
    )
    claim = stmts[4]
    assert claim.startswith("CREATE FUNCTION predictions_claim_request() RETURNS trigger")
    assert (
        "INSERT INTO prediction_requests (request_id, time) VALUES (NEW.request_id, NEW.time) "
        "ON CONFLICT DO NOTHING; IF FOUND THEN RETURN NEW; END IF; RETURN NULL;"
    ) in claim
    # The unique index swap comes before create_hypertable, which refuses (request_id).
    assert stmts[5:7] == [
        "DROP INDEX predictions_request",
        "CREATE UNIQUE INDEX predictions_request_time ON predictions (request_id, time) "
        "WHERE request_id IS NOT NULL",
    ]
    assert stmts[7].startswith("COMMENT ON INDEX predictions_request_time IS ")
    assert "must include time" in stmts[7]
    assert stmts[8].startswith("COMMENT ON TABLE prediction_requests IS ")
    assert stmts[9:10] == [
        "SELECT create_hypertable('predictions', by_range('time', INTERVAL '1 day'), "
        "create_default_indexes => false, migrate_data => true, if_not_exists => true)",
    ]
    assert stmts[10] == (
        "CREATE TRIGGER predictions_claim_request BEFORE INSERT ON predictions "
        "FOR EACH ROW EXECUTE FUNCTION predictions_claim_request()"
    )
    assert stmts[11] == (
        "ALTER TABLE predictions SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'asset_id', "
        "timescaledb.compress_orderby = 'time DESC')"
    )
    assert stmts[12].startswith(
        "CREATE PROCEDURE prune_prediction_requests(job_id integer, config jsonb)"
    )
    policies = stmts[13:]
    assert policies == mig.predictions_policy_statements(settings())
    assert policies[:4] == [
        "SELECT remove_compression_policy('predictions', if_exists => true) "
        "FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' "
        "AND hypertable_schema = current_schema() AND hypertable_name = 'predictions' "
        "AND NOT ((config->>'compress_after')::interval = INTERVAL '7 days')",
        "SELECT add_compression_policy('predictions', INTERVAL '7 days', if_not_exists => true)",
        "SELECT remove_retention_policy('predictions', if_exists => true) "
        "FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention' "
        "AND hypertable_schema = current_schema() AND hypertable_name = 'predictions' "
        "AND NOT ((config->>'drop_after')::interval = INTERVAL '180 days')",
        "SELECT add_retention_policy('predictions', INTERVAL '180 days', if_not_exists => true)",
    ]
    assert policies[4:] == [
        "SELECT delete_job(job_id) FROM timescaledb_information.jobs "
        "WHERE proc_name = 'prune_prediction_requests' AND NOT (schedule_interval = "
        "INTERVAL '1 day' AND (config->>'drop_after')::interval = INTERVAL '180 days')",
        "SELECT add_job('prune_prediction_requests', INTERVAL '1 day', "
        "config => jsonb_build_object('drop_after', INTERVAL '180 days')) "
        "WHERE NOT EXISTS (SELECT FROM timescaledb_information.jobs "
        "WHERE proc_name = 'prune_prediction_requests')",
    ]
    text = "\n".join(stmts)
    # Nothing of 0004's (request_id) index survives on this branch.
    assert "ON predictions (request_id)" not in text


def test_predictions_policies_follow_settings() -> None:
    custom = settings(
        readings_compress_after_days=2, readings_retention_days=30, predictions_retention_days=90
    )
    text = "\n".join(mig.predictions_timescale_statements(custom))
    assert "add_compression_policy('predictions', INTERVAL '2 days'," in text
    assert "add_retention_policy('predictions', INTERVAL '90 days'," in text
    assert "jsonb_build_object('drop_after', INTERVAL '90 days')" in text
    assert "readings" not in text
    off = "\n".join(
        mig.predictions_policy_statements(
            settings(readings_compress_after_days=0, predictions_retention_days=0)
        )
    )
    assert "add_compression_policy" not in off
    assert "add_retention_policy" not in off
    assert "add_job" not in off
    assert "remove_compression_policy('predictions', if_exists => true)" in off
    assert "remove_retention_policy('predictions', if_exists => true)" in off
    assert (
        "SELECT delete_job(job_id) FROM timescaledb_information.jobs "
        "WHERE proc_name = 'prune_prediction_requests'"
    ) in off.splitlines()


def test_predictions_layout_plain_is_a_noop() -> None:
    assert mig.predictions_layout_statements("plain", settings()) == []
    step = next(m for m in mig.load_migrations() if m.label == "0006_predictions_layout")
    assert step.generated
    assert step.render("plain", settings()) == []
    assert step.render("timescale", settings()) == mig.predictions_timescale_statements(settings())


def test_predictions_layout_checksum_ignores_settings_but_not_the_branch() -> None:
    step = mig.GENERATED[1]
    assert step.label == "0006_predictions_layout"
    assert step.checksum("timescale") == step.checksum("timescale")
    assert step.checksum("plain") != step.checksum("timescale")
    assert step.checksum("timescale") != mig.GENERATED[0].checksum("timescale")
    assert mig.predictions_layout_statements(
        "timescale", settings(predictions_retention_days=0)
    ) != mig.predictions_layout_statements("timescale", settings())


def _applied(**variants: mig.Variant) -> dict[int, mig.Applied]:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        int(v[1:]): mig.Applied(int(v[1:]), "x", "x", variant, at)
        for v, variant in variants.items()
    }


def test_policies_are_re_applied_per_generated_step() -> None:
    found = mig.load_migrations()
    readings = mig.timescale_policy_statements(settings())
    predictions = mig.predictions_policy_statements(settings())
    freshness = mig.freshness_policy_statements(settings())
    assert mig.policy_statements({}, found, settings()) == []
    plain = _applied(v2="plain", v6="plain", v12="plain")
    assert mig.policy_statements(plain, found, settings()) == []
    # 0006 not applied yet: its render adds the predictions policies the first time.
    assert mig.policy_statements(_applied(v2="timescale"), found, settings()) == readings
    both = _applied(v2="timescale", v6="timescale")
    assert mig.policy_statements(both, found, settings()) == readings + predictions
    every = _applied(v2="timescale", v6="timescale", v12="timescale")
    assert mig.policy_statements(every, found, settings()) == readings + predictions + freshness


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("readings_chunk_interval", "1 month", "invalid interval"),
        ("readings_chunk_interval", "0 days", "must be positive"),
        ("readings_chunk_interval", "1 day; DROP TABLE readings", "invalid interval"),
        ("readings_retention_days", -1, "greater than or equal"),
        ("predictions_retention_days", -1, "greater than or equal"),
        ("readings_retention_days", 2, "longer than readings_1h_refresh_start_offset"),
        ("readings_1h_refresh_start_offset", "2 hours", "at least 2 hours"),
        ("readings_1h_retention_days", 90, "at least readings_retention_days"),
        ("readings_1h_retention_days", -1, "greater than or equal"),
        ("readings_1h_stale_refresh_interval", "1 month", "invalid interval"),
        ("timescale", "maybe", "auto"),
    ],
)
def test_invalid_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**{field: value})


def test_hourly_retention_needs_a_raw_retention_at_most_as_long() -> None:
    assert settings(readings_1h_retention_days=180).readings_1h_retention_days == 180
    assert settings(readings_retention_days=0).readings_1h_retention_days == 0  # both forever
    with pytest.raises(ValidationError, match="which must then not be 0"):
        settings(readings_retention_days=0, readings_1h_retention_days=365)


def test_freshness_step_and_its_job() -> None:
    step = next(m for m in mig.load_migrations() if m.label == "0012_readings_freshness")
    assert step.generated
    assert step.render("plain", settings()) == []
    stmts = step.render("timescale", settings())
    assert stmts == mig.freshness_timescale_statements(settings())
    text = "\n".join(stmts)
    for name in [
        "CREATE TABLE readings_1h_refresh_state",
        "CREATE FUNCTION readings_1h_stale_ranges(from_time timestamptz, to_time timestamptz)",
        "CREATE PROCEDURE refresh_readings_1h_stale(job_id integer, config jsonb)",
        "CREATE VIEW readings_1h_freshness",
    ]:
        assert name in text
    assert stmts[-2:] == mig.freshness_policy_statements(settings())
    assert stmts[-2:] == [
        "SELECT delete_job(job_id) FROM timescaledb_information.jobs "
        "WHERE proc_name = 'refresh_readings_1h_stale' AND NOT schedule_interval = "
        "INTERVAL '5 minutes'",
        "SELECT add_job('refresh_readings_1h_stale', INTERVAL '5 minutes') "
        "WHERE NOT EXISTS (SELECT FROM timescaledb_information.jobs "
        "WHERE proc_name = 'refresh_readings_1h_stale')",
    ]
    assert step.checksum("timescale") != step.checksum("plain")
    assert step.checksum("timescale") == mig.GENERATED[2].checksum("timescale")


@pytest.mark.parametrize(
    ("mode", "available", "expected"),
    [
        ("auto", False, mig.PLAIN_WARNING),
        ("off", False, mig.PLAIN_WARNING),
        ("off", True, mig.OFF_WARNING),
        ("auto", True, None),  # a database recorded as plain: choose_variant says why
    ],
)
def test_plain_warning_names_the_reason(mode: str, available: bool, expected: str | None) -> None:
    assert mig.plain_warning(mode, available) == expected
    assert "not available" not in mig.OFF_WARNING and "PDM_TIMESCALE=off" in mig.OFF_WARNING


def test_intervals_are_normalised() -> None:
    s = settings(readings_chunk_interval=" 12  HOURS ", readings_1h_refresh_interval="1 minutes")
    assert s.readings_chunk_interval == "12 hours"
    assert s.readings_1h_refresh_interval == "1 minute"
    assert parse_interval("2 weeks").days == 14


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDM_READINGS_RETENTION_DAYS", "0")
    monkeypatch.setenv("PDM_TIMESCALE", "off")
    s = StorageSettings()
    assert (s.readings_retention_days, s.timescale) == (0, "off")


# --- branch choice and migration discovery -------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "available", "recorded", "expected"),
    [
        ("auto", True, None, "timescale"),
        ("auto", False, None, "plain"),
        ("off", True, None, "plain"),
        ("on", True, None, "timescale"),
        ("auto", True, "plain", "plain"),  # never converts an existing layout
        ("auto", False, "timescale", "timescale"),
        ("on", True, "timescale", "timescale"),
        ("off", False, "plain", "plain"),
    ],
)
def test_choose_variant(
    mode: Any, available: bool, recorded: mig.Variant | None, expected: str
) -> None:
    assert mig.choose_variant(mode, available, recorded) == expected


@pytest.mark.parametrize(
    ("mode", "available", "recorded", "message"),
    [
        ("on", False, None, "timescaledb extension is not available"),
        ("on", True, "plain", "set up without TimescaleDB"),
        ("off", True, "timescale", "already uses TimescaleDB"),
    ],
)
def test_choose_variant_refuses_clearly(
    mode: Any, available: bool, recorded: mig.Variant | None, message: str
) -> None:
    with pytest.raises(mig.MigrationError, match=message):
        mig.choose_variant(mode, available, recorded)


def test_shipped_migrations_are_ordered_and_packaged() -> None:
    found = mig.load_migrations()
    assert [m.label for m in found] == [
        "0001_initial",
        "0002_readings_layout",
        "0003_alarms",
        "0004_predictions",
        "0005_prediction_timer",
        "0006_predictions_layout",
        "0007_gateway",
        "0008_alarm_flood_control",
        "0009_scheduler",
        "0010_drift",
        "0011_shadow_predictions",
        "0012_readings_freshness",
        "0013_model_performance",
    ]
    assert (mig.MIGRATIONS_DIR / "0001_initial.sql").is_file()
    (initial,) = found[0].render("plain", settings())
    assert "PRIMARY KEY (asset_id, sensor, time)" in initial
    assert found[0].checksum("plain") == found[0].checksum("timescale")


def test_migration_files_are_validated(tmp_path: Path) -> None:
    (tmp_path / "0002_clash.sql").write_text("SELECT 1;")
    with pytest.raises(mig.MigrationError, match="share version 0002"):
        mig.load_migrations(tmp_path)
    (tmp_path / "0002_clash.sql").unlink()
    (tmp_path / "3_bad-name.sql").write_text("SELECT 1;")
    with pytest.raises(mig.MigrationError, match="bad migration file name"):
        mig.load_migrations(tmp_path)


def test_plan_without_database_shows_every_step() -> None:
    planned = mig.plan(None, settings(), variant="timescale")
    assert [s.label for s in planned.steps] == [
        "0001_initial",
        "0002_readings_layout",
        "0003_alarms",
        "0004_predictions",
        "0005_prediction_timer",
        "0006_predictions_layout",
        "0007_gateway",
        "0008_alarm_flood_control",
        "0009_scheduler",
        "0010_drift",
        "0011_shadow_predictions",
        "0012_readings_freshness",
        "0013_model_performance",
    ]
    assert planned.steps[1].statements == mig.timescale_statements(settings())
    assert planned.steps[11].statements == mig.freshness_timescale_statements(settings())
    assert mig.plan(None, settings(), variant="plain").steps[11].statements == []
    assert planned.steps[5].statements == mig.predictions_timescale_statements(settings())
    assert mig.plan(None, settings(), variant="plain").steps[5].statements == []
    with pytest.raises(ValueError, match="variant"):
        mig.plan(None, settings())


def test_describe_target_hides_the_password() -> None:
    described = mig.describe_target("postgresql://pdm:s3cret@db.internal:6543/pdm")
    assert described == "db.internal:6543/pdm as pdm"
    assert "s3cret" not in described


# --- query layer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "interval"), [("1m", "1 minute"), ("1h", "1 hour"), ("1d", "1 day")]
)
def test_bucket_expression(bucket: Any, interval: str) -> None:
    assert bucket_expression(bucket, True).as_string() == (
        f"""time_bucket(INTERVAL '{interval}', "time")"""
    )
    assert bucket_expression(bucket, False).as_string() == (
        f"""date_bin(INTERVAL '{interval}', "time", TIMESTAMPTZ '2000-01-03 00:00:00+00')"""
    )


def test_aggregate_expressions() -> None:
    assert aggregate_expression("avg", False).as_string() == 'avg("value")'
    assert aggregate_expression("count", True).as_string() == "count(*)"
    assert aggregate_expression("last", True).as_string() == 'last("value", "time")'


@pytest.mark.parametrize("bad", ["5m", "1H", "", "1h; DROP TABLE readings"])
def test_invalid_bucket(bad: Any) -> None:
    with pytest.raises(ValueError, match="unknown bucket"):
        bucket_expression(bad, False)


@pytest.mark.parametrize("bad", ["sum", "AVG", "first", "value); DROP TABLE x; --"])
def test_invalid_aggregate(bad: Any) -> None:
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_expression(bad, True)


T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket": "2h"}, "unknown bucket"),
        ({"agg": "median"}, "unknown aggregate"),
        ({"start": T1, "end": T0}, "must be before"),
        ({"start": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
async def test_readings_bucketed_validates_before_querying(
    kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {
        "asset_id": "pump-001",
        "sensor": None,
        "start": T0,
        "end": T1,
        "bucket": "1h",
        "agg": "avg",
        "timescale": False,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        await readings_bucketed(None, **args)  # type: ignore[arg-type]  # never reached


def test_stage_names_fit_postgres_identifiers() -> None:
    name = _stage_name("some_schema." + "x" * 80, ["time", "asset_id"])
    assert len(name) <= 63
    assert _stage_name("readings", ["a", "b"]) != _stage_name("readings", ["a"])


# --- error classification ------------------------------------------------------------------


class _Wrapped(RuntimeError):
    pass


def _wrapped(cause: BaseException) -> BaseException:
    try:
        raise _Wrapped("batch failed") from cause
    except _Wrapped as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        # connection level
        (psycopg.OperationalError("connection refused"), "unavailable"),
        (psycopg.InterfaceError("the connection is closed"), "unavailable"),
        (PoolTimeout("couldn't get a connection after 10.00 sec"), "unavailable"),
        (errors.ConnectionFailure(), "unavailable"),  # 08006
        (errors.SqlclientUnableToEstablishSqlconnection(), "unavailable"),  # 08001
        (errors.AdminShutdown(), "unavailable"),  # 57P01
        (errors.CrashShutdown(), "unavailable"),  # 57P02
        (errors.CannotConnectNow(), "unavailable"),  # 57P03
        (ConnectionResetError(), "unavailable"),
        (TimeoutError(), "unavailable"),
        # transient, although psycopg derives them from OperationalError
        (errors.SerializationFailure(), "transient"),  # 40001
        (errors.DeadlockDetected(), "transient"),  # 40P01
        (errors.LockNotAvailable(), "transient"),  # 55P03
        (errors.QueryCanceled(), "transient"),  # 57014
        (errors.DiskFull(), "transient"),  # 53100
        (errors.OutOfMemory(), "transient"),  # 53200
        (errors.TooManyConnections(), "transient"),  # 53300
        (errors.InternalError_(), "transient"),  # XX000: anything else
        (ValueError("unrelated"), "transient"),
        # permanent: the same input fails again
        (errors.UniqueViolation(), "permanent"),  # 23505
        (errors.NotNullViolation(), "permanent"),  # 23502
        (errors.InvalidTextRepresentation(), "permanent"),  # 22P02
        (errors.NumericValueOutOfRange(), "permanent"),  # 22003
        (errors.UndefinedTable(), "unavailable"),  # 42P01: not migrated yet, pause
        (errors.UndefinedColumn(), "unavailable"),  # 42703
        (errors.SyntaxError(), "permanent"),  # 42601
        (errors.ProgramLimitExceeded(), "permanent"),  # 54000, OperationalError subclass
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), "permanent"),
        # classified by the cause when wrapped
        (_wrapped(errors.UniqueViolation()), "permanent"),
        (_wrapped(errors.AdminShutdown()), "unavailable"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classify_db_error(exc: BaseException, kind: str) -> None:
    assert classify_db_error(exc) == kind


def test_timescale_reads_hour_and_day_buckets_from_the_continuous_aggregate() -> None:
    from datetime import UTC, datetime

    from pdm_common.db.queries import rollup_query, uses_rollup

    day = rollup_query("1d", "avg", True, one_sensor=True).as_string()
    assert "FROM readings_1h" in day
    assert "time_bucket(INTERVAL '1 day', bucket)" in day
    assert "sum(avg_value * sample_count) / sum(sample_count)" in day
    assert "AND sensor = %(sensor)s" in day
    hour = rollup_query("1h", "last", True, one_sensor=False).as_string()
    assert hour.startswith('SELECT bucket, sensor, "last_value" AS value FROM readings_1h')
    assert (
        "date_bin(INTERVAL '1 day', bucket" in rollup_query("1d", "max", False, False).as_string()
    )
    whole = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    assert uses_rollup("1h", *whole) and uses_rollup("1d", *whole)
    assert not uses_rollup("1m", *whole)
    assert not uses_rollup("1d", whole[0].replace(hour=5), whole[1])
    assert uses_rollup("1h", whole[0].replace(hour=5), whole[1])


def test_rollup_query_reads_stale_hours_raw() -> None:
    """Hours changed since they were materialised come from `readings`, one range scan each;
    without stale ranges the query is the plain aggregate read."""
    assert rollup_query("1h", "max", True, True).as_string() == (
        'SELECT bucket, sensor, "max_value" AS value FROM readings_1h WHERE asset_id = '
        "%(asset_id)s AND sensor = %(sensor)s AND bucket >= %(start)s AND bucket < %(end)s "
        "ORDER BY sensor, bucket"
    )
    mixed = rollup_query("1d", "last", True, False, [(T0, T1), (T1, T1)]).as_string()
    assert mixed.startswith(
        "SELECT time_bucket(INTERVAL '1 day', bucket) AS day, sensor, "
        "(array_agg(last_value ORDER BY bucket DESC))[1] AS value FROM (SELECT bucket, sensor, "
        "avg_value, min_value, max_value, sample_count, last_value FROM readings_1h WHERE "
        "asset_id = %(asset_id)s  AND bucket >= %(start)s AND bucket < %(end)s "
        "AND NOT (bucket >= %(stale_lo_0)s AND bucket < %(stale_hi_0)s) "
        "AND NOT (bucket >= %(stale_lo_1)s AND bucket < %(stale_hi_1)s) UNION ALL "
    )
    for i in (0, 1):
        assert (
            """SELECT time_bucket(INTERVAL '1 hour', "time") AS bucket, sensor, avg(value), """
            'min(value), max(value), count(*), last("value", "time") FROM readings WHERE '
            f"asset_id = %(asset_id)s  AND time >= %(stale_lo_{i})s AND time < %(stale_hi_{i})s "
            "GROUP BY 1, 2"
        ) in mixed
    assert mixed.endswith(") AS hours  GROUP BY sensor, 1 ORDER BY sensor, 1")
