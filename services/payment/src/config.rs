//! Settings of the payment service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::StartError;
use storefront_runtime::config::parse_duration;
use storefront_runtime::events::ORDER_EVENTS;

use crate::domain::Simulator;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "payment-config")]
#[command(next_help_heading = "Payment service")]
pub struct Config {
    /// Address the payment gRPC server listens on.
    #[arg(
        id = "payment-listen",
        long = "payment-listen",
        env = "PAYMENT_LISTEN",
        default_value = "0.0.0.0:50054"
    )]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the payment database.
    #[arg(
        id = "payment-database-url",
        long = "payment-database-url",
        env = "PAYMENT_DATABASE_URL",
        default_value = "postgres://storefront:storefront@127.0.0.1:55432/payment"
    )]
    pub database_url: String,
    /// Largest number of database connections (at least 1).
    #[arg(
        id = "payment-db-max-connections",
        long = "payment-db-max-connections",
        env = "PAYMENT_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub db_max_connections: u32,
    /// Share of charges (0.0..=1.0) that fail as if the provider were down (UNAVAILABLE, nothing recorded).
    #[arg(
        id = "payment-failure-rate",
        long = "payment-failure-rate",
        env = "PAYMENT_FAILURE_RATE",
        default_value_t = 0.0
    )]
    pub failure_rate: f64,
    /// Simulated provider latency added to every charge.
    #[arg(id = "payment-latency", long = "payment-latency", env = "PAYMENT_LATENCY", default_value = "0ms", value_parser = parse_duration)]
    pub latency: Duration,
}

/// Where the payment service hears of cancelled orders, to refund them
/// (flags, with environment fallbacks). Kept apart from [`Config`] because
/// the payment service also runs alone, without Kafka (the checkout saga's
/// tests): an empty bootstrap switches the consumer off.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "payment-order-events")]
#[command(next_help_heading = "Payment service")]
pub struct OrderEventsConfig {
    /// Kafka bootstrap servers for OrderStatusChanged (refunds of cancelled orders); empty disables the consumer.
    #[arg(
        id = "payment-kafka-bootstrap",
        long = "payment-kafka-bootstrap",
        env = "PAYMENT_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:59092"
    )]
    pub kafka_bootstrap: String,
    /// Topic the order events are read from (dead letters go to `<topic>.dlq`).
    #[arg(
        id = "payment-order-topic",
        long = "payment-order-topic",
        env = "PAYMENT_ORDER_TOPIC",
        default_value = ORDER_EVENTS
    )]
    pub order_topic: String,
    /// Kafka consumer group of the order-events consumer.
    #[arg(
        id = "payment-consumer-group",
        long = "payment-consumer-group",
        env = "PAYMENT_CONSUMER_GROUP",
        default_value = "payment"
    )]
    pub consumer_group: String,
}

impl Config {
    pub fn simulator(&self) -> Result<Simulator, StartError> {
        Simulator::new(self.failure_rate, self.latency)
            .map_err(|e| StartError::Config(format!("--payment-failure-rate: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, FromArgMatches};

    use super::OrderEventsConfig;

    fn command() -> clap::Command {
        OrderEventsConfig::augment_args(clap::Command::new("payment").no_binary_name(true))
    }

    #[test]
    fn order_event_flags_default_to_the_local_infrastructure_and_may_switch_it_off() {
        command().debug_assert();
        let parsed = command()
            .try_get_matches_from(["--payment-kafka-bootstrap", ""])
            .map_err(|e| e.to_string())
            .and_then(|m| OrderEventsConfig::from_arg_matches(&m).map_err(|e| e.to_string()));
        let Ok(config) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(config.kafka_bootstrap, "", "empty disables the consumer");
        // The environment may override these; only check the ones tests never set.
        if std::env::var_os("PAYMENT_ORDER_TOPIC").is_none() {
            assert_eq!(config.order_topic, "order-events");
        }
        if std::env::var_os("PAYMENT_CONSUMER_GROUP").is_none() {
            assert_eq!(config.consumer_group, "payment");
        }
        let help = command().render_long_help().to_string();
        for flag in [
            "--payment-kafka-bootstrap",
            "--payment-order-topic",
            "--payment-consumer-group",
            "PAYMENT_KAFKA_BOOTSTRAP",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
    }
}
