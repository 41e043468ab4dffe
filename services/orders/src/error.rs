//! Errors of the orders service, each with its gRPC code and stable reason.

use storefront_runtime::consumer::HandlerError;
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
    /// What the checkout-events consumer does with a record whose handling
    /// met this error (`context` names the event). The database unreachable:
    /// wait for it, never dead-letter. The data refused (SQLSTATE 22, 23) or
    /// an event that cannot be encoded: the same record fails the same way
    /// every time, dead-letter it now. Anything else (a statement refused
    /// for another reason, a row that cannot be decoded): a bounded number
    /// of attempts, then the DLQ.
    pub fn for_consumer(&self, context: impl std::fmt::Display) -> HandlerError {
        match self {
            OrdersError::Database(error) => HandlerError::from_database(context, error),
            OrdersError::Invalid(_) | OrdersError::Event(_) => {
                HandlerError::Reject(format!("{context}: {self}"))
            }
            OrdersError::NotFound(_)
            | OrdersError::InvalidTransition { .. }
            | OrdersError::Corrupt(_) => HandlerError::Failed(format!("{context}: {self}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_database_is_waited_for() {
        let verdict = |error: OrdersError| error.for_consumer("CheckoutCompleted e1");
        assert!(matches!(
            verdict(OrdersError::Database(sqlx::Error::PoolTimedOut)),
            HandlerError::Unavailable(_)
        ));
        let lost = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            verdict(OrdersError::Database(sqlx::Error::Io(lost))),
            HandlerError::Unavailable(_)
        ));
        // Decoding trouble is the record's (or the row's), not an outage.
        assert!(matches!(
            verdict(OrdersError::Database(sqlx::Error::Decode("bad".into()))),
            HandlerError::Failed(_)
        ));
        assert!(matches!(
            verdict(OrdersError::Corrupt("odd currency".into())),
            HandlerError::Failed(_)
        ));
        let HandlerError::Reject(reason) =
            verdict(OrdersError::Invalid(FieldError::new("total", "negative")))
        else {
            panic!("an invalid order is rejected at once");
        };
        assert!(reason.starts_with("CheckoutCompleted e1: "), "{reason}");
    }
}
