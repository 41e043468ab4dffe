//! Who is calling: `Authorization: Bearer <JWT>` verified with the HS256
//! secret and/or the RS256/ES256 public key, or — for tokens of the OpenID
//! issuer — with the issuer's published keys; the caller's user id and
//! roles; and [`token`], which mints HS256 tokens for development and tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Request};
use http::header::AUTHORIZATION;
use http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storefront_runtime::StartError;
use storefront_runtime::oidc::{self, Expected, Jwks};

use crate::config::Config;
use crate::problem::ApiError;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// A shorter HS256 secret is accepted, with a warning.
const MIN_SECRET_BYTES: usize = 32;

/// A user id: the token's `sub` (or numeric `user_id`), checked by the rule
/// every service behind the gateway applies.
pub use storefront_runtime::UserId;

/// A signed-in caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub admin: bool,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this route needs an `Authorization: Bearer <token>` header")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Expired => "token_expired",
            AuthError::NotBearer | AuthError::Invalid(_) => "invalid_token",
        }
    }
}

/// The claims the gateway reads; anything else in the token is ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    user_id: Option<Value>,
    #[serde(default)]
    roles: Vec<String>,
}

impl Claims {
    fn caller(self) -> Result<Caller, AuthError> {
        let id = match (self.sub.filter(|s| !s.is_empty()), self.user_id) {
            (Some(sub), _) => sub,
            (None, Some(Value::Number(n))) if n.is_u64() || n.is_i64() => n.to_string(),
            (None, Some(_)) => {
                return Err(AuthError::Invalid(
                    "the user_id claim must be a number".to_owned(),
                ));
            }
            (None, None) => {
                return Err(AuthError::Invalid(
                    "the token names no user (sub or user_id)".to_owned(),
                ));
            }
        };
        let user = UserId::parse("sub", &id).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let admin = self.roles.iter().any(|role| role == "admin");
        Ok(Caller { user, admin })
    }
}

/// A public key and the algorithms it verifies.
struct PublicKey {
    key: DecodingKey,
    algorithms: &'static [Algorithm],
}

/// The OpenID issuer whose ID tokens are accepted, and its keys.
struct OidcIssuer {
    issuer: String,
    audience: String,
    jwks: Jwks,
}

/// Verifies bearer tokens against the configured keys.
pub struct Verifier {
    secret: Option<DecodingKey>,
    public: Option<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    oidc: Option<OidcIssuer>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.secret.is_some())
            .field("public_key", &self.public.as_ref().map(|p| p.algorithms))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("oidc_issuer", &self.oidc.as_ref().map(|o| &o.issuer))
            .finish()
    }
}

impl Verifier {
    /// From `--jwt-secret` and/or `--jwt-public-key-file`; neither is a start-up error.
    pub fn new(config: &Config) -> Result<Self, StartError> {
        let secret = config.jwt_secret.as_deref().filter(|s| !s.is_empty());
        if let Some(secret) = secret
            && secret.len() < MIN_SECRET_BYTES
        {
            tracing::warn!(
                "JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes; use a long random secret outside development"
            );
        }
        let public = match &config.jwt_public_key_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    StartError::Config(format!("--jwt-public-key-file {}: {e}", path.display()))
                })?;
                Some(public_key(&pem).map_err(|e| {
                    StartError::Config(format!("--jwt-public-key-file {}: {e}", path.display()))
                })?)
            }
            None => None,
        };
        let oidc = oidc_issuer(config)?;
        if secret.is_none() && public.is_none() && oidc.is_none() {
            return Err(StartError::Config(
                "the gateway needs a key to verify tokens: set --jwt-secret (JWT_SECRET) \
                 and/or --jwt-public-key-file (JWT_PUBLIC_KEY_FILE) and/or --oidc-issuer (OIDC_ISSUER)"
                    .to_owned(),
            ));
        }
        Ok(Verifier {
            secret: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            public,
            issuer: config.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: config.jwt_audience.clone().filter(|s| !s.is_empty()),
            oidc,
        })
    }

    /// The OpenID issuer's keys, to be refreshed in the background.
    pub fn oidc_keys(&self) -> Option<&Jwks> {
        self.oidc.as_ref().map(|o| &o.jwks)
    }

    /// The caller a token speaks for. A token whose (unverified) `iss` names
    /// the OpenID issuer is verified with the issuer's keys — and its `iss`,
    /// `aud` and `exp` checked; any other with the configured secret or key.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if let Some(oidc) = &self.oidc
            && oidc::unverified_issuer(token)
                .is_some_and(|iss| oidc::same_issuer(&oidc.issuer, &iss))
        {
            let expected = Expected {
                issuer: &oidc.issuer,
                audience: &oidc.audience,
                leeway: LEEWAY_SECS,
            };
            let claims: Claims = oidc
                .jwks
                .verify(token, &expected)
                .await
                .map_err(|e| match e {
                    oidc::TokenError::Expired => AuthError::Expired,
                    other => AuthError::Invalid(other.to_string()),
                })?;
            return claims.caller();
        }
        self.verify_configured(token)
    }

    /// The caller a token signed with the configured secret or public key
    /// speaks for. Unsigned (`alg: none`) tokens, unknown algorithms, bad
    /// signatures, and tokens without `exp` are all refused.
    fn verify_configured(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref(),
            alg => self
                .public
                .as_ref()
                .filter(|public| public.algorithms.contains(&alg))
                .map(|public| &public.key),
        }
        .ok_or_else(|| {
            AuthError::Invalid(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            ))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => {
                AuthError::Invalid("the signature does not match".to_owned())
            }
            ErrorKind::MissingRequiredClaim(claim) => {
                AuthError::Invalid(format!("the {claim} claim is required"))
            }
            _ => AuthError::Invalid(e.to_string()),
        })?;
        data.claims.caller()
    }
}

/// `--oidc-issuer` with its audience (required: without it any client's
/// ID token of that issuer would do). Its keys are fetched later.
fn oidc_issuer(config: &Config) -> Result<Option<OidcIssuer>, StartError> {
    let Some(issuer) = config.oidc_issuer.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let audience = config
        .oidc_audience
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            StartError::Config(
                "--oidc-issuer needs --oidc-audience (OIDC_AUDIENCE): the client id its ID tokens are issued to"
                    .to_owned(),
            )
        })?;
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| StartError::Config(format!("--oidc-issuer: HTTP client: {e}")))?;
    Ok(Some(OidcIssuer {
        issuer: issuer.to_owned(),
        audience,
        jwks: Jwks::for_issuer(http, issuer),
    }))
}

/// An RSA key verifies RS256 (and its RSA siblings); an EC key ES256/ES384.
fn public_key(pem: &[u8]) -> Result<PublicKey, String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(PublicKey {
            key,
            algorithms: oidc::RSA_ALGORITHMS,
        });
    }
    DecodingKey::from_ec_pem(pem)
        .map(|key| PublicKey {
            key,
            algorithms: oidc::EC_ALGORITHMS,
        })
        .map_err(|_| "not a PEM RSA or EC public key".to_owned())
}

/// What the request middleware learnt from the Authorization header.
#[derive(Debug, Clone)]
pub enum Identity {
    Anonymous,
    Caller(Caller),
    Refused(AuthError),
}

/// Reads the Authorization header once per request and records the
/// [`Identity`]; routes decide whether they need a caller.
pub async fn identify(verifier: &Verifier, request: &mut Request) {
    let identity = match request.headers().get(AUTHORIZATION) {
        None => Identity::Anonymous,
        Some(value) => match bearer(value) {
            Ok(token) => match verifier.verify(token).await {
                Ok(caller) => Identity::Caller(caller),
                Err(error) => Identity::Refused(error),
            },
            Err(error) => Identity::Refused(error),
        },
    };
    if let Identity::Refused(error) = &identity {
        tracing::debug!(%error, "token refused");
    }
    request.extensions_mut().insert(identity);
}

fn bearer(value: &http::HeaderValue) -> Result<&str, AuthError> {
    let text = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Identity>() {
            Some(Identity::Caller(caller)) => Ok(caller.clone()),
            Some(Identity::Refused(error)) => Err(error.clone().into()),
            Some(Identity::Anonymous) | None => Err(AuthError::Missing.into()),
        }
    }
}

/// A caller with the `admin` role.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.admin {
            Ok(Admin(caller))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Why [`token`] could not mint a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the secret must not be empty")]
    EmptySecret,
    #[error("--user: {0}")]
    User(String),
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

#[derive(Debug, Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<&'static str>,
}

/// An HS256 token for `user` valid for `ttl`, with `roles: ["admin"]` when
/// `admin` (what `storefront token --user ID [--admin]` prints).
pub fn token(secret: &str, user: &str, admin: bool, ttl: Duration) -> Result<String, TokenError> {
    if secret.is_empty() {
        return Err(TokenError::EmptySecret);
    }
    let user = UserId::parse("user", user).map_err(|e| TokenError::User(e.message))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let claims = MintedClaims {
        sub: user.as_str(),
        iat: now,
        exp: now.saturating_add(ttl.as_secs().max(1)),
        roles: if admin { vec!["admin"] } else { Vec::new() },
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

    fn verifier() -> Verifier {
        Verifier {
            secret: Some(DecodingKey::from_secret(SECRET.as_bytes())),
            public: None,
            issuer: None,
            audience: None,
            oidc: None,
        }
    }

    fn sign(claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap_or_default()
    }

    fn in_an_hour() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600
    }

    #[test]
    fn a_sub_that_no_service_would_accept_is_an_invalid_token() {
        let exp = in_an_hour();
        let long = verifier().verify_configured(&sign(
            &serde_json::json!({"sub": "a".repeat(129), "exp": exp}),
        ));
        assert_eq!(
            long.map_err(|e| e.to_string()),
            Err("the token is not valid: sub: must be at most 128 bytes, got 129".to_owned())
        );
        let padded =
            verifier().verify_configured(&sign(&serde_json::json!({"sub": " alice", "exp": exp})));
        assert_eq!(padded.map_err(|e| e.code()), Err("invalid_token"));
    }

    #[test]
    fn minted_tokens_verify() {
        let minted = token(SECRET, "alice", true, Duration::from_secs(60));
        let caller = minted
            .map_err(|e| e.to_string())
            .and_then(|t| verifier().verify_configured(&t).map_err(|e| e.to_string()));
        assert_eq!(
            caller.map(|c| (c.user.as_str().to_owned(), c.admin)),
            Ok(("alice".to_owned(), true))
        );
        let plain = token(SECRET, "bob", false, Duration::from_secs(60))
            .map_err(|e| e.to_string())
            .and_then(|t| verifier().verify_configured(&t).map_err(|e| e.to_string()));
        assert_eq!(plain.map(|c| c.admin), Ok(false));
        assert!(token("", "bob", false, Duration::from_secs(60)).is_err());
        assert!(token(SECRET, "", false, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn user_id_falls_back_to_a_numeric_claim() {
        let exp = in_an_hour();
        let numeric =
            verifier().verify_configured(&sign(&serde_json::json!({"user_id": 42, "exp": exp})));
        assert_eq!(
            numeric.map(|c| c.user.as_str().to_owned()),
            Ok("42".to_owned())
        );
        let text =
            verifier().verify_configured(&sign(&serde_json::json!({"user_id": "42", "exp": exp})));
        assert_eq!(text.map_err(|e| e.code()), Err("invalid_token"));
        let nobody = verifier().verify_configured(&sign(&serde_json::json!({"exp": exp})));
        assert_eq!(nobody.map_err(|e| e.code()), Err("invalid_token"));
    }

    #[test]
    fn exp_is_required_and_checked() {
        let missing = verifier().verify_configured(&sign(&serde_json::json!({"sub": "a"})));
        assert_eq!(missing.map_err(|e| e.code()), Err("invalid_token"));
        let expired = verifier().verify_configured(&sign(
            &serde_json::json!({"sub": "a", "exp": 1_000_000_000}),
        ));
        assert_eq!(expired, Err(AuthError::Expired));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let mut strict = verifier();
        strict.issuer = Some("storefront".into());
        strict.audience = Some("shop".into());
        let exp = in_an_hour();
        let good =
            sign(&serde_json::json!({"sub": "a", "exp": exp, "iss": "storefront", "aud": "shop"}));
        assert!(strict.verify_configured(&good).is_ok());
        let wrong =
            sign(&serde_json::json!({"sub": "a", "exp": exp, "iss": "evil", "aud": "shop"}));
        assert!(strict.verify_configured(&wrong).is_err());
        let none = sign(&serde_json::json!({"sub": "a", "exp": exp}));
        assert!(strict.verify_configured(&none).is_err());
        // Without an audience configured, a token that has one is still fine.
        let with_aud = sign(&serde_json::json!({"sub": "a", "exp": exp, "aud": "x"}));
        assert!(verifier().verify_configured(&with_aud).is_ok());
    }

    #[test]
    fn authorization_must_be_bearer() {
        let value = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(bearer(&value("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&value("bearer abc")), Ok("abc"));
        assert_eq!(bearer(&value("Basic abc")), Err(AuthError::NotBearer));
        assert_eq!(bearer(&value("Bearer ")), Err(AuthError::NotBearer));
        assert_eq!(bearer(&value("abc")), Err(AuthError::NotBearer));
    }
}
