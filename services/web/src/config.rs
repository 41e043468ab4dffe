//! Settings of the web storefront (flags, with environment fallbacks).

use std::net::SocketAddr;
use std::time::Duration;

use storefront_runtime::config::parse_duration;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "web-config")]
#[command(next_help_heading = "Web")]
pub struct Config {
    /// Address the web storefront (HTTP) listens on.
    #[arg(
        id = "web-listen",
        long = "web-listen",
        env = "WEB_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub listen: SocketAddr,
    /// The REST gateway the pages are built from.
    #[arg(
        id = "web-gateway-url",
        long = "web-gateway-url",
        env = "WEB_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway_url: String,
    /// The shop's URL as browsers see it (`https://shop.example.com`): the
    /// OpenID Connect redirect is `<url>/auth/callback`, and an `https` URL
    /// makes the cookies `Secure`. Without it, the request's Host is used.
    #[arg(id = "web-public-url", long = "web-public-url", env = "WEB_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The development sign-in: anyone types a name and gets a session (a
    /// token signed with --web-jwt-secret). For trying the shop, never for
    /// real customers.
    #[arg(
        id = "web-dev-sign-in",
        long = "web-dev-sign-in",
        env = "WEB_DEV_SIGN_IN",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        overrides_with = "web-dev-sign-in"
    )]
    pub dev_sign_in: bool,
    /// HS256 secret the development sign-in signs tokens with: the gateway's
    /// --jwt-secret. Required with --web-dev-sign-in.
    #[arg(
        id = "web-jwt-secret",
        long = "web-jwt-secret",
        env = "JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// How long a development sign-in lasts.
    #[arg(id = "web-session-ttl", long = "web-session-ttl", env = "WEB_SESSION_TTL", default_value = "1h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// Key (at least 32 bytes) that signs the session and sign-in cookies.
    /// Random at start when unset: then sessions end when the process does,
    /// and replicas do not share them, so set it when there are several.
    #[arg(
        id = "web-session-key",
        long = "web-session-key",
        env = "WEB_SESSION_KEY",
        hide_env_values = true
    )]
    pub session_key: Option<String>,
    /// OpenID Connect issuer (discovery at `<issuer>/.well-known/openid-configuration`);
    /// enables "Sign in with …" (authorization code with PKCE).
    #[arg(
        id = "web-oidc-issuer",
        long = "web-oidc-issuer",
        env = "WEB_OIDC_ISSUER"
    )]
    pub oidc_issuer: Option<String>,
    /// The shop's client id at the issuer (the gateway's --oidc-audience).
    #[arg(
        id = "web-oidc-client-id",
        long = "web-oidc-client-id",
        env = "WEB_OIDC_CLIENT_ID"
    )]
    pub oidc_client_id: Option<String>,
    /// The client's secret (a confidential client); without it the shop
    /// signs in as a public client with PKCE only.
    #[arg(
        id = "web-oidc-client-secret",
        long = "web-oidc-client-secret",
        env = "WEB_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oidc_client_secret: Option<String>,
    /// Scopes asked for at sign-in.
    #[arg(
        id = "web-oidc-scopes",
        long = "web-oidc-scopes",
        env = "WEB_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub oidc_scopes: String,
    /// The provider's name on the sign-in button ("Sign in with …").
    #[arg(
        id = "web-oidc-provider-name",
        long = "web-oidc-provider-name",
        env = "WEB_OIDC_PROVIDER_NAME",
        default_value = "your account"
    )]
    pub oidc_provider_name: String,
    /// How long the anonymous catalog (GET /api/v1/products) is reused
    /// before it is asked for again; 0s asks every time.
    #[arg(id = "web-catalog-ttl", long = "web-catalog-ttl", env = "WEB_CATALOG_TTL", default_value = "2s", value_parser = parse_duration)]
    pub catalog_ttl: Duration,
    /// Deadline of a gateway call, except a checkout's.
    #[arg(id = "web-backend-timeout", long = "web-backend-timeout", env = "WEB_BACKEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub backend_timeout: Duration,
    /// Deadline of a checkout (longer than the gateway's own checkout deadline).
    #[arg(id = "web-checkout-timeout", long = "web-checkout-timeout", env = "WEB_CHECKOUT_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub checkout_timeout: Duration,
}
