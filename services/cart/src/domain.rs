//! Cart types, checked once at the edge (gRPC requests, events, stored rows),
//! and the cart rules: at most 50 products, 1..=99 of each, adding adds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_proto::cart::v1 as pb;
use storefront_proto::events::v1::CheckoutCompleted;
use storefront_runtime::{Currency, FieldError, Money};
use uuid::Uuid;

use crate::error::CartError;

/// Most distinct products in one cart.
pub const MAX_LINES: usize = 50;
/// Most units of one product in a cart.
pub const MAX_QUANTITY: i32 = 99;
pub use storefront_runtime::{ProductId, UserId};

/// How many of a product a cart line holds: 1 to 99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(field: &'static str, quantity: i32) -> Result<Self, FieldError> {
        if (1..=MAX_QUANTITY).contains(&quantity) {
            Ok(Quantity(quantity))
        } else {
            Err(FieldError::new(
                field,
                format!("must be between 1 and {MAX_QUANTITY}, got {quantity}"),
            ))
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// What the product service says about a product when it is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price: Money,
}

/// One product in a cart, with the name and unit price it had when last added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredLine", into = "StoredLine")]
pub struct CartLine {
    pub product_id: ProductId,
    pub name: String,
    pub unit_price: Money,
    pub quantity: Quantity,
    pub added_at: DateTime<Utc>,
}

impl CartLine {
    /// Unit price times quantity (`None` only on overflow).
    pub fn total(&self) -> Option<Money> {
        self.unit_price.times(i64::from(self.quantity.get()))
    }
}

/// A cart line as JSON, in the database's `items` array and in the cache.
#[derive(Serialize, Deserialize)]
struct StoredLine {
    product_id: i64,
    name: String,
    unit_price_minor: i64,
    currency: String,
    quantity: i32,
    added_at: DateTime<Utc>,
}

impl TryFrom<StoredLine> for CartLine {
    type Error = FieldError;

    fn try_from(line: StoredLine) -> Result<Self, Self::Error> {
        let currency = Currency::try_from(line.currency.as_str())
            .map_err(|e| FieldError::new("currency", e))?;
        Ok(CartLine {
            product_id: ProductId::parse("product_id", line.product_id)?,
            name: line.name,
            unit_price: Money::new(line.unit_price_minor, currency)
                .map_err(|e| FieldError::new("unit_price_minor", e))?,
            quantity: Quantity::parse("quantity", line.quantity)?,
            added_at: line.added_at,
        })
    }
}

impl From<CartLine> for StoredLine {
    fn from(line: CartLine) -> Self {
        StoredLine {
            product_id: line.product_id.get(),
            name: line.name,
            unit_price_minor: line.unit_price.minor(),
            currency: line.unit_price.currency().as_str().to_owned(),
            quantity: line.quantity.get(),
            added_at: line.added_at,
        }
    }
}

/// A user's cart. A user without a stored cart has an empty one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub user_id: UserId,
    /// In the order the products were first added.
    pub lines: Vec<CartLine>,
    /// When the cart was last written; `None` for a cart never written.
    pub updated_at: Option<DateTime<Utc>>,
    /// When the cart expires unless written again; `None` for a cart never written.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Cart {
    pub fn empty(user_id: UserId) -> Self {
        Cart {
            user_id,
            lines: Vec::new(),
            updated_at: None,
            expires_at: None,
        }
    }

    /// False once the cart has sat idle past its expiry: it then reads as empty.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    /// The currency of the cart: its lines', or USD while it is empty.
    pub fn currency(&self) -> Currency {
        self.lines
            .first()
            .map_or(Currency::USD, |line| line.unit_price.currency())
    }

    /// Units of all products together.
    pub fn item_count(&self) -> i32 {
        self.lines.iter().map(|line| line.quantity.get()).sum()
    }

    /// The sum of the line totals (`None` only on overflow or mixed currencies,
    /// which [`add`](Self::add) and [`set_quantity`](Self::set_quantity) refuse).
    pub fn total(&self) -> Option<Money> {
        self.lines
            .iter()
            .try_fold(Money::zero(self.currency()), |sum, line| {
                sum.plus(line.total()?)
            })
    }

    fn line_mut(&mut self, product_id: ProductId) -> Option<&mut CartLine> {
        self.lines
            .iter_mut()
            .find(|line| line.product_id == product_id)
    }

    /// Adds `quantity` of `product`: to its line if there is one (refreshing
    /// its name and price to the catalog's current ones), else as a new line.
    pub fn add(
        &mut self,
        product: &Product,
        quantity: Quantity,
        now: DateTime<Utc>,
    ) -> Result<(), CartError> {
        if !self.lines.is_empty() && product.price.currency() != self.currency() {
            return Err(CartError::CurrencyMismatch {
                product: product.id,
                found: product.price.currency().to_string(),
                expected: self.currency().to_string(),
            });
        }
        let held = self.lines.len();
        match self.line_mut(product.id) {
            Some(line) => {
                let wanted = line.quantity.get() + quantity.get();
                line.quantity = Quantity::parse("quantity", wanted).map_err(|_| {
                    FieldError::new(
                        "quantity",
                        format!(
                            "the cart holds {} of product {}; adding {} would make {wanted}, \
                             at most {MAX_QUANTITY} are allowed",
                            line.quantity.get(),
                            product.id,
                            quantity.get()
                        ),
                    )
                })?;
                line.name.clone_from(&product.name);
                line.unit_price = product.price;
            }
            None if held >= MAX_LINES => return Err(CartError::CartLimitExceeded),
            None => self.lines.push(CartLine {
                product_id: product.id,
                name: product.name.clone(),
                unit_price: product.price,
                quantity,
                added_at: now,
            }),
        }
        self.total().map(|_| ()).ok_or(CartError::TotalOverflow)
    }

    /// Sets the quantity of a product already in the cart.
    pub fn set_quantity(
        &mut self,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Result<(), CartError> {
        let line = self
            .line_mut(product_id)
            .ok_or(CartError::ItemNotFound(product_id))?;
        line.quantity = quantity;
        self.total().map(|_| ()).ok_or(CartError::TotalOverflow)
    }

    pub fn remove(&mut self, product_id: ProductId) -> Result<(), CartError> {
        let before = self.lines.len();
        self.lines.retain(|line| line.product_id != product_id);
        if self.lines.len() == before {
            return Err(CartError::ItemNotFound(product_id));
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.lines.clear();
    }

    /// Takes out what a checkout bought: each checked-out quantity is
    /// subtracted from its line, and a line left with nothing is dropped. What
    /// was added after the checkout stays. True when anything changed.
    pub fn take_checked_out(&mut self, checked_out: &[CheckoutLine]) -> bool {
        let mut changed = false;
        for bought in checked_out {
            let Some(index) = self
                .lines
                .iter()
                .position(|line| line.product_id == bought.product_id)
            else {
                continue;
            };
            changed = true;
            let left = self.lines[index]
                .quantity
                .get()
                .saturating_sub(bought.quantity);
            match Quantity::parse("quantity", left) {
                Ok(left) => self.lines[index].quantity = left,
                Err(_) => {
                    self.lines.remove(index);
                }
            }
        }
        changed
    }
}

/// A checked AddItem request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddItem {
    pub user_id: UserId,
    pub product_id: ProductId,
    pub quantity: Quantity,
}

impl TryFrom<&pb::AddItemRequest> for AddItem {
    type Error = FieldError;

    fn try_from(request: &pb::AddItemRequest) -> Result<Self, Self::Error> {
        Ok(AddItem {
            user_id: UserId::parse("user_id", &request.user_id)?,
            product_id: ProductId::parse("product_id", request.product_id)?,
            quantity: Quantity::parse("quantity", request.quantity)?,
        })
    }
}

/// A checked UpdateItem request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateItem {
    pub user_id: UserId,
    pub product_id: ProductId,
    pub quantity: Quantity,
}

impl TryFrom<&pb::UpdateItemRequest> for UpdateItem {
    type Error = FieldError;

    fn try_from(request: &pb::UpdateItemRequest) -> Result<Self, Self::Error> {
        Ok(UpdateItem {
            user_id: UserId::parse("user_id", &request.user_id)?,
            product_id: ProductId::parse("product_id", request.product_id)?,
            quantity: Quantity::parse("quantity", request.quantity)?,
        })
    }
}

/// A checked RemoveItem request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveItem {
    pub user_id: UserId,
    pub product_id: ProductId,
}

impl TryFrom<&pb::RemoveItemRequest> for RemoveItem {
    type Error = FieldError;

    fn try_from(request: &pb::RemoveItemRequest) -> Result<Self, Self::Error> {
        Ok(RemoveItem {
            user_id: UserId::parse("user_id", &request.user_id)?,
            product_id: ProductId::parse("product_id", request.product_id)?,
        })
    }
}

/// A product and how many of it a checkout bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutLine {
    pub product_id: ProductId,
    pub quantity: i32,
}

/// A checked CheckoutCompleted event: whose cart, and what left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOut {
    pub checkout_id: Uuid,
    pub user_id: UserId,
    pub lines: Vec<CheckoutLine>,
}

impl TryFrom<&CheckoutCompleted> for CheckedOut {
    type Error = FieldError;

    fn try_from(event: &CheckoutCompleted) -> Result<Self, Self::Error> {
        let checkout_id = storefront_runtime::error::parse_uuid("checkout_id", &event.checkout_id)?;
        let user_id = UserId::parse("user_id", &event.user_id)?;
        let lines = event
            .items
            .iter()
            .map(|item| {
                if item.quantity <= 0 {
                    return Err(FieldError::new(
                        "items.quantity",
                        format!(
                            "must be positive, got {} for product {}",
                            item.quantity, item.product_id
                        ),
                    ));
                }
                Ok(CheckoutLine {
                    product_id: ProductId::parse("items.product_id", item.product_id)?,
                    quantity: item.quantity,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(CheckedOut {
            checkout_id,
            user_id,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("user_id", "user-1").unwrap_or_else(|e| panic!("{e}"))
    }

    fn pid(id: i64) -> ProductId {
        ProductId::parse("product_id", id).expect("a positive id")
    }

    fn product(id: i64, cents: i64) -> Product {
        Product {
            id: pid(id),
            name: format!("product {id}"),
            price: Money::new(cents, Currency::USD).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn quantities(cart: &Cart) -> Vec<(i64, i32)> {
        cart.lines
            .iter()
            .map(|line| (line.product_id.get(), line.quantity.get()))
            .collect()
    }

    fn field_of<T>(result: Result<T, FieldError>) -> &'static str {
        result.err().map_or("", |e| e.field)
    }

    #[test]
    fn edge_values_are_checked() {
        assert_eq!(field_of(ProductId::parse("product_id", 0)), "product_id");
        assert_eq!(field_of(ProductId::parse("product_id", -3)), "product_id");
        for bad in [0, -1, 100] {
            assert_eq!(field_of(Quantity::parse("quantity", bad)), "quantity");
        }
        assert!(Quantity::parse("quantity", 99).is_ok());
    }

    #[test]
    fn adding_adds_up_to_99() {
        let mut cart = Cart::empty(user());
        let now = Utc::now();
        let q = |n| Quantity::parse("quantity", n).unwrap_or_else(|e| panic!("{e}"));
        assert!(cart.add(&product(1, 100), q(98), now).is_ok());
        let over = cart.add(&product(1, 100), q(2), now);
        assert!(
            matches!(over, Err(CartError::Invalid(ref e)) if e.field == "quantity"),
            "{over:?}"
        );
        assert!(cart.add(&product(1, 150), q(1), now).is_ok());
        assert_eq!(quantities(&cart), vec![(1, 99)]);
        assert_eq!(cart.lines[0].unit_price.minor(), 150, "price refreshed");
        assert_eq!(cart.total().map(|m| m.minor()), Some(99 * 150));
    }

    #[test]
    fn at_most_50_products() {
        let mut cart = Cart::empty(user());
        let now = Utc::now();
        let one = Quantity(1);
        for id in 1..=50 {
            assert!(cart.add(&product(id, 1), one, now).is_ok());
        }
        assert!(matches!(
            cart.add(&product(51, 1), one, now),
            Err(CartError::CartLimitExceeded)
        ));
        assert!(
            cart.add(&product(50, 1), one, now).is_ok(),
            "more of a product already held"
        );
        assert_eq!(cart.item_count(), 51);
    }

    #[test]
    fn checkout_takes_only_what_it_bought() {
        let mut cart = Cart::empty(user());
        let now = Utc::now();
        for (id, n) in [(1, 3), (2, 1), (3, 2)] {
            assert!(cart.add(&product(id, 10), Quantity(n), now).is_ok());
        }
        let bought = [
            CheckoutLine {
                product_id: pid(1),
                quantity: 2,
            },
            CheckoutLine {
                product_id: pid(2),
                quantity: 1,
            },
            CheckoutLine {
                product_id: pid(9),
                quantity: 1,
            },
        ];
        assert!(cart.take_checked_out(&bought));
        assert_eq!(quantities(&cart), vec![(1, 1), (3, 2)]);
        assert!(!cart.take_checked_out(&[CheckoutLine {
            product_id: pid(9),
            quantity: 1
        }]));
    }

    #[test]
    fn lines_survive_json() {
        let mut cart = Cart::empty(user());
        assert!(
            cart.add(&product(4, 39_999), Quantity(2), Utc::now())
                .is_ok()
        );
        let json = serde_json::to_string(&cart).unwrap_or_default();
        assert!(json.contains("\"unit_price_minor\":39999"), "{json}");
        let back: Result<Cart, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(cart));
        let corrupt = json.replace("\"quantity\":2", "\"quantity\":0");
        assert!(serde_json::from_str::<Cart>(&corrupt).is_err());
    }
}
