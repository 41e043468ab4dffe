//! Errors of the payment service, each with its gRPC code and stable reason.

use storefront_runtime::consumer::HandlerError;
use storefront_runtime::{ErrorCode, FieldError};
use tonic::Code;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("payment {0} not found")]
    NotFound(Uuid),
    #[error("checkout {0} was already charged with a different user, amount or payment method")]
    ConflictingCharge(Uuid),
    #[error("payment {0} was declined; there is nothing to refund")]
    NotRefundable(Uuid),
    #[error("payment provider unavailable (simulated outage); nothing was charged, retry")]
    ProviderUnavailable,
    #[error("payment database holds a malformed row: {0}")]
    CorruptRow(String),
    #[error("payment database: {0}")]
    Database(#[from] sqlx::Error),
}

impl PaymentError {
    /// What the order-events consumer does with a record this error stopped:
    /// wait for an unreachable database, dead-letter refused data at once,
    /// and give anything else its bounded attempts.
    pub fn for_consumer(&self, context: impl std::fmt::Display) -> HandlerError {
        match self {
            PaymentError::Database(error) => HandlerError::from_database(context, error),
            PaymentError::Invalid(_) => HandlerError::Reject(format!("{context}: {self}")),
            _ => HandlerError::Failed(format!("{context}: {self}")),
        }
    }
}

impl ErrorCode for PaymentError {
    fn code(&self) -> Code {
        use PaymentError::*;
        match self {
            Invalid(_) => Code::InvalidArgument,
            NotFound(_) => Code::NotFound,
            ConflictingCharge(_) | NotRefundable(_) => Code::FailedPrecondition,
            ProviderUnavailable => Code::Unavailable,
            Database(error) => storefront_runtime::db::code_of(error),
            CorruptRow(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        use PaymentError::*;
        match self {
            Invalid(_) => "INVALID_ARGUMENT",
            NotFound(_) => "PAYMENT_NOT_FOUND",
            ConflictingCharge(_) => "CONFLICTING_CHARGE",
            NotRefundable(_) => "NOT_REFUNDABLE",
            ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Database(error) => storefront_runtime::db::reason_of(error),
            CorruptRow(_) => "INTERNAL",
        }
    }
}

impl From<PaymentError> for tonic::Status {
    fn from(error: PaymentError) -> Self {
        storefront_runtime::status_of(&error)
    }
}
