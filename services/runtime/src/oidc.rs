//! OpenID Connect, the parts every relying party of the shop shares (the
//! gateway and the web): the provider's discovery document, its signing keys
//! (JWKS) cached by `kid` and refreshed, ID-token verification against them,
//! and PKCE. The keys are refreshed periodically and at once (at most every
//! [`MIN_REFRESH_INTERVAL`]) when a token names a key not yet known; a failed
//! refresh keeps the keys already known, and a provider that cannot be
//! reached is never fatal: tokens are refused until its keys are fetched.

#[cfg(feature = "testing")]
pub mod test_provider;

use std::str::FromStr;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Shutdown;

/// Where a provider publishes its discovery document, under its issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// An unknown `kid` refreshes the keys at most this often (a stream of
/// forged tokens must not turn into a stream of requests to the provider).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Deadline of one request to the provider.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Signature algorithms an RSA key verifies.
pub const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// Signature algorithms an EC key verifies (P-256, P-384).
pub const EC_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];

/// Whether an ID token may be signed with `alg` (never HS*, never `none`).
fn accepted(alg: Algorithm) -> bool {
    RSA_ALGORITHMS.contains(&alg) || EC_ALGORITHMS.contains(&alg)
}

/// What the provider's discovery document says (the fields the shop uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// Why the provider's discovery document or keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the sign-in provider at {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the sign-in provider answered {status} for {url}")]
    Status { url: String, status: u16 },
    #[error("the sign-in provider's {url} is not a valid document: {reason}")]
    Document { url: String, reason: String },
    #[error("the sign-in provider says its issuer is {found}, not {expected}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the sign-in provider's {url} has no RSA or EC (P-256, P-384) signing key")]
    NoKeys { url: String },
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("tokens signed with {0:?} are not accepted")]
    Algorithm(Algorithm),
    #[error("no signing key of the issuer matches the token{}", kid.as_deref().map(|k| format!(" (kid {k})")).unwrap_or_default())]
    UnknownKey { kid: Option<String> },
    #[error("the token has expired")]
    Expired,
    #[error("the signature does not match")]
    Signature,
    #[error("the {0} claim is required")]
    MissingClaim(String),
    #[error("{0}")]
    Claims(String),
}

/// The two spellings of an issuer, with and without a trailing slash: a
/// provider configured as `https://id.example/` is also `https://id.example`
/// to people, and the discovery URL is the same for both.
fn issuer_spellings(issuer: &str) -> [String; 2] {
    let bare = issuer.trim_end_matches('/');
    [bare.to_owned(), format!("{bare}/")]
}

/// Whether `found` names the issuer `configured` (up to a trailing slash).
pub fn same_issuer(configured: &str, found: &str) -> bool {
    !configured.is_empty() && issuer_spellings(configured).iter().any(|s| s == found)
}

/// The discovery document's URL for `issuer`.
pub fn discovery_url(issuer: &str) -> String {
    format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'))
}

async fn get_json<T: DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T, FetchError> {
    let unreachable = |e: reqwest::Error| FetchError::Unreachable {
        url: url.to_owned(),
        reason: error_chain(&e),
    };
    let response = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let body = response.bytes().await.map_err(unreachable)?;
    serde_json::from_slice(&body).map_err(|e| FetchError::Document {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

/// An error and its causes on one line (reqwest's own message omits them).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Discovery {
    /// Fetches `issuer`'s discovery document and checks that it speaks for
    /// that issuer.
    pub async fn fetch(http: &reqwest::Client, issuer: &str) -> Result<Self, FetchError> {
        let discovery: Discovery = get_json(http, &discovery_url(issuer)).await?;
        if !same_issuer(issuer, &discovery.issuer) {
            return Err(FetchError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: discovery.issuer,
            });
        }
        Ok(discovery)
    }
}

/// One verification key of the provider.
#[derive(Clone)]
struct SigningKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The usable signature keys of a JWK set; keys for encryption, of other
/// types or curves, or that do not parse are left out (one odd key must not
/// hide the others).
fn signing_keys(set: &Value) -> Vec<SigningKey> {
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter().filter_map(signing_key).collect()
}

fn signing_key(value: &Value) -> Option<SigningKey> {
    if value
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let declared = match value.get("alg").and_then(Value::as_str) {
        Some(alg) => Some(Algorithm::from_str(alg).ok()?),
        None => None,
    };
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    let algorithms: Vec<Algorithm> = match declared {
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(_) => return None,
        None => family.to_vec(),
    };
    Some(SigningKey {
        kid: jwk.common.key_id.clone(),
        key: DecodingKey::from_jwk(&jwk).ok()?,
        algorithms,
    })
}

/// The claims an ID token must carry for whom.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The issuer (either spelling, with or without a trailing slash).
    pub issuer: &'a str,
    /// The client id the token was issued to.
    pub audience: &'a str,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

/// The signing keys of one provider, shared by every request (cheap to clone).
#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    issuer: String,
    /// Known once the discovery document was fetched.
    jwks_uri: RwLock<Option<String>>,
    keys: RwLock<Vec<SigningKey>>,
    /// When the keys were last fetched (or tried); one fetch at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
    /// Cancelled when the last handle goes: the refresher stops sleeping.
    dropped: Shutdown,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.dropped.cancel();
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<Option<String>> = self
            .inner
            .keys
            .read()
            .map(|keys| keys.iter().map(|k| k.kid.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Jwks")
            .field("issuer", &self.inner.issuer)
            .field("kids", &kids)
            .finish()
    }
}

impl Jwks {
    /// The keys of `issuer`, found through its discovery document when first
    /// needed. Nothing is fetched yet: call [`Jwks::refresh`] or
    /// [`Jwks::spawn_refresh`], or let the first token do it.
    pub fn for_issuer(http: reqwest::Client, issuer: &str) -> Self {
        Self::build(http, issuer, None)
    }

    /// The keys at the `jwks_uri` of a discovery document already fetched.
    pub fn from_discovery(http: reqwest::Client, discovery: &Discovery) -> Self {
        Self::build(http, &discovery.issuer, Some(discovery.jwks_uri.clone()))
    }

    fn build(http: reqwest::Client, issuer: &str, jwks_uri: Option<String>) -> Self {
        Jwks {
            inner: Arc::new(Inner {
                http,
                issuer: issuer.to_owned(),
                jwks_uri: RwLock::new(jwks_uri),
                keys: RwLock::new(Vec::new()),
                last_fetch: tokio::sync::Mutex::new(None),
                min_interval: MIN_REFRESH_INTERVAL,
                dropped: Shutdown::new(),
            }),
        }
    }

    /// The same keys, refreshed on an unknown `kid` at most every `interval`
    /// (tests shorten [`MIN_REFRESH_INTERVAL`]); call it before
    /// cloning the handle.
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        // Only a handle not yet cloned (nor refreshing) can change.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.min_interval = interval;
        }
        self
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The key ids known now.
    pub fn key_ids(&self) -> Vec<String> {
        self.inner
            .keys
            .read()
            .map(|keys| keys.iter().filter_map(|k| k.kid.clone()).collect())
            .unwrap_or_default()
    }

    /// Fetches the keys now (whatever the rate limit) and replaces the known
    /// ones; on failure the known keys stay. Returns how many keys there are.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let mut last = self.inner.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    /// Refreshes unless the last fetch was less than the minimum interval
    /// ago (or another request is fetching: then its result is awaited).
    async fn refresh_rate_limited(&self) {
        let mut last = self.inner.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.inner.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch().await {
            tracing::warn!(issuer = %self.inner.issuer, %error, "refreshing the OIDC signing keys failed; keeping the known keys");
        }
    }

    async fn fetch(&self) -> Result<usize, FetchError> {
        let known = self.inner.jwks_uri.read().ok().and_then(|uri| uri.clone());
        let uri = match known {
            Some(uri) => uri,
            None => {
                let discovery = Discovery::fetch(&self.inner.http, &self.inner.issuer).await?;
                if let Ok(mut slot) = self.inner.jwks_uri.write() {
                    *slot = Some(discovery.jwks_uri.clone());
                }
                discovery.jwks_uri
            }
        };
        let set: Value = get_json(&self.inner.http, &uri).await?;
        let keys = signing_keys(&set);
        if keys.is_empty() {
            return Err(FetchError::NoKeys { url: uri });
        }
        let count = keys.len();
        if let Ok(mut slot) = self.inner.keys.write() {
            *slot = keys;
        }
        tracing::debug!(issuer = %self.inner.issuer, count, "fetched the OIDC signing keys");
        Ok(count)
    }

    /// Fetches the keys now and then every `every` until `shutdown` or until
    /// every clone of these keys is dropped; while fetching fails it retries
    /// every minimum interval instead.
    pub fn spawn_refresh(
        &self,
        every: Duration,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let dropped = self.inner.dropped.clone();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let jwks = Jwks { inner };
                let pause = match jwks.refresh().await {
                    Ok(_) => every,
                    Err(error) => {
                        tracing::warn!(issuer = %jwks.issuer(), %error, "fetching the OIDC signing keys failed; tokens of this issuer are verified with the keys known so far");
                        jwks.inner.min_interval.min(every)
                    }
                };
                drop(jwks);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = dropped.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.inner.keys.read().ok()?;
        let mut fitting = keys.iter().filter(|k| k.algorithms.contains(&alg));
        match kid {
            Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)),
            // Without a `kid`, only a provider with one key of that kind is unambiguous.
            None => fitting
                .next()
                .filter(|_| keys.iter().filter(|k| k.algorithms.contains(&alg)).count() == 1),
        }
        .map(|k| k.key.clone())
    }

    /// The key that verifies a token with this `kid` and `alg`, refreshing the
    /// keys once (rate-limited) when none is known.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, TokenError> {
        if let Some(key) = self.find(kid, alg) {
            return Ok(key);
        }
        self.refresh_rate_limited().await;
        self.find(kid, alg).ok_or_else(|| TokenError::UnknownKey {
            kid: kid.map(str::to_owned),
        })
    }

    /// The claims of `token` once its signature (by one of these keys), `iss`,
    /// `aud`, `exp` (required) and `nbf` are checked.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<T, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !accepted(header.alg) {
            return Err(TokenError::Algorithm(header.alg));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = expected.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&issuer_spellings(expected.issuer));
        validation.set_audience(&[expected.audience]);
        let data =
            jsonwebtoken::decode::<T>(token, &key, &validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
                ErrorKind::InvalidIssuer => {
                    TokenError::Claims(format!("the token was not issued by {}", expected.issuer))
                }
                ErrorKind::InvalidAudience => {
                    TokenError::Claims(format!("the token was not issued to {}", expected.audience))
                }
                _ => TokenError::Claims(e.to_string()),
            })?;
        Ok(data.claims)
    }
}

/// The `iss` claim of a token, read WITHOUT verifying anything: only to
/// choose which keys verify it (the verification checks `iss` again).
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Issuer>(&bytes).ok()?.iss
}

/// 32 random bytes, base64url: a `state`, a `nonce`, a PKCE verifier.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A PKCE (RFC 7636) verifier and its S256 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A fresh random verifier.
    pub fn new() -> Self {
        let verifier = random_token();
        Pkce {
            challenge: pkce_challenge(&verifier),
            verifier,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// `BASE64URL(SHA256(verifier))`, the S256 `code_challenge`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests;
