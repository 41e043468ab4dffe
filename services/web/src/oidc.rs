//! Signing in with an OpenID provider: the web as a relying party of the
//! authorization code flow with PKCE (S256), `state` and `nonce`. The
//! provider's discovery document, its keys and the ID token's verification
//! are `storefront_runtime::oidc`'s; this module builds the authorize URL,
//! exchanges the code, and checks that the answer belongs to this sign-in.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use storefront_runtime::oidc::{self, Discovery, Expected, FetchError, Jwks, Pkce, TokenError};

/// Clock skew tolerated on the ID token's `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Deadline of the code exchange.
const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The provider and this shop's client registration with it.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client, protected by PKCE alone.
    pub client_secret: Option<String>,
    /// Space-separated; `openid` is added when missing.
    pub scopes: String,
}

/// What the browser must bring back to finish a sign-in: kept in a signed,
/// short-lived cookie between `/auth/login` and `/auth/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where to go once signed in (a path of this shop).
    pub next: String,
}

/// A completed sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The verified ID token: what the gateway is sent.
    pub id_token: String,
    pub subject: String,
    /// `name`, else `preferred_username`, else `email`, else the subject.
    pub name: String,
    /// The ID token's `exp` (unix seconds).
    pub expires_at: u64,
    /// The token's `roles` claim names `admin` (as the gateway reads it).
    pub admin: bool,
}

/// Why a sign-in could not start or finish, in words a page can show (the
/// technical cause is the error's source, for the logs).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("The sign-in service could not be reached. Please try again in a moment.")]
    Unreachable(#[source] FetchError),
    #[error("The sign-in service is not set up for this shop: {0}.")]
    Unsupported(String),
    #[error(
        "This sign-in does not match the one your browser started (it may have been started in another tab). Please sign in again."
    )]
    StateMismatch,
    #[error("The sign-in was not completed: {0}")]
    Provider(String),
    #[error("The sign-in service could not be reached to finish signing in. Please try again.")]
    TokenUnreachable(#[source] reqwest::Error),
    #[error("The sign-in service refused to finish the sign-in: {0}")]
    TokenRefused(String),
    #[error("The sign-in service's answer could not be verified. Please sign in again.")]
    InvalidToken(#[source] TokenError),
    #[error("The sign-in answer was meant for another sign-in. Please sign in again.")]
    NonceMismatch,
}

impl OidcError {
    /// The error a provider sent back to the callback (`error`,
    /// `error_description`), e.g. when the person declined.
    pub fn from_callback(error: &str, description: Option<&str>) -> OidcError {
        let reason = match error {
            "access_denied" => "access was denied".to_owned(),
            "login_required" | "interaction_required" => "you need to sign in".to_owned(),
            other => description
                .filter(|d| !d.trim().is_empty())
                .map_or_else(|| other.replace('_', " "), str::to_owned),
        };
        OidcError::Provider(reason)
    }
}

/// How the client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
    /// A public client: `client_id` only, PKCE protects the code.
    None,
}

/// The web's client of one OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcClient {
    discovery: Discovery,
    authorize: Url,
    client_id: String,
    client_secret: Option<String>,
    auth: ClientAuth,
    scopes: String,
    jwks: Jwks,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenErrorResponse {
    error: String,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    exp: u64,
    nonce: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

impl OidcClient {
    /// Reads the provider's discovery document and fetches its keys (keys
    /// that cannot be fetched now are fetched when a token needs them).
    pub async fn discover(
        settings: OidcSettings,
        http: reqwest::Client,
    ) -> Result<OidcClient, OidcError> {
        let discovery = Discovery::fetch(&http, &settings.issuer)
            .await
            .map_err(OidcError::Unreachable)?;
        let client = Self::from_discovery(settings, http, discovery)?;
        if let Err(error) = client.jwks.refresh().await {
            tracing::warn!(%error, "the OIDC provider's keys could not be fetched yet");
        }
        Ok(client)
    }

    fn from_discovery(
        settings: OidcSettings,
        http: reqwest::Client,
        discovery: Discovery,
    ) -> Result<OidcClient, OidcError> {
        let authorize = Url::parse(&discovery.authorization_endpoint).map_err(|e| {
            OidcError::Unsupported(format!(
                "its authorization endpoint {:?} is not a URL ({e})",
                discovery.authorization_endpoint
            ))
        })?;
        let methods = &discovery.code_challenge_methods_supported;
        if !methods.is_empty() && !methods.iter().any(|m| m == "S256") {
            return Err(OidcError::Unsupported(
                "it does not offer PKCE with S256".to_owned(),
            ));
        }
        let client_secret = settings.client_secret.filter(|s| !s.is_empty());
        let offered = &discovery.token_endpoint_auth_methods_supported;
        let offers = |method: &str| offered.iter().any(|m| m == method);
        let auth = match &client_secret {
            None => ClientAuth::None,
            // Basic is the default when the provider names no method (RFC 8414).
            Some(_) if offered.is_empty() || offers("client_secret_basic") => ClientAuth::Basic,
            Some(_) if offers("client_secret_post") => ClientAuth::Post,
            Some(_) => {
                return Err(OidcError::Unsupported(format!(
                    "it accepts a client secret neither by HTTP Basic nor in the form (it offers {})",
                    offered.join(", ")
                )));
            }
        };
        let mut scopes: Vec<&str> = settings.scopes.split_whitespace().collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        Ok(OidcClient {
            jwks: Jwks::from_discovery(http.clone(), &discovery),
            authorize,
            client_id: settings.client_id,
            client_secret,
            auth,
            scopes: scopes.join(" "),
            discovery,
            http,
        })
    }

    /// The provider's signing keys (e.g. to refresh them in the background
    /// with [`Jwks::spawn_refresh`]).
    pub fn keys(&self) -> &Jwks {
        &self.jwks
    }

    /// The provider's authorize URL for a new sign-in, and what the browser
    /// must bring back to finish it.
    pub fn begin(&self, redirect_uri: &str, next: &str) -> (String, PendingLogin) {
        let pkce = Pkce::new();
        let pending = PendingLogin {
            state: oidc::random_token(),
            nonce: oidc::random_token(),
            verifier: pkce.verifier,
            next: next.to_owned(),
        };
        let mut url = self.authorize.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.scopes)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        (url.into(), pending)
    }

    /// Finishes the sign-in the browser came back from: checks `state`,
    /// exchanges `code` (with the PKCE verifier), and verifies the ID token
    /// (signature, `iss`, `aud`, `exp`, and the `nonce` of this sign-in).
    pub async fn complete(
        &self,
        pending: &PendingLogin,
        code: &str,
        state: &str,
        redirect_uri: &str,
    ) -> Result<SignedIn, OidcError> {
        if state.is_empty() || state != pending.state {
            return Err(OidcError::StateMismatch);
        }
        let id_token = self.exchange(code, &pending.verifier, redirect_uri).await?;
        let expected = Expected {
            issuer: &self.discovery.issuer,
            audience: &self.client_id,
            leeway: LEEWAY_SECS,
        };
        let claims: IdClaims = self
            .jwks
            .verify(&id_token, &expected)
            .await
            .map_err(OidcError::InvalidToken)?;
        if claims.nonce.as_deref() != Some(pending.nonce.as_str()) {
            return Err(OidcError::NonceMismatch);
        }
        let name = [claims.name, claims.preferred_username, claims.email]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty())
            .unwrap_or_else(|| claims.sub.clone());
        Ok(SignedIn {
            id_token,
            subject: claims.sub,
            name,
            expires_at: claims.exp,
            admin: claims.roles.iter().any(|role| role == "admin"),
        })
    }

    /// The ID token the token endpoint gives for `code`.
    async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let mut request = self
            .http
            .post(&self.discovery.token_endpoint)
            .header(http::header::ACCEPT, "application/json")
            .timeout(TOKEN_TIMEOUT);
        match (self.auth, &self.client_secret) {
            (ClientAuth::Basic, Some(secret)) => {
                request = request.basic_auth(&self.client_id, Some(secret));
            }
            (ClientAuth::Post, Some(secret)) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret));
            }
            _ => form.push(("client_id", &self.client_id)),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(OidcError::TokenUnreachable)?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(OidcError::TokenUnreachable)?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<TokenErrorResponse>(&body).map_or_else(
                |_| format!("it answered {status}"),
                |e| e.error_description.unwrap_or(e.error),
            );
            return Err(OidcError::TokenRefused(reason));
        }
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(|t| t.id_token)
            .ok_or_else(|| OidcError::TokenRefused("it sent no ID token".to_owned()))
    }

    /// Where to send the browser to sign out at the provider too, when it
    /// has an `end_session_endpoint`.
    pub fn logout_url(&self, id_token: &str, post_logout_redirect_uri: &str) -> Option<String> {
        let mut url = Url::parse(self.discovery.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("client_id", &self.client_id);
        Some(url.into())
    }

    /// `scheme://host[:port]` of the issuer, for the CSP's `form-action`.
    pub fn issuer_origin(&self) -> String {
        Url::parse(&self.discovery.issuer)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn discovery(methods: &[&str]) -> Discovery {
        Discovery {
            issuer: "https://id.example.com/realms/shop/".into(),
            authorization_endpoint: "https://id.example.com/auth?ui=dark".into(),
            token_endpoint: "https://id.example.com/token".into(),
            jwks_uri: "https://id.example.com/keys".into(),
            end_session_endpoint: Some("https://id.example.com/logout".into()),
            token_endpoint_auth_methods_supported: methods
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
            code_challenge_methods_supported: vec!["plain".into(), "S256".into()],
        }
    }

    fn settings(secret: Option<&str>) -> OidcSettings {
        OidcSettings {
            issuer: "https://id.example.com/realms/shop/".into(),
            client_id: "shop web".into(),
            client_secret: secret.map(str::to_owned),
            scopes: "profile email".into(),
        }
    }

    fn client(secret: Option<&str>, methods: &[&str]) -> Result<OidcClient, OidcError> {
        OidcClient::from_discovery(settings(secret), reqwest::Client::new(), discovery(methods))
    }

    #[test]
    fn begin_builds_a_code_flow_with_pkce() {
        let client = client(Some("s"), &[]).unwrap();
        let (url, pending) = client.begin("https://shop.example.com/auth/callback", "/cart");
        let url = Url::parse(&url).unwrap();
        assert_eq!(url.path(), "/auth");
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(query["ui"], "dark", "the endpoint's own query stays");
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "shop web");
        assert_eq!(
            query["redirect_uri"],
            "https://shop.example.com/auth/callback"
        );
        assert_eq!(query["scope"], "openid profile email");
        assert_eq!(query["state"], pending.state);
        assert_eq!(query["nonce"], pending.nonce);
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(
            query["code_challenge"],
            oidc::pkce_challenge(&pending.verifier)
        );
        assert_eq!(pending.next, "/cart");
        let (_, again) = client.begin("https://shop.example.com/auth/callback", "/");
        assert_ne!(again.state, pending.state);
        assert_ne!(again.nonce, pending.nonce);
        assert_ne!(again.verifier, pending.verifier);
    }

    #[test]
    fn the_client_authenticates_as_the_provider_offers() {
        let auth = |secret, methods: &[&str]| client(secret, methods).map(|c| c.auth);
        assert_eq!(auth(Some("s"), &[]).ok(), Some(ClientAuth::Basic));
        assert_eq!(
            auth(Some("s"), &["client_secret_post", "client_secret_basic"]).ok(),
            Some(ClientAuth::Basic)
        );
        assert_eq!(
            auth(Some("s"), &["client_secret_post"]).ok(),
            Some(ClientAuth::Post)
        );
        assert_eq!(
            auth(Some(""), &["client_secret_post"]).ok(),
            Some(ClientAuth::None)
        );
        assert_eq!(auth(None, &["none"]).ok(), Some(ClientAuth::None));
        let refused = auth(Some("s"), &["private_key_jwt"]).unwrap_err();
        assert!(
            refused.to_string().contains("neither by HTTP Basic"),
            "{refused}"
        );

        let mut plain_only = discovery(&[]);
        plain_only.code_challenge_methods_supported = vec!["plain".into()];
        let refused =
            OidcClient::from_discovery(settings(None), reqwest::Client::new(), plain_only)
                .unwrap_err();
        assert!(refused.to_string().contains("PKCE"), "{refused}");
    }

    #[tokio::test]
    async fn a_foreign_state_is_refused_before_anything_is_sent() {
        let client = client(Some("s"), &[]).unwrap();
        let (_, pending) = client.begin("https://shop.example.com/auth/callback", "/");
        let outcome = client
            .complete(
                &pending,
                "code",
                "another-state",
                "https://shop.example.com/auth/callback",
            )
            .await;
        assert!(matches!(outcome, Err(OidcError::StateMismatch)));
        let outcome = client.complete(&pending, "code", "", "x").await;
        assert!(matches!(outcome, Err(OidcError::StateMismatch)));
    }

    #[test]
    fn logout_and_origin() {
        let client = client(None, &[]).unwrap();
        let url = client
            .logout_url("the.id.token", "https://shop.example.com/")
            .unwrap();
        assert_eq!(
            url,
            "https://id.example.com/logout?id_token_hint=the.id.token&post_logout_redirect_uri=https%3A%2F%2Fshop.example.com%2F&client_id=shop+web"
        );
        assert_eq!(client.issuer_origin(), "https://id.example.com");
        let mut no_logout = discovery(&[]);
        no_logout.end_session_endpoint = None;
        let client =
            OidcClient::from_discovery(settings(None), reqwest::Client::new(), no_logout).unwrap();
        assert_eq!(client.logout_url("t", "https://shop.example.com/"), None);
    }

    #[test]
    fn provider_errors_read_as_sentences() {
        assert_eq!(
            OidcError::from_callback("access_denied", Some("User cancelled")).to_string(),
            "The sign-in was not completed: access was denied"
        );
        assert_eq!(
            OidcError::from_callback("temporarily_unavailable", None).to_string(),
            "The sign-in was not completed: temporarily unavailable"
        );
        assert_eq!(
            OidcError::from_callback("server_error", Some("the database is down")).to_string(),
            "The sign-in was not completed: the database is down"
        );
    }
}
