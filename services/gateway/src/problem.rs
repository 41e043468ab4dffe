//! Problem details (RFC 9457) and the one mapping from every failure of a
//! request — bad input, authentication, limits, and a backend's gRPC status
//! with its `ErrorInfo` reason — to an HTTP status and a stable `code`.

use std::borrow::Cow;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};
use storefront_runtime::error::{metadata_of, reason_of};
use tonic::Code;

use crate::auth::AuthError;
use crate::backends::{BackendError, BackendName};
use crate::input::InputError;
use crate::limits::BODY_LIMIT;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the `type` URIs of Storefront problems live.
const TYPE_BASE: &str = "https://storefront.dev/problems/";

/// Everything that can go wrong with a request, as the gateway sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("this action needs the admin role")]
    Forbidden,
    #[error("the request body is larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    #[error("the request body did not arrive within {0:?}")]
    RequestTimeout(Duration),
    #[error("the request body must be JSON (application/json), got {0:?}")]
    UnsupportedMediaType(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("too many requests; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("the {backend} service answered with {detail}")]
    BadBackendAnswer {
        backend: BackendName,
        detail: String,
    },
    #[error("checkout {checkout_id} failed: {failure_reason}")]
    CheckoutFailed {
        checkout_id: String,
        failure_reason: String,
        decline_reason: String,
    },
    #[error("not ready: {}", .0.join(", "))]
    NotReady(Vec<String>),
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl ApiError {
    pub fn bad_answer(backend: BackendName, detail: impl Into<String>) -> Self {
        ApiError::BadBackendAnswer {
            backend,
            detail: detail.into(),
        }
    }

    /// The one mapping to a problem document.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            ApiError::Input(input) => Problem::new(StatusCode::BAD_REQUEST, input.code(), detail),
            ApiError::Auth(auth) => {
                let challenge = match auth {
                    AuthError::Missing => "Bearer realm=\"storefront\"".to_owned(),
                    other => format!(
                        "Bearer realm=\"storefront\", error=\"invalid_token\", error_description=\"{}\"",
                        other.to_string().replace(['"', '\\'], "'")
                    ),
                };
                Problem::new(StatusCode::UNAUTHORIZED, auth.code(), detail)
                    .header(WWW_AUTHENTICATE, &challenge)
            }
            ApiError::Forbidden => Problem::new(StatusCode::FORBIDDEN, "forbidden", detail),
            ApiError::PayloadTooLarge => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            }
            ApiError::RequestTimeout(_) => {
                Problem::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", detail)
                    .header(http::header::CONNECTION, "close")
            }
            ApiError::UnsupportedMediaType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                detail,
            ),
            ApiError::RouteNotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "route_not_found", detail)
            }
            ApiError::MethodNotAllowed { .. } => {
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail)
            }
            ApiError::RateLimited { retry_after } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                    .retry_after(*retry_after)
            }
            ApiError::Backend(BackendError::Open {
                backend,
                retry_after,
            }) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("the {backend} service is failing; its circuit is open"),
            )
            .retry_after(*retry_after),
            ApiError::Backend(BackendError::Status { backend, status }) => {
                from_status(*backend, status)
            }
            ApiError::BadBackendAnswer { .. } => {
                tracing::error!(error = %self, "unusable backend answer");
                Problem::new(StatusCode::BAD_GATEWAY, "bad_gateway", detail)
            }
            ApiError::CheckoutFailed {
                checkout_id,
                failure_reason,
                decline_reason,
            } => checkout_failure(checkout_id, failure_reason, decline_reason),
            ApiError::NotReady(down) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail)
                    .member("down", Value::from(down.clone()))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

/// A failed checkout session (an answer, not an error of the checkout service).
fn checkout_failure(checkout_id: &str, failure_reason: &str, decline_reason: &str) -> Problem {
    let code = stable_code(failure_reason).unwrap_or_else(|| "checkout_failed".to_owned());
    let (status, detail) = match code.as_str() {
        "payment_declined" => (
            StatusCode::PAYMENT_REQUIRED,
            format!("the payment was declined ({decline_reason})"),
        ),
        "insufficient_stock" => (
            StatusCode::CONFLICT,
            "not enough stock for every line of the cart".to_owned(),
        ),
        _ => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the checkout failed: {code}"),
        ),
    };
    let mut problem =
        Problem::new(status, code.clone(), detail).member("checkout_id", Value::from(checkout_id));
    if code == "payment_declined" {
        problem = problem.member("reason", Value::from(decline_reason));
    }
    problem
}

/// `PRODUCT_NOT_FOUND` → `product_not_found`; `None` unless it is a clean code.
fn stable_code(reason: &str) -> Option<String> {
    let code = reason.trim().to_ascii_lowercase();
    let clean = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    clean.then_some(code)
}

/// Reasons the REST API gives a status of their own, whatever gRPC code carried them.
fn known_reason(reason: &str) -> Option<(StatusCode, &'static str)> {
    Some(match reason {
        "PRODUCT_NOT_FOUND" => (StatusCode::NOT_FOUND, "product_not_found"),
        "ITEM_NOT_FOUND" => (StatusCode::NOT_FOUND, "item_not_found"),
        "ORDER_NOT_FOUND" => (StatusCode::NOT_FOUND, "order_not_found"),
        "CHECKOUT_NOT_FOUND" => (StatusCode::NOT_FOUND, "checkout_not_found"),
        "CART_LIMIT_EXCEEDED" => (StatusCode::UNPROCESSABLE_ENTITY, "cart_limit_exceeded"),
        "CART_EMPTY" => (StatusCode::UNPROCESSABLE_ENTITY, "cart_empty"),
        "CHECKOUT_IN_PROGRESS" => (StatusCode::CONFLICT, "checkout_in_progress"),
        "INVALID_TRANSITION" => (StatusCode::CONFLICT, "invalid_transition"),
        "INSUFFICIENT_STOCK" => (StatusCode::CONFLICT, "insufficient_stock"),
        "INVALID_QUANTITY" => (StatusCode::BAD_REQUEST, "invalid_quantity"),
        "INVALID_PRODUCT_ID" => (StatusCode::BAD_REQUEST, "invalid_product_id"),
        _ => return None,
    })
}

/// Every gRPC code's name in lower snake case.
const GRPC_CODE_NAMES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// The request field an INVALID_ARGUMENT names: services word them
/// `"{field}: {message}"` (see `storefront_runtime::FieldError`).
fn invalid_field_code(message: &str) -> &'static str {
    let field = message.split_once(": ").map_or("", |(field, _)| field);
    let last = field.rsplit('.').next().unwrap_or_default();
    match last {
        "quantity" => "invalid_quantity",
        "product_id" | "product_ids" => "invalid_product_id",
        "order_id" => "invalid_order_id",
        "checkout_id" => "invalid_checkout_id",
        "idempotency_key" => "invalid_idempotency_key",
        "status" => "invalid_status",
        _ => "invalid_request",
    }
}

/// A backend's gRPC status as the REST API shows it.
pub fn from_status(backend: BackendName, status: &tonic::Status) -> Problem {
    let problem = problem_of_status(backend, status);
    // A checkout the answer is about (in progress, pending): say where to look.
    match metadata_of(status, "checkout_id") {
        Some(id) if uuid::Uuid::parse_str(&id).is_ok() => problem
            .header(LOCATION, &format!("/api/v1/checkout/{id}"))
            .member("checkout_id", Value::from(id)),
        _ => problem,
    }
}

fn problem_of_status(backend: BackendName, status: &tonic::Status) -> Problem {
    let reason = reason_of(status).unwrap_or_default();
    let message = status.message().to_owned();
    let business = matches!(
        status.code(),
        Code::InvalidArgument
            | Code::OutOfRange
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::PermissionDenied
    );
    if business && let Some((http, code)) = known_reason(&reason) {
        return Problem::new(http, code, message);
    }
    // A reason that merely repeats the gRPC code says nothing the code does not.
    let reason_code =
        || stable_code(&reason).filter(|code| !GRPC_CODE_NAMES.contains(&code.as_str()));
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => Problem::new(
            StatusCode::BAD_REQUEST,
            invalid_field_code(&message),
            message,
        ),
        Code::NotFound => {
            let code = reason_code().unwrap_or_else(|| backend.not_found_code().to_owned());
            Problem::new(StatusCode::NOT_FOUND, code, message)
        }
        Code::FailedPrecondition => {
            let code = reason_code().unwrap_or_else(|| "failed_precondition".to_owned());
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        Code::AlreadyExists => {
            let code = reason_code().unwrap_or_else(|| "conflict".to_owned());
            Problem::new(StatusCode::CONFLICT, code, message)
        }
        // The checkout service aborts a concurrent repeat of a key still in flight.
        Code::Aborted if backend == BackendName::Checkout => {
            Problem::new(StatusCode::CONFLICT, "checkout_in_progress", message)
        }
        Code::Aborted => {
            let code = reason_code().unwrap_or_else(|| "conflict".to_owned());
            Problem::new(StatusCode::CONFLICT, code, message)
        }
        Code::PermissionDenied => Problem::new(StatusCode::FORBIDDEN, "forbidden", message),
        // The saga is waiting for one of its participants; the checkout
        // service's recovery loop completes or compensates it, and a retry
        // with the same key answers with the outcome.
        Code::Unavailable if reason == "CHECKOUT_PENDING" => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "checkout_pending",
            "the checkout is waiting for a backend and will be completed or compensated \
             shortly; retry with the same Idempotency-Key to see the outcome"
                .to_owned(),
        )
        .retry_after(Duration::from_secs(2)),
        Code::Unavailable | Code::ResourceExhausted => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("the {backend} service is unavailable; try again shortly"),
        )
        .retry_after(Duration::from_secs(1)),
        Code::DeadlineExceeded | Code::Cancelled => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            format!("the {backend} service did not answer in time"),
        ),
        Code::Ok
        | Code::Unknown
        | Code::Internal
        | Code::DataLoss
        | Code::Unimplemented
        | Code::Unauthenticated => {
            tracing::error!(%backend, code = ?status.code(), %reason, %message, "backend failed");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                format!("the {backend} service failed"),
            )
        }
    }
}

/// One problem document. The request id is filled in by the request
/// middleware, which knows it; everything else is decided here.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub detail: String,
    members: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, detail: String) -> Self {
        Problem {
            status,
            code: code.into(),
            detail,
            members: Map::new(),
            headers: Vec::new(),
        }
    }

    /// An extension member, e.g. `checkout_id`.
    pub fn member(mut self, name: &str, value: Value) -> Self {
        self.members.insert(name.to_owned(), value);
        self
    }

    fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    fn retry_after(self, wait: Duration) -> Self {
        self.header(RETRY_AFTER, &retry_after_secs(wait).to_string())
    }

    /// `product_not_found` → "Product not found": stable per code, as RFC 9457 wants of a title.
    fn title(&self) -> String {
        let mut words = self.code.replace('_', " ");
        if let Some(first) = words.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        words
    }

    /// The JSON document.
    pub fn body(&self, request_id: Option<&str>) -> Value {
        let mut body = Map::new();
        body.insert(
            "type".to_owned(),
            Value::from(format!("{TYPE_BASE}{}", self.code)),
        );
        body.insert("title".to_owned(), Value::from(self.title()));
        body.insert("status".to_owned(), Value::from(self.status.as_u16()));
        body.insert("detail".to_owned(), Value::from(self.detail.clone()));
        body.insert("code".to_owned(), Value::from(self.code.as_ref()));
        if let Some(id) = request_id {
            body.insert("request_id".to_owned(), Value::from(id));
        }
        for (name, value) in &self.members {
            body.entry(name.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }

    /// Replaces `response`'s body with this problem, naming `request_id`.
    pub fn render_into(&self, response: &mut Response, request_id: &str) {
        *response.body_mut() = axum::body::Body::from(self.body(Some(request_id)).to_string());
        response.headers_mut().remove(CONTENT_LENGTH);
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            self.body(None).to_string(),
        )
            .into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_runtime::{ErrorCode, FieldError, status_of};

    /// A backend error as the services build them: code, message, ErrorInfo reason.
    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Sample {
        code: Code,
        reason: &'static str,
        message: String,
    }

    impl ErrorCode for Sample {
        fn code(&self) -> Code {
            self.code
        }
        fn reason(&self) -> &'static str {
            self.reason
        }
    }

    fn map(backend: BackendName, code: Code, reason: &'static str, message: &str) -> (u16, String) {
        let status = status_of(&Sample {
            code,
            reason,
            message: message.to_owned(),
        });
        let problem = from_status(backend, &status);
        (problem.status.as_u16(), problem.code.into_owned())
    }

    #[test]
    fn business_reasons_map_to_their_codes() {
        use BackendName::*;
        let cases = [
            (
                Product,
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                404,
                "product_not_found",
            ),
            (
                Cart,
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                404,
                "product_not_found",
            ),
            (
                Cart,
                Code::NotFound,
                "ITEM_NOT_FOUND",
                404,
                "item_not_found",
            ),
            (
                Cart,
                Code::FailedPrecondition,
                "ITEM_NOT_FOUND",
                404,
                "item_not_found",
            ),
            (
                Cart,
                Code::FailedPrecondition,
                "CART_LIMIT_EXCEEDED",
                422,
                "cart_limit_exceeded",
            ),
            (
                Cart,
                Code::ResourceExhausted,
                "CART_LIMIT_EXCEEDED",
                422,
                "cart_limit_exceeded",
            ),
            (
                Checkout,
                Code::FailedPrecondition,
                "CART_EMPTY",
                422,
                "cart_empty",
            ),
            (
                Checkout,
                Code::FailedPrecondition,
                "CHECKOUT_IN_PROGRESS",
                409,
                "checkout_in_progress",
            ),
            (
                Checkout,
                Code::Aborted,
                "CHECKOUT_IN_PROGRESS",
                409,
                "checkout_in_progress",
            ),
            (
                Checkout,
                Code::Aborted,
                "ABORTED",
                409,
                "checkout_in_progress",
            ),
            (
                Checkout,
                Code::NotFound,
                "NOT_FOUND",
                404,
                "checkout_not_found",
            ),
            (
                Orders,
                Code::FailedPrecondition,
                "FAILED_PRECONDITION",
                422,
                "failed_precondition",
            ),
            (Checkout, Code::NotFound, "", 404, "checkout_not_found"),
            (
                Orders,
                Code::FailedPrecondition,
                "INVALID_TRANSITION",
                409,
                "invalid_transition",
            ),
            (
                Orders,
                Code::NotFound,
                "ORDER_NOT_FOUND",
                404,
                "order_not_found",
            ),
            (
                Orders,
                Code::FailedPrecondition,
                "SOMETHING_ELSE",
                422,
                "something_else",
            ),
            (
                Orders,
                Code::AlreadyExists,
                "ORDER_EXISTS",
                409,
                "order_exists",
            ),
            (
                Orders,
                Code::PermissionDenied,
                "NOT_YOURS",
                403,
                "forbidden",
            ),
        ];
        for (backend, code, reason, http, expected) in cases {
            assert_eq!(
                map(backend, code, reason, "m"),
                (http, expected.to_owned()),
                "{backend} {code:?} {reason}"
            );
        }
    }

    #[test]
    fn invalid_arguments_name_their_field() {
        let field = |message: String| {
            map(
                BackendName::Cart,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
                &message,
            )
        };
        let quantity = FieldError::new("quantity", "must be 1..=99").to_string();
        assert_eq!(field(quantity), (400, "invalid_quantity".into()));
        let product = FieldError::new("product_id", "must be positive").to_string();
        assert_eq!(field(product), (400, "invalid_product_id".into()));
        let nested = FieldError::new("lines.quantity", "too many").to_string();
        assert_eq!(field(nested), (400, "invalid_quantity".into()));
        assert_eq!(
            field("user_id: is required".into()),
            (400, "invalid_request".into())
        );
        assert_eq!(
            field("no field here".into()),
            (400, "invalid_request".into())
        );
    }

    #[test]
    fn backend_failures_are_5xx_and_hide_the_message() {
        let status = tonic::Status::unavailable("tcp connect error 10.0.0.7:50052");
        let problem = from_status(BackendName::Cart, &status);
        assert_eq!(problem.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem.code, "service_unavailable");
        assert!(!problem.detail.contains("10.0.0.7"), "{}", problem.detail);
        let timeout = from_status(
            BackendName::Orders,
            &tonic::Status::deadline_exceeded("slow"),
        );
        assert_eq!(
            (timeout.status.as_u16(), timeout.code.as_ref()),
            (504, "gateway_timeout")
        );
        let cancelled = from_status(
            BackendName::Orders,
            &tonic::Status::cancelled("Timeout expired"),
        );
        assert_eq!(cancelled.status, StatusCode::GATEWAY_TIMEOUT);
        for status in [tonic::Status::internal("db"), tonic::Status::unknown("?")] {
            let problem = from_status(BackendName::Product, &status);
            assert_eq!(
                (problem.status.as_u16(), problem.code.as_ref()),
                (502, "bad_gateway")
            );
        }
        let pending = map(
            BackendName::Checkout,
            Code::Unavailable,
            "CHECKOUT_PENDING",
            "x",
        );
        assert_eq!(pending, (503, "checkout_pending".into()));
        // A reason never turns an outage into a business answer.
        assert_eq!(
            map(BackendName::Cart, Code::Unavailable, "CART_EMPTY", "down").0,
            503
        );
    }

    #[test]
    fn checkout_failures_have_their_own_statuses() {
        let declined = checkout_failure("c1", "payment_declined", "CARD_DECLINED");
        assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
        let body = declined.body(Some("r1"));
        assert_eq!(body["code"], "payment_declined");
        assert_eq!(body["checkout_id"], "c1");
        assert_eq!(body["reason"], "CARD_DECLINED");
        assert_eq!(body["request_id"], "r1");
        let stock = checkout_failure("c2", "insufficient_stock", "");
        assert_eq!(stock.status, StatusCode::CONFLICT);
        assert_eq!(stock.body(None)["checkout_id"], "c2");
        let other = checkout_failure("c3", "product_unavailable", "");
        assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(other.code, "product_unavailable");
        assert_eq!(checkout_failure("c4", "", "").code, "checkout_failed");
    }

    #[test]
    fn problem_documents_have_every_member() {
        let body = Problem::new(
            StatusCode::NOT_FOUND,
            "product_not_found",
            "product 9 not found".into(),
        )
        .body(Some("abc"));
        assert_eq!(
            body["type"],
            "https://storefront.dev/problems/product_not_found"
        );
        assert_eq!(body["title"], "Product not found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["detail"], "product 9 not found");
        assert_eq!(body["code"], "product_not_found");
        assert_eq!(body["request_id"], "abc");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
