-- Owned by the prediction service: when its periodic scoring last ran. Every replica runs the
-- timer; the one whose conditional UPDATE moves `last_tick` does the round, so a fleet of
-- replicas scores each asset once per interval without a leader process.
CREATE TABLE prediction_timer (
    name      text PRIMARY KEY,
    last_tick timestamptz NOT NULL
);
INSERT INTO prediction_timer (name, last_tick) VALUES ('periodic', '-infinity');
