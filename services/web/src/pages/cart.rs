//! The cart: its lines, changing a quantity, removing a line, and adding
//! from a product page.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::catalog::{ProductPage, ProductView, product_id};
use super::{Chrome, PageError, Visitor, explain, render, see_other};
use crate::AppState;
use crate::api::{ApiError, Cart};
use crate::money;

/// A cart line as the pages show it.
pub struct LineView {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i32,
    pub line_total: String,
}

/// The lines and total of `cart`, priced for display.
pub fn lines_of(cart: &Cart) -> (Vec<LineView>, String) {
    let lines = cart
        .items
        .iter()
        .map(|item| LineView {
            product_id: item.product_id,
            name: item.name.clone(),
            unit_price: money::display(&item.unit_price, &cart.currency),
            quantity: item.quantity,
            line_total: money::display(&item.line_total, &cart.currency),
        })
        .collect();
    (lines, money::display(&cart.total, &cart.currency))
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    chrome: Chrome,
    lines: Vec<LineView>,
    total: String,
    error: Option<String>,
    notice: Option<String>,
}

pub async fn show(State(shop): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.signed_in("/cart")?;
    let cart = shop.gateway.cart(visitor.caller()).await?;
    Ok(cart_page(&shop, &visitor, &cart, StatusCode::OK, None).await)
}

async fn cart_page(
    shop: &AppState,
    visitor: &Visitor,
    cart: &Cart,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let (lines, total) = lines_of(cart);
    let page = CartPage {
        chrome: Chrome::of(shop, visitor, Some(cart.item_count)).await,
        lines,
        total,
        error,
        notice: None,
    };
    render(status, &page)
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    quantity: String,
}

/// Adds to the cart, then back to the product page saying so; a refusal
/// (quantity, cart full, product gone) is shown on the product page.
pub async fn add(
    State(shop): State<AppState>,
    visitor: Visitor,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    let id = product_id(&form.product_id)?;
    visitor.signed_in(&format!("/products/{id}"))?;
    let refused = match quantity(&form.quantity) {
        Ok(quantity) => match shop
            .gateway
            .add_to_cart(visitor.caller(), id, quantity)
            .await
        {
            Ok(_) => return Ok(see_other(&format!("/products/{id}?added={quantity}"))),
            Err(error) => form_error(error)?,
        },
        Err(message) => message,
    };
    let product = shop.gateway.product(visitor.caller(), id).await?;
    let page = ProductPage {
        chrome: Chrome::of(&shop, &visitor, None).await,
        product: ProductView::from(&product),
        quantity: form.quantity.chars().take(8).collect(),
        error: Some(refused),
        notice: None,
    };
    Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

#[derive(Debug, Deserialize)]
pub struct QuantityForm {
    #[serde(default)]
    quantity: String,
}

pub async fn update(
    State(shop): State<AppState>,
    visitor: Visitor,
    Path(product): Path<String>,
    Form(form): Form<QuantityForm>,
) -> Result<Response, PageError> {
    visitor.signed_in("/cart")?;
    let id = product_id(&product)?;
    let refused = match quantity(&form.quantity) {
        Ok(quantity) => match shop
            .gateway
            .set_quantity(visitor.caller(), id, quantity)
            .await
        {
            Ok(_) => return Ok(see_other("/cart")),
            Err(error) => form_error(error)?,
        },
        Err(message) => message,
    };
    let cart = shop.gateway.cart(visitor.caller()).await?;
    Ok(cart_page(
        &shop,
        &visitor,
        &cart,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(refused),
    )
    .await)
}

pub async fn remove(
    State(shop): State<AppState>,
    visitor: Visitor,
    Path(product): Path<String>,
) -> Result<Response, PageError> {
    visitor.signed_in("/cart")?;
    let id = product_id(&product)?;
    match shop.gateway.remove_from_cart(visitor.caller(), id).await {
        // Already gone (a second click, another tab): the cart shows the truth.
        Ok(_) => Ok(see_other("/cart")),
        Err(error) if error.code() == Some("item_not_found") => Ok(see_other("/cart")),
        Err(error) => Err(error.into()),
    }
}

/// A quantity typed into a form, or the words saying what is wrong with it.
fn quantity(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|q| (1..=99).contains(q))
        .ok_or_else(|| "Enter a quantity from 1 to 99.".to_owned())
}

/// A refusal the shopper can act on becomes words for the form; the rest
/// (signed out, rate limited, the shop down) is the page's error.
pub fn form_error(error: ApiError) -> Result<String, PageError> {
    match error.status() {
        Some(status)
            if status.is_client_error()
                && !matches!(
                    status,
                    StatusCode::UNAUTHORIZED
                        | StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::FORBIDDEN
                ) =>
        {
            Ok(explain(&error))
        }
        _ => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_whole_numbers_from_1_to_99() {
        assert_eq!(quantity(" 3 "), Ok(3));
        for bad in ["0", "100", "-1", "2.5", "", "many"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }
}
