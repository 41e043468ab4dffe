//! gRPC clients the one Storefront way: lazily connected channels with a
//! connect timeout, a deadline on every request, and a client span per call
//! whose W3C trace context and baggage travel in the request headers.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::StartError;
use crate::grpc::{rpc_name, status_code};

/// How long to wait for a TCP connection to a backend.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel to `uri` (e.g. `http://127.0.0.1:50051`) whose every request
/// fails with DEADLINE_EXCEEDED after `deadline` and is traced (an
/// `rpc.client` span, its context injected into the request). Connects on
/// first use, so a backend that starts later is not a start-up failure.
pub fn channel(uri: &str, deadline: Duration) -> Result<TracedChannel, StartError> {
    let (host, port) = host_port(uri);
    Ok(TracedChannel {
        inner: plain_channel(uri, deadline)?,
        host,
        port,
    })
}

/// Like [`channel`], without client spans or propagation.
pub fn plain_channel(uri: &str, deadline: Duration) -> Result<Channel, StartError> {
    let endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(|e| StartError::Config(format!("backend address {uri:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

fn host_port(uri: &str) -> (String, u16) {
    match uri.parse::<http::Uri>() {
        Ok(parsed) => (
            parsed.host().unwrap_or_default().to_owned(),
            parsed.port_u16().unwrap_or(80),
        ),
        Err(_) => (String::new(), 0),
    }
}

/// A tonic channel that opens an `rpc.client` span around every call (with
/// `rpc.system`, `rpc.service`, `rpc.method`, `server.address`,
/// `server.port`, `rpc.grpc.status_code`) and sends its trace context.
#[derive(Debug, Clone)]
pub struct TracedChannel {
    inner: Channel,
    host: String,
    port: u16,
}

impl Service<http::Request<Body>> for TracedChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let (service, method) = rpc_name(request.uri().path());
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            server.address = %self.host,
            server.port = self.port,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        crate::telemetry::inject(&span.context(), request.headers_mut());
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => status_code(response),
                    Err(_) => tonic::Code::Unavailable as i32,
                };
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", code);
                if code != 0 {
                    span.record("otel.status_code", "ERROR");
                }
                result
            }
            .instrument(span),
        )
    }
}
