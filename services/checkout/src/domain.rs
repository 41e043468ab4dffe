//! Checkout types, checked once at the gRPC edge (who checks out, under which
//! key, which session), the priced lines of an order, and the pricing rule:
//! prices come from the catalog, never from the cart.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use storefront_proto::checkout::v1 as pb;
use storefront_proto::common::v1::ShippingAddress;
use storefront_runtime::error::{parse_uuid, printable};
use storefront_runtime::{Currency, FieldError, Money};
use uuid::Uuid;

use crate::saga::machine::SagaState;

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest payment method name and address part, in characters.
pub const MAX_TEXT: usize = 200;
/// Largest quantity of one line (what the inventory accepts).
pub const MAX_QUANTITY: i32 = 10_000;

pub use storefront_runtime::UserId;

/// The client's name for one checkout attempt; unique per user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if text.is_empty() || text.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(FieldError::new(
                "idempotency_key",
                format!(
                    "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes, got {}",
                    text.len()
                ),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError::new(
                "idempotency_key",
                "must not contain control characters",
            ));
        }
        Ok(IdempotencyKey(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One checkout session; also the idempotency key of its reservation and charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckoutId(Uuid);

impl CheckoutId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        CheckoutId(Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Result<Self, FieldError> {
        parse_uuid("checkout_id", text).map(CheckoutId)
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for CheckoutId {
    fn from(id: Uuid) -> Self {
        CheckoutId(id)
    }
}

impl fmt::Display for CheckoutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A checked Checkout request.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutOrder {
    pub user_id: UserId,
    pub idempotency_key: IdempotencyKey,
    /// Passed to the payment service as given; it knows which methods exist.
    pub payment_method: String,
    pub shipping_address: Option<ShippingAddress>,
}

impl TryFrom<&pb::CheckoutRequest> for CheckoutOrder {
    type Error = FieldError;

    fn try_from(request: &pb::CheckoutRequest) -> Result<Self, Self::Error> {
        printable("payment_method", &request.payment_method, MAX_TEXT)?;
        if let Some(address) = &request.shipping_address {
            for (field, text) in [
                ("shipping_address.name", &address.name),
                ("shipping_address.line1", &address.line1),
                ("shipping_address.line2", &address.line2),
                ("shipping_address.city", &address.city),
                ("shipping_address.postal_code", &address.postal_code),
                ("shipping_address.country", &address.country),
            ] {
                printable(field, text, MAX_TEXT)?;
            }
        }
        Ok(CheckoutOrder {
            user_id: UserId::parse("user_id", &request.user_id)?,
            idempotency_key: IdempotencyKey::parse(&request.idempotency_key)?,
            payment_method: request.payment_method.clone(),
            shipping_address: request.shipping_address.clone(),
        })
    }
}

/// How many of a product a line holds: 1..=[`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i32);

impl Quantity {
    pub fn new(quantity: i32) -> Result<Self, String> {
        if (1..=MAX_QUANTITY).contains(&quantity) {
            Ok(Quantity(quantity))
        } else {
            Err(format!(
                "quantity must be 1 to {MAX_QUANTITY}, got {quantity}"
            ))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// A line of the cart as the checkout reads it: only product and quantity
/// count; the cart's names and prices are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLine {
    pub product_id: i64,
    pub quantity: Quantity,
}

/// A product as the catalog prices it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub product_id: i64,
    pub name: String,
    pub price: Money,
}

/// A priced line of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub product_id: i64,
    pub name: String,
    pub unit_price: Money,
    pub quantity: Quantity,
    pub line_total: Money,
}

/// The cart priced by the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Lines of products the catalog knows, in product order.
    pub items: Vec<LineItem>,
    pub total: Money,
    /// Products in the cart the catalog does not know.
    pub missing: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("the order total overflows")]
    Overflow,
    #[error("the cart mixes currencies ({0} and {1})")]
    MixedCurrencies(Currency, Currency),
}

/// The cart as it will be once `bought` is taken out: what the cart service
/// does when a CheckoutCompleted arrives (each bought quantity subtracted from
/// its product's line, a line left with nothing dropped), done ahead of it.
pub fn without_bought<'a>(
    lines: Vec<CartLine>,
    bought: impl IntoIterator<Item = &'a LineItem>,
) -> Vec<CartLine> {
    let mut left: Vec<(i64, i32)> = lines
        .iter()
        .map(|line| (line.product_id, line.quantity.get()))
        .collect();
    for item in bought {
        if let Some(line) = left.iter_mut().find(|(id, _)| *id == item.product_id) {
            line.1 = line.1.saturating_sub(item.quantity.get());
        }
    }
    left.into_iter()
        .filter_map(|(product_id, quantity)| {
            Quantity::new(quantity).ok().map(|quantity| CartLine {
                product_id,
                quantity,
            })
        })
        .collect()
}

/// Prices `cart` with `catalog`. Lines of the same product are merged.
pub fn price(cart: &[CartLine], catalog: &[CatalogEntry]) -> Result<Pricing, PricingError> {
    let mut quantities: BTreeMap<i64, i64> = BTreeMap::new();
    for line in cart {
        *quantities.entry(line.product_id).or_default() += i64::from(line.quantity.get());
    }
    let mut items = Vec::with_capacity(quantities.len());
    let mut missing = Vec::new();
    let mut total: Option<Money> = None;
    for (product_id, quantity) in quantities {
        let Some(entry) = catalog.iter().find(|e| e.product_id == product_id) else {
            missing.push(product_id);
            continue;
        };
        let quantity = i32::try_from(quantity)
            .ok()
            .and_then(|q| Quantity::new(q).ok())
            .ok_or(PricingError::Overflow)?;
        let line_total = entry
            .price
            .times(i64::from(quantity.get()))
            .ok_or(PricingError::Overflow)?;
        total = Some(match total {
            None => line_total,
            Some(sum) if sum.currency() != line_total.currency() => {
                return Err(PricingError::MixedCurrencies(
                    sum.currency(),
                    line_total.currency(),
                ));
            }
            Some(sum) => sum.plus(line_total).ok_or(PricingError::Overflow)?,
        });
        items.push(LineItem {
            product_id,
            name: entry.name.clone(),
            unit_price: entry.price,
            quantity,
            line_total,
        });
    }
    Ok(Pricing {
        items,
        total: total.unwrap_or_else(|| Money::zero(Currency::USD)),
        missing,
    })
}

/// One checkout session: the order as priced when it began and where its saga stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: CheckoutId,
    pub user_id: UserId,
    pub idempotency_key: IdempotencyKey,
    pub payment_method: String,
    pub shipping_address: Option<ShippingAddress>,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub saga: SagaState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD).unwrap_or_else(|e| panic!("{e}"))
    }

    fn line(product_id: i64, quantity: i32) -> CartLine {
        CartLine {
            product_id,
            quantity: Quantity::new(quantity).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn entry(product_id: i64, name: &str, minor: i64) -> CatalogEntry {
        CatalogEntry {
            product_id,
            name: name.into(),
            price: usd(minor),
        }
    }

    #[test]
    fn ids_and_keys_are_checked_at_the_edge() {
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)).map_err(|e| e.field),
            Err("idempotency_key")
        );
        assert!(IdempotencyKey::parse("").is_err());
        assert_eq!(
            CheckoutId::parse("nope").map_err(|e| e.field),
            Err("checkout_id")
        );
        assert!(CheckoutId::parse(&Uuid::new_v4().to_string()).is_ok());
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(MAX_QUANTITY + 1).is_err());
    }

    #[test]
    fn catalog_prices_the_cart() {
        let pricing = price(
            &[line(2, 3), line(1, 1)],
            &[entry(1, "Laptop", 129_999), entry(2, "Mouse", 2_999)],
        );
        let pricing = pricing.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pricing.total, usd(129_999 + 3 * 2_999));
        assert_eq!(
            pricing
                .items
                .iter()
                .map(|i| (i.product_id, i.name.as_str(), i.line_total.minor()))
                .collect::<Vec<_>>(),
            vec![(1, "Laptop", 129_999), (2, "Mouse", 8_997)]
        );
        assert!(pricing.missing.is_empty());
    }

    #[test]
    fn repeated_products_merge_and_unknown_ones_are_reported() {
        let pricing = price(
            &[line(1, 1), line(999, 2), line(1, 2)],
            &[entry(1, "Laptop", 100)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pricing.items.len(), 1);
        assert_eq!(pricing.items[0].quantity.get(), 3);
        assert_eq!(pricing.total, usd(300));
        assert_eq!(pricing.missing, vec![999]);
    }

    #[test]
    fn overflow_and_mixed_currencies_are_refused() {
        assert_eq!(
            price(&[line(1, 2)], &[entry(1, "Gold", i64::MAX)]),
            Err(PricingError::Overflow)
        );
        let eur = Currency::try_from("EUR").unwrap_or_else(|e| panic!("{e}"));
        let euro_item = CatalogEntry {
            product_id: 2,
            name: "Croissant".into(),
            price: Money::new(100, eur).unwrap_or_else(|e| panic!("{e}")),
        };
        assert_eq!(
            price(&[line(1, 1), line(2, 1)], &[entry(1, "A", 1), euro_item]),
            Err(PricingError::MixedCurrencies(Currency::USD, eur))
        );
    }
}
