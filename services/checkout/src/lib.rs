//! The checkout service: runs the checkout saga (reserve stock, charge,
//! confirm) for a user's cart, once per user and idempotency key, with
//! compensation (release, refund) when a step fails. Sessions live in
//! PostgreSQL; CheckoutCompleted and CheckoutFailed leave through a
//! transactional outbox; a recovery loop finishes sessions a crash left
//! mid-saga.

mod config;
mod domain;
mod error;
mod events;
mod grpc;
mod participants;
mod recovery;
mod saga;
mod store;

pub use config::Config;
pub use error::CheckoutError;

use std::sync::Arc;

use storefront_proto::checkout::v1::checkout_service_server::CheckoutServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::outbox::OutboxRelay;
use storefront_runtime::{Shutdown, StartError, kafka};
use tokio::net::TcpListener;

/// Connects and migrates the database, starts the outbox relay and the
/// recovery loop, and serves gRPC on `listener` until `shutdown`; then stops
/// the relay and the loop and waits for them.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    config.check()?;
    let participants = participants::Participants::connect(&config)?;
    let producer = kafka::producer(&config.kafka_bootstrap).map_err(|e| {
        StartError::Config(format!(
            "--checkout-kafka-bootstrap {:?}: {e}",
            config.kafka_bootstrap
        ))
    })?;
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;

    let store = store::SessionStore::new(pool.clone(), config.topic.clone());
    let saga = Arc::new(saga::CheckoutSaga::new(
        store,
        participants,
        config.recovery_after / 3,
    ));
    // Stopped when serving ends, whether by `shutdown` or by an error.
    let background = shutdown.child_token();
    let relay = tokio::spawn(OutboxRelay::new(pool, producer).run(background.clone()));
    let recovery = tokio::spawn(recovery::run(
        saga.clone(),
        config.recovery_interval,
        config.recovery_after,
        background.clone(),
    ));

    let served = GrpcServer::new()
        .add_service(CheckoutServiceServer::new(grpc::CheckoutApi::new(saga)))
        .serve(listener, shutdown)
        .await;
    background.cancel();
    for (name, task) in [("outbox relay", relay), ("recovery loop", recovery)] {
        if let Err(error) = task.await {
            tracing::error!(%error, task = name, "checkout background task panicked");
        }
    }
    served
}
