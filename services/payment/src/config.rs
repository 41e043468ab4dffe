//! Settings of the payment service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::StartError;
use storefront_runtime::config::parse_duration;

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
    /// Largest number of database connections.
    #[arg(
        id = "payment-db-max-connections",
        long = "payment-db-max-connections",
        env = "PAYMENT_DB_MAX_CONNECTIONS",
        default_value_t = 10
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

impl Config {
    pub fn simulator(&self) -> Result<Simulator, StartError> {
        Simulator::new(self.failure_rate, self.latency)
            .map_err(|e| StartError::Config(format!("--payment-failure-rate: {e}")))
    }
}
