-- Tables owned by the prediction service.

-- One row per prediction made (requested or scheduled). With TimescaleDB present this table
-- is meant to become a hypertable on `time` (1-day chunks, like `readings`); that branch is
-- not generated yet, so it is a plain table everywhere for now. Note for that branch: a
-- hypertable's unique indexes must include `time`, so the request dedupe index below would
-- become (request_id, time) with `time` taken from the request.
CREATE TABLE predictions (
    prediction_id         uuid             NOT NULL,
    time                  timestamptz      NOT NULL,
    asset_id              text COLLATE "C" NOT NULL,
    asset_type            text             NOT NULL,
    request_id            uuid,
    as_of                 timestamptz,
    failure_model         text,
    failure_model_version text,
    failure_probability   double precision,
    rul_model             text,
    rul_model_version     text,
    rul_p10               double precision,
    rul_p50               double precision,
    rul_p90               double precision,
    health_score          double precision NOT NULL,
    confidence            double precision NOT NULL,
    payload               jsonb            NOT NULL,
    PRIMARY KEY (asset_id, time, prediction_id)
);
-- A redelivered request stores nothing twice (INSERT ... ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX predictions_request ON predictions (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX predictions_time_brin ON predictions USING brin (time);
