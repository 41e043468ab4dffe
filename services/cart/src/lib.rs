//! The cart service: one cart per user in PostgreSQL (lines as JSONB) behind
//! a Redis cache-aside with single-flight reads; products checked with the
//! product service; checked-out lines cleared on CheckoutCompleted; idle
//! carts expired by a sweeper.
//!
//! Metrics: `cart_cache_requests_total{result="hit"|"miss"|"error"}`,
//! `cart_cache_errors_total{operation}`, `cart_db_loads_total` (cart reads
//! that missed the cache, after single-flight), `cart_carts_expired_total`,
//! `cart_checkouts_processed_total{outcome}`.

mod cache;
mod carts;
mod catalog;
mod config;
mod domain;
mod error;
mod events;
mod grpc;
mod store;
mod sweeper;

pub use config::Config;
pub use error::CartError;

use storefront_proto::cart::v1::cart_service_server::CartServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

/// Connects and migrates the database, starts the CheckoutCompleted consumer
/// and the expiry sweeper, and serves gRPC on `listener` until `shutdown`;
/// then stops the consumer (committing its offsets) and the sweeper and waits
/// for both. Redis and the product service may be down at start-up.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let carts = carts::Carts::new(
        store::CartStore::new(pool, config.idle_expiry)?,
        cache::CartCache::connect(&config)?,
        catalog::Catalog::connect(&config.product_url, config.product_timeout)?,
    );
    let consumer = events::consumer(&config)?;

    // Background work stops when serving stops, for whatever reason.
    let stop = shutdown.child_token();
    let mut tasks = vec![tokio::spawn(sweeper::run(
        carts.clone(),
        config.sweep_interval,
        stop.clone(),
    ))];
    if let Some(consumer) = consumer {
        let handler = events::CartClearing::new(carts.clone());
        tasks.push(tokio::spawn(consumer.run(handler, stop.clone())));
    }
    let served = GrpcServer::new()
        .add_service(CartServiceServer::new(grpc::CartApi::new(carts)))
        .serve(listener, shutdown)
        .await;
    stop.cancel();
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "cart background task panicked");
        }
    }
    served
}
