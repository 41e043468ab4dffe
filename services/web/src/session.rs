//! Who the browser is: the session cookie (the token the gateway verifies,
//! plus the name shown in the header), signed with the session key so it
//! cannot be forged or edited, and the CSRF cookie that every form echoes.
//!
//! Cookies are HttpOnly (no script reads them), SameSite (Lax for the
//! session, so following a link into the shop keeps you signed in; Strict
//! for the CSRF token) and Secure when the shop is served over https.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac as _};
use http::HeaderMap;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Sha256;
use storefront_runtime::StartError;

pub const SESSION_COOKIE: &str = "sf_session";
pub const CSRF_COOKIE: &str = "sf_csrf";
/// The sign-in under way at the identity provider (state, nonce, PKCE verifier).
pub const LOGIN_COOKIE: &str = "sf_login";

/// A signed-in visitor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The bearer token for the gateway (ours, or the provider's ID token).
    pub token: String,
    /// The user id (the token's `sub`).
    pub user: String,
    /// The name shown in the header.
    pub name: String,
    pub admin: bool,
    /// Unix seconds; the session is over then (the token expires with it).
    pub expires_at: u64,
    /// Signed in at the OpenID provider (sign-out also ends that session).
    #[serde(default)]
    pub oidc: bool,
}

impl Session {
    pub fn expired(&self) -> bool {
        self.expires_at <= now()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Signs and checks cookie values: `base64(json).base64(hmac(purpose.json))`.
/// The purpose is part of what is signed, so a value made for one cookie is
/// worthless in another.
#[derive(Clone)]
pub struct CookieKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// The configured key, or a random one for this process.
    pub fn new(configured: Option<&str>) -> Result<CookieKey, StartError> {
        match configured {
            Some(key) if key.len() < 32 => Err(StartError::Config(
                "--web-session-key must be at least 32 bytes".to_owned(),
            )),
            Some(key) => Ok(CookieKey {
                key: key.as_bytes().to_vec(),
            }),
            None => Ok(CookieKey {
                key: rand::random::<[u8; 32]>().to_vec(),
            }),
        }
    }

    fn mac(&self, purpose: &str, payload: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(purpose.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let payload = B64.encode(json);
        let tag = B64.encode(self.mac(purpose, &payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let (payload, tag) = sealed.split_once('.')?;
        let tag = B64.decode(tag).ok()?;
        self.mac(purpose, payload).verify_slice(&tag).ok()?;
        serde_json::from_slice(&B64.decode(payload).ok()?).ok()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// How the shop's cookies are set.
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    pub secure: bool,
}

impl CookiePolicy {
    /// `Set-Cookie` for `name=value`, kept for `max_age` seconds.
    pub fn set(&self, name: &str, value: &str, max_age: u64, same_site: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}")
    }

    /// `Set-Cookie` that deletes `name`.
    pub fn clear(&self, name: &str) -> String {
        self.set(name, "", 0, "Lax")
    }
}

/// A fresh CSRF token (also the cookie's value: the double-submit pattern).
pub fn new_csrf_token() -> String {
    B64.encode(rand::random::<[u8; 24]>())
}

/// Whether a form's `csrf` field is the browser's CSRF cookie, compared in
/// constant time.
pub fn csrf_matches(cookie: Option<&str>, submitted: &str) -> bool {
    let Some(cookie) = cookie else {
        return false;
    };
    if cookie.is_empty() || cookie.len() != submitted.len() {
        return false;
    }
    cookie
        .bytes()
        .zip(submitted.bytes())
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            token: "t".into(),
            user: "alice".into(),
            name: "Alice".into(),
            admin: false,
            expires_at: now() + 60,
            oidc: false,
        }
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_key_and_purpose() {
        let key = CookieKey::new(Some("0123456789abcdef0123456789abcdef")).unwrap();
        let sealed = key.seal("session", &session());
        assert_eq!(key.open::<Session>("session", &sealed), Some(session()));
        assert_eq!(key.open::<Session>("login", &sealed), None);
        let other = CookieKey::new(None).unwrap();
        assert_eq!(other.open::<Session>("session", &sealed), None);
    }

    #[test]
    fn an_edited_session_is_refused() {
        let key = CookieKey::new(None).unwrap();
        let sealed = key.seal("session", &session());
        let (payload, tag) = sealed.split_once('.').unwrap();
        let mut admin = session();
        admin.admin = true;
        let forged = format!("{}.{tag}", B64.encode(serde_json::to_vec(&admin).unwrap()));
        assert_ne!(payload, forged.split_once('.').unwrap().0);
        assert_eq!(key.open::<Session>("session", &forged), None);
        assert_eq!(key.open::<Session>("session", "garbage"), None);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(CookieKey::new(Some("short")).is_err());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1; sf_csrf=xyz".parse().unwrap());
        headers.append(http::header::COOKIE, "sf_session=s.t".parse().unwrap());
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("s.t"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let token = new_csrf_token();
        assert!(csrf_matches(Some(&token), &token));
        assert!(!csrf_matches(Some(&token), "other"));
        assert!(!csrf_matches(None, &token));
        assert!(!csrf_matches(Some(""), ""));
    }

    #[test]
    fn secure_cookies_over_https_only() {
        let plain = CookiePolicy { secure: false }.set("a", "b", 60, "Lax");
        assert_eq!(plain, "a=b; Path=/; Max-Age=60; HttpOnly; SameSite=Lax");
        let tls = CookiePolicy { secure: true }.set("a", "b", 60, "Strict");
        assert!(tls.ends_with("SameSite=Strict; Secure"), "{tls}");
    }
}
