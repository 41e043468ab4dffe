//! The orders service: turns each CheckoutCompleted event into an order
//! (exactly one per checkout), serves GetOrder, ListOrders and
//! UpdateOrderStatus, and announces OrderCreated and OrderStatusChanged
//! through a transactional outbox.

mod config;
mod domain;
mod error;
mod events;
mod grpc;
mod store;

pub use config::Config;
pub use error::OrdersError;

use storefront_proto::orders::v1::order_service_server::OrderServiceServer;
use storefront_runtime::consumer::EventConsumer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::outbox::OutboxRelay;
use storefront_runtime::{Shutdown, StartError, kafka};
use tokio::net::TcpListener;

/// Connects and migrates the database, starts the checkout-events consumer
/// and the outbox relay, and serves gRPC on `listener` until `shutdown`; then
/// stops the consumer (which commits its offsets) and the relay, and waits for both.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let book = store::OrderBook::new(pool.clone(), config.order_topic.clone());

    let kafka_error = |error: rdkafka::error::KafkaError| {
        StartError::Config(format!(
            "Kafka client for {}: {error}",
            config.kafka_bootstrap
        ))
    };
    let consumer = EventConsumer::with_settings(
        &config.kafka_bootstrap,
        &config.consumer_group,
        &[config.checkout_topic.as_str()],
        &config.consumer_settings(),
    )
    .map_err(kafka_error)?;
    let relay = OutboxRelay::new(
        pool.clone(),
        kafka::producer(&config.kafka_bootstrap).map_err(kafka_error)?,
    );

    // The tasks outlive the gRPC server: RPCs in flight at shutdown still get
    // their events relayed, and the consumer stops only after them.
    let tasks = Shutdown::new();
    let consuming =
        tokio::spawn(consumer.run(events::CheckoutEvents::new(book.clone()), tasks.clone()));
    let relaying = tokio::spawn(relay.run(tasks.clone()));
    tracing::info!(
        topic = %config.checkout_topic,
        group = %config.consumer_group,
        order_topic = %config.order_topic,
        "consuming checkout events"
    );

    let served = GrpcServer::new()
        .add_service(OrderServiceServer::new(grpc::OrdersApi::new(book)))
        .serve(listener, shutdown)
        .await;

    tasks.cancel();
    if let Err(error) = consuming.await {
        tracing::error!(%error, "checkout-events consumer panicked");
    }
    // The relay stops at once even while Kafka is unreachable; rows it could
    // not publish stay in the outbox for the next start.
    if let Err(error) = relaying.await {
        tracing::error!(%error, "outbox relay panicked");
    }
    pool.close().await;
    served
}
