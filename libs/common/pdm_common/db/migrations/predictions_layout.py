"""The generated step 0006: `predictions` as a hypertable on the Timescale branch (nothing
on the plain branch), with its request dedupe moved to `prediction_requests`."""

from __future__ import annotations

from typing import LiteralString

from pdm_common.db.migrations.branch import Variant
from pdm_common.db.migrations.rendering import (
    _compression_retention,
    _days,
    _interval,
    _render,
    _sha256,
)
from pdm_common.db.settings import StorageSettings

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

_PREDICTIONS_CHUNK_INTERVAL = "1 day"  # 1-day chunks, like `readings`' default
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
    # TimescaleDB warns that prediction_id and request_id (columns of unique indexes) should
    # be segment-by or order-by columns, which would make a unique check against a compressed
    # chunk cheaper. Deliberately not: predictions are written at the time they are made,
    # never into chunks old enough to be compressed (a redelivered request is dropped by the
    # claim trigger before any index check), and random UUIDs would only add per-batch
    # min/max metadata and sort work to every compression. The warning is expected.
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
# An unchanged prune job is kept (same id and statistics); a changed one is replaced.
_RM_CHANGED_PRUNE_JOB: LiteralString = (
    _RM_PRUNE_JOB + " AND NOT (schedule_interval = {every} "
    "AND (config->>'drop_after')::interval = {drop_after})"
)
_ADD_PRUNE_JOB: LiteralString = (
    "SELECT add_job('prune_prediction_requests', {every}, "
    "config => jsonb_build_object('drop_after', {drop_after})) "
    "WHERE NOT EXISTS (SELECT FROM timescaledb_information.jobs "
    "WHERE proc_name = 'prune_prediction_requests')"
)


def predictions_policy_statements(settings: StorageSettings) -> list[str]:
    """Compression and retention of `predictions` (and the matching prune of
    `prediction_requests`) from `settings` (idempotent); unchanged ones keep their jobs."""
    retention = settings.predictions_retention_days
    out = _compression_retention("predictions", settings.readings_compress_after_days, retention)
    if not retention:
        return [*out, _render(_RM_PRUNE_JOB)]
    params = {"every": _interval(_PREDICTION_REQUESTS_PRUNE_EVERY), "drop_after": _days(retention)}
    return [*out, _render(_RM_CHANGED_PRUNE_JOB, **params), _render(_ADD_PRUNE_JOB, **params)]


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
