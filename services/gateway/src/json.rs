//! The JSON the REST API answers with, built from the backends' messages:
//! money as decimal strings beside its currency, times as RFC 3339, statuses
//! by name ("CONFIRMED").

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use storefront_proto::cart::v1 as cart;
use storefront_proto::checkout::v1 as checkout;
use storefront_proto::common::v1 as common;
use storefront_proto::orders::v1 as orders;
use storefront_proto::product::v1 as product;
use storefront_runtime::{Currency, Money};

use crate::backends::BackendName;
use crate::problem::ApiError;

fn money(
    backend: BackendName,
    field: &'static str,
    value: Option<&common::Money>,
) -> Result<Money, ApiError> {
    Money::from_proto(field, value).map_err(|e| ApiError::bad_answer(backend, e.to_string()))
}

/// A total that may be absent (an empty cart, a session that never priced): zero dollars.
fn total_or_zero(backend: BackendName, value: Option<&common::Money>) -> Result<Money, ApiError> {
    match value {
        None => Ok(Money::zero(Currency::USD)),
        some => money(backend, "total", some),
    }
}

fn timestamp(value: Option<&prost_types::Timestamp>) -> Option<String> {
    let value = value?;
    let nanos = u32::try_from(value.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(value.seconds, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[derive(Debug, Serialize)]
pub struct ProductJson {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub price: String,
    pub currency: String,
    pub image_url: String,
}

impl TryFrom<product::Product> for ProductJson {
    type Error = ApiError;

    fn try_from(p: product::Product) -> Result<Self, ApiError> {
        let price = money(BackendName::Product, "price", p.price.as_ref())?;
        Ok(ProductJson {
            id: p.id,
            name: p.name,
            description: p.description,
            price: price.decimal(),
            currency: price.currency().to_string(),
            image_url: p.image_url,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct ProductsJson {
    pub products: Vec<ProductJson>,
    /// Present when there are more: pass it back as `page_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl TryFrom<product::ListProductsResponse> for ProductsJson {
    type Error = ApiError;

    fn try_from(page: product::ListProductsResponse) -> Result<Self, ApiError> {
        Ok(ProductsJson {
            products: page
                .products
                .into_iter()
                .map(ProductJson::try_from)
                .collect::<Result<_, _>>()?,
            next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct CartItemJson {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i32,
    pub line_total: String,
    pub added_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CartJson {
    pub items: Vec<CartItemJson>,
    pub item_count: i32,
    pub total: String,
    pub currency: String,
    pub updated_at: Option<String>,
}

impl TryFrom<cart::Cart> for CartJson {
    type Error = ApiError;

    fn try_from(c: cart::Cart) -> Result<Self, ApiError> {
        let backend = BackendName::Cart;
        let items = c
            .items
            .into_iter()
            .map(|item| {
                Ok(CartItemJson {
                    product_id: item.product_id,
                    name: item.name,
                    unit_price: money(backend, "unit_price", item.unit_price.as_ref())?.decimal(),
                    quantity: item.quantity,
                    line_total: money(backend, "line_total", item.line_total.as_ref())?.decimal(),
                    added_at: timestamp(item.added_at.as_ref()),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let total = total_or_zero(backend, c.total.as_ref())?;
        Ok(CartJson {
            items,
            item_count: c.item_count,
            total: total.decimal(),
            currency: total.currency().to_string(),
            updated_at: timestamp(c.updated_at.as_ref()),
        })
    }
}

/// A checkout status by name: `CHECKOUT_STATUS_COMPLETED` → "COMPLETED".
pub fn checkout_status(status: i32) -> &'static str {
    let status =
        checkout::CheckoutStatus::try_from(status).unwrap_or(checkout::CheckoutStatus::Unspecified);
    match status {
        checkout::CheckoutStatus::Unspecified => "UNSPECIFIED",
        checkout::CheckoutStatus::Initiated => "INITIATED",
        checkout::CheckoutStatus::InventoryReserved => "INVENTORY_RESERVED",
        checkout::CheckoutStatus::PaymentPending => "PAYMENT_PENDING",
        checkout::CheckoutStatus::PaymentCompleted => "PAYMENT_COMPLETED",
        checkout::CheckoutStatus::Completed => "COMPLETED",
        checkout::CheckoutStatus::Failed => "FAILED",
        checkout::CheckoutStatus::NeedsAttention => "NEEDS_ATTENTION",
    }
}

/// A checkout session: the answer of `POST /checkout` (without
/// `failure_reason`) and of `GET /checkout/{id}`.
#[derive(Debug, Serialize)]
pub struct CheckoutJson {
    pub checkout_id: String,
    pub status: &'static str,
    pub total: String,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// NEEDS_ATTENTION only: why a person must settle it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_reason: Option<String>,
}

impl TryFrom<checkout::CheckoutSession> for CheckoutJson {
    type Error = ApiError;

    fn try_from(s: checkout::CheckoutSession) -> Result<Self, ApiError> {
        let total = total_or_zero(BackendName::Checkout, s.total.as_ref())?;
        Ok(CheckoutJson {
            checkout_id: s.checkout_id,
            status: checkout_status(s.status),
            total: total.decimal(),
            currency: total.currency().to_string(),
            failure_reason: Some(s.failure_reason).filter(|r| !r.is_empty()),
            attention_reason: Some(s.attention_reason).filter(|r| !r.is_empty()),
        })
    }
}

/// An order status by name: `ORDER_STATUS_SHIPPED` → "SHIPPED".
fn order_status(status: i32) -> &'static str {
    let status = orders::OrderStatus::try_from(status).unwrap_or(orders::OrderStatus::Unspecified);
    match status {
        orders::OrderStatus::Unspecified => "UNSPECIFIED",
        orders::OrderStatus::Confirmed => "CONFIRMED",
        orders::OrderStatus::Processing => "PROCESSING",
        orders::OrderStatus::Shipped => "SHIPPED",
        orders::OrderStatus::Delivered => "DELIVERED",
        orders::OrderStatus::Cancelled => "CANCELLED",
    }
}

#[derive(Debug, Serialize)]
pub struct OrderItemJson {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i32,
    pub line_total: String,
}

#[derive(Debug, Serialize)]
pub struct OrderJson {
    pub id: String,
    pub checkout_id: String,
    pub status: &'static str,
    pub total: String,
    pub currency: String,
    pub items: Vec<OrderItemJson>,
    pub created_at: Option<String>,
}

impl TryFrom<orders::Order> for OrderJson {
    type Error = ApiError;

    fn try_from(o: orders::Order) -> Result<Self, ApiError> {
        let backend = BackendName::Orders;
        let total = money(backend, "total", o.total.as_ref())?;
        let items = o
            .items
            .into_iter()
            .map(|item| {
                Ok(OrderItemJson {
                    product_id: item.product_id,
                    name: item.name,
                    unit_price: money(backend, "unit_price", item.unit_price.as_ref())?.decimal(),
                    quantity: item.quantity,
                    line_total: money(backend, "line_total", item.line_total.as_ref())?.decimal(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(OrderJson {
            id: o.id,
            checkout_id: o.checkout_id,
            status: order_status(o.status),
            total: total.decimal(),
            currency: total.currency().to_string(),
            items,
            created_at: timestamp(o.created_at.as_ref()),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct OrdersJson {
    pub orders: Vec<OrderJson>,
    /// Present when there are more: pass it back as `page_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl TryFrom<orders::ListOrdersResponse> for OrdersJson {
    type Error = ApiError;

    fn try_from(page: orders::ListOrdersResponse) -> Result<Self, ApiError> {
        Ok(OrdersJson {
            orders: page
                .orders
                .into_iter()
                .map(OrderJson::try_from)
                .collect::<Result<_, _>>()?,
            next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Option<common::Money> {
        Some(common::Money {
            amount_minor: minor,
            currency: "USD".into(),
        })
    }

    #[test]
    fn an_empty_cart_is_zero_dollars() {
        let json = CartJson::try_from(cart::Cart::default()).map(|c| serde_json::to_value(c).ok());
        let Ok(Some(json)) = json else {
            panic!("empty cart did not convert");
        };
        assert_eq!(json["items"], serde_json::json!([]));
        assert_eq!(json["total"], "0.00");
        assert_eq!(json["currency"], "USD");
        assert_eq!(json["item_count"], 0);
    }

    #[test]
    fn cart_lines_show_decimal_money_and_rfc3339_times() {
        let c = cart::Cart {
            user_id: "u".into(),
            items: vec![cart::CartItem {
                product_id: 1,
                name: "Laptop".into(),
                unit_price: usd(129_999),
                quantity: 2,
                line_total: usd(259_998),
                added_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
            }],
            item_count: 2,
            total: usd(259_998),
            updated_at: None,
            ..Default::default()
        };
        let json = CartJson::try_from(c).map(|c| serde_json::to_value(c).ok());
        let Ok(Some(json)) = json else {
            panic!("cart did not convert");
        };
        assert_eq!(json["items"][0]["unit_price"], "1299.99");
        assert_eq!(json["items"][0]["line_total"], "2599.98");
        assert_eq!(json["items"][0]["added_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["total"], "2599.98");
        assert_eq!(json["updated_at"], serde_json::Value::Null);
    }

    #[test]
    fn malformed_money_is_a_bad_answer() {
        let p = product::Product {
            id: 1,
            price: Some(common::Money {
                amount_minor: -5,
                currency: "USD".into(),
            }),
            ..Default::default()
        };
        assert!(matches!(
            ProductJson::try_from(p),
            Err(ApiError::BadBackendAnswer { .. })
        ));
    }

    #[test]
    fn statuses_are_names_without_prefix() {
        assert_eq!(
            checkout_status(checkout::CheckoutStatus::Completed as i32),
            "COMPLETED"
        );
        assert_eq!(order_status(orders::OrderStatus::Shipped as i32), "SHIPPED");
        assert_eq!(order_status(99), "UNSPECIFIED");
    }
}
