//! The REST gateway: JSON over HTTP in front of the product, cart, checkout
//! and orders gRPC services, with JWT authentication (a shared secret, a
//! public key, and/or an OpenID issuer's published keys), per-user and per-address
//! rate limits, a circuit breaker per backend, and RFC 9457 problem details
//! for every error. The routes are listed once (`routes`), and `/openapi.json`
//! describes them.

mod auth;
mod backends;
mod catalog;
mod config;
mod conn;
mod input;
mod json;
mod limits;
mod observe;
mod openapi;
mod problem;
mod routes;

pub use auth::{TokenError, token};
pub use config::Config;
pub use routes::endpoints;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use http::{HeaderName, HeaderValue, Method};
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Checks the configuration (a key to verify tokens is required), then serves
/// the REST API on `listener` until `shutdown`, letting in-flight requests finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let verifier = Arc::new(auth::Verifier::new(&config)?);
    // The issuer's keys are fetched now and then, in the background; an
    // issuer that cannot be reached yet only delays its tokens.
    if let Some(keys) = verifier.oidc_keys() {
        keys.spawn_refresh(config.oidc_jwks_refresh, shutdown.clone());
    }
    let backends = Arc::new(backends::Backends::connect(&config)?);
    let limits = Arc::new(limits::RateLimits::new(&config));
    let cors = cors(&config.cors_allowed_origins)?;
    let state = routes::AppState {
        backends,
        catalog: Arc::new(catalog::Catalog::new(config.catalog_ttl)),
        shutdown: shutdown.clone(),
    };
    let app = routes::router(state, verifier, limits, cors);

    // A request waits on no client byte for up to the checkout deadline, so
    // closing idle connections sooner would cut answers off.
    if config.idle_timeout <= config.checkout_timeout {
        return Err(StartError::Config(format!(
            "--gateway-idle-timeout ({:?}) must exceed --gateway-checkout-timeout ({:?})",
            config.idle_timeout, config.checkout_timeout
        )));
    }
    let addr = listener.local_addr()?;
    // `tap_io` does nothing to the connection; axum gives `ConnectInfo` of
    // the peer's address to every listener wrapped so.
    let listener = conn::BoundedListener::new(
        listener,
        config.max_connections as usize,
        config.idle_timeout,
    )
    .tap_io(|_| {});
    tracing::info!(%addr, "REST gateway listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;
    tracing::info!(%addr, "REST gateway stopped");
    Ok(())
}

/// Browsers may call from `origins` (`*`: any) with a bearer token, and read
/// the headers the API documents.
fn cors(origins: &[String]) -> Result<CorsLayer, StartError> {
    let origin = if origins.is_empty() || origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim()).map_err(|_| {
                    StartError::Config(format!("--gateway-cors-allowed-origins: bad origin {o:?}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let header = HeaderName::from_static;
    Ok(CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            header("idempotency-key"),
            header(observe::REQUEST_ID),
        ])
        .expose_headers([
            header(observe::REQUEST_ID),
            http::header::RETRY_AFTER,
            http::header::WWW_AUTHENTICATE,
            http::header::LOCATION,
            header("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(3600)))
}
