-- Tables owned by the scheduler service.

CREATE TABLE technicians (
    technician_id text COLLATE "C" PRIMARY KEY,
    name          text NOT NULL,
    skills        text[] NOT NULL,
    shifts        jsonb NOT NULL,              -- weekly patterns: [{days, start, end}] in UTC
    hourly_cost   double precision NOT NULL DEFAULT 0 CHECK (hourly_cost >= 0),
    active        boolean NOT NULL DEFAULT true,
    updated_by    text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE work_orders (
    work_order_id        uuid PRIMARY KEY,
    asset_id             text COLLATE "C" NOT NULL,
    asset_type           text,
    type                 text NOT NULL
                         CHECK (type IN ('preventive', 'predictive', 'corrective', 'inspection')),
    status               text NOT NULL CHECK (status IN
                         ('open', 'scheduled', 'in_progress', 'on_hold', 'completed', 'cancelled')),
    priority             smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
    source               text NOT NULL CHECK (source IN ('prediction', 'alarm', 'plan', 'person')),
    source_ref           text,
    failure_mode         text,
    title                text NOT NULL,
    description          text,
    skill                text NOT NULL,
    estimated_hours      double precision NOT NULL CHECK (estimated_hours > 0),
    parts_cost           double precision NOT NULL DEFAULT 0 CHECK (parts_cost >= 0),
    failure_cost         double precision NOT NULL DEFAULT 0 CHECK (failure_cost >= 0),
    downtime_cost_per_h  double precision NOT NULL DEFAULT 0 CHECK (downtime_cost_per_h >= 0),
    due_by               timestamptz,
    failure_probability  double precision,
    rul_p10_h            double precision,
    rul_p50_h            double precision,
    rul_p90_h            double precision,
    risk_as_of           timestamptz,
    healthy_since        timestamptz,
    technician_id        text,
    pinned               boolean NOT NULL DEFAULT false,
    scheduled_start      timestamptz,
    scheduled_end        timestamptz,
    bound_by             text[] NOT NULL DEFAULT '{}',
    schedule_note        text,
    findings             jsonb,
    started_at           timestamptz,
    completed_at         timestamptz,
    cancelled_reason     text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    version              integer NOT NULL DEFAULT 1
);
-- ONE active predictive order per (asset, failure mode), ONE order per alarm, ONE per plan
-- occurrence: a redelivered or duplicated event cannot open a second one, even in a race.
CREATE UNIQUE INDEX work_orders_one_active_predictive ON work_orders (asset_id, failure_mode)
    WHERE type = 'predictive' AND status IN ('open', 'scheduled', 'in_progress', 'on_hold');
CREATE UNIQUE INDEX work_orders_one_per_alarm ON work_orders (source_ref) WHERE source = 'alarm';
CREATE UNIQUE INDEX work_orders_one_per_plan_due ON work_orders (source_ref, asset_id, due_by)
    WHERE source = 'plan';
CREATE INDEX work_orders_active ON work_orders (status, due_by)
    WHERE status IN ('open', 'scheduled', 'in_progress', 'on_hold');
CREATE INDEX work_orders_by_asset ON work_orders (asset_id, created_at DESC);

-- Every lifecycle move, with who and when.
CREATE TABLE work_order_transitions (
    id            bigserial PRIMARY KEY,
    work_order_id uuid NOT NULL REFERENCES work_orders (work_order_id),
    from_status   text,
    to_status     text NOT NULL,
    actor         text NOT NULL,
    reason        text,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_order_transitions_by_order ON work_order_transitions (work_order_id, id);

CREATE TABLE maintenance_plans (
    plan_id         text COLLATE "C" PRIMARY KEY,
    name            text NOT NULL,
    asset_id        text,
    asset_type      text,
    interval_hours  double precision NOT NULL CHECK (interval_hours >= 1),
    skill           text NOT NULL,
    estimated_hours double precision NOT NULL,
    parts_cost      double precision NOT NULL DEFAULT 0,
    priority        smallint NOT NULL DEFAULT 1,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL,
    CHECK ((asset_id IS NULL) <> (asset_type IS NULL))
);

CREATE TABLE production_windows (
    asset_id text COLLATE "C" NOT NULL,
    start_at timestamptz NOT NULL,
    end_at   timestamptz NOT NULL CHECK (end_at > start_at),
    PRIMARY KEY (asset_id, start_at)
);

-- Assets the scheduler has heard of (predictions, alarms), for plans per asset type.
CREATE TABLE scheduler_assets (
    asset_id   text COLLATE "C" PRIMARY KEY,
    asset_type text,
    last_seen  timestamptz NOT NULL
);

-- Plans: one row per solve, its orders in `schedule`. The newest row is the current plan.
CREATE TABLE schedule_plans (
    plan_id               bigserial PRIMARY KEY,
    created_at            timestamptz NOT NULL DEFAULT now(),
    anchor                timestamptz NOT NULL,
    horizon_h             integer NOT NULL,
    trigger               text NOT NULL,
    summary               jsonb NOT NULL        -- ScheduleSummary without its orders
);
CREATE TABLE schedule (
    plan_id               bigint NOT NULL REFERENCES schedule_plans (plan_id) ON DELETE CASCADE,
    work_order_id         uuid NOT NULL,
    asset_id              text NOT NULL,
    status                text NOT NULL,
    technician_id         text,
    start_at              timestamptz,
    end_at                timestamptz,
    due_by                timestamptz,
    lateness_h            integer NOT NULL DEFAULT 0,
    bound_by              text[] NOT NULL DEFAULT '{}',
    expected_failure_cost double precision NOT NULL DEFAULT 0,
    risk_removed          double precision NOT NULL DEFAULT 0,
    frozen                boolean NOT NULL DEFAULT false,
    reason                text,
    detail                text,
    PRIMARY KEY (plan_id, work_order_id)
);
CREATE INDEX schedule_by_technician ON schedule (plan_id, technician_id, start_at);

-- Re-plan requests: set in the transaction of any change that matters, cleared by the plan
-- that covered it (one row; any replica may plan, under an advisory lock).
CREATE TABLE scheduler_state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    dirty_since timestamptz,
    reasons     text[] NOT NULL DEFAULT '{}'
);
INSERT INTO scheduler_state (id) VALUES (true);

-- The outbox of `pdm.maintenance.events.v1`: written with the change, published afterwards.
CREATE TABLE maintenance_outbox (
    event_id     uuid PRIMARY KEY,
    seq          bigserial,
    key          text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX maintenance_outbox_unpublished ON maintenance_outbox (seq) WHERE published_at IS NULL;

-- Commands already applied and their answers: a redelivered command changes nothing.
CREATE TABLE maintenance_commands_applied (
    command_id uuid PRIMARY KEY,
    result     jsonb NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
