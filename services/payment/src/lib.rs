//! The payment service: a payment-provider simulator. Test payment methods
//! decide the outcome deterministically; a configurable failure rate and
//! latency imitate a real provider. Charge is idempotent per checkout, Refund
//! per payment. A cancelled order (OrderStatusChanged to CANCELLED on the
//! order topic) refunds its checkout's charge, once.

mod config;
mod domain;
mod error;
mod events;
mod grpc;
mod store;

pub use config::{Config, OrderEventsConfig};
pub use error::PaymentError;

use storefront_proto::payment::v1::payment_service_server::PaymentServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

/// Connects and migrates the database and serves gRPC on `listener` until
/// `shutdown`, without refunding cancelled orders: the payment service alone,
/// as the checkout saga's tests run it. [`run_with_order_events`] is the
/// whole service.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    serve(config, None, listener, shutdown).await
}

/// Connects and migrates the database, starts the order-events consumer that
/// refunds cancelled orders (unless `order_events` switches Kafka off) and
/// serves gRPC on `listener` until `shutdown`; then stops the consumer, which
/// commits its offsets, and waits for it.
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
    let simulator = config.simulator()?;
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let ledger = store::PaymentLedger::new(pool.clone());
    let consumer = match &order_events {
        Some(order_events) => events::consumer(order_events)?,
        None => None,
    };

    // The consumer outlives the gRPC server and stops only after it, so a
    // refund under way finishes and its offset is committed.
    let tasks = Shutdown::new();
    let consuming = consumer.map(|consumer| {
        tokio::spawn(consumer.run(events::CancelledOrders::new(ledger.clone()), tasks.clone()))
    });
    let served = GrpcServer::new()
        .add_service(PaymentServiceServer::new(grpc::PaymentApi::new(
            ledger, simulator,
        )))
        .serve(listener, shutdown)
        .await;
    tasks.cancel();
    if let Some(consuming) = consuming
        && let Err(error) = consuming.await
    {
        tracing::error!(%error, "order-events consumer panicked");
    }
    pool.close().await;
    served
}
