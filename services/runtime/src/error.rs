//! The one mapping from a service's error to a `tonic::Status`. Each crate's
//! error enum says which gRPC code and which stable reason (e.g.
//! `INSUFFICIENT_STOCK`) it is; the reason travels as a `google.rpc.ErrorInfo`
//! detail so callers such as the gateway can branch on it without parsing text.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A request field that failed validation: says which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// The `ErrorInfo.domain` of every Storefront error.
pub const ERROR_DOMAIN: &str = "storefront.dev";

/// What a service error must say about itself to become a `Status`.
pub trait ErrorCode: std::error::Error {
    fn code(&self) -> Code;
    /// A stable, upper-snake-case reason, e.g. `INVALID_ARGUMENT` or `RESERVATION_EXPIRED`.
    fn reason(&self) -> &'static str;
}

/// Converts a service error into a `Status`. Internal errors are logged here and
/// reach the caller only as "internal error": their text may hold SQL or hosts.
pub fn status_of<E: ErrorCode>(error: &E) -> Status {
    let code = error.code();
    let message = if matches!(code, Code::Internal | Code::Unknown) {
        tracing::error!(error = %error, reason = error.reason(), "internal error");
        "internal error".to_owned()
    } else {
        error.to_string()
    };
    let details = ErrorDetails::with_error_info(
        error.reason(),
        ERROR_DOMAIN,
        std::collections::HashMap::<String, String>::new(),
    );
    Status::with_error_details(code, message, details)
}

/// Parses a UUID request field such as `checkout_id`.
pub fn parse_uuid(field: &'static str, text: &str) -> Result<uuid::Uuid, FieldError> {
    if text.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    uuid::Uuid::parse_str(text)
        .map_err(|_| FieldError::new(field, format!("must be a UUID, got {text:?}")))
}

/// The reason a `Status` carries, if it came from [`status_of`].
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("quantity must be 1..=99, got 0")]
        Quantity,
        #[error("connection to 10.0.0.1 refused")]
        Database,
    }

    impl ErrorCode for Sample {
        fn code(&self) -> Code {
            match self {
                Sample::Quantity => Code::InvalidArgument,
                Sample::Database => Code::Internal,
            }
        }
        fn reason(&self) -> &'static str {
            match self {
                Sample::Quantity => "INVALID_QUANTITY",
                Sample::Database => "INTERNAL",
            }
        }
    }

    #[test]
    fn reason_survives_the_status() {
        let status = status_of(&Sample::Quantity);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "quantity must be 1..=99, got 0");
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_QUANTITY"));
    }

    #[test]
    fn internal_details_are_not_leaked() {
        let status = status_of(&Sample::Database);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert_eq!(reason_of(&status).as_deref(), Some("INTERNAL"));
    }
}
