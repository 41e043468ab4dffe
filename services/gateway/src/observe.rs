//! What happens around every request: an `X-Request-ID` (echoed or made up),
//! a span with the HTTP semantic-convention fields, RED metrics per route
//! template, a log line, and the request id written into problem documents.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;

use crate::problem::Problem;

pub const REQUEST_ID: &str = "x-request-id";

/// Longest client-supplied request id that is echoed; a longer one is replaced.
const MAX_REQUEST_ID: usize = 128;

fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID)
        .filter(|id| id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Unmatched paths share one label: raw paths would make metrics unbounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());

    let span =
        storefront_runtime::telemetry::http_server_span(&method, &route, &path, request.headers());
    span.record("request_id", id.as_str());
    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        problem.render_into(&mut response, &id);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    storefront_runtime::shutdown::close_if_draining(response.headers_mut());

    storefront_runtime::metrics::record_http_request(
        storefront_runtime::metrics::HttpMetrics {
            requests: "http_server_requests_total",
            duration: "http_server_duration_seconds",
        },
        &span,
        &method,
        route,
        status,
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        if let Ok(value) = HeaderValue::from_str(value) {
            request.headers_mut().insert(REQUEST_ID, value);
        }
        request
    }

    #[test]
    fn sane_ids_are_echoed_and_others_replaced() {
        assert_eq!(request_id(&with_header("abc-123")), "abc-123");
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        assert_ne!(request_id(&with_header(&long)), long);
        let generated = request_id(&Request::new(axum::body::Body::empty()));
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
        assert_ne!(request_id(&with_header("a b")), "a b");
    }
}
