-- Orders, created from CheckoutCompleted events (one per checkout), their
-- lines, and the outbox that announces OrderCreated and OrderStatusChanged.
CREATE TABLE orders (
    id               UUID PRIMARY KEY,
    -- One order per checkout: a redelivered event finds its order here.
    checkout_id      UUID NOT NULL UNIQUE,
    user_id          TEXT NOT NULL,
    status           TEXT NOT NULL
                     CHECK (status IN ('CONFIRMED', 'PROCESSING', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    total_minor      BIGINT NOT NULL CHECK (total_minor >= 0),
    currency         TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The proto ShippingAddress as JSON; NULL when the checkout gave none.
    shipping_address JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ListOrders: a user's orders, newest first, paged on (created_at, id).
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);

-- Lines in the order's currency (orders.currency).
CREATE TABLE order_items (
    order_id         UUID    NOT NULL REFERENCES orders (id),
    position         INTEGER NOT NULL CHECK (position >= 0),
    product_id       BIGINT  NOT NULL CHECK (product_id > 0),
    name             TEXT    NOT NULL,
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    line_total_minor BIGINT  NOT NULL CHECK (line_total_minor >= 0),
    PRIMARY KEY (order_id, position)
);

-- storefront_runtime::outbox::SCHEMA
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
