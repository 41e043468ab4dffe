-- One cart per user, its lines as a JSONB array, and the checkouts whose lines
-- were already taken out of a cart (so a redelivered CheckoutCompleted is a no-op).
CREATE TABLE carts (
    user_id    TEXT PRIMARY KEY CHECK (char_length(user_id) BETWEEN 1 AND 128),
    items      JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(items) = 'array'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Moved forward by every write; the sweeper deletes carts past it.
    expires_at TIMESTAMPTZ NOT NULL
);

-- The sweeper's work list.
CREATE INDEX carts_by_expiry ON carts (expires_at);

CREATE TABLE processed_checkouts (
    checkout_id  UUID PRIMARY KEY,
    user_id      TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Old records are pruned long after any redelivery could arrive.
CREATE INDEX processed_checkouts_by_time ON processed_checkouts (processed_at);
