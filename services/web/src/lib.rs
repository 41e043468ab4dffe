//! The web storefront: the shop a person opens in a browser. Server-rendered
//! pages (askama templates compiled into the binary) built from the REST
//! gateway's answers, so what a visitor may see and do is exactly what the
//! API allows them; forms that work without JavaScript, each protected
//! against cross-site requests; a development sign-in and OpenID Connect.

mod api;
mod assets;
mod config;
mod guard;
mod money;
mod oidc;
mod pages;
mod session;

pub use config::Config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use storefront_runtime::{Shutdown, StartError};
use tokio::net::TcpListener;

use crate::session::{CookieKey, CookiePolicy};

/// What every page handler shares.
pub(crate) struct Shop {
    gateway: api::Gateway,
    cookies: CookieKey,
    policy: CookiePolicy,
    dev_sign_in: Option<DevSignIn>,
    oidc: Option<OidcSignIn>,
    public_url: Option<String>,
    /// The Content-Security-Policy of every answer, made once at start.
    csp: http::HeaderValue,
}

/// The development sign-in: tokens the shop signs itself (HS256, the
/// gateway's secret).
pub(crate) struct DevSignIn {
    secret: String,
    ttl: Duration,
}

/// Sign-in at an OpenID provider.
pub(crate) struct OidcSignIn {
    client: oidc::OidcClient,
    provider_name: String,
}

type AppState = Arc<Shop>;

/// How often the OpenID provider's signing keys are fetched again.
const OIDC_KEYS_REFRESH: Duration = Duration::from_secs(300);

/// Checks the configuration, then serves the shop on `listener` until
/// `shutdown`, letting in-flight requests finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let shop = Arc::new(Shop::new(&config).await?);
    if let Some(oidc) = &shop.oidc {
        // The provider's keys are also fetched at once when a token names
        // one not seen yet; this keeps them fresh between rotations.
        let _refresh = oidc
            .client
            .keys()
            .spawn_refresh(OIDC_KEYS_REFRESH, shutdown.clone());
    }
    let app = router(shop);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "web storefront listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;
    tracing::info!(%addr, "web storefront stopped");
    Ok(())
}

impl Shop {
    async fn new(config: &Config) -> Result<Shop, StartError> {
        let gateway = api::Gateway::new(
            &config.gateway_url,
            config.backend_timeout,
            config.checkout_timeout,
            config.catalog_ttl,
        )
        .map_err(|e| StartError::Config(format!("--web-gateway-url: {e}")))?;
        let dev_sign_in = if config.dev_sign_in {
            let secret = config
                .jwt_secret
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    StartError::Config(
                    "--web-dev-sign-in needs --web-jwt-secret (JWT_SECRET), the gateway's secret"
                        .to_owned(),
                )
                })?;
            Some(DevSignIn {
                secret,
                ttl: config.session_ttl,
            })
        } else {
            None
        };
        let public_url = config
            .public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(StartError::Config(format!(
                "--web-public-url must be an http(s) URL, got {url:?}"
            )));
        }
        let oidc = match &config.oidc_issuer {
            None => None,
            Some(issuer) => {
                let client_id = config.oidc_client_id.clone().ok_or_else(|| {
                    StartError::Config("--web-oidc-issuer needs --web-oidc-client-id".to_owned())
                })?;
                if public_url.is_none() {
                    return Err(StartError::Config(
                        "--web-oidc-issuer needs --web-public-url (the redirect URI is built from it)"
                            .to_owned(),
                    ));
                }
                let settings = oidc::OidcSettings {
                    issuer: issuer.clone(),
                    client_id,
                    client_secret: config.oidc_client_secret.clone(),
                    scopes: config.oidc_scopes.clone(),
                };
                let client = oidc::OidcClient::discover(settings, reqwest::Client::new())
                    .await
                    .map_err(|e| StartError::Config(format!("--web-oidc-issuer: {e}")))?;
                Some(OidcSignIn {
                    client,
                    provider_name: config.oidc_provider_name.clone(),
                })
            }
        };
        let form_action = match &oidc {
            Some(oidc) => format!("'self' {}", oidc.client.issuer_origin()),
            None => "'self'".to_owned(),
        };
        let csp = format!(
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
             form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        );
        // Never serve a page without its policy: a value that cannot be a
        // header (an odd issuer URL) stops the start instead.
        let csp = http::HeaderValue::from_str(&csp).map_err(|_| {
            StartError::Config(format!(
                "the Content-Security-Policy is not a header value: {csp:?}"
            ))
        })?;
        Ok(Shop {
            gateway,
            cookies: CookieKey::new(config.session_key.as_deref())?,
            policy: CookiePolicy {
                secure: public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://")),
            },
            dev_sign_in,
            oidc,
            public_url,
            csp,
        })
    }
}

fn router(shop: AppState) -> Router {
    use pages::{cart, catalog, checkout, orders, sign_in};
    Router::new()
        .route("/", get(catalog::catalog))
        .route("/products/{id}", get(catalog::product))
        .route("/cart", get(cart::show))
        .route("/cart/items", post(cart::add))
        .route("/cart/items/{product_id}", post(cart::update))
        .route("/cart/items/{product_id}/remove", post(cart::remove))
        .route("/checkout", get(checkout::form).post(checkout::place))
        .route("/checkout/{id}", get(checkout::confirmation))
        .route("/orders", get(orders::list))
        .route("/orders/lookup", get(orders::lookup))
        .route("/orders/{id}", get(orders::detail))
        .route("/orders/{id}/status", post(orders::set_status))
        .route("/sign-in", get(sign_in::page))
        .route("/sign-in/dev", post(sign_in::dev))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/auth/login", get(sign_in::oidc_login))
        .route("/auth/callback", get(sign_in::oidc_callback))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(pages::ready))
        .merge(assets::routes())
        .fallback(pages::not_found)
        .layer(from_fn_with_state(shop.clone(), guard::forms))
        .layer(from_fn_with_state(shop.clone(), guard::headers))
        .layer(from_fn(guard::observe))
        .with_state(shop)
}
