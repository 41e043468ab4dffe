//! The REST API's routes, listed once in [`endpoints`]: the router is built
//! from that list and a test holds `/openapi.json` to it.

mod cart;
mod checkout;
mod ops;
mod orders;
mod products;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use http::Method;
use storefront_runtime::Shutdown;
use tower_http::cors::CorsLayer;

use crate::auth::{Verifier, identify};
use crate::backends::Backends;
use crate::catalog::Catalog;
use crate::limits::{BODY_LIMIT, RateLimits, cap_body, rate_limit};
use crate::observe::observe;
use crate::problem::ApiError;

/// What every handler may use.
#[derive(Debug, Clone)]
pub struct AppState {
    pub backends: Arc<Backends>,
    pub catalog: Arc<Catalog>,
    pub shutdown: Shutdown,
}

/// Who may call a route, and so which middleware it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `/api/v1/...`: the caller is identified and rate-limited.
    Api,
    /// Probes and the API description: never limited, never authenticated.
    Operations,
}

/// One route of the gateway.
struct Endpoint {
    method: Method,
    path: &'static str,
    surface: Surface,
    handler: MethodRouter<AppState>,
}

fn endpoint<H, T>(method: Method, path: &'static str, surface: Surface, handler: H) -> Endpoint
where
    H: Handler<T, AppState>,
    T: 'static,
{
    // Every method used below is one axum can filter on.
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    Endpoint {
        method,
        path,
        surface,
        handler: on(filter, handler),
    }
}

/// Every route, in the order the API reference lists them.
fn table() -> Vec<Endpoint> {
    use Surface::{Api, Operations};
    vec![
        endpoint(Method::GET, "/healthz", Operations, ops::healthz),
        endpoint(Method::GET, "/readyz", Operations, ops::readyz),
        endpoint(Method::GET, "/openapi.json", Operations, ops::openapi),
        endpoint(Method::GET, "/api/v1/products", Api, products::list),
        endpoint(Method::GET, "/api/v1/products/{id}", Api, products::get),
        endpoint(Method::GET, "/api/v1/cart", Api, cart::get),
        endpoint(Method::DELETE, "/api/v1/cart", Api, cart::clear),
        endpoint(Method::POST, "/api/v1/cart/items", Api, cart::add_item),
        endpoint(
            Method::PUT,
            "/api/v1/cart/items/{product_id}",
            Api,
            cart::set_quantity,
        ),
        endpoint(
            Method::DELETE,
            "/api/v1/cart/items/{product_id}",
            Api,
            cart::remove_item,
        ),
        endpoint(Method::POST, "/api/v1/checkout", Api, checkout::start),
        endpoint(Method::GET, "/api/v1/checkout/{id}", Api, checkout::get),
        endpoint(
            Method::GET,
            "/api/v1/admin/checkouts",
            Api,
            checkout::list_for_admin,
        ),
        endpoint(Method::GET, "/api/v1/orders", Api, orders::list),
        endpoint(Method::GET, "/api/v1/orders/{id}", Api, orders::get),
        endpoint(
            Method::PATCH,
            "/api/v1/orders/{id}",
            Api,
            orders::set_status,
        ),
    ]
}

/// Every (method, path template) the gateway serves.
pub fn endpoints() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|e| (e.method, e.path)).collect()
}

/// The whole application: routes, then (innermost first) identification and
/// rate limits on the API, the body cap, CORS, and request observation.
pub fn router(
    state: AppState,
    verifier: Arc<Verifier>,
    limits: Arc<RateLimits>,
    cors: CorsLayer,
) -> Router {
    let mut api = Router::new();
    let mut operations = Router::new();
    for endpoint in table() {
        match endpoint.surface {
            Surface::Api => api = api.route(endpoint.path, endpoint.handler),
            Surface::Operations => operations = operations.route(endpoint.path, endpoint.handler),
        }
    }
    // Each layer costs every request a clone of the service below it and a
    // boxed future, so identification and the limits are one layer.
    let api = api.layer(from_fn_with_state(
        Arc::new(Gate { verifier, limits }),
        admit,
    ));
    api.merge(operations)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn(cap_body))
        .layer(cors)
        .layer(from_fn(observe))
        .with_state(state)
}

/// What an API request passes before its route.
struct Gate {
    verifier: Arc<Verifier>,
    limits: Arc<RateLimits>,
}

/// Records who is calling (from the Authorization header; routes decide
/// whether they need a caller), then admits the request or answers 429.
async fn admit(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    identify(&gate.verifier, &mut request).await;
    match rate_limit(&gate.limits, &request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

async fn route_not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_route_is_listed_once_with_a_routable_method() {
        let all = endpoints();
        let distinct: BTreeSet<_> = all.iter().map(|(m, p)| (m.to_string(), *p)).collect();
        assert_eq!(distinct.len(), all.len(), "a route is listed twice");
        for (method, path) in all {
            assert!(
                MethodFilter::try_from(method.clone()).is_ok(),
                "{method} {path}: axum cannot route this method"
            );
        }
    }
}
