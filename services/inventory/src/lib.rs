//! The inventory service: stock levels and reservations. Reserve is
//! all-or-nothing and idempotent per checkout; Confirm deducts for good;
//! Release returns stock; a sweeper expires reservations left unconfirmed.

mod config;
mod domain;
mod error;
mod grpc;
mod store;
mod sweeper;

pub use config::Config;
pub use error::InventoryError;

use storefront_proto::inventory::v1::inventory_service_server::InventoryServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

/// Connects and migrates the database, starts the expiry sweeper and serves
/// gRPC on `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let stock = store::StockLedger::new(pool);
    let sweeper = tokio::spawn(sweeper::run(
        stock.clone(),
        config.sweep_interval,
        shutdown.clone(),
    ));
    let served = GrpcServer::new()
        .add_service(InventoryServiceServer::new(grpc::InventoryApi::new(
            stock,
            config.reservation_ttl,
        )))
        .serve(listener, shutdown.clone())
        .await;
    shutdown.cancel();
    if let Err(error) = sweeper.await {
        tracing::error!(%error, "reservation sweeper panicked");
    }
    served
}
