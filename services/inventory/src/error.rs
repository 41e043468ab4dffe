//! Errors of the inventory, each with its gRPC code and stable reason.

use storefront_runtime::consumer::HandlerError;
use storefront_runtime::{ErrorCode, FieldError};
use tonic::Code;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("product {0} has no stock record")]
    UnknownProduct(i64),
    #[error(
        "insufficient stock for product {product_id}: requested {requested}, available {available}"
    )]
    InsufficientStock {
        product_id: i64,
        requested: i64,
        available: i64,
    },
    #[error("reservation {0} not found")]
    ReservationNotFound(Uuid),
    #[error("reservation {0} has expired; its stock was returned")]
    ReservationExpired(Uuid),
    #[error("reservation {0} was released")]
    ReservationReleased(Uuid),
    #[error("reservation {0} is confirmed; confirmed stock cannot be released")]
    ReservationConfirmed(Uuid),
    #[error("reservation {0} was returned when its order was cancelled")]
    ReservationReturned(Uuid),
    #[error("inventory database holds an unknown reservation status {0:?}")]
    CorruptStatus(String),
    #[error("inventory database: {0}")]
    Database(#[from] sqlx::Error),
}

impl InventoryError {
    /// What the order-events consumer does with a record this error stopped:
    /// wait for an unreachable database, dead-letter refused data at once,
    /// and give anything else its bounded attempts.
    pub fn for_consumer(&self, context: impl std::fmt::Display) -> HandlerError {
        match self {
            InventoryError::Database(error) => HandlerError::from_database(context, error),
            InventoryError::Invalid(_) => HandlerError::Reject(format!("{context}: {self}")),
            _ => HandlerError::Failed(format!("{context}: {self}")),
        }
    }
}

impl ErrorCode for InventoryError {
    fn code(&self) -> Code {
        use InventoryError::*;
        match self {
            Invalid(_) => Code::InvalidArgument,
            UnknownProduct(_) | ReservationNotFound(_) => Code::NotFound,
            InsufficientStock { .. }
            | ReservationExpired(_)
            | ReservationReleased(_)
            | ReservationConfirmed(_)
            | ReservationReturned(_) => Code::FailedPrecondition,
            Database(error) => storefront_runtime::db::code_of(error),
            CorruptStatus(_) => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        use InventoryError::*;
        match self {
            Invalid(_) => "INVALID_ARGUMENT",
            UnknownProduct(_) => "PRODUCT_NOT_FOUND",
            InsufficientStock { .. } => "INSUFFICIENT_STOCK",
            ReservationNotFound(_) => "RESERVATION_NOT_FOUND",
            ReservationExpired(_) => "RESERVATION_EXPIRED",
            ReservationReleased(_) => "RESERVATION_RELEASED",
            ReservationConfirmed(_) => "RESERVATION_CONFIRMED",
            ReservationReturned(_) => "RESERVATION_RETURNED",
            Database(error) => storefront_runtime::db::reason_of(error),
            CorruptStatus(_) => "INTERNAL",
        }
    }
}

impl From<InventoryError> for tonic::Status {
    fn from(error: InventoryError) -> Self {
        storefront_runtime::status_of(&error)
    }
}
