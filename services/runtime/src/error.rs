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
    /// Facts a caller can act on, such as the `checkout_id` to look at; they
    /// travel as the `ErrorInfo` metadata.
    fn metadata(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
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
    let metadata: std::collections::HashMap<String, String> = error
        .metadata()
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    let details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, metadata);
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

/// Checks free text a user sent (an address line, a payment method name):
/// at most `max_chars` characters and no control characters. PostgreSQL
/// refuses NUL in text and JSONB, and no other control character belongs in
/// such a field, so both are refused here, at the edge, with the field's name.
pub fn printable(field: &'static str, text: &str, max_chars: usize) -> Result<(), FieldError> {
    let length = text.chars().count();
    if length > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters, got {length}"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// The metadata value `key` a `Status` carries, if it came from [`status_of`].
pub fn metadata_of(status: &Status, key: &str) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
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
    fn free_text_is_short_and_printable() {
        assert_eq!(printable("city", "Zürich", 6), Ok(()));
        let long = printable("city", "Zürich", 5).unwrap_err();
        assert_eq!(
            long.to_string(),
            "city: must be at most 5 characters, got 6"
        );
        for hostile in ["a\0b", "\u{7}", "line\nbreak", "\u{9b}"] {
            assert!(printable("city", hostile, 50).is_err(), "{hostile:?}");
        }
    }

    #[test]
    fn internal_details_are_not_leaked() {
        let status = status_of(&Sample::Database);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert_eq!(reason_of(&status).as_deref(), Some("INTERNAL"));
    }
}
