//! Prometheus metrics: one recorder per process (shared by every service under
//! `storefront all`) and the `/metrics` endpoint that renders it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{OnceLock, RwLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{Shutdown, StartError};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder on first call and returns its handle.
pub fn recorder() -> Result<PrometheusHandle, StartError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".to_owned()),
            DURATION_BUCKETS,
        )
        .map_err(|e| StartError::Config(format!("metrics buckets: {e}")))?
        .install_recorder()
        .map_err(|e| StartError::Config(format!("metrics recorder: {e}")))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A router answering `GET /metrics` from the global recorder (to serve
/// alone, or with other routes).
pub fn router() -> Result<axum::Router, StartError> {
    let handle = recorder()?;
    Ok(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    ))
}

/// Serves `GET /metrics` on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, shutdown: Shutdown) -> Result<(), StartError> {
    serve_router(addr, router()?, shutdown).await
}

/// Serves `app` ([`router`] with other routes, e.g. health probes) on `addr`
/// until `shutdown`.
pub async fn serve_router(
    addr: SocketAddr,
    app: axum::Router,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// The names of an HTTP server's RED metrics: its request counter and its
/// latency histogram (labels: method, route template, status).
#[derive(Debug, Clone, Copy)]
pub struct HttpMetrics {
    pub requests: &'static str,
    pub duration: &'static str,
}

/// Records one answered HTTP request: the metrics, the status on `span`
/// (`http.response.status_code`), and a log line in it (a warning for a 5xx).
pub fn record_http_request(
    names: HttpMetrics,
    span: &tracing::Span,
    method: &http::Method,
    route: String,
    status: http::StatusCode,
    elapsed: std::time::Duration,
) {
    span.record("http.response.status_code", status.as_u16());
    let (requests, duration) = http_handles(names, method, route, status);
    requests.increment(1);
    duration.record(elapsed.as_secs_f64());
    span.in_scope(|| {
        let millis = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), millis, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), millis, "request served");
        }
    });
}

/// The labels of one request's RED metrics.
type HttpKey = (&'static str, http::Method, String, u16);

/// Most label sets whose handles are kept (methods and routes are a bounded
/// set in practice; past this, handles are looked up each time).
const MAX_HTTP_HANDLES: usize = 1024;

/// The request counter and duration histogram for these labels. Registering
/// a metric hashes its name and labels and looks them up in the recorder's
/// registry on every call; the handles are kept instead, once our recorder
/// is installed (a handle made before that would be the no-op one).
fn http_handles(
    names: HttpMetrics,
    method: &http::Method,
    route: String,
    status: http::StatusCode,
) -> (metrics::Counter, metrics::Histogram) {
    static HANDLES: OnceLock<RwLock<HashMap<HttpKey, (metrics::Counter, metrics::Histogram)>>> =
        OnceLock::new();
    let register = |route: String| {
        let labels = [
            ("method", method.to_string()),
            ("route", route),
            ("status", status.as_u16().to_string()),
        ];
        (
            metrics::counter!(names.requests, &labels),
            metrics::histogram!(names.duration, &labels),
        )
    };
    if HANDLE.get().is_none() {
        return register(route);
    }
    let handles = HANDLES.get_or_init(RwLock::default);
    let key = (names.requests, method.clone(), route, status.as_u16());
    if let Some(found) = handles.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found.clone();
    }
    let made = register(key.2.clone());
    let mut handles = handles.write().unwrap_or_else(|e| e.into_inner());
    if handles.len() < MAX_HTTP_HANDLES {
        handles.insert(key, made.clone());
    }
    made
}
