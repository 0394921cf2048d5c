-- Tables owned by the API gateway: API keys, the audit log of writes, and the replies to
-- HTTP ingestion requests kept per Idempotency-Key.

-- A key is shown once, at creation: `pdm_<key_id>_<secret>`. Only the SHA-256 of the secret
-- is stored (the secret is 256 random bits, so a fast hash is enough: there is nothing to
-- brute-force, unlike a password). `key_id` is the public half used to find the row and to
-- name the key in logs and in the audit log.
CREATE TABLE api_keys (
    key_id            text PRIMARY KEY,
    name              text        NOT NULL,
    secret_sha256     text        NOT NULL,
    scopes            text[]      NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'admin']),
    -- requests per second of this key (token bucket refill); NULL: the gateway default
    rate_limit_per_s  double precision CHECK (rate_limit_per_s > 0),
    created_by        text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz
);

-- Every accepted write (and every refused one) through the gateway: who, what, when, result.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    key_id     text,
    method     text        NOT NULL,
    path       text        NOT NULL,
    status     integer     NOT NULL,
    detail     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log USING brin (at);
CREATE INDEX audit_log_by_key ON audit_log (key_id, at DESC);

-- POST /v1/readings with an Idempotency-Key: the first request's fingerprint and answer.
-- A repeat with the same key and body gets the same answer without publishing again; a
-- repeat with another body is refused (422). Rows older than the retention are deleted by
-- the gateway (PDM_GATEWAY_IDEMPOTENCY_TTL_H).
CREATE TABLE idempotency_keys (
    key_id          text        NOT NULL,
    idempotency_key text        NOT NULL,
    request_sha256  text        NOT NULL,
    status          integer,            -- NULL while the first request is in flight
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
