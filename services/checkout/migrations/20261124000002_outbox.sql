-- The transactional outbox of storefront_runtime::outbox (its SCHEMA, verbatim):
-- CheckoutCompleted and CheckoutFailed are written here in the transaction that
-- records the session's end, and the relay publishes them to Kafka.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    topic        TEXT        NOT NULL,
    key          TEXT        NOT NULL,
    event_type   TEXT        NOT NULL,
    source       TEXT        NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    payload      JSONB       NOT NULL,
    headers      JSONB       NOT NULL DEFAULT '{}',
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (key, id) WHERE published_at IS NULL;
