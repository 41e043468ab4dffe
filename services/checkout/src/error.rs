//! Errors of the checkout service, each with its gRPC code and stable reason.

use storefront_runtime::events::EventError;
use storefront_runtime::{ErrorCode, FieldError};
use tonic::Code;

use crate::domain::{CheckoutId, PricingError};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("the cart is empty; add items before checking out")]
    CartEmpty,
    #[error("the cart cannot be priced: {0}")]
    Unpriceable(#[from] PricingError),
    #[error("checkout {0} with this idempotency key is still in progress; retry later")]
    InProgress(CheckoutId),
    #[error(
        "checkout {0} of this cart is still in progress; wait for it (GET /api/v1/checkout/{0}) \
         before checking out again"
    )]
    CartBusy(CheckoutId),
    #[error("checkout {0} not found")]
    NotFound(CheckoutId),
    #[error("no checkout of this user has this idempotency key")]
    UnknownKey,
    /// A backend stayed unavailable before a session was stored: nothing happened.
    #[error("{backend} service unavailable: {message}")]
    BackendUnavailable {
        backend: &'static str,
        message: String,
    },
    /// A backend stayed unavailable mid-saga: the session is left to the recovery loop.
    #[error(
        "checkout {checkout_id} is waiting for the {backend} service ({message}); \
         it will be completed or compensated in the background"
    )]
    Pending {
        checkout_id: CheckoutId,
        backend: &'static str,
        message: String,
    },
    /// A backend answered in a way the saga does not expect.
    #[error("{backend} service answered unexpectedly: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    #[error("checkout database holds a malformed session: {0}")]
    Corrupt(String),
    #[error("checkout event: {0}")]
    Event(#[from] EventError),
    #[error("checkout database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ErrorCode for CheckoutError {
    fn code(&self) -> Code {
        use CheckoutError::*;
        match self {
            Invalid(_) => Code::InvalidArgument,
            CartEmpty | Unpriceable(_) => Code::FailedPrecondition,
            InProgress(_) | CartBusy(_) => Code::Aborted,
            NotFound(_) | UnknownKey => Code::NotFound,
            BackendUnavailable { .. } | Pending { .. } => Code::Unavailable,
            Database(error) => storefront_runtime::db::code_of(error),
            Backend { .. } | Corrupt(_) | Event(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        use CheckoutError::*;
        match self {
            Invalid(_) => "INVALID_ARGUMENT",
            CartEmpty => "CART_EMPTY",
            Unpriceable(_) => "CART_NOT_PRICEABLE",
            InProgress(_) | CartBusy(_) => "CHECKOUT_IN_PROGRESS",
            NotFound(_) | UnknownKey => "CHECKOUT_NOT_FOUND",
            BackendUnavailable { .. } => "BACKEND_UNAVAILABLE",
            Pending { .. } => "CHECKOUT_PENDING",
            Database(error) => storefront_runtime::db::reason_of(error),
            Backend { .. } | Corrupt(_) | Event(_) => "INTERNAL",
        }
    }
    fn metadata(&self) -> Vec<(&'static str, String)> {
        use CheckoutError::*;
        match self {
            InProgress(id)
            | CartBusy(id)
            | Pending {
                checkout_id: id, ..
            } => vec![("checkout_id", id.to_string())],
            _ => Vec::new(),
        }
    }
}

impl From<CheckoutError> for tonic::Status {
    fn from(error: CheckoutError) -> Self {
        storefront_runtime::status_of(&error)
    }
}
