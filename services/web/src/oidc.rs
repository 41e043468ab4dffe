//! PLACEHOLDER until the OpenID Connect client lands (issue 13, in progress):
//! the web's relying-party client. Discovery always fails here, so a shop
//! configured with --web-oidc-issuer refuses to start, saying so.

use serde::{Deserialize, Serialize};

pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub next: String,
}

pub struct SignedIn {
    pub id_token: String,
    pub subject: String,
    pub name: String,
    pub expires_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OpenID Connect sign-in is not available in this build yet")]
    Unavailable,
}

pub struct OidcClient {
    _private: (),
}

impl OidcClient {
    pub async fn discover(
        _settings: OidcSettings,
        _http: reqwest::Client,
    ) -> Result<OidcClient, OidcError> {
        Err(OidcError::Unavailable)
    }

    pub fn begin(&self, _redirect_uri: &str, _next: &str) -> (String, PendingLogin) {
        unreachable!("no OidcClient is ever made")
    }

    pub async fn complete(
        &self,
        _pending: &PendingLogin,
        _code: &str,
        _state: &str,
        _redirect_uri: &str,
    ) -> Result<SignedIn, OidcError> {
        Err(OidcError::Unavailable)
    }

    pub fn logout_url(&self, _id_token: &str, _post_logout_redirect_uri: &str) -> Option<String> {
        None
    }

    pub fn issuer_origin(&self) -> String {
        String::new()
    }
}
