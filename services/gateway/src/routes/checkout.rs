//! Checkout: `POST /api/v1/checkout` runs the saga for the caller's cart;
//! `GET /api/v1/checkout/{id}` reads a session of the caller.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use storefront_proto::checkout::v1 as pb;
use storefront_runtime::error::reason_of;
use tonic::Code;

use crate::auth::{Admin, Caller};
use crate::backends::{BackendError, BackendName};
use crate::input::{CheckoutBody, CheckoutId, CheckoutOrder, InputError, JsonBody, Param};
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
    let key = order.key.into_inner();
    let request = pb::CheckoutRequest {
        user_id: caller.user.as_str().to_owned(),
        idempotency_key: key.clone(),
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
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        // The saga was too slow for this request, or waits for one of its
        // participants; it goes on, or the recovery loop finishes it. Answer
        // with the session as it stands (202 and where to look), found by
        // the key; if even that fails, the original problem stands.
        Err(error) if goes_on(&error) => {
            return match session_by_key(&app, &caller, key).await {
                Some(session) => outcome(session),
                None => Err(error.into()),
            };
        }
        Err(error) => return Err(error.into()),
    };
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

/// True for a checkout answer that leaves the session going on.
fn goes_on(error: &BackendError) -> bool {
    match error {
        BackendError::Status { status, .. } => {
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
                || reason_of(status).as_deref() == Some("CHECKOUT_PENDING")
        }
        BackendError::Open { .. } => false,
    }
}

/// The caller's session under `key`, if the checkout service can say.
async fn session_by_key(
    app: &AppState,
    caller: &Caller,
    key: String,
) -> Option<pb::CheckoutSession> {
    let request = pb::GetCheckoutRequest {
        user_id: caller.user.as_str().to_owned(),
        checkout_id: String::new(),
        idempotency_key: key,
    };
    app.backends
        .checkout
        .call("GetCheckout", request, |mut c, r| async move {
            c.get_checkout(r).await
        })
        .await
        .ok()
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
        idempotency_key: String::new(),
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

/// `?status=` of the admin list; NEEDS_ATTENTION when absent.
#[derive(Debug, serde::Deserialize)]
pub struct AttentionQuery {
    status: Option<String>,
}

/// `GET /api/v1/admin/checkouts`: the sessions in one status (by default
/// those that need a person), most recently touched first. Admins only.
pub async fn list_for_admin(
    State(app): State<AppState>,
    Admin(_): Admin,
    Query(query): Query<AttentionQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = query.status.unwrap_or_else(|| "NEEDS_ATTENTION".to_owned());
    let status = pb::CheckoutStatus::from_str_name(&format!("CHECKOUT_STATUS_{name}"))
        .filter(|status| *status != pb::CheckoutStatus::Unspecified)
        .ok_or_else(|| {
            InputError::Request(format!(
                "status must be a checkout status such as NEEDS_ATTENTION, got {name:?}"
            ))
        })?;
    let request = pb::ListCheckoutsRequest {
        status: status as i32,
        page_size: 0,
    };
    let answer = app
        .backends
        .checkout
        .call("ListCheckouts", request, |mut c, r| async move {
            c.list_checkouts(r).await
        })
        .await?;
    let sessions = answer
        .sessions
        .into_iter()
        .map(CheckoutJson::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "checkouts": sessions })))
}
