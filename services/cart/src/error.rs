//! Errors of the cart service, each with its gRPC code and stable reason.

use std::sync::Arc;

use storefront_runtime::consumer::HandlerError;
use storefront_runtime::{ErrorCode, FieldError};
use tonic::Code;

use crate::domain::{MAX_LINES, ProductId};

/// Cloneable, so that every caller waiting on one shared cart load gets the
/// same answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CartError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("product {0} is not in the cart")]
    ItemNotFound(ProductId),
    #[error("a cart holds at most {MAX_LINES} different products")]
    CartLimitExceeded,
    #[error("product {product} is priced in {found}, but the cart holds {expected}")]
    CurrencyMismatch {
        product: ProductId,
        found: String,
        expected: String,
    },
    #[error("the cart total would exceed the largest amount money can hold")]
    TotalOverflow,
    #[error("product service: {message}")]
    ProductUnavailable { code: Code, message: String },
    #[error("product service answered unexpectedly: {0}")]
    ProductService(String),
    #[error("cart database: {0}")]
    Database(Arc<sqlx::Error>),
    #[error("cart load failed: {0}")]
    Load(String),
}

impl From<sqlx::Error> for CartError {
    fn from(error: sqlx::Error) -> Self {
        CartError::Database(Arc::new(error))
    }
}

impl CartError {
    /// What the CheckoutCompleted consumer does with a record whose handling
    /// met this error (`context` names the event): the database unreachable
    /// is waited for, never dead-lettered; data it refuses (SQLSTATE 22, 23)
    /// is dead-lettered at once; anything else gets a bounded number of
    /// attempts, then the DLQ.
    pub fn for_consumer(&self, context: impl std::fmt::Display) -> HandlerError {
        match self {
            CartError::Database(error) => HandlerError::from_database(context, error),
            _ => HandlerError::Failed(format!("{context}: {self}")),
        }
    }
}

impl ErrorCode for CartError {
    fn code(&self) -> Code {
        use CartError::*;
        match self {
            Invalid(_) => Code::InvalidArgument,
            ProductNotFound(_) | ItemNotFound(_) => Code::NotFound,
            CartLimitExceeded | CurrencyMismatch { .. } | TotalOverflow => Code::FailedPrecondition,
            ProductUnavailable { code, .. } => *code,
            Database(error) => storefront_runtime::db::code_of(error),
            ProductService(_) | Load(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        use CartError::*;
        match self {
            Invalid(_) => "INVALID_ARGUMENT",
            ProductNotFound(_) => "PRODUCT_NOT_FOUND",
            ItemNotFound(_) => "ITEM_NOT_FOUND",
            CartLimitExceeded => "CART_LIMIT_EXCEEDED",
            CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            TotalOverflow => "CART_TOTAL_OVERFLOW",
            ProductUnavailable { .. } => "PRODUCT_SERVICE_UNAVAILABLE",
            Database(error) => storefront_runtime::db::reason_of(error),
            ProductService(_) | Load(_) => "INTERNAL",
        }
    }
}

impl From<CartError> for tonic::Status {
    fn from(error: CartError) -> Self {
        storefront_runtime::status_of(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_database_is_waited_for() {
        let verdict =
            |error: sqlx::Error| CartError::from(error).for_consumer("CheckoutCompleted c1");
        assert!(matches!(
            verdict(sqlx::Error::PoolTimedOut),
            HandlerError::Unavailable(_)
        ));
        let HandlerError::Failed(reason) = verdict(sqlx::Error::Decode("bad lines".into())) else {
            panic!("a cart that cannot be decoded is this record's failure");
        };
        assert!(reason.starts_with("CheckoutCompleted c1: "), "{reason}");
    }
}
