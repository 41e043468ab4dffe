//! Signing in and out: the development sign-in (a name, no password; a
//! token the shop signs with the gateway's secret) and OpenID Connect
//! (authorization code with PKCE at the configured issuer).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::{Chrome, PageError, Visitor, local_path, render, see_other};
use crate::AppState;
use crate::oidc::PendingLogin;
use crate::session::{LOGIN_COOKIE, SESSION_COOKIE, Session, now};

/// How long a sign-in at the provider may take, from the redirect there to
/// the callback.
const LOGIN_SECONDS: u64 = 600;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    dev_sign_in: bool,
    oidc_provider: Option<String>,
    next: String,
    next_encoded: String,
    name: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    ended: Option<String>,
}

fn sign_in_page(
    shop: &AppState,
    chrome: Chrome,
    next: &str,
    name: String,
    error: Option<String>,
    notice: Option<String>,
) -> SignInPage {
    SignInPage {
        chrome,
        dev_sign_in: shop.dev_sign_in.is_some(),
        oidc_provider: shop.oidc.as_ref().map(|o| o.provider_name.clone()),
        next: next.to_owned(),
        next_encoded: form_urlencoded::byte_serialize(next.as_bytes()).collect(),
        name,
        error,
        notice,
    }
}

pub async fn page(
    State(shop): State<AppState>,
    visitor: Visitor,
    Query(query): Query<SignInQuery>,
) -> Response {
    let next = local_path(query.next.as_deref());
    let notice = if query.ended.is_some() {
        Some("Your session has ended; sign in again to go on.".to_owned())
    } else if query.next.is_some() {
        Some("Sign in to use your cart and see your orders.".to_owned())
    } else {
        None
    };
    let chrome = Chrome::of(&shop, &visitor, None).await;
    let page = sign_in_page(&shop, chrome, &next, String::new(), None, notice);
    render(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct DevForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

/// The claims of a development sign-in's token.
#[derive(Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    name: &'a str,
    iat: u64,
    exp: u64,
    roles: Vec<&'static str>,
}

pub async fn dev(
    State(shop): State<AppState>,
    visitor: Visitor,
    Form(form): Form<DevForm>,
) -> Result<Response, PageError> {
    let Some(dev) = &shop.dev_sign_in else {
        return Err(PageError::NotFound);
    };
    let next = local_path(form.next.as_deref());
    let name = form.name.trim();
    let user = user_id_of(name);
    let problem = if name.is_empty() {
        Some("Enter your name.")
    } else if name.chars().count() > 64 || name.chars().any(char::is_control) {
        Some("Enter a name of at most 64 ordinary characters.")
    } else if user.is_empty() {
        Some("Use at least one letter or digit in your name.")
    } else {
        None
    };
    if let Some(problem) = problem {
        let chrome = Chrome::of(&shop, &visitor, None).await;
        let shown = name.chars().take(64).collect();
        let page = sign_in_page(&shop, chrome, &next, shown, Some(problem.to_owned()), None);
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let admin = form.admin.is_some();
    let issued = now();
    let expires_at = issued + dev.ttl.as_secs().max(60);
    let claims = DevClaims {
        sub: &user,
        name,
        iat: issued,
        exp: expires_at,
        roles: if admin { vec!["admin"] } else { Vec::new() },
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(dev.secret.as_bytes()),
    )
    .map_err(|error| {
        tracing::error!(%error, "could not sign a development token");
        PageError::Unavailable
    })?;
    let session = Session {
        token,
        user,
        name: name.to_owned(),
        admin,
        expires_at,
        oidc: false,
    };
    Ok(signed_in(&shop, &session, &next))
}

/// The user id of a development sign-in: the name in lower case, runs of
/// anything but letters and digits made one dash (`Alice Example` →
/// `alice-example`), so the same name is the same shopper next time.
fn user_id_of(name: &str) -> String {
    let mut id = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            id.push(c);
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_owned()
}

/// Sets the session cookie and goes on to `next`.
fn signed_in(shop: &AppState, session: &Session, next: &str) -> Response {
    let sealed = shop.cookies.seal("session", session);
    let max_age = session.expires_at.saturating_sub(now());
    let mut response = see_other(next);
    let cookie = shop.policy.set(SESSION_COOKIE, &sealed, max_age, "Lax");
    append_cookie(&mut response, &cookie);
    response
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Ends the session here and, for a sign-in at the provider, there too.
pub async fn sign_out(State(shop): State<AppState>, visitor: Visitor) -> Response {
    let provider_logout = match (&visitor.session, &shop.oidc, &shop.public_url) {
        (Some(session), Some(oidc), Some(public)) if session.oidc => oidc
            .client
            .logout_url(&session.token, &format!("{public}/?signed_out=1")),
        _ => None,
    };
    let mut response = see_other(provider_logout.as_deref().unwrap_or("/?signed_out=1"));
    append_cookie(&mut response, &shop.policy.clear(SESSION_COOKIE));
    response
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Off to the provider's sign-in page; what the callback must check (state,
/// nonce, the PKCE verifier) waits in a short-lived signed cookie.
pub async fn oidc_login(
    State(shop): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let (Some(oidc), Some(public)) = (&shop.oidc, &shop.public_url) else {
        return Err(PageError::NotFound);
    };
    let next = local_path(query.next.as_deref());
    let (to, pending) = oidc.client.begin(&callback_url(public), &next);
    let mut response = see_other(&to);
    let sealed = shop.cookies.seal("login", &pending);
    // Lax: the provider's redirect back is a top-level GET from its site.
    append_cookie(
        &mut response,
        &shop.policy.set(LOGIN_COOKIE, &sealed, LOGIN_SECONDS, "Lax"),
    );
    Ok(response)
}

fn callback_url(public: &str) -> String {
    format!("{public}/auth/callback")
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The provider sends the browser back here with a code: exchanged for the
/// tokens, the ID token checked, the session begins.
pub async fn oidc_callback(
    State(shop): State<AppState>,
    visitor: Visitor,
    headers: http::HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let (Some(oidc), Some(public)) = (&shop.oidc, &shop.public_url) else {
        return Err(PageError::NotFound);
    };
    let pending = crate::session::cookie(&headers, LOGIN_COOKIE)
        .and_then(|sealed| shop.cookies.open::<PendingLogin>("login", sealed));
    let outcome = match (&pending, &query) {
        (
            _,
            CallbackQuery {
                error: Some(error),
                error_description,
                ..
            },
        ) => Err(
            crate::oidc::OidcError::from_callback(error, error_description.as_deref()).to_string(),
        ),
        (None, _) => Err(
            "The sign-in took too long or was started in another browser. Please sign in again."
                .to_owned(),
        ),
        (
            Some(pending),
            CallbackQuery {
                code: Some(code),
                state: Some(state),
                ..
            },
        ) => oidc
            .client
            .complete(pending, code, state, &callback_url(public))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "OpenID sign-in failed");
                format!("The sign-in could not be completed: {error}")
            }),
        (Some(_), _) => {
            Err("The identity provider's answer was incomplete. Please sign in again.".to_owned())
        }
    };
    let mut response = match outcome {
        Ok(signed) => {
            let session = Session {
                token: signed.id_token,
                user: signed.subject,
                name: signed.name,
                admin: signed.admin,
                expires_at: signed.expires_at,
                oidc: true,
            };
            let next = pending.as_ref().map_or("/", |p| p.next.as_str());
            signed_in(&shop, &session, &local_path(Some(next)))
        }
        Err(message) => {
            let chrome = Chrome::of(&shop, &visitor, None).await;
            let page = sign_in_page(&shop, chrome, "/", String::new(), Some(message), None);
            render(StatusCode::BAD_REQUEST, &page).into_response()
        }
    };
    append_cookie(&mut response, &shop.policy.clear(LOGIN_COOKIE));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_stable_user_ids() {
        assert_eq!(user_id_of("Alice Example"), "alice-example");
        assert_eq!(user_id_of("  Bob!!  "), "bob");
        assert_eq!(user_id_of("Zoë O'Neil"), "zoë-o-neil");
        assert_eq!(user_id_of("!!!"), "");
    }
}
