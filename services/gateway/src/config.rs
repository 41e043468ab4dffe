//! Settings of the REST gateway (flags, with environment fallbacks).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use storefront_runtime::config::parse_duration;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "gateway-config")]
#[command(next_help_heading = "Gateway")]
pub struct Config {
    /// Address the REST gateway (HTTP) listens on.
    #[arg(
        id = "gateway-listen",
        long = "gateway-listen",
        env = "GATEWAY_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,
    /// gRPC address of the product service.
    #[arg(
        id = "gateway-product-url",
        long = "gateway-product-url",
        env = "GATEWAY_PRODUCT_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub product_url: String,
    /// gRPC address of the cart service.
    #[arg(
        id = "gateway-cart-url",
        long = "gateway-cart-url",
        env = "GATEWAY_CART_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub cart_url: String,
    /// gRPC address of the checkout service.
    #[arg(
        id = "gateway-checkout-url",
        long = "gateway-checkout-url",
        env = "GATEWAY_CHECKOUT_URL",
        default_value = "http://127.0.0.1:50056"
    )]
    pub checkout_url: String,
    /// gRPC address of the orders service.
    #[arg(
        id = "gateway-orders-url",
        long = "gateway-orders-url",
        env = "GATEWAY_ORDERS_URL",
        default_value = "http://127.0.0.1:50055"
    )]
    pub orders_url: String,
    /// Deadline of every backend call except Checkout; a slower answer gives 504.
    #[arg(id = "gateway-backend-timeout", long = "gateway-backend-timeout", env = "GATEWAY_BACKEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub backend_timeout: Duration,
    /// How long an answer of GET /api/v1/products is reused (and browsers and
    /// shared caches may keep it): a catalog change shows within this time.
    /// 0s asks the product service for every request.
    #[arg(id = "gateway-catalog-ttl", long = "gateway-catalog-ttl", env = "GATEWAY_CATALOG_TTL", default_value = "1s", value_parser = parse_duration)]
    pub catalog_ttl: Duration,
    /// Deadline of a Checkout call (the whole saga: reserve, charge, confirm).
    #[arg(id = "gateway-checkout-timeout", long = "gateway-checkout-timeout", env = "GATEWAY_CHECKOUT_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub checkout_timeout: Duration,
    /// HS256 secret that signs user tokens. This and/or --jwt-public-key-file is required.
    #[arg(
        id = "jwt-secret",
        long = "jwt-secret",
        env = "JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA for RS256, or P-256 EC for ES256) that verifies user tokens.
    #[arg(
        id = "jwt-public-key-file",
        long = "jwt-public-key-file",
        env = "JWT_PUBLIC_KEY_FILE"
    )]
    pub jwt_public_key_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    #[arg(id = "jwt-issuer", long = "jwt-issuer", env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    #[arg(id = "jwt-audience", long = "jwt-audience", env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// OpenID Connect issuer (`https://id.example.com/`) whose ID tokens are
    /// accepted: a token whose `iss` is this issuer is verified with the keys
    /// its discovery document publishes (RS256/ES256, chosen by `kid`).
    #[arg(id = "oidc-issuer", long = "oidc-issuer", env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The `aud` the issuer's ID tokens must carry: the web's OIDC client id.
    /// Required with --oidc-issuer.
    #[arg(id = "oidc-audience", long = "oidc-audience", env = "OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// How often the issuer's signing keys are fetched again (a token naming
    /// an unknown key fetches them at once, at most every 10 s).
    #[arg(id = "oidc-jwks-refresh", long = "oidc-jwks-refresh", env = "OIDC_JWKS_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub oidc_jwks_refresh: Duration,
    /// Sustained requests per second of one signed-in user; 0 turns the limit off.
    #[arg(
        id = "gateway-rate-limit-per-user",
        long = "gateway-rate-limit-per-user",
        env = "GATEWAY_RATE_LIMIT_PER_USER",
        default_value_t = 50.0
    )]
    pub rate_limit_per_user: f64,
    /// Requests one signed-in user may make at once before the sustained rate applies.
    #[arg(
        id = "gateway-rate-limit-per-user-burst",
        long = "gateway-rate-limit-per-user-burst",
        env = "GATEWAY_RATE_LIMIT_PER_USER_BURST",
        default_value_t = 100
    )]
    pub rate_limit_per_user_burst: u32,
    /// Sustained requests per second of one client address without a token; 0 turns the limit off.
    #[arg(
        id = "gateway-rate-limit-per-ip",
        long = "gateway-rate-limit-per-ip",
        env = "GATEWAY_RATE_LIMIT_PER_IP",
        default_value_t = 20.0
    )]
    pub rate_limit_per_ip: f64,
    /// Requests one client address without a token may make at once.
    #[arg(
        id = "gateway-rate-limit-per-ip-burst",
        long = "gateway-rate-limit-per-ip-burst",
        env = "GATEWAY_RATE_LIMIT_PER_IP_BURST",
        default_value_t = 40
    )]
    pub rate_limit_per_ip_burst: u32,
    /// Origins browsers may call the API from, comma-separated; `*` allows any.
    #[arg(
        id = "gateway-cors-allowed-origins",
        long = "gateway-cors-allowed-origins",
        env = "GATEWAY_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed, comma-separated addresses or
    /// CIDRs (e.g. an ingress controller's `10.0.0.0/8`). Behind them the client
    /// address of the per-address rate limit is the right-most address of the
    /// header that is not one of them; by default the connection's peer is.
    #[arg(
        id = "gateway-trusted-proxies",
        long = "gateway-trusted-proxies",
        env = "GATEWAY_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trusted_proxies: Vec<IpNet>,
    /// Consecutive backend failures (unavailable, timeout, internal) that open its circuit; 0 never opens.
    #[arg(
        id = "gateway-breaker-failure-threshold",
        long = "gateway-breaker-failure-threshold",
        env = "GATEWAY_BREAKER_FAILURE_THRESHOLD",
        default_value_t = 5
    )]
    pub breaker_failure_threshold: u32,
    /// How long an open circuit answers 503 without calling the backend before it probes again.
    #[arg(id = "gateway-breaker-open-duration", long = "gateway-breaker-open-duration", env = "GATEWAY_BREAKER_OPEN_DURATION", default_value = "10s", value_parser = parse_duration)]
    pub breaker_open_duration: Duration,
    /// Most client connections open at once; more wait in the accept queue.
    #[arg(
        id = "gateway-max-connections",
        long = "gateway-max-connections",
        env = "GATEWAY_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    /// A connection on which no byte moves this long is closed (a request
    /// body that stops arriving too). Must exceed --gateway-checkout-timeout.
    #[arg(id = "gateway-idle-timeout", long = "gateway-idle-timeout", env = "GATEWAY_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
}

/// A network in CIDR form, or one address (a /32 or /128).
fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR like 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_design() {
        let cli = Cli::try_parse_from(["gateway", "--jwt-secret", "s"]);
        let Ok(Cli { config }) = cli else {
            panic!("defaults do not parse: {cli:?}");
        };
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(config.product_url, "http://127.0.0.1:50051");
        assert_eq!(config.cart_url, "http://127.0.0.1:50052");
        assert_eq!(config.checkout_url, "http://127.0.0.1:50056");
        assert_eq!(config.orders_url, "http://127.0.0.1:50055");
        assert_eq!(config.backend_timeout, Duration::from_secs(5));
        assert_eq!(config.checkout_timeout, Duration::from_secs(15));
        assert_eq!(config.cors_allowed_origins, vec!["*".to_owned()]);
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.oidc_issuer, None);
        assert_eq!(config.oidc_jwks_refresh, Duration::from_secs(300));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let parse = |value: &str| {
            Cli::try_parse_from(["gateway", "--gateway-trusted-proxies", value])
                .map(|c| {
                    c.config
                        .trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse("10.0.0.0/8, 192.168.1.7,::1"),
            Ok(vec![
                "10.0.0.0/8".to_owned(),
                "192.168.1.7/32".to_owned(),
                "::1/128".to_owned()
            ])
        );
        let refused = parse("10.0.0.0/33").err().unwrap_or_default();
        assert!(
            refused.contains("`10.0.0.0/33` is neither an IP address nor a CIDR"),
            "{refused}"
        );
        assert!(parse("ingress").is_err());
    }

    #[test]
    fn origins_split_on_commas() {
        let cli = Cli::try_parse_from([
            "gateway",
            "--gateway-cors-allowed-origins",
            "https://a.example,https://b.example",
        ]);
        let origins = cli.map(|c| c.config.cors_allowed_origins).ok();
        assert_eq!(
            origins,
            Some(vec![
                "https://a.example".to_owned(),
                "https://b.example".to_owned()
            ])
        );
    }
}
