//! Settings of the inventory service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::config::parse_duration;

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
    /// Largest number of database connections.
    #[arg(
        id = "inventory-db-max-connections",
        long = "inventory-db-max-connections",
        env = "INVENTORY_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub db_max_connections: u32,
    /// How long a reservation holds stock unless confirmed.
    #[arg(id = "inventory-reservation-ttl", long = "inventory-reservation-ttl", env = "INVENTORY_RESERVATION_TTL", default_value = "5m", value_parser = parse_duration)]
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    #[arg(id = "inventory-sweep-interval", long = "inventory-sweep-interval", env = "INVENTORY_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub sweep_interval: Duration,
}
