//! Errors of the orders service, each with its gRPC code and stable reason.

use storefront_runtime::events::EventError;
use storefront_runtime::{ErrorCode, FieldError};
use tonic::Code;

use crate::domain::{OrderId, OrderStatus};

#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("order {0} not found")]
    NotFound(OrderId),
    #[error("order {id} cannot go from {from} to {to}")]
    InvalidTransition {
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
    },
    #[error("orders database holds a malformed row: {0}")]
    Corrupt(String),
    #[error("cannot encode an order event: {0}")]
    Event(#[from] EventError),
    #[error("orders database: {0}")]
    Database(#[from] sqlx::Error),
}

impl OrdersError {
    /// True when trying again later may succeed: the database was unreachable
    /// or busy, not when it refused the data itself (SQLSTATE classes 22, data
    /// exception, and 23, integrity violation), which would refuse it forever.
    pub fn is_transient(&self) -> bool {
        match self {
            OrdersError::Database(sqlx::Error::Database(db)) => !db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            OrdersError::Database(_) => true,
            _ => false,
        }
    }
}

impl ErrorCode for OrdersError {
    fn code(&self) -> Code {
        use OrdersError::*;
        match self {
            Invalid(_) => Code::InvalidArgument,
            NotFound(_) => Code::NotFound,
            InvalidTransition { .. } => Code::FailedPrecondition,
            Database(error) => storefront_runtime::db::code_of(error),
            Corrupt(_) | Event(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        use OrdersError::*;
        match self {
            Invalid(_) => "INVALID_ARGUMENT",
            NotFound(_) => "ORDER_NOT_FOUND",
            InvalidTransition { .. } => "INVALID_TRANSITION",
            Database(error) => storefront_runtime::db::reason_of(error),
            Corrupt(_) | Event(_) => "INTERNAL",
        }
    }
}

impl From<OrdersError> for tonic::Status {
    fn from(error: OrdersError) -> Self {
        storefront_runtime::status_of(&error)
    }
}
