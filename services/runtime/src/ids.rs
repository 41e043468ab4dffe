//! Identifiers that several services parse at their edge, checked the same way
//! everywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// A catalog product id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductId(i64);

impl ProductId {
    /// Parses the request field `field`.
    pub fn parse(field: &'static str, id: i64) -> Result<Self, FieldError> {
        if id > 0 {
            Ok(ProductId(id))
        } else {
            Err(FieldError::new(
                field,
                format!("must be a positive product id, got {id}"),
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest user id, in bytes (UTF-8).
pub const MAX_USER_ID_BYTES: usize = 128;

/// A user id, the JWT `sub`: 1 to [`MAX_USER_ID_BYTES`] bytes of printable
/// characters without surrounding whitespace. Every service checks it the same
/// way, so a caller the gateway admits is one that the cart, checkout, payment
/// and orders accept too. Serialized as the plain string (and checked again
/// when read back).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Parses the request field `field`.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, FieldError> {
        if text.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if text.len() > MAX_USER_ID_BYTES {
            return Err(FieldError::new(
                field,
                format!(
                    "must be at most {MAX_USER_ID_BYTES} bytes, got {}",
                    text.len()
                ),
            ));
        }
        if text.trim() != text || text.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must be printable characters without surrounding whitespace",
            ));
        }
        Ok(UserId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = FieldError;

    fn try_from(text: String) -> Result<Self, FieldError> {
        UserId::parse("user_id", &text)
    }
}

impl From<UserId> for String {
    fn from(user: UserId) -> Self {
        user.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_1_to_128_printable_bytes_without_surrounding_whitespace() {
        let parse = |text: &str| UserId::parse("sub", text).map(|u| u.as_str().to_owned());
        assert_eq!(parse("alice"), Ok("alice".to_owned()));
        assert!(parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            parse(&"a".repeat(129)).map_err(|e| e.to_string()),
            Err("sub: must be at most 128 bytes, got 129".to_owned())
        );
        // Bytes, not characters: 42 euro signs are 126 bytes, 43 are 129.
        assert!(parse(&"€".repeat(42)).is_ok());
        assert!(parse(&"€".repeat(43)).is_err());
        assert_eq!(
            parse("").map_err(|e| e.to_string()),
            Err("sub: is required".to_owned())
        );
        for bad in [" alice", "alice ", "al\nice", "\t", "a\u{7f}b"] {
            assert_eq!(
                UserId::parse("sub", bad).map_err(|e| e.field),
                Err("sub"),
                "{bad:?}"
            );
        }
        // Read back from storage through the same check.
        let json: Result<UserId, _> = serde_json::from_str("\" padded\"");
        assert!(json.is_err());
        assert_eq!(
            serde_json::to_string(&UserId::parse("sub", "bo").ok()).ok(),
            Some("\"bo\"".to_owned())
        );
    }

    #[test]
    fn product_ids_must_be_positive() {
        assert!(ProductId::parse("product_id", 0).is_err());
        assert_eq!(
            ProductId::parse("product_id", -3).map_err(|e| e.to_string()),
            Err("product_id: must be a positive product id, got -3".to_owned())
        );
        assert_eq!(ProductId::parse("product_id", 7).map(ProductId::get), Ok(7));
        assert_eq!(
            ProductId::parse("id", 42).map(|id| id.to_string()),
            Ok("42".to_owned())
        );
    }
}
