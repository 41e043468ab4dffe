//! Order types, checked once where they enter (a gRPC request or a
//! CheckoutCompleted event), and the status life cycle as a pure function.

use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use storefront_proto::common::v1 as common;
use storefront_proto::events::v1::CheckoutCompleted;
use storefront_proto::orders::v1 as pb;
use storefront_runtime::error::parse_uuid;
use storefront_runtime::{FieldError, Money};
use uuid::Uuid;

/// Largest number of lines in one order (a cart holds at most 50).
pub const MAX_ITEMS: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i32 = 10_000;
/// Longest user id, in bytes (a JWT `sub`).
/// Longest product name, in bytes.
pub const MAX_NAME_LEN: usize = 1_000;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

/// The id of an order: a UUID (v7, so ids sort roughly by creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh id.
    pub fn generate() -> Self {
        OrderId(Uuid::now_v7())
    }

    /// Parses the `order_id` request field.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        parse_uuid("order_id", text).map(OrderId)
    }

    pub fn get(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for OrderId {
    fn from(id: Uuid) -> Self {
        OrderId(id)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub use storefront_runtime::UserId;

/// Where an order stands. The life cycle is [`OrderStatus::can_become`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Confirmed,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The name stored in the database and carried by events, e.g. `CONFIRMED`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Processing => "PROCESSING",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// The transition table: CONFIRMED → PROCESSING → SHIPPED → DELIVERED, and
    /// CANCELLED from CONFIRMED or PROCESSING. Nothing else, not even staying put.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Confirmed, Processing)
                | (Processing, Shipped)
                | (Shipped, Delivered)
                | (Confirmed | Processing, Cancelled)
        )
    }

    /// Parses the proto enum of the `status` request field.
    pub fn from_proto(value: i32) -> Result<Self, FieldError> {
        match pb::OrderStatus::try_from(value) {
            Ok(pb::OrderStatus::Confirmed) => Ok(OrderStatus::Confirmed),
            Ok(pb::OrderStatus::Processing) => Ok(OrderStatus::Processing),
            Ok(pb::OrderStatus::Shipped) => Ok(OrderStatus::Shipped),
            Ok(pb::OrderStatus::Delivered) => Ok(OrderStatus::Delivered),
            Ok(pb::OrderStatus::Cancelled) => Ok(OrderStatus::Cancelled),
            Ok(pb::OrderStatus::Unspecified) => Err(FieldError::new(
                "status",
                "is required (ORDER_STATUS_UNSPECIFIED given)",
            )),
            Err(_) => Err(FieldError::new(
                "status",
                format!("is not a known order status: {value}"),
            )),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<OrderStatus> for pb::OrderStatus {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Confirmed => pb::OrderStatus::Confirmed,
            OrderStatus::Processing => pb::OrderStatus::Processing,
            OrderStatus::Shipped => pb::OrderStatus::Shipped,
            OrderStatus::Delivered => pb::OrderStatus::Delivered,
            OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
        }
    }
}

/// One line of an order: a product, its price when bought, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub product_id: i64,
    pub name: String,
    pub unit_price: Money,
    pub quantity: i32,
    pub line_total: Money,
}

impl From<&LineItem> for common::LineItem {
    fn from(item: &LineItem) -> Self {
        common::LineItem {
            product_id: item.product_id,
            name: item.name.clone(),
            unit_price: Some(item.unit_price.into()),
            quantity: item.quantity,
            line_total: Some(item.line_total.into()),
        }
    }
}

/// An order as a CheckoutCompleted event describes it, checked: a UUID
/// checkout id, a user, at least one line whose total is its unit price times
/// its quantity, one currency throughout, and a total that is the sum of the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub checkout_id: Uuid,
    /// The checkout's charge and stock reservation; `None` when the event
    /// leaves them out (they only travel on, in OrderStatusChanged).
    pub payment_id: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub user_id: UserId,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub shipping_address: Option<common::ShippingAddress>,
}

impl TryFrom<&CheckoutCompleted> for NewOrder {
    type Error = FieldError;

    fn try_from(event: &CheckoutCompleted) -> Result<Self, Self::Error> {
        let checkout_id = parse_uuid("checkout_id", &event.checkout_id)?;
        let user_id = UserId::parse("user_id", &event.user_id)?;
        let total = Money::from_proto("total", event.total.as_ref())?;
        if event.items.is_empty() {
            return Err(FieldError::new("items", "must hold at least one line"));
        }
        if event.items.len() > MAX_ITEMS {
            return Err(FieldError::new(
                "items",
                format!("at most {MAX_ITEMS} lines, got {}", event.items.len()),
            ));
        }
        let items = event
            .items
            .iter()
            .map(|item| line_item(item, total))
            .collect::<Result<Vec<_>, _>>()?;
        let sum = items
            .iter()
            .try_fold(Money::zero(total.currency()), |sum, item| {
                sum.plus(item.line_total)
            })
            .ok_or_else(|| FieldError::new("total", "the line totals overflow"))?;
        if sum != total {
            return Err(FieldError::new(
                "total",
                format!("must be the sum of the line totals, {sum}, got {total}"),
            ));
        }
        Ok(NewOrder {
            checkout_id,
            payment_id: optional_uuid("payment_id", &event.payment_id)?,
            reservation_id: optional_uuid("reservation_id", &event.reservation_id)?,
            user_id,
            items,
            total,
            shipping_address: event.shipping_address.clone(),
        })
    }
}

/// An id the event may leave empty, but not malformed.
fn optional_uuid(field: &'static str, text: &str) -> Result<Option<Uuid>, FieldError> {
    match text {
        "" => Ok(None),
        text => parse_uuid(field, text).map(Some),
    }
}

fn line_item(item: &common::LineItem, total: Money) -> Result<LineItem, FieldError> {
    if item.product_id <= 0 {
        return Err(FieldError::new(
            "items.product_id",
            format!("must be a positive product id, got {}", item.product_id),
        ));
    }
    if item.name.is_empty() || item.name.len() > MAX_NAME_LEN || item.name.contains('\0') {
        return Err(FieldError::new(
            "items.name",
            format!(
                "must be 1 to {MAX_NAME_LEN} bytes without NUL, for product {}",
                item.product_id
            ),
        ));
    }
    if !(1..=MAX_QUANTITY).contains(&item.quantity) {
        return Err(FieldError::new(
            "items.quantity",
            format!(
                "must be between 1 and {MAX_QUANTITY}, got {} for product {}",
                item.quantity, item.product_id
            ),
        ));
    }
    let unit_price = Money::from_proto("items.unit_price", item.unit_price.as_ref())?;
    let line_total = Money::from_proto("items.line_total", item.line_total.as_ref())?;
    for (field, money) in [
        ("items.unit_price", unit_price),
        ("items.line_total", line_total),
    ] {
        if money.currency() != total.currency() {
            return Err(FieldError::new(
                field,
                format!(
                    "must be in the order's currency {}, got {} for product {}",
                    total.currency(),
                    money.currency(),
                    item.product_id
                ),
            ));
        }
    }
    let expected = unit_price
        .times(i64::from(item.quantity))
        .ok_or_else(|| FieldError::new("items.line_total", "unit_price × quantity overflows"))?;
    if expected != line_total {
        return Err(FieldError::new(
            "items.line_total",
            format!(
                "must be unit_price × quantity, {expected}, got {line_total} for product {}",
                item.product_id
            ),
        ));
    }
    Ok(LineItem {
        product_id: item.product_id,
        name: item.name.clone(),
        unit_price,
        quantity: item.quantity,
        line_total,
    })
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub checkout_id: Uuid,
    pub payment_id: Option<Uuid>,
    pub reservation_id: Option<Uuid>,
    pub user_id: String,
    pub status: OrderStatus,
    pub items: Vec<LineItem>,
    pub total: Money,
    pub shipping_address: Option<common::ShippingAddress>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    pub fn belongs_to(&self, user: &UserId) -> bool {
        self.user_id == user.as_str()
    }

    /// Where the next page starts if this order ends the current one.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.get(),
        }
    }
}

/// A position in a user's orders, newest first: the (created_at, id) of the
/// last order of a page. Travels as an opaque page token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// 48 hex digits: the creation time in microseconds (PostgreSQL's
    /// precision, so the position is exact), then the id.
    pub fn encode(&self) -> String {
        // Two's complement keeps times before 1970 round-tripping.
        let micros = self.created_at.timestamp_micros() as u64;
        format!("{micros:016x}{}", self.id.simple())
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (micros, id) = token.split_at(16);
        let micros = u64::from_str_radix(micros, 16).ok()? as i64;
        let created_at = DateTime::from_timestamp_micros(micros)?;
        // Every order was created in years PostgreSQL stores; a token outside
        // them is forged, and PostgreSQL would refuse to compare with it.
        if !(1..=9999).contains(&created_at.year()) {
            return None;
        }
        Some(Cursor {
            created_at,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// One page of a user's orders: at most `size`, after `after` when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    pub size: u32,
}

impl PageRequest {
    /// `page_size` 0 means the default (20); the token is one this service issued.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, FieldError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > 0 && n.unsigned_abs() <= MAX_PAGE_SIZE => n.unsigned_abs(),
            n => {
                return Err(FieldError::new(
                    "page_size",
                    format!("must be between 1 and {MAX_PAGE_SIZE}, got {n}"),
                ));
            }
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(Cursor::decode(page_token).ok_or_else(|| {
                FieldError::new(
                    "page_token",
                    format!("is not a token this service issued: {page_token:?}"),
                )
            })?)
        };
        Ok(PageRequest { after, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_runtime::Currency;

    #[test]
    fn the_life_cycle_allows_exactly_the_documented_transitions() {
        use OrderStatus::*;
        let allowed = [
            (Confirmed, Processing),
            (Processing, Shipped),
            (Shipped, Delivered),
            (Confirmed, Cancelled),
            (Processing, Cancelled),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names_and_the_proto() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let proto: pb::OrderStatus = status.into();
            assert_eq!(OrderStatus::from_proto(proto as i32), Ok(status));
            assert_eq!(
                proto.as_str_name(),
                format!("ORDER_STATUS_{}", status.as_str())
            );
        }
        assert_eq!(OrderStatus::parse("confirmed"), None);
        let unspecified = OrderStatus::from_proto(pb::OrderStatus::Unspecified as i32);
        assert_eq!(unspecified.map_err(|e| e.field), Err("status"));
        assert_eq!(
            OrderStatus::from_proto(42).map_err(|e| e.field),
            Err("status")
        );
    }

    #[test]
    fn ids_and_users_are_checked() {
        assert_eq!(OrderId::parse("").map_err(|e| e.field), Err("order_id"));
        assert_eq!(OrderId::parse("42").map_err(|e| e.field), Err("order_id"));
        let id = Uuid::now_v7();
        assert_eq!(OrderId::parse(&id.to_string()).map(OrderId::get), Ok(id));
    }

    fn usd(minor: i64) -> Option<common::Money> {
        Some(common::Money {
            amount_minor: minor,
            currency: "USD".into(),
        })
    }

    fn line(product_id: i64, unit: i64, quantity: i32) -> common::LineItem {
        common::LineItem {
            product_id,
            name: format!("product {product_id}"),
            unit_price: usd(unit),
            quantity,
            line_total: usd(unit * i64::from(quantity)),
        }
    }

    fn completed() -> CheckoutCompleted {
        CheckoutCompleted {
            checkout_id: Uuid::new_v4().to_string(),
            user_id: "user-1".into(),
            items: vec![line(1, 129_999, 1), line(2, 2_999, 3)],
            total: usd(138_996),
            payment_id: Uuid::new_v4().to_string(),
            reservation_id: Uuid::new_v4().to_string(),
            ..CheckoutCompleted::default()
        }
    }

    fn field_of(event: &CheckoutCompleted) -> &'static str {
        NewOrder::try_from(event).err().map_or("", |e| e.field)
    }

    #[test]
    fn a_consistent_checkout_becomes_a_new_order() {
        let event = completed();
        let order = NewOrder::try_from(&event);
        let Ok(order) = order else {
            panic!("{order:?}")
        };
        assert_eq!(order.checkout_id.to_string(), event.checkout_id);
        assert_eq!(
            order.payment_id.map(|id| id.to_string()),
            Some(event.payment_id.clone())
        );
        assert_eq!(
            order.reservation_id.map(|id| id.to_string()),
            Some(event.reservation_id.clone())
        );
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.items[1].line_total.minor(), 8_997);
        assert_eq!(order.total.minor(), 138_996);
        assert_eq!(order.total.currency(), Currency::USD);
    }

    #[test]
    fn inconsistent_checkouts_name_the_field() {
        let mut e = completed();
        e.checkout_id = String::new();
        assert_eq!(field_of(&e), "checkout_id");
        e.checkout_id = "not-a-uuid".into();
        assert_eq!(field_of(&e), "checkout_id");

        let mut e = completed();
        e.user_id = String::new();
        assert_eq!(field_of(&e), "user_id");

        let mut e = completed();
        e.payment_id = "pay-1".into();
        assert_eq!(field_of(&e), "payment_id");
        e.payment_id = String::new();
        e.reservation_id = "res-1".into();
        assert_eq!(field_of(&e), "reservation_id");
        e.reservation_id = String::new();
        assert_eq!(field_of(&e), "", "both may be left out");

        let mut e = completed();
        e.items.clear();
        assert_eq!(field_of(&e), "items");

        let mut e = completed();
        e.total = None;
        assert_eq!(field_of(&e), "total");
        e.total = usd(-1);
        assert_eq!(field_of(&e), "total");
        e.total = usd(1);
        assert_eq!(field_of(&e), "total", "not the sum of the lines");

        let mut e = completed();
        e.items[0].line_total = usd(1);
        assert_eq!(field_of(&e), "items.line_total");

        let mut e = completed();
        e.items[0].unit_price = Some(common::Money {
            amount_minor: 129_999,
            currency: "EUR".into(),
        });
        assert_eq!(field_of(&e), "items.unit_price");

        let mut e = completed();
        e.items[0].unit_price = None;
        assert_eq!(field_of(&e), "items.unit_price");

        let mut e = completed();
        e.items[1].quantity = 0;
        assert_eq!(field_of(&e), "items.quantity");

        let mut e = completed();
        e.items[1].product_id = 0;
        assert_eq!(field_of(&e), "items.product_id");

        let mut e = completed();
        e.items[1].name = "nul\0".into();
        assert_eq!(field_of(&e), "items.name");

        let mut e = completed();
        e.items[0].unit_price = usd(i64::MAX / 2);
        e.items[0].quantity = 3;
        assert_eq!(field_of(&e), "items.line_total", "overflow");
    }

    #[test]
    fn page_tokens_round_trip_and_strangers_are_refused() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap_or_default(),
            id: Uuid::now_v7(),
        };
        let token = cursor.encode();
        assert_eq!(token.len(), 48);
        assert_eq!(Cursor::decode(&token), Some(cursor));
        assert_eq!(
            PageRequest::parse(0, ""),
            Ok(PageRequest {
                after: None,
                size: 20
            })
        );
        assert_eq!(
            PageRequest::parse(100, &token),
            Ok(PageRequest {
                after: Some(cursor),
                size: 100
            })
        );
        // A well-formed token for a time PostgreSQL cannot store (year -100,000).
        let ancient = format!(
            "{:016x}{}",
            (-3_217_862_419_200_000_000_i64) as u64,
            Uuid::nil().simple()
        );
        let future = format!(
            "{:016x}{}",
            253_402_300_800_000_000_u64,
            Uuid::nil().simple()
        );
        for (size, token) in [
            (101, ""),
            (-1, ""),
            (5, "abc"),
            (5, &"g".repeat(48)),
            (5, &ancient),
            (5, &future),
        ] {
            assert!(PageRequest::parse(size, token).is_err(), "{size} {token}");
        }
    }
}
