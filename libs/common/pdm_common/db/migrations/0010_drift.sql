-- Tables owned by the drift service (model lifecycle: drift, labels, retrains, aliases).

-- A reference profile per model version, built once from the reference sample its training
-- run logged: a check never re-reads the reference (pdm_ml.drift.ReferenceProfile JSON).
CREATE TABLE drift_profiles (
    model_name    text COLLATE "C" NOT NULL,
    model_version text NOT NULL,
    profile       jsonb NOT NULL,
    built_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version)
);

-- Every drift check: the verdicts per column, the summary, and the Evidently report.
CREATE TABLE drift_reports (
    report_id      uuid PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('features', 'sensors')),
    model_name     text COLLATE "C",
    model_version  text,
    asset_type     text,
    trigger        text NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    reference_rows integer NOT NULL CHECK (reference_rows >= 0),
    current_rows   integer NOT NULL CHECK (current_rows >= 0),
    drifted_share  double precision NOT NULL,
    weighted_share double precision NOT NULL,
    drift_detected boolean NOT NULL,
    headlines      jsonb NOT NULL DEFAULT '[]',
    columns        jsonb NOT NULL DEFAULT '[]',
    html           text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drift_reports_model_time ON drift_reports (model_name, created_at DESC);
CREATE INDEX drift_reports_time ON drift_reports (created_at DESC);

-- Ground-truth outcomes: completed work orders (failure found or not, its mode) and, for
-- the simulated fleet, the simulator's truth. One row per source event.
CREATE TABLE outcome_labels (
    label_id      uuid PRIMARY KEY,            -- the source event's id
    asset_id      text COLLATE "C" NOT NULL,
    asset_type    text,
    source        text NOT NULL CHECK (source IN ('work_order', 'simulator')),
    failure_found boolean NOT NULL,
    failure_mode  text,
    occurred_at   timestamptz NOT NULL,
    ref           text,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcome_labels_asset_time ON outcome_labels (asset_id, occurred_at);

-- Retrains: one running per model at a time (the partial unique index is the claim), a
-- cooldown per model read from the finished ones.
CREATE TABLE retrain_jobs (
    job_id             uuid PRIMARY KEY,
    model_name         text COLLATE "C" NOT NULL,
    trigger            text NOT NULL,
    reason             text,
    status             text NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    claimed_by         text NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    heartbeat_at       timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    challenger_version text,
    result             jsonb,
    error              text
);
CREATE UNIQUE INDEX retrain_jobs_one_running ON retrain_jobs (model_name)
    WHERE status = 'running';
CREATE INDEX retrain_jobs_model_time ON retrain_jobs (model_name, started_at DESC);

-- Every alias move (champion, challenger, previous): which version served when, and why.
CREATE TABLE model_alias_history (
    change_id        uuid PRIMARY KEY,         -- the pdm.models.v1 event id, or the command id
    model_name       text COLLATE "C" NOT NULL,
    alias            text NOT NULL,
    version          text NOT NULL,
    previous_version text,
    moved_at         timestamptz NOT NULL,
    actor            text NOT NULL,
    trigger          text NOT NULL,
    reason           text,
    metrics          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX model_alias_history_model_time ON model_alias_history (model_name, moved_at DESC);

-- The outbox of `pdm.drift.v1` and `pdm.models.v1`: written with the change, published after.
CREATE TABLE drift_outbox (
    event_id     uuid PRIMARY KEY,
    seq          bigserial,
    topic        text NOT NULL,
    key          text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX drift_outbox_unpublished ON drift_outbox (seq) WHERE published_at IS NULL;

-- Commands already applied and their answers: a redelivered command changes nothing.
CREATE TABLE drift_commands_applied (
    command_id uuid PRIMARY KEY,
    result     jsonb NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
