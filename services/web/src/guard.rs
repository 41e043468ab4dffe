//! What wraps every request: a server span continuing the browser's trace
//! (with RED metrics and a log line), the security headers (a strict
//! Content-Security-Policy), the CSRF cookie for visitors who have none yet,
//! and the check that a form came from one of the shop's own pages.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, Method, header};
use tracing::Instrument as _;

use crate::AppState;
use crate::pages::PageError;
use crate::session::{self, CSRF_COOKIE};

/// Largest form the shop takes (its forms are a few hundred bytes).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The CSRF token of this request's visitor (their cookie's, or a new one
/// that the answer sets).
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let span = storefront_runtime::telemetry::http_server_span(
        &method,
        &route,
        request.uri().path(),
        request.headers(),
    );
    let response = next.run(request).instrument(span.clone()).await;
    storefront_runtime::metrics::record_http_request(
        storefront_runtime::metrics::HttpMetrics {
            requests: "web_requests_total",
            duration: "web_request_duration_seconds",
        },
        &span,
        &method,
        route,
        response.status(),
        started.elapsed(),
    );
    response
}

/// Security headers on every answer, and a CSRF cookie for a visitor
/// without one.
pub async fn headers(State(shop): State<AppState>, mut request: Request, next: Next) -> Response {
    let existing = session::cookie(request.headers(), CSRF_COOKIE)
        .filter(|token| !token.is_empty() && token.len() <= 64)
        .map(str::to_owned);
    let fresh = existing.is_none();
    let token = existing.unwrap_or_else(session::new_csrf_token);
    request.extensions_mut().insert(CsrfToken(token.clone()));

    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, shop.csp.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if fresh {
        // A day: long enough for any visit, renewed by the next visit after.
        let cookie = shop.policy.set(CSRF_COOKIE, &token, 86_400, "Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    storefront_runtime::shutdown::close_if_draining(headers);
    response
}

/// A POST must be a form from one of the shop's pages: its `csrf` field is
/// the visitor's CSRF cookie, and a browser-sent `Origin` is the shop's.
pub async fn forms(State(shop): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    if let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        && !same_origin(origin, &parts.headers, shop.public_url.as_deref())
    {
        return PageError::Forbidden(
            "This form was sent from another site, so the shop did not act on it.".to_owned(),
        )
        .into_response();
    }
    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return PageError::BadRequest("That form was too large.".to_owned()).into_response();
        }
    };
    let submitted = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if !session::csrf_matches(session::cookie(&parts.headers, CSRF_COOKIE), &submitted) {
        return PageError::Forbidden(
            "This form has expired or did not come from the shop. Go back, reload the page and try again."
                .to_owned(),
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Whether `origin` is the shop's own: its public URL's, or (without one)
/// the origin the request's `Host` names.
fn same_origin(origin: &str, headers: &http::HeaderMap, public_url: Option<&str>) -> bool {
    if let Some(public) = public_url {
        return origin_of(public) == origin;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host)
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &'static str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn forms_from_other_sites_are_told_apart() {
        let headers = host("127.0.0.1:8081");
        assert!(same_origin("http://127.0.0.1:8081", &headers, None));
        assert!(!same_origin("http://evil.example", &headers, None));
        assert!(!same_origin("null", &headers, None));
        let public = Some("https://shop.example.com/");
        assert!(same_origin("https://shop.example.com", &headers, public));
        assert!(!same_origin("http://127.0.0.1:8081", &headers, public));
    }

    #[test]
    fn origins_drop_the_path() {
        assert_eq!(
            origin_of("https://id.example.com/realms/x"),
            "https://id.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:5556"), "http://127.0.0.1:5556");
    }
}
