-- The catalog, written in the SQL that SQLite and PostgreSQL share.
CREATE TABLE products (
    id          BIGINT PRIMARY KEY,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency    TEXT   NOT NULL,
    image_url   TEXT   NOT NULL
);

INSERT INTO products (id, name, description, price_minor, currency, image_url) VALUES
    (1, 'Laptop', '14-inch laptop, 16 GB memory, 512 GB SSD', 129999, 'USD', '/images/laptop.jpg'),
    (2, 'Mouse', 'Wireless optical mouse', 2999, 'USD', '/images/mouse.jpg'),
    (3, 'Keyboard', 'Mechanical keyboard, tenkeyless', 8999, 'USD', '/images/keyboard.jpg'),
    (4, 'Monitor', '27-inch 4K monitor', 39999, 'USD', '/images/monitor.jpg'),
    (5, 'Headphones', 'Noise-cancelling over-ear headphones', 24999, 'USD', '/images/headphones.jpg')
ON CONFLICT (id) DO NOTHING;
