//! Checkout: `POST /api/v1/checkout` runs the saga for the caller's cart;
//! `GET /api/v1/checkout/{id}` reads a session of the caller.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use storefront_proto::checkout::v1 as pb;

use crate::auth::Caller;
use crate::backends::BackendName;
use crate::input::{CheckoutBody, CheckoutId, CheckoutOrder, JsonBody, Param};
use crate::json::CheckoutJson;
use crate::problem::ApiError;
use crate::routes::AppState;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub async fn start(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CheckoutBody>,
) -> Result<Response, ApiError> {
    let order = CheckoutOrder::parse(headers.get(IDEMPOTENCY_KEY), body)?;
    let request = pb::CheckoutRequest {
        user_id: caller.user.as_str().to_owned(),
        idempotency_key: order.key.into_inner(),
        payment_method: order.payment_method,
        shipping_address: order.shipping_address,
    };
    let backends = &app.backends;
    let answer = backends
        .checkout
        .call_within(
            backends.checkout_timeout,
            "Checkout",
            request,
            |mut c, r| async move { c.checkout(r).await },
        )
        .await?;
    let session = answer
        .session
        .ok_or_else(|| ApiError::bad_answer(BackendName::Checkout, "no session"))?;
    // Status and body derive from the stored session alone, so a replay
    // answers exactly as the first request did, plus this header.
    let mut response = outcome(session)?;
    if answer.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// COMPLETED is 201; FAILED is a problem (402, 409 or 422 by reason); a
/// session still under way (a replay racing the first request, or one the
/// recovery loop has yet to finish) is 202 with where to look.
fn outcome(session: pb::CheckoutSession) -> Result<Response, ApiError> {
    let status =
        pb::CheckoutStatus::try_from(session.status).unwrap_or(pb::CheckoutStatus::Unspecified);
    match status {
        pb::CheckoutStatus::Completed => {
            let mut json = CheckoutJson::try_from(session)?;
            json.failure_reason = None;
            Ok((StatusCode::CREATED, Json(json)).into_response())
        }
        pb::CheckoutStatus::Failed => Ok(ApiError::CheckoutFailed {
            checkout_id: session.checkout_id,
            failure_reason: session.failure_reason,
            decline_reason: session.decline_reason,
        }
        .into_response()),
        pb::CheckoutStatus::Unspecified => Err(ApiError::bad_answer(
            BackendName::Checkout,
            "a session without a status",
        )),
        _ => {
            let location =
                HeaderValue::from_str(&format!("/api/v1/checkout/{}", session.checkout_id))
                    .map_err(|_| {
                        ApiError::bad_answer(BackendName::Checkout, "an unusable checkout id")
                    })?;
            let json = CheckoutJson::try_from(session)?;
            Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(json)).into_response())
        }
    }
}

pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Param(id): Param<CheckoutId>,
) -> Result<Json<CheckoutJson>, ApiError> {
    let request = pb::GetCheckoutRequest {
        user_id: caller.user.as_str().to_owned(),
        checkout_id: id.get().to_string(),
    };
    let session = app
        .backends
        .checkout
        .call("GetCheckout", request, |mut c, r| async move {
            c.get_checkout(r).await
        })
        .await?;
    Ok(Json(session.try_into()?))
}
