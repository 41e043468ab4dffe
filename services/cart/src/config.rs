//! Settings of the cart service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::config::parse_duration;
use storefront_runtime::consumer::{ConsumerSettings, RetryPolicy};

#[derive(Debug, Clone, clap::Args)]
#[group(id = "cart-config")]
#[command(next_help_heading = "Cart service")]
pub struct Config {
    /// Address the cart gRPC server listens on.
    #[arg(
        id = "cart-listen",
        long = "cart-listen",
        env = "CART_LISTEN",
        default_value = "0.0.0.0:50052"
    )]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the cart database.
    #[arg(
        id = "cart-database-url",
        long = "cart-database-url",
        env = "CART_DATABASE_URL",
        default_value = "postgres://storefront:storefront@127.0.0.1:55432/cart"
    )]
    pub database_url: String,
    /// Largest number of database connections (at least 1).
    #[arg(
        id = "cart-db-max-connections",
        long = "cart-db-max-connections",
        env = "CART_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub db_max_connections: u32,
    /// Redis URL of the cart cache. Redis being down slows nothing down for
    /// long and breaks nothing: carts are then read from PostgreSQL.
    #[arg(
        id = "cart-redis-url",
        long = "cart-redis-url",
        env = "CART_REDIS_URL",
        default_value = "redis://127.0.0.1:56379"
    )]
    pub redis_url: String,
    /// Prefix of every cache key; a cart is cached under `<prefix><user id>`.
    #[arg(
        id = "cart-cache-prefix",
        long = "cart-cache-prefix",
        env = "CART_CACHE_PREFIX",
        default_value = "storefront:cart:v1:"
    )]
    pub cache_prefix: String,
    /// How long a cached cart lives (plus a random share of the jitter).
    #[arg(id = "cart-cache-ttl", long = "cart-cache-ttl", env = "CART_CACHE_TTL", default_value = "15m", value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// Largest random extra lifetime of a cached cart, so entries cached
    /// together do not expire together.
    #[arg(id = "cart-cache-jitter", long = "cart-cache-jitter", env = "CART_CACHE_JITTER", default_value = "5m", value_parser = parse_duration)]
    pub cache_jitter: Duration,
    /// Longest wait for one Redis call before the cart falls back to PostgreSQL.
    #[arg(id = "cart-cache-timeout", long = "cart-cache-timeout", env = "CART_CACHE_TIMEOUT", default_value = "150ms", value_parser = parse_duration)]
    pub cache_timeout: Duration,
    /// gRPC address of the product service, which says whether a product
    /// exists and what it is called and costs.
    #[arg(
        id = "cart-product-url",
        long = "cart-product-url",
        env = "CART_PRODUCT_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub product_url: String,
    /// Deadline of each call to the product service.
    #[arg(id = "cart-product-timeout", long = "cart-product-timeout", env = "CART_PRODUCT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub product_timeout: Duration,
    /// Kafka bootstrap servers for CheckoutCompleted; empty disables the consumer.
    #[arg(
        id = "cart-kafka-bootstrap",
        long = "cart-kafka-bootstrap",
        env = "CART_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:59092"
    )]
    pub kafka_bootstrap: String,
    /// Topic the checkout events are read from (dead letters go to `<topic>.dlq`).
    #[arg(
        id = "cart-checkout-topic",
        long = "cart-checkout-topic",
        env = "CART_CHECKOUT_TOPIC",
        default_value = "checkout-events"
    )]
    pub kafka_topic: String,
    /// Kafka consumer group of the cart service.
    #[arg(
        id = "cart-consumer-group",
        long = "cart-consumer-group",
        env = "CART_CONSUMER_GROUP",
        default_value = "cart"
    )]
    pub kafka_group: String,
    /// Attempts a checkout event that keeps failing gets before it goes to
    /// `<topic>.dlq`. Waiting for an unreachable database does not count.
    #[arg(
        id = "cart-consumer-max-attempts",
        long = "cart-consumer-max-attempts",
        env = "CART_CONSUMER_MAX_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub consumer_max_attempts: u32,
    /// Wait after a checkout event's first failed attempt; it doubles after each further one.
    #[arg(id = "cart-consumer-retry-backoff", long = "cart-consumer-retry-backoff", env = "CART_CONSUMER_RETRY_BACKOFF", default_value = "200ms", value_parser = parse_duration)]
    pub consumer_retry_backoff: Duration,
    /// Longest wait between two attempts (also while the database is unreachable).
    #[arg(id = "cart-consumer-retry-backoff-max", long = "cart-consumer-retry-backoff-max", env = "CART_CONSUMER_RETRY_BACKOFF_MAX", default_value = "10s", value_parser = parse_duration)]
    pub consumer_retry_backoff_max: Duration,
    /// A cart untouched (no write) for this long expires and is deleted.
    #[arg(id = "cart-idle-expiry", long = "cart-idle-expiry", env = "CART_IDLE_EXPIRY", default_value = "90days", value_parser = parse_duration)]
    pub idle_expiry: Duration,
    /// How often expired carts are looked for.
    #[arg(id = "cart-sweep-interval", long = "cart-sweep-interval", env = "CART_SWEEP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub sweep_interval: Duration,
}

impl Config {
    /// How the CheckoutCompleted consumer retries.
    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            retry: RetryPolicy {
                max_attempts: self.consumer_max_attempts,
                initial_backoff: self.consumer_retry_backoff,
                max_backoff: self.consumer_retry_backoff_max,
            },
            ..ConsumerSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cart: Config,
    }

    #[test]
    fn defaults_parse_and_flags_override_them() {
        let cli = Cli::try_parse_from([
            "storefront",
            "--cart-kafka-bootstrap",
            "",
            "--cart-cache-ttl",
            "1m",
        ])
        .expect("parses");
        let config = cli.cart;
        assert_eq!(config.listen.port(), 50052);
        assert_eq!(config.kafka_bootstrap, "", "empty disables the consumer");
        assert_eq!(config.cache_ttl, Duration::from_secs(60));
        assert_eq!(config.cache_jitter, Duration::from_secs(5 * 60));
        assert_eq!(config.product_timeout, Duration::from_secs(2));
        assert_eq!(config.idle_expiry, Duration::from_secs(90 * 24 * 3600));
        assert_eq!(config.kafka_topic, "checkout-events");
        assert_eq!(config.kafka_group, "cart");
        assert_eq!(config.consumer_settings().retry, RetryPolicy::default());
    }
}
