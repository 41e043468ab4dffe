//! Serving gRPC the one Storefront way: the service's own handlers plus
//! `grpc.health.v1` and reflection (`grpc.reflection.v1` and, for older
//! clients, `v1alpha`, each listing only what this port serves), a span and RED metrics around every RPC, and
//! a graceful stop that reports NOT_SERVING, then drains in-flight calls.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{Shutdown, StartError};

/// A gRPC server under construction: add the service's handlers, then [`serve`](Self::serve).
#[derive(Default)]
pub struct GrpcServer {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
}

impl GrpcServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated tonic server; its name is reported SERVING by the health service.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Serves on `listener` until `shutdown` is cancelled, then drains in-flight RPCs.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), StartError> {
        let Self { mut routes, names } = self;
        let (reporter, health) = tonic_health::server::health_reporter();
        for name in &names {
            reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let reflection_error = |e: tonic_reflection::server::Error| {
            StartError::Config(format!("gRPC reflection: {e}"))
        };
        let reflection_v1 = reflection(&names).build_v1().map_err(reflection_error)?;
        let reflection_v1alpha = reflection(&names)
            .build_v1alpha()
            .map_err(reflection_error)?;
        routes
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let addr = listener.local_addr()?;
        tracing::info!(%addr, services = ?names, "gRPC server listening");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let stop = async move {
            shutdown.cancelled().await;
            for name in &names {
                reporter
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
        };
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(RpcObservabilityLayer)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, stop)
            .await?;
        tracing::info!(%addr, "gRPC server stopped");
        Ok(())
    }
}

/// Names of the services every server offers besides its own.
const STANDARD_SERVICES: [&str; 3] = [
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// Reflection (either version) for a server that serves `names`: it lists
/// exactly those, health and both reflection versions — not every service
/// the shop's descriptors define, which under `storefront all` would send a
/// client to ports that do not serve what they list — and describes them
/// from the shop's, health's and reflection's descriptors.
fn reflection<'b>(names: &[&str]) -> tonic_reflection::server::Builder<'b> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(storefront_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        // Both reflection descriptors are registered above, for both versions.
        .include_reflection_service(false);
    for name in names.iter().chain(&STANDARD_SERVICES) {
        builder = builder.with_service_name(*name);
    }
    builder
}

/// Wraps every RPC in a server span (`rpc.system`, `rpc.service`, `rpc.method`,
/// `rpc.grpc.status_code`) that continues the caller's W3C trace context, and
/// records `rpc_server_requests_total` and `rpc_server_duration_seconds`
/// labelled by service, method and status code.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcObservabilityLayer;

impl<S> Layer<S> for RpcObservabilityLayer {
    type Service = RpcObservability<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcObservability { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcObservability<S> {
    inner: S,
}

/// Splits `/storefront.inventory.v1.InventoryService/Reserve` into service and method.
pub(crate) fn rpc_name(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

/// The gRPC status code of a response: in the headers for trailers-only
/// (error) responses, absent (OK until the trailers say otherwise) for the rest.
pub(crate) fn status_code<B>(response: &http::Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcObservability<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = rpc_name(request.uri().path());
        let span = tracing::info_span!(
            "rpc.server",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // The caller's trace context and baggage, when it sent any.
        crate::telemetry::continue_trace(&span, request.headers());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => status_code(response),
                    Err(_) => tonic::Code::Unknown as i32,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code);
                let labels = [
                    ("rpc_service", service),
                    ("rpc_method", method),
                    ("grpc_code", code.to_string()),
                ];
                metrics::counter!("rpc_server_requests_total", &labels).increment(1);
                metrics::histogram!("rpc_server_duration_seconds", &labels)
                    .record(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths_split_into_service_and_method() {
        assert_eq!(
            rpc_name("/storefront.inventory.v1.InventoryService/Reserve"),
            (
                "storefront.inventory.v1.InventoryService".to_owned(),
                "Reserve".to_owned()
            )
        );
        assert_eq!(rpc_name("/odd"), ("odd".to_owned(), String::new()));
    }
}
