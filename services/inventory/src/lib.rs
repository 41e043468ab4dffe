//! The inventory service: stock levels and reservations. Reserve is
//! all-or-nothing and idempotent per checkout; Confirm deducts for good;
//! Release returns stock; a sweeper expires reservations left unconfirmed; a
//! cancelled order (OrderStatusChanged to CANCELLED on the order topic) puts
//! its confirmed reservation's stock back on hand, once.

mod config;
mod domain;
mod error;
mod events;
mod grpc;
mod store;
mod sweeper;

pub use config::{Config, OrderEventsConfig};
pub use error::InventoryError;

use storefront_proto::inventory::v1::inventory_service_server::InventoryServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

/// Connects and migrates the database, starts the expiry sweeper and serves
/// gRPC on `listener` until `shutdown`, without returning cancelled orders'
/// stock: the inventory alone, as the checkout saga's tests run it.
/// [`run_with_order_events`] is the whole service.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    serve(config, None, listener, shutdown).await
}

/// Like [`run`], plus the order-events consumer that returns the stock of
/// cancelled orders (unless `order_events` switches Kafka off); at shutdown
/// the consumer stops after the gRPC server, committing its offsets.
pub async fn run_with_order_events(
    config: Config,
    order_events: OrderEventsConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    serve(config, Some(order_events), listener, shutdown).await
}

async fn serve(
    config: Config,
    order_events: Option<OrderEventsConfig>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let stock = store::StockLedger::new(pool.clone());
    let consumer = match &order_events {
        Some(order_events) => events::consumer(order_events)?,
        None => None,
    };
    // The background tasks outlive the gRPC server: a stock return under way
    // finishes and its offset is committed.
    let tasks = Shutdown::new();
    let sweeper = tokio::spawn(sweeper::run(
        stock.clone(),
        config.sweep_interval,
        tasks.clone(),
    ));
    let consuming = consumer.map(|consumer| {
        tokio::spawn(consumer.run(events::CancelledOrders::new(stock.clone()), tasks.clone()))
    });
    let served = GrpcServer::new()
        .add_service(InventoryServiceServer::new(grpc::InventoryApi::new(
            stock,
            config.reservation_ttl,
        )))
        .serve(listener, shutdown)
        .await;
    tasks.cancel();
    if let Err(error) = sweeper.await {
        tracing::error!(%error, "reservation sweeper panicked");
    }
    if let Some(consuming) = consuming
        && let Err(error) = consuming.await
    {
        tracing::error!(%error, "order-events consumer panicked");
    }
    pool.close().await;
    served
}
