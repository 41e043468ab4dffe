//! The visitor's orders, one order's page, and for administrators the
//! status changes and a way to open anyone's order.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::cart::form_error;
use super::{Chrome, PageError, Visitor, render, see_other};
use crate::AppState;
use crate::api::Order;
use crate::money;

pub struct ItemView {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i32,
    pub line_total: String,
}

pub struct OrderView {
    pub id: String,
    pub checkout_id: String,
    pub short_id: String,
    pub status: String,
    pub placed: String,
    pub item_count: i32,
    pub total: String,
    pub items: Vec<ItemView>,
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> OrderView {
        let price = |amount: &str| money::display(amount, &order.currency);
        OrderView {
            id: order.id.clone(),
            checkout_id: order.checkout_id.clone(),
            short_id: order.id.chars().take(8).collect(),
            status: order.status.clone(),
            placed: order
                .created_at
                .as_deref()
                .map(|at| at.get(..16).unwrap_or(at).replace('T', " "))
                .unwrap_or_default(),
            item_count: order.items.iter().map(|i| i.quantity).sum(),
            total: price(&order.total),
            items: order
                .items
                .iter()
                .map(|item| ItemView {
                    product_id: item.product_id,
                    name: item.name.clone(),
                    unit_price: price(&item.unit_price),
                    quantity: item.quantity,
                    line_total: price(&item.line_total),
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    chrome: Chrome,
    orders: Vec<OrderView>,
    error: Option<String>,
    notice: Option<String>,
}

pub async fn list(State(shop): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.signed_in("/orders")?;
    let (orders, chrome) = tokio::join!(
        shop.gateway.orders(visitor.caller()),
        Chrome::of(&shop, &visitor, None)
    );
    let page = OrdersPage {
        chrome,
        orders: orders?.iter().map(OrderView::from).collect(),
        error: None,
        notice: None,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct Lookup {
    #[serde(default)]
    id: String,
}

/// An administrator's "Find any order": to that order's page.
pub async fn lookup(visitor: Visitor, Query(lookup): Query<Lookup>) -> Result<Response, PageError> {
    visitor.signed_in("/orders")?;
    let id = lookup.id.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(PageError::NotFound);
    }
    Ok(see_other(&format!("/orders/{id}")))
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    chrome: Chrome,
    order: OrderView,
    next_statuses: Vec<&'static str>,
    error: Option<String>,
    notice: Option<String>,
}

/// The statuses an order in `status` may move to.
fn next_statuses(status: &str) -> Vec<&'static str> {
    match status {
        "CONFIRMED" => vec!["PROCESSING", "CANCELLED"],
        "PROCESSING" => vec!["SHIPPED", "CANCELLED"],
        "SHIPPED" => vec!["DELIVERED"],
        _ => Vec::new(),
    }
}

async fn order_page(
    shop: &AppState,
    visitor: &Visitor,
    order: &Order,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    let page = OrderPage {
        chrome: Chrome::of(shop, visitor, None).await,
        order: OrderView::from(order),
        next_statuses: next_statuses(&order.status),
        error,
        notice,
    };
    render(status, &page)
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    updated: Option<String>,
}

pub async fn detail(
    State(shop): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Response, PageError> {
    visitor.signed_in(&format!("/orders/{id}"))?;
    let order = shop.gateway.order(visitor.caller(), &id).await?;
    let notice = query
        .updated
        .map(|_| format!("The order is now {}.", order.status));
    Ok(order_page(&shop, &visitor, &order, StatusCode::OK, None, notice).await)
}

#[derive(Debug, Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
}

pub async fn set_status(
    State(shop): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Result<Response, PageError> {
    visitor.signed_in(&format!("/orders/{id}"))?;
    let refused = match shop
        .gateway
        .set_order_status(visitor.caller(), &id, &form.status)
        .await
    {
        Ok(_) => return Ok(see_other(&format!("/orders/{id}?updated=1"))),
        Err(error) => form_error(error)?,
    };
    let order = shop.gateway.order(visitor.caller(), &id).await?;
    Ok(order_page(
        &shop,
        &visitor,
        &order,
        StatusCode::CONFLICT,
        Some(refused),
        None,
    )
    .await)
}
