-- Stock per product and the reservations that hold part of it.
CREATE TABLE stock (
    product_id BIGINT PRIMARY KEY,
    on_hand    BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved   BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (reserved <= on_hand)
);

CREATE TABLE reservations (
    id          UUID PRIMARY KEY,
    checkout_id UUID NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'RELEASED', 'EXPIRED')),
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The sweeper's work list: pending reservations by expiry.
CREATE INDEX reservations_pending_by_expiry ON reservations (expires_at) WHERE status = 'PENDING';

CREATE TABLE reservation_lines (
    reservation_id UUID   NOT NULL REFERENCES reservations (id),
    product_id     BIGINT NOT NULL REFERENCES stock (product_id),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);

INSERT INTO stock (product_id, on_hand) VALUES (1, 50), (2, 200), (3, 100), (4, 75), (5, 150)
ON CONFLICT (product_id) DO NOTHING;
