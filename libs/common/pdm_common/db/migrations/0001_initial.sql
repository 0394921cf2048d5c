-- Tables owned by the ingest service. Plain PostgreSQL on purpose: whether `readings` becomes
-- a TimescaleDB hypertable is decided by the generated migration 0002 (see migrations.py).

CREATE TABLE assets (
    asset_id      text COLLATE "C" PRIMARY KEY,
    asset_type    text,
    site          text,
    line          text,
    display_name  text,
    criticality   text,
    machine_class text,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    -- 'auto' when ingest registered the asset on its first reading, else who registered it.
    registered_by text        NOT NULL DEFAULT 'auto',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Narrow and append-mostly. The natural key makes redelivered readings no-ops
-- (INSERT ... ON CONFLICT DO NOTHING). There is deliberately no foreign key to assets: it
-- would add a lookup per inserted row on the ingest hot path and would order asset
-- registration before readings; ingest registers unknown assets itself.
--
-- asset_id and sensor are identifiers, compared byte-wise (COLLATE "C"): the primary-key
-- B-tree is the ingest bottleneck (~130k rows/s here), and a linguistic collation on a
-- production server (e.g. en_US.UTF-8) would turn every key comparison into strcoll().
CREATE TABLE readings (
    time     timestamptz      NOT NULL,
    asset_id text COLLATE "C" NOT NULL,
    sensor   text COLLATE "C" NOT NULL,
    value    double precision NOT NULL,
    PRIMARY KEY (asset_id, sensor, time)
);

-- The primary key already serves "latest readings of an asset" (a backward scan per sensor)
-- and one asset's time ranges (PostgreSQL 18 skip-scans the sensor column). What it cannot
-- serve is a time window across all assets (e.g. warming up detectors from the last hour).
-- Readings arrive in roughly time order, so a BRIN index answers that for almost no write
-- cost, where a B-tree on time would add a second index insert per row.
CREATE INDEX readings_time_brin ON readings USING brin (time) WITH (autosummarize = on);
