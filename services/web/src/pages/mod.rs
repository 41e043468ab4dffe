//! The pages. Each handler gathers what it shows from the gateway, then
//! renders one template; what every page shares (the visitor, the header,
//! the error page) is here.

pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod orders;
pub mod sign_in;

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};

use crate::AppState;
use crate::api::{ApiError, Caller};
use crate::guard::CsrfToken;
use crate::session::{SESSION_COOKIE, Session};

/// Who is asking: their session (when signed in and not expired), the CSRF
/// token their forms carry, and their address for the gateway.
pub struct Visitor {
    pub session: Option<Session>,
    pub csrf: String,
    pub forwarded_for: String,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        shop: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let session = crate::session::cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|sealed| shop.cookies.open::<Session>("session", sealed))
            .filter(|session| !session.expired());
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        Ok(Visitor {
            session,
            csrf,
            forwarded_for: crate::api::forwarded_for(&parts.headers, peer),
        })
    }
}

impl Visitor {
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            token: self.session.as_ref().map(|s| s.token.as_str()),
            forwarded_for: &self.forwarded_for,
        }
    }

    /// The session, or the way to the sign-in page (coming back to `next`).
    pub fn signed_in(&self, next: &str) -> Result<&Session, PageError> {
        self.session
            .as_ref()
            .ok_or_else(|| PageError::SignInRequired {
                next: next.to_owned(),
            })
    }
}

/// What the header of every page shows.
pub struct Chrome {
    pub user_name: Option<String>,
    pub admin: bool,
    pub cart_count: Option<i32>,
    pub csrf: String,
}

impl Chrome {
    /// The header for `visitor`, with their cart's item count (one gateway
    /// call when signed in; `known` when the page has the cart already).
    pub async fn of(shop: &AppState, visitor: &Visitor, known: Option<i32>) -> Chrome {
        let cart_count = match (&visitor.session, known) {
            (_, Some(count)) => Some(count),
            (Some(_), None) => shop
                .gateway
                .cart(visitor.caller())
                .await
                .ok()
                .map(|c| c.item_count),
            (None, None) => None,
        };
        Chrome {
            user_name: visitor.session.as_ref().map(|s| s.name.clone()),
            admin: visitor.session.as_ref().is_some_and(|s| s.admin),
            cart_count,
            csrf: visitor.csrf.clone(),
        }
    }

    /// The header of a page that knows nothing of the visitor (error pages).
    fn bare() -> Chrome {
        Chrome {
            user_name: None,
            admin: false,
            cart_count: None,
            csrf: String::new(),
        }
    }
}

/// Renders a page with `status`.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "a page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown.",
            )
                .into_response()
        }
    }
}

/// 303 See Other to `to` (after a form: the browser GETs it).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A path inside the shop to go back to after sign-in; anything else
/// (another site, `//host`) becomes the catalog.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 512
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Why a page cannot be shown as asked.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: off to the sign-in page, then back to `next`.
    SignInRequired {
        next: String,
    },
    /// The gateway no longer accepts the session's token.
    SessionEnded,
    NotFound,
    Forbidden(String),
    BadRequest(String),
    RateLimited {
        retry_after: Option<u64>,
    },
    /// The gateway or a service behind it is down or too slow.
    Unavailable,
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        match error {
            ApiError::Problem {
                status,
                detail,
                retry_after,
                ..
            } => match status {
                StatusCode::UNAUTHORIZED => PageError::SessionEnded,
                StatusCode::NOT_FOUND => PageError::NotFound,
                StatusCode::FORBIDDEN => {
                    PageError::Forbidden("You are not allowed to do that.".to_owned())
                }
                StatusCode::TOO_MANY_REQUESTS => PageError::RateLimited { retry_after },
                s if s.is_client_error() => PageError::BadRequest(detail),
                _ => PageError::Unavailable,
            },
            ApiError::Timeout | ApiError::Unreachable(_) => {
                tracing::warn!(%error, "gateway call failed");
                PageError::Unavailable
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignInRequired { next } => {
                let to = format!(
                    "/sign-in?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                return see_other(&to);
            }
            PageError::SessionEnded => {
                let mut response = see_other("/sign-in?ended=1");
                let clear = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
                if let Ok(value) = HeaderValue::from_str(&clear) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
                return response;
            }
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address. It may have been mistyped, or the thing it named is gone.".to_owned(),
            ),
            PageError::Forbidden(message) => (StatusCode::FORBIDDEN, "Not allowed", message),
            PageError::BadRequest(message) => (StatusCode::BAD_REQUEST, "That did not work", message),
            PageError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                format!(
                    "You have made a lot of requests in a short time. Wait {} and try again.",
                    match retry_after {
                        Some(1) => "a second".to_owned(),
                        Some(seconds) => format!("{seconds} seconds"),
                        None => "a moment".to_owned(),
                    }
                ),
            ),
            PageError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The shop is having trouble",
                "Part of the shop is not answering right now. Nothing you did caused this; please try again in a minute.".to_owned(),
            ),
        };
        let page = ErrorPage {
            chrome: Chrome::bare(),
            title: title.to_owned(),
            message,
        };
        let mut response = render(status, &page);
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

pub async fn not_found() -> PageError {
    PageError::NotFound
}

/// 200 when the gateway is ready, else 503.
pub async fn ready(State(shop): State<AppState>) -> StatusCode {
    if shop.gateway.ready().await {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The words a shopper reads for an error the API gave on a form.
pub fn explain(error: &ApiError) -> String {
    let ApiError::Problem {
        code,
        detail,
        reason,
        ..
    } = error
    else {
        return "The shop could not do that right now; please try again.".to_owned();
    };
    match code.as_str() {
        "invalid_quantity" => "Enter a quantity from 1 to 99.".to_owned(),
        "cart_limit_exceeded" => format!("Your cart is full: {detail}"),
        "product_not_found" => "That product is no longer in the catalog.".to_owned(),
        "item_not_found" => "That item is no longer in your cart.".to_owned(),
        "cart_empty" => "Your cart is empty: add something before checking out.".to_owned(),
        "insufficient_stock" => format!("Sorry, some items are out of stock. {detail}"),
        "payment_declined" => format!(
            "Your payment was declined: {}. Nothing was charged; try another payment method.",
            decline_reason(reason.as_deref())
        ),
        "checkout_in_progress" => {
            "This cart is already being checked out. Look for the order in your orders in a moment."
                .to_owned()
        }
        "invalid_transition" => format!("That status change is not allowed: {detail}"),
        "rate_limited" => "You are going too fast; wait a few seconds and try again.".to_owned(),
        _ => detail.clone(),
    }
}

/// A payment-decline reason in words.
fn decline_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("CARD_DECLINED") => "the card was declined",
        Some("NO_FUNDS" | "INSUFFICIENT_FUNDS") => "the card has insufficient funds",
        Some("CARD_EXPIRED") => "the card has expired",
        Some("INVALID_CVC") => "the card's security code (CVC) is wrong",
        _ => "the payment provider refused it",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shops_own_paths_are_gone_back_to() {
        assert_eq!(local_path(Some("/cart")), "/cart");
        assert_eq!(local_path(Some("/products/1?x=2")), "/products/1?x=2");
        for outside in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "cart",
        ] {
            assert_eq!(local_path(Some(outside)), "/", "{outside}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn declines_are_explained() {
        let declined = ApiError::Problem {
            status: StatusCode::PAYMENT_REQUIRED,
            code: "payment_declined".into(),
            detail: "payment declined".into(),
            reason: Some("CARD_DECLINED".into()),
            retry_after: None,
        };
        assert!(
            explain(&declined).contains("the card was declined"),
            "{}",
            explain(&declined)
        );
        assert!(explain(&ApiError::Timeout).contains("try again"));
    }
}
