//! Settings of the checkout service (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::StartError;
use storefront_runtime::config::parse_duration;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "checkout-config")]
#[command(next_help_heading = "Checkout service")]
pub struct Config {
    /// Address the checkout gRPC server listens on.
    #[arg(
        id = "checkout-listen",
        long = "checkout-listen",
        env = "CHECKOUT_LISTEN",
        default_value = "0.0.0.0:50056"
    )]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the checkout database (sessions and the outbox).
    #[arg(
        id = "checkout-database-url",
        long = "checkout-database-url",
        env = "CHECKOUT_DATABASE_URL",
        default_value = "postgres://storefront:storefront@127.0.0.1:55432/checkout"
    )]
    pub database_url: String,
    /// Largest number of database connections, at least 2: the outbox
    /// relay keeps one open to LISTEN for committed events.
    #[arg(
        id = "checkout-db-max-connections",
        long = "checkout-db-max-connections",
        env = "CHECKOUT_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(2..)
    )]
    pub db_max_connections: u32,
    /// gRPC address of the cart service.
    #[arg(
        id = "checkout-cart-url",
        long = "checkout-cart-url",
        env = "CHECKOUT_CART_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub cart_url: String,
    /// gRPC address of the product service.
    #[arg(
        id = "checkout-product-url",
        long = "checkout-product-url",
        env = "CHECKOUT_PRODUCT_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub product_url: String,
    /// gRPC address of the inventory service.
    #[arg(
        id = "checkout-inventory-url",
        long = "checkout-inventory-url",
        env = "CHECKOUT_INVENTORY_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub inventory_url: String,
    /// gRPC address of the payment service.
    #[arg(
        id = "checkout-payment-url",
        long = "checkout-payment-url",
        env = "CHECKOUT_PAYMENT_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    pub payment_url: String,
    /// Deadline of every call to a backend (cart, product, inventory, payment).
    #[arg(id = "checkout-backend-timeout", long = "checkout-backend-timeout", env = "CHECKOUT_BACKEND_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub backend_timeout: Duration,
    /// Kafka bootstrap servers the outbox relay publishes to.
    #[arg(
        id = "checkout-kafka-bootstrap",
        long = "checkout-kafka-bootstrap",
        env = "CHECKOUT_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:59092"
    )]
    pub kafka_bootstrap: String,
    /// Topic of CheckoutCompleted and CheckoutFailed.
    #[arg(
        id = "checkout-topic",
        long = "checkout-topic",
        env = "CHECKOUT_TOPIC",
        default_value = storefront_runtime::events::CHECKOUT_EVENTS
    )]
    pub topic: String,
    /// How often the recovery loop looks for stalled sessions.
    #[arg(id = "checkout-recovery-interval", long = "checkout-recovery-interval", env = "CHECKOUT_RECOVERY_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub recovery_interval: Duration,
    /// How long an unfinished session may go untouched before recovery takes it over.
    #[arg(id = "checkout-recovery-after", long = "checkout-recovery-after", env = "CHECKOUT_RECOVERY_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub recovery_after: Duration,
}

impl Config {
    /// Refuses settings the saga cannot work with.
    pub(crate) fn check(&self) -> Result<(), StartError> {
        if self.backend_timeout.is_zero() {
            return Err(StartError::Config(
                "--checkout-backend-timeout must be greater than zero".into(),
            ));
        }
        if self.recovery_interval.is_zero() {
            return Err(StartError::Config(
                "--checkout-recovery-interval must be greater than zero".into(),
            ));
        }
        // The lease is renewed every third of it; below a few hundred
        // milliseconds a live request would mostly be renewing.
        if self.recovery_after < std::time::Duration::from_millis(300) {
            return Err(StartError::Config(
                "--checkout-recovery-after must be at least 300ms".into(),
            ));
        }
        if self.topic.is_empty() {
            return Err(StartError::Config(
                "--checkout-topic must not be empty".into(),
            ));
        }
        Ok(())
    }
}
