"""Schema migrations: ordered SQL files plus generated, branch-specific steps.

`pdm migrate` (a Kubernetes Job in production; services never migrate on start) applies
the `NNNN_name.sql` files of this package's directory in order, each in its own
transaction, under a PostgreSQL advisory lock so concurrent runs are safe, and records
version, checksum and branch in `schema_migrations`. An applied file must never change: a
checksum mismatch stops the run.

The storage layout of `readings` and `predictions` depends on the server. With the
`timescaledb` extension the generated steps (0002 for `readings`, 0006 for `predictions`) make
them compressed hypertables with retention, plus a continuous aggregate `readings_1h` whose
late-changed hours 0012 tracks and refreshes (see `readings_freshness`); without
it `readings_1h` is an ordinary view with the same columns and the same answers, and
`predictions` stays as 0004 created it. The branch is chosen once (StorageSettings.timescale)
and recorded; the Timescale policies come from StorageSettings and are synced on every run
(a job whose settings did not change is kept, with its id and statistics), so changing e.g.
`PDM_READINGS_RETENTION_DAYS` takes effect with the next `pdm migrate`.

The parts, one per step of a run: `discovery` (the SQL files and the generated steps, in
order), `branch` (TimescaleDB or plain), `readings_layout` (0002), `predictions_layout`
(0006) and `readings_freshness` (0012) with the SQL helpers they share in `rendering`,
`database` (the `schema_migrations` table, the advisory lock, checksums) and `commands`
(`migrate`, `status`, `plan`). The SQL files live next to this module; everything public is
importable from here.
"""

from pdm_common.db.migrations.branch import Variant, choose_variant, timescale_available
from pdm_common.db.migrations.commands import (
    OFF_WARNING,
    PLAIN_WARNING,
    MigrateResult,
    MigrationStatus,
    Plan,
    PlannedStep,
    StatusReport,
    migrate,
    plain_warning,
    plan,
    status,
)
from pdm_common.db.migrations.database import (
    ADVISORY_LOCK_KEY,
    Applied,
    Echo,
    advisory_lock,
    connect,
    describe_target,
    policy_statements,
    read_applied,
    recorded_variant,
    verify_checksums,
)
from pdm_common.db.migrations.discovery import GENERATED, MIGRATIONS_DIR, Migration, load_migrations
from pdm_common.db.migrations.errors import DatabaseUnreachable, MigrationError
from pdm_common.db.migrations.predictions_layout import (
    predictions_layout_statements,
    predictions_policy_statements,
    predictions_timescale_statements,
)
from pdm_common.db.migrations.readings_freshness import (
    freshness_policy_statements,
    freshness_statements,
    freshness_timescale_statements,
)
from pdm_common.db.migrations.readings_layout import _layout_checksum as _layout_checksum
from pdm_common.db.migrations.readings_layout import (
    layout_statements,
    plain_statements,
    timescale_policy_statements,
    timescale_statements,
)

__all__ = [
    "ADVISORY_LOCK_KEY",
    "GENERATED",
    "MIGRATIONS_DIR",
    "OFF_WARNING",
    "PLAIN_WARNING",
    "Applied",
    "DatabaseUnreachable",
    "Echo",
    "MigrateResult",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "Plan",
    "PlannedStep",
    "StatusReport",
    "Variant",
    "advisory_lock",
    "choose_variant",
    "connect",
    "describe_target",
    "freshness_policy_statements",
    "freshness_statements",
    "freshness_timescale_statements",
    "layout_statements",
    "load_migrations",
    "migrate",
    "plain_statements",
    "plain_warning",
    "plan",
    "policy_statements",
    "predictions_layout_statements",
    "predictions_policy_statements",
    "predictions_timescale_statements",
    "read_applied",
    "recorded_variant",
    "status",
    "timescale_available",
    "timescale_policy_statements",
    "timescale_statements",
    "verify_checksums",
]
