//! The payment service: a payment-provider simulator. Test payment methods
//! decide the outcome deterministically; a configurable failure rate and
//! latency imitate a real provider. Charge is idempotent per checkout, Refund
//! per payment.

mod config;
mod domain;
mod error;
mod grpc;
mod store;

pub use config::Config;
pub use error::PaymentError;

use storefront_proto::payment::v1::payment_service_server::PaymentServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

/// Connects and migrates the database and serves gRPC on `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let simulator = config.simulator()?;
    let pool =
        storefront_runtime::db::pg_pool(&config.database_url, config.db_max_connections).await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    let ledger = store::PaymentLedger::new(pool);
    GrpcServer::new()
        .add_service(PaymentServiceServer::new(grpc::PaymentApi::new(
            ledger, simulator,
        )))
        .serve(listener, shutdown)
        .await
}
