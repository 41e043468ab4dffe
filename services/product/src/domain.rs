//! Catalog types, checked once at the gRPC edge.

use storefront_runtime::{FieldError, Money};

pub use storefront_runtime::ProductId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub image_url: String,
}

/// Largest number of ids in one batch request.
pub const MAX_BATCH: usize = 100;

/// Parses a batch of ids: at least one, at most [`MAX_BATCH`], duplicates dropped, order kept.
pub fn parse_batch(field: &'static str, ids: &[i64]) -> Result<Vec<ProductId>, FieldError> {
    if ids.is_empty() {
        return Err(FieldError::new(field, "must name at least one product"));
    }
    if ids.len() > MAX_BATCH {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_BATCH} ids, got {}", ids.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut parsed = Vec::with_capacity(ids.len());
    for &id in ids {
        let id = ProductId::parse(field, id)?;
        if seen.insert(id) {
            parsed.push(id);
        }
    }
    Ok(parsed)
}

/// One page of the catalog: products with an id after `after`, at most `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: i64,
    pub size: u32,
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 100;

impl PageRequest {
    /// `page_size` 0 means the default; the token is the last id of the previous page.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, FieldError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > 0 && n as u32 <= MAX_PAGE_SIZE => n as u32,
            n => {
                return Err(FieldError::new(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE}, got {n}"),
                ));
            }
        };
        let after = if page_token.is_empty() {
            0
        } else {
            page_token
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    FieldError::new(
                        "page_token",
                        format!("is not a token this service issued: {page_token:?}"),
                    )
                })?
        };
        Ok(PageRequest { after, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert!(ProductId::parse("product_id", 0).is_err());
        assert!(ProductId::parse("product_id", -3).is_err());
        assert_eq!(ProductId::parse("product_id", 7).map(ProductId::get), Ok(7));
    }

    #[test]
    fn batches_are_bounded_and_deduplicated() {
        assert!(parse_batch("product_ids", &[]).is_err());
        assert!(parse_batch("product_ids", &[1; 101]).is_err());
        let ids = parse_batch("product_ids", &[3, 1, 3])
            .map(|v| v.into_iter().map(ProductId::get).collect::<Vec<_>>());
        assert_eq!(ids, Ok(vec![3, 1]));
    }

    #[test]
    fn pages_parse_sizes_and_tokens() {
        assert_eq!(
            PageRequest::parse(0, ""),
            Ok(PageRequest { after: 0, size: 50 })
        );
        assert_eq!(
            PageRequest::parse(2, "4"),
            Ok(PageRequest { after: 4, size: 2 })
        );
        assert!(PageRequest::parse(101, "").is_err());
        assert!(PageRequest::parse(-1, "").is_err());
        assert!(PageRequest::parse(10, "abc").is_err());
    }
}
