//! Identifiers that several services parse at their edge, checked the same way
//! everywhere.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
