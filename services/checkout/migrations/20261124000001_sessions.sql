-- Checkout sessions: one row per saga, unique per user and idempotency key.
-- `lease_token` names the driver (a live request or a recovery run) allowed to
-- move the session; `updated_at` is its heartbeat, and a session untouched for
-- long is taken over by recovery.
CREATE TABLE checkout_sessions (
    id                   UUID PRIMARY KEY,
    user_id              TEXT        NOT NULL,
    idempotency_key      TEXT        NOT NULL,
    status               TEXT        NOT NULL CHECK (status IN ('INITIATED', 'INVENTORY_RESERVED',
                             'PAYMENT_PENDING', 'PAYMENT_COMPLETED', 'COMPLETED', 'FAILED')),
    payment_method       TEXT        NOT NULL,
    shipping_address     JSONB,
    items                JSONB       NOT NULL,
    total_minor          BIGINT      NOT NULL CHECK (total_minor >= 0),
    currency             TEXT        NOT NULL,
    reservation_id       UUID,
    payment_id           UUID,
    -- Set when the saga fails, before compensation; FAILED once it is done.
    failure_reason       TEXT,
    failure_detail       TEXT,
    decline_reason       TEXT,
    reservation_released BOOLEAN     NOT NULL DEFAULT false,
    payment_refunded     BOOLEAN     NOT NULL DEFAULT false,
    lease_token          UUID        NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT checkout_sessions_idempotency UNIQUE (user_id, idempotency_key),
    CONSTRAINT checkout_sessions_reserved CHECK (
        status IN ('INITIATED', 'FAILED') OR reservation_id IS NOT NULL),
    CONSTRAINT checkout_sessions_paid CHECK (
        status NOT IN ('PAYMENT_COMPLETED', 'COMPLETED') OR payment_id IS NOT NULL),
    CONSTRAINT checkout_sessions_failed CHECK (
        status <> 'FAILED' OR failure_reason IS NOT NULL)
);

-- The recovery loop's work list: unfinished sessions by last touch.
CREATE INDEX checkout_sessions_unfinished ON checkout_sessions (updated_at)
    WHERE status NOT IN ('COMPLETED', 'FAILED');
