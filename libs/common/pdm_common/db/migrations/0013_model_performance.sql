-- Owned by the drift service: live performance per model version and window, from the
-- stored predictions (and shadow predictions) joined with outcome labels, computed at each
-- timed check (pdm_common.drift.LivePerformance; GET /v1/models/{name}/performance).
CREATE TABLE model_performance (
    model_name     text COLLATE "C" NOT NULL,
    model_version  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('served', 'shadow')),
    span           text NOT NULL CHECK (span IN ('all', 'recent')),
    computed_at    timestamptz NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    horizon_h      double precision NOT NULL,
    predictions    integer NOT NULL CHECK (predictions >= 0),
    alarms         integer,
    alarms_judged  integer,
    true_alarms    integer,
    failures       integer,
    caught         integer,
    precision      double precision,
    recall         double precision,
    lead_h_median  double precision,
    lead_h_mean    double precision,
    rul_judged     integer,
    rul_mae_h      double precision,
    rul_bias_h     double precision,
    rul_coverage   double precision,
    degraded       boolean NOT NULL DEFAULT false,
    reason         text,
    PRIMARY KEY (model_name, computed_at, model_version, role, span)
);
