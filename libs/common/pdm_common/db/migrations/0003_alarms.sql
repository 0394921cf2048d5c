-- Tables owned by the anomaly service.

-- One row per alarm. At most one *open* alarm per (asset, condition): the partial unique
-- index makes a duplicate "open" impossible even if two consumers raced.
CREATE TABLE alarms (
    alarm_id          uuid PRIMARY KEY,
    asset_id          text COLLATE "C" NOT NULL,
    asset_type        text,
    condition         text NOT NULL,
    status            text NOT NULL CHECK (status IN ('open', 'cleared')),
    severity          text NOT NULL
                      CHECK (severity IN ('info', 'warning', 'minor', 'major', 'critical')),
    detector          text NOT NULL,
    score             double precision NOT NULL,
    threshold         double precision NOT NULL,
    contributors      jsonb NOT NULL DEFAULT '{}',
    model_name        text,
    model_version     text,
    -- reading (event) times, so a replay or a restart decides exactly as the first run did
    opened_at         timestamptz NOT NULL,
    last_anomalous_at timestamptz NOT NULL,
    cleared_at        timestamptz,
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    assignee          text,
    assigned_by       text,
    assigned_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alarms_one_open_per_condition ON alarms (asset_id, condition)
    WHERE status = 'open';
CREATE INDEX alarms_by_asset ON alarms (asset_id, opened_at DESC);
CREATE INDEX alarms_open ON alarms (opened_at DESC) WHERE status = 'open';

-- History of every alarm event, and the outbox: an event is written in the same transaction
-- as the alarm change, published afterwards, then stamped. Unpublished rows are sent again
-- at start-up, so a crash between commit and publish loses no event (consumers dedupe on
-- event_id).
CREATE TABLE alarm_events (
    event_id     uuid PRIMARY KEY,
    alarm_id     uuid NOT NULL REFERENCES alarms (alarm_id),
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX alarm_events_by_alarm ON alarm_events (alarm_id, created_at);
CREATE INDEX alarm_events_unpublished ON alarm_events (created_at) WHERE published_at IS NULL;

-- Commands (acknowledge/assign) already applied: a redelivered command changes nothing.
CREATE TABLE alarm_commands_applied (
    command_id uuid PRIMARY KEY,
    alarm_id   uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
