-- Owned by the prediction service: what a challenger model would have predicted for the
-- same request as the champion (shadow scoring). Never published, never acted on: the drift
-- service compares challenger and champion on live data with these rows.
CREATE TABLE shadow_predictions (
    prediction_id          uuid PRIMARY KEY,   -- derived from the request and the versions
    time                   timestamptz      NOT NULL,
    asset_id               text COLLATE "C" NOT NULL,
    asset_type             text             NOT NULL,
    request_id             uuid,
    as_of                  timestamptz,
    failure_model          text,
    failure_model_version  text,
    failure_probability    double precision,
    rul_model              text,
    rul_model_version      text,
    rul_p10                double precision,
    rul_p50                double precision,
    rul_p90                double precision,
    health_score           double precision NOT NULL,
    confidence             double precision NOT NULL,
    payload                jsonb            NOT NULL,
    champion_prediction_id uuid             NOT NULL
);
CREATE INDEX shadow_predictions_asset_time ON shadow_predictions (asset_id, time);
CREATE INDEX shadow_predictions_versions
    ON shadow_predictions (failure_model, failure_model_version, time);
