//! Errors of the payment service, each with its gRPC code and stable reason.

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
    /// True when trying again later may succeed: the database was unreachable
    /// or busy, not when it refused the data itself (SQLSTATE classes 22, data
    /// exception, and 23, integrity violation), which would refuse it forever.
    pub fn is_transient(&self) -> bool {
        match self {
            PaymentError::Database(sqlx::Error::Database(db)) => !db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            PaymentError::Database(_) => true,
            _ => false,
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
