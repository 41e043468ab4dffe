-- Charges (one per checkout) and their refunds.
CREATE TABLE payments (
    id             UUID PRIMARY KEY,
    checkout_id    UUID   NOT NULL UNIQUE,
    user_id        TEXT   NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT   NOT NULL,
    payment_method TEXT   NOT NULL,
    status         TEXT   NOT NULL CHECK (status IN ('SUCCEEDED', 'DECLINED', 'REFUNDED')),
    decline_reason TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE refunds (
    id           UUID PRIMARY KEY,
    payment_id   UUID   NOT NULL UNIQUE REFERENCES payments (id),
    amount_minor BIGINT NOT NULL,
    currency     TEXT   NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
