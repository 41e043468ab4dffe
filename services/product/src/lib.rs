//! The product catalog service: GetProduct, batch GetProducts, paged
//! ListProducts and ValidateProducts, over SQLite (the default) or PostgreSQL.

mod config;
mod domain;
mod error;
mod grpc;
mod store;

pub use config::Config;
pub use error::CatalogError;

use storefront_proto::product::v1::product_service_server::ProductServiceServer;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

/// Connects the catalog (applying migrations and the seed) and serves gRPC on
/// `listener` until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let catalog = store::Catalog::connect(&config.database_url, config.db_max_connections).await?;
    GrpcServer::new()
        .add_service(ProductServiceServer::new(grpc::ProductApi::new(catalog)))
        .serve(listener, shutdown)
        .await
}
