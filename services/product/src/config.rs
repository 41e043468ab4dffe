//! Settings of the product service (flags, with environment fallbacks).

use std::net::SocketAddr;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "product-config")]
#[command(next_help_heading = "Product service")]
pub struct Config {
    /// Address the product gRPC server listens on.
    #[arg(
        id = "product-listen",
        long = "product-listen",
        env = "PRODUCT_LISTEN",
        default_value = "0.0.0.0:50051"
    )]
    pub listen: SocketAddr,
    /// Catalog database: `sqlite://FILE?mode=rwc` (default) or a `postgres://` URL.
    #[arg(
        id = "product-database-url",
        long = "product-database-url",
        env = "PRODUCT_DATABASE_URL",
        default_value = "sqlite://storefront-product.db?mode=rwc"
    )]
    pub database_url: String,
    /// Largest number of database connections (at least 1).
    #[arg(
        id = "product-db-max-connections",
        long = "product-db-max-connections",
        env = "PRODUCT_DB_MAX_CONNECTIONS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub db_max_connections: u32,
}
