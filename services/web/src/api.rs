//! The REST gateway as the pages see it: one method per API call, typed
//! answers, and every refusal as an [`ApiError`] the pages turn into words.
//! Each call carries the visitor's token, their address (`X-Forwarded-For`,
//! so the gateway's per-address rate limit is theirs, not the web's) and
//! the trace context, so the gateway's spans continue the page's trace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::RwLock;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Who a call is made for: their token (none when anonymous) and address.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub token: Option<&'a str>,
    pub forwarded_for: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub price: String,
    pub currency: String,
    pub image_url: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Products {
    products: Vec<Product>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CartItem {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i32,
    pub line_total: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cart {
    pub items: Vec<CartItem>,
    pub item_count: i32,
    pub total: String,
    pub currency: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Checkout {
    pub checkout_id: String,
    pub status: String,
    pub total: String,
    pub currency: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderItem {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i32,
    pub line_total: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: String,
    pub checkout_id: String,
    pub status: String,
    pub total: String,
    pub currency: String,
    pub items: Vec<OrderItem>,
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Orders {
    orders: Vec<Order>,
}

/// A shipping address as the checkout form collects it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// What the gateway refused, or why it could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// A problem document: the API's own answer to this request.
    #[error("{status}: {code}: {detail}")]
    Problem {
        status: StatusCode,
        code: String,
        detail: String,
        /// A declined payment's reason (`CARD_DECLINED`, …).
        reason: Option<String>,
        /// `Retry-After` of a 429, in seconds.
        retry_after: Option<u64>,
    },
    /// No answer in time.
    #[error("the gateway did not answer in time")]
    Timeout,
    /// No connection, or an answer that is not the API's.
    #[error("the gateway is unreachable: {0}")]
    Unreachable(String),
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Problem { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ProblemBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The anonymous catalog, kept for a short while: every visitor's first
/// page is the catalog, and it changes far less often than it is read.
#[derive(Default)]
struct CatalogCache {
    fetched: Option<(Instant, Arc<Vec<Product>>)>,
}

pub struct Gateway {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    checkout_timeout: Duration,
    catalog_ttl: Duration,
    catalog: RwLock<CatalogCache>,
}

impl Gateway {
    pub fn new(
        base: &str,
        timeout: Duration,
        checkout_timeout: Duration,
        catalog_ttl: Duration,
    ) -> Result<Gateway, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(20))
            .build()?;
        Ok(Gateway {
            http,
            base: base.trim_end_matches('/').to_owned(),
            timeout,
            checkout_timeout,
            catalog_ttl,
            catalog: RwLock::default(),
        })
    }

    /// The catalog (served from memory for `--web-catalog-ttl`).
    pub async fn products(&self, caller: Caller<'_>) -> Result<Arc<Vec<Product>>, ApiError> {
        if let Some((at, products)) = &self.catalog.read().await.fetched
            && at.elapsed() < self.catalog_ttl
        {
            return Ok(products.clone());
        }
        let anonymous = Caller {
            token: None,
            ..caller
        };
        let fresh: Products = self
            .call(Method::GET, "/api/v1/products", anonymous, None, &[])
            .await?;
        let products = Arc::new(fresh.products);
        self.catalog.write().await.fetched = Some((Instant::now(), products.clone()));
        Ok(products)
    }

    pub async fn product(&self, caller: Caller<'_>, id: i64) -> Result<Product, ApiError> {
        let path = format!("/api/v1/products/{id}");
        self.call(Method::GET, &path, caller, None, &[]).await
    }

    pub async fn cart(&self, caller: Caller<'_>) -> Result<Cart, ApiError> {
        self.call(Method::GET, "/api/v1/cart", caller, None, &[])
            .await
    }

    pub async fn add_to_cart(
        &self,
        caller: Caller<'_>,
        product_id: i64,
        quantity: i64,
    ) -> Result<Cart, ApiError> {
        let body = serde_json::json!({ "product_id": product_id, "quantity": quantity });
        self.call(Method::POST, "/api/v1/cart/items", caller, Some(body), &[])
            .await
    }

    pub async fn set_quantity(
        &self,
        caller: Caller<'_>,
        product_id: i64,
        quantity: i64,
    ) -> Result<Cart, ApiError> {
        let path = format!("/api/v1/cart/items/{product_id}");
        let body = serde_json::json!({ "quantity": quantity });
        self.call(Method::PUT, &path, caller, Some(body), &[]).await
    }

    pub async fn remove_from_cart(
        &self,
        caller: Caller<'_>,
        product_id: i64,
    ) -> Result<Cart, ApiError> {
        let path = format!("/api/v1/cart/items/{product_id}");
        self.call(Method::DELETE, &path, caller, None, &[]).await
    }

    /// Places the order; a checkout still running when the gateway answers
    /// (202) comes back as its status, to be looked at on the confirmation page.
    pub async fn checkout(
        &self,
        caller: Caller<'_>,
        idempotency_key: &str,
        payment_method: &str,
        address: &Address,
    ) -> Result<Checkout, ApiError> {
        let body = serde_json::json!({
            "payment_method": payment_method,
            "shipping_address": address,
        });
        self.call(
            Method::POST,
            "/api/v1/checkout",
            caller,
            Some(body),
            &[("idempotency-key", idempotency_key)],
        )
        .await
    }

    pub async fn checkout_status(
        &self,
        caller: Caller<'_>,
        id: &str,
    ) -> Result<Checkout, ApiError> {
        let path = format!("/api/v1/checkout/{}", path_segment(id)?);
        self.call(Method::GET, &path, caller, None, &[]).await
    }

    pub async fn orders(&self, caller: Caller<'_>) -> Result<Vec<Order>, ApiError> {
        let orders: Orders = self
            .call(Method::GET, "/api/v1/orders", caller, None, &[])
            .await?;
        Ok(orders.orders)
    }

    pub async fn order(&self, caller: Caller<'_>, id: &str) -> Result<Order, ApiError> {
        let path = format!("/api/v1/orders/{}", path_segment(id)?);
        self.call(Method::GET, &path, caller, None, &[]).await
    }

    pub async fn set_order_status(
        &self,
        caller: Caller<'_>,
        id: &str,
        status: &str,
    ) -> Result<Order, ApiError> {
        let path = format!("/api/v1/orders/{}", path_segment(id)?);
        let body = serde_json::json!({ "status": status });
        self.call(Method::PATCH, &path, caller, Some(body), &[])
            .await
    }

    /// Whether the gateway says it is ready (its own backends included).
    pub async fn ready(&self) -> bool {
        let url = format!("{}/readyz", self.base);
        matches!(
            self.http.get(url).timeout(self.timeout).send().await,
            Ok(answer) if answer.status().is_success()
        )
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        caller: Caller<'_>,
        body: Option<serde_json::Value>,
        headers: &[(&'static str, &str)],
    ) -> Result<T, ApiError> {
        let timeout = if path == "/api/v1/checkout" {
            self.checkout_timeout
        } else {
            self.timeout
        };
        let span = tracing::info_span!(
            "gateway call",
            otel.name = %format!("{method} {}", route_of(path)),
            otel.kind = "client",
            http.request.method = %method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
        );
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout)
            .headers(trace_headers(&span));
        if let Some(token) = caller.token {
            request = request.bearer_auth(token);
        }
        if !caller.forwarded_for.is_empty() {
            request = request.header("x-forwarded-for", caller.forwarded_for);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async {
            let answer = request.send().await.map_err(transport)?;
            let status = answer.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            let retry_after = answer
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let bytes = answer.bytes().await.map_err(transport)?;
            if status.is_success() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::Unreachable(format!("unexpected answer: {e}")));
            }
            match serde_json::from_slice::<ProblemBody>(&bytes) {
                Ok(problem) => Err(ApiError::Problem {
                    status,
                    code: problem.code,
                    detail: problem.detail,
                    reason: problem.reason,
                    retry_after,
                }),
                Err(_) => Err(ApiError::Unreachable(format!(
                    "HTTP {status} without a problem document"
                ))),
            }
        }
        .instrument(span)
        .await
    }
}

fn transport(error: reqwest::Error) -> ApiError {
    if error.is_timeout() {
        ApiError::Timeout
    } else {
        ApiError::Unreachable(error.to_string())
    }
}

/// The span's context as `traceparent` (and baggage) headers.
fn trace_headers(span: &tracing::Span) -> HeaderMap {
    let mut headers = HeaderMap::new();
    storefront_runtime::telemetry::inject(&span.context(), &mut headers);
    headers
}

/// The route template of an API path, for span names of bounded cardinality.
fn route_of(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if part.chars().next().is_some_and(|c| c.is_ascii_digit()) || part.len() >= 32 {
                "{id}"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An order's or checkout's id from a URL, passed on only when it is one
/// plain path segment (letters, digits, dashes): anything else names nothing.
fn path_segment(id: &str) -> Result<&str, ApiError> {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plain {
        Ok(id)
    } else {
        Err(ApiError::Problem {
            status: StatusCode::NOT_FOUND,
            code: "not_found".to_owned(),
            detail: "no such page".to_owned(),
            reason: None,
            retry_after: None,
        })
    }
}

/// `X-Forwarded-For` for the gateway: what the browser's side sent (a proxy
/// in front of the web) followed by the address the web saw.
pub fn forwarded_for(headers: &HeaderMap, peer: std::net::IpAddr) -> String {
    match headers
        .get("x-forwarded-for")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    {
        Some(earlier) => format!("{}, {peer}", earlier.trim()),
        None => peer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_hide_ids() {
        assert_eq!(route_of("/api/v1/products/3"), "/api/v1/products/{id}");
        assert_eq!(
            route_of("/api/v1/orders/0193a7c2-5f7e-7cc1-8d1e-1a2b3c4d5e6f"),
            "/api/v1/orders/{id}"
        );
        assert_eq!(route_of("/api/v1/cart/items"), "/api/v1/cart/items");
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(path_segment("abc-123").ok(), Some("abc-123"));
        for odd in ["", "..", "../cart", "a b", "a?b", "%2e%2e"] {
            assert_eq!(path_segment(odd).ok(), None, "{odd:?}");
        }
    }

    #[test]
    fn the_visitors_address_is_appended() {
        let peer = std::net::IpAddr::from([10, 0, 0, 7]);
        assert_eq!(forwarded_for(&HeaderMap::new(), peer), "10.0.0.7");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        assert_eq!(forwarded_for(&headers, peer), "203.0.113.9, 10.0.0.7");
    }
}
