//! Errors of the catalog, each with its gRPC code and stable reason.

use storefront_runtime::{ErrorCode, FieldError};
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("product {0} not found")]
    NotFound(i64),
    #[error("catalog holds a malformed row for product {id}: {message}")]
    CorruptRow { id: i64, message: String },
    #[error("catalog database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ErrorCode for CatalogError {
    fn code(&self) -> Code {
        match self {
            CatalogError::Invalid(_) => Code::InvalidArgument,
            CatalogError::NotFound(_) => Code::NotFound,
            CatalogError::Database(error) => storefront_runtime::db::code_of(error),
            CatalogError::CorruptRow { .. } => Code::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            CatalogError::Invalid(_) => "INVALID_ARGUMENT",
            CatalogError::NotFound(_) => "PRODUCT_NOT_FOUND",
            CatalogError::Database(error) => storefront_runtime::db::reason_of(error),
            CatalogError::CorruptRow { .. } => "INTERNAL",
        }
    }
}

impl From<CatalogError> for tonic::Status {
    fn from(error: CatalogError) -> Self {
        storefront_runtime::status_of(&error)
    }
}
