//! What every Storefront service shares, written once: configuration helpers,
//! JSON logs, gRPC serving (health, reflection, per-RPC spans and metrics,
//! graceful shutdown), gRPC clients with deadlines, PostgreSQL pools, the one
//! error-to-`tonic::Status` mapping, and Kafka client settings.

pub mod breaker;
pub mod client;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod ids;
pub mod kafka;
pub mod metrics;
pub mod money;
pub mod oidc;
pub mod outbox;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ErrorCode, FieldError, status_of};
pub use ids::{ProductId, UserId};
pub use money::{Currency, Money};
pub use shutdown::Shutdown;

/// Why a service could not start (or stopped serving). Only start-up and the
/// server loop produce it; request-level failures are each crate's own errors.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}
