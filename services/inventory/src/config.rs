//! Settings of the inventory service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::config::parse_duration;
use storefront_runtime::events::ORDER_EVENTS;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "inventory-config")]
#[command(next_help_heading = "Inventory service")]
pub struct Config {
    /// Address the inventory gRPC server listens on.
    #[arg(
        id = "inventory-listen",
        long = "inventory-listen",
        env = "INVENTORY_LISTEN",
        default_value = "0.0.0.0:50053"
    )]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the inventory database.
    #[arg(
        id = "inventory-database-url",
        long = "inventory-database-url",
        env = "INVENTORY_DATABASE_URL",
        default_value = "postgres://storefront:storefront@127.0.0.1:55432/inventory"
    )]
    pub database_url: String,
    /// Largest number of database connections (at least 1).
    #[arg(
        id = "inventory-db-max-connections",
        long = "inventory-db-max-connections",
        env = "INVENTORY_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub db_max_connections: u32,
    /// How long a reservation holds stock unless confirmed.
    #[arg(id = "inventory-reservation-ttl", long = "inventory-reservation-ttl", env = "INVENTORY_RESERVATION_TTL", default_value = "5m", value_parser = parse_duration)]
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    #[arg(id = "inventory-sweep-interval", long = "inventory-sweep-interval", env = "INVENTORY_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
}

/// Where the inventory hears of cancelled orders, to put their stock back
/// (flags, with environment fallbacks). Kept apart from [`Config`] because
/// the inventory also runs alone, without Kafka (the checkout saga's tests):
/// an empty bootstrap switches the consumer off.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "inventory-order-events")]
#[command(next_help_heading = "Inventory service")]
pub struct OrderEventsConfig {
    /// Kafka bootstrap servers for OrderStatusChanged (stock of cancelled orders); empty disables the consumer.
    #[arg(
        id = "inventory-kafka-bootstrap",
        long = "inventory-kafka-bootstrap",
        env = "INVENTORY_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:59092"
    )]
    pub kafka_bootstrap: String,
    /// Topic the order events are read from (dead letters go to `<topic>.dlq`).
    #[arg(
        id = "inventory-order-topic",
        long = "inventory-order-topic",
        env = "INVENTORY_ORDER_TOPIC",
        default_value = ORDER_EVENTS
    )]
    pub order_topic: String,
    /// Kafka consumer group of the order-events consumer.
    #[arg(
        id = "inventory-consumer-group",
        long = "inventory-consumer-group",
        env = "INVENTORY_CONSUMER_GROUP",
        default_value = "inventory"
    )]
    pub consumer_group: String,
}

#[cfg(test)]
mod tests {
    use clap::{Args, FromArgMatches};

    use super::OrderEventsConfig;

    fn command() -> clap::Command {
        OrderEventsConfig::augment_args(clap::Command::new("inventory").no_binary_name(true))
    }

    #[test]
    fn order_event_flags_default_to_the_local_infrastructure_and_may_switch_it_off() {
        command().debug_assert();
        let parsed = command()
            .try_get_matches_from(["--inventory-kafka-bootstrap", ""])
            .map_err(|e| e.to_string())
            .and_then(|m| OrderEventsConfig::from_arg_matches(&m).map_err(|e| e.to_string()));
        let Ok(config) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(config.kafka_bootstrap, "", "empty disables the consumer");
        // The environment may override these; only check the ones tests never set.
        if std::env::var_os("INVENTORY_ORDER_TOPIC").is_none() {
            assert_eq!(config.order_topic, "order-events");
        }
        if std::env::var_os("INVENTORY_CONSUMER_GROUP").is_none() {
            assert_eq!(config.consumer_group, "inventory");
        }
        let help = command().render_long_help().to_string();
        for flag in [
            "--inventory-kafka-bootstrap",
            "--inventory-order-topic",
            "--inventory-consumer-group",
            "INVENTORY_KAFKA_BOOTSTRAP",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}");
        }
    }
}
