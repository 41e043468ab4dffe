//! Settings of the orders service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::config::parse_duration;
use storefront_runtime::consumer::{ConsumerSettings, RetryPolicy};
use storefront_runtime::events::{CHECKOUT_EVENTS, ORDER_EVENTS};

#[derive(Debug, Clone, clap::Args)]
#[group(id = "orders-config")]
#[command(next_help_heading = "Orders service")]
pub struct Config {
    /// Address the orders gRPC server listens on.
    #[arg(
        id = "orders-listen",
        long = "orders-listen",
        env = "ORDERS_LISTEN",
        default_value = "0.0.0.0:50055"
    )]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the orders database.
    #[arg(
        id = "orders-database-url",
        long = "orders-database-url",
        env = "ORDERS_DATABASE_URL",
        default_value = "postgres://storefront:storefront@127.0.0.1:55432/orders"
    )]
    pub database_url: String,
    /// Largest number of database connections, at least 2: the outbox
    /// relay keeps one open to LISTEN for committed events.
    #[arg(
        id = "orders-db-max-connections",
        long = "orders-db-max-connections",
        env = "ORDERS_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(2..)
    )]
    pub db_max_connections: u32,
    /// Kafka bootstrap servers (comma-separated host:port).
    #[arg(
        id = "orders-kafka-bootstrap",
        long = "orders-kafka-bootstrap",
        env = "ORDERS_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:59092"
    )]
    pub kafka_bootstrap: String,
    /// Topic the CheckoutCompleted events are read from (dead letters go to `<topic>.dlq`).
    #[arg(
        id = "orders-checkout-topic",
        long = "orders-checkout-topic",
        env = "ORDERS_CHECKOUT_TOPIC",
        default_value = CHECKOUT_EVENTS
    )]
    pub checkout_topic: String,
    /// Topic OrderCreated and OrderStatusChanged are published to.
    #[arg(
        id = "orders-order-topic",
        long = "orders-order-topic",
        env = "ORDERS_ORDER_TOPIC",
        default_value = ORDER_EVENTS
    )]
    pub order_topic: String,
    /// Kafka consumer group of the checkout-events consumer.
    #[arg(
        id = "orders-consumer-group",
        long = "orders-consumer-group",
        env = "ORDERS_CONSUMER_GROUP",
        default_value = "orders"
    )]
    pub consumer_group: String,
    /// Attempts a checkout event that keeps failing gets before it goes to
    /// `<topic>.dlq`. Waiting for an unreachable database does not count.
    #[arg(
        id = "orders-consumer-max-attempts",
        long = "orders-consumer-max-attempts",
        env = "ORDERS_CONSUMER_MAX_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub consumer_max_attempts: u32,
    /// Wait after a checkout event's first failed attempt; it doubles after each further one.
    #[arg(id = "orders-consumer-retry-backoff", long = "orders-consumer-retry-backoff", env = "ORDERS_CONSUMER_RETRY_BACKOFF", default_value = "200ms", value_parser = parse_duration)]
    pub consumer_retry_backoff: Duration,
    /// Longest wait between two attempts (also while the database is unreachable).
    #[arg(id = "orders-consumer-retry-backoff-max", long = "orders-consumer-retry-backoff-max", env = "ORDERS_CONSUMER_RETRY_BACKOFF_MAX", default_value = "10s", value_parser = parse_duration)]
    pub consumer_retry_backoff_max: Duration,
}

impl Config {
    /// How the checkout-events consumer retries.
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
    use clap::{Args, FromArgMatches};

    use storefront_runtime::consumer::RetryPolicy;

    use super::Config;

    fn command() -> clap::Command {
        Config::augment_args(clap::Command::new("orders").no_binary_name(true))
    }

    #[test]
    fn flags_are_consistent_and_default_to_the_local_infrastructure() {
        command().debug_assert();
        let matches = command()
            .try_get_matches_from(["--orders-listen", "127.0.0.1:7"])
            .map_err(|e| e.to_string());
        let config = matches.and_then(|m| Config::from_arg_matches(&m).map_err(|e| e.to_string()));
        let Ok(config) = config else {
            panic!("{config:?}")
        };
        assert_eq!(config.listen.to_string(), "127.0.0.1:7");
        // The environment may override these; only check the ones tests never set.
        if std::env::var_os("ORDERS_CHECKOUT_TOPIC").is_none() {
            assert_eq!(config.checkout_topic, "checkout-events");
        }
        if std::env::var_os("ORDERS_ORDER_TOPIC").is_none() {
            assert_eq!(config.order_topic, "order-events");
        }
        if std::env::var_os("ORDERS_CONSUMER_GROUP").is_none() {
            assert_eq!(config.consumer_group, "orders");
        }
        if std::env::var_os("ORDERS_CONSUMER_MAX_ATTEMPTS").is_none() {
            assert_eq!(config.consumer_settings().retry, RetryPolicy::default());
        }
        assert!(
            command()
                .try_get_matches_from(["--orders-consumer-max-attempts", "0"])
                .is_err(),
            "a record gets at least one attempt"
        );
        let help = command().render_long_help().to_string();
        for flag in [
            "--orders-listen",
            "--orders-database-url",
            "--orders-db-max-connections",
            "--orders-kafka-bootstrap",
            "--orders-checkout-topic",
            "--orders-order-topic",
            "--orders-consumer-group",
            "--orders-consumer-max-attempts",
            "--orders-consumer-retry-backoff",
            "--orders-consumer-retry-backoff-max",
            "ORDERS_KAFKA_BOOTSTRAP",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
    }
}
