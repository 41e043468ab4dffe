//! Checkout: the address and payment form, placing the order, and the
//! confirmation page.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::cart::{LineView, form_error, lines_of};
use super::{Chrome, PageError, Visitor, render, see_other};
use crate::AppState;
use crate::api::{Address, Cart, Checkout};
use crate::money;

/// The test payment methods the payment simulator knows.
const PAYMENT_METHODS: [(&str, &str); 5] = [
    ("pm_card_visa", "Visa (test card, succeeds)"),
    ("pm_card_declined", "Declined card (test)"),
    (
        "pm_card_insufficient_funds",
        "Card with insufficient funds (test)",
    ),
    ("pm_card_expired", "Expired card (test)"),
    ("pm_card_cvc_fail", "Card with a wrong security code (test)"),
];

pub struct MethodView {
    pub value: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    chrome: Chrome,
    lines: Vec<LineView>,
    total: String,
    address: Address,
    methods: Vec<MethodView>,
    idempotency_key: String,
    error: Option<String>,
    notice: Option<String>,
}

fn checkout_page(
    chrome: Chrome,
    cart: &Cart,
    address: Address,
    method: &str,
    error: Option<String>,
) -> CheckoutPage {
    let (lines, total) = lines_of(cart);
    let known = PAYMENT_METHODS.iter().any(|(value, _)| *value == method);
    CheckoutPage {
        chrome,
        lines,
        total,
        address,
        methods: PAYMENT_METHODS
            .iter()
            .enumerate()
            .map(|(i, (value, label))| MethodView {
                value,
                label,
                checked: if known { *value == method } else { i == 0 },
            })
            .collect(),
        // Each rendering is a new attempt; a double-click re-sends the same
        // key, and the gateway answers it with the first attempt's result.
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        error,
        notice: None,
    }
}

pub async fn form(State(shop): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    visitor.signed_in("/checkout")?;
    let cart = shop.gateway.cart(visitor.caller()).await?;
    let chrome = Chrome::of(&shop, &visitor, Some(cart.item_count)).await;
    let page = checkout_page(chrome, &cart, Address::default(), "pm_card_visa", None);
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct PlaceForm {
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    payment_method: String,
    #[serde(flatten)]
    address: Address,
}

pub async fn place(
    State(shop): State<AppState>,
    visitor: Visitor,
    Form(form): Form<PlaceForm>,
) -> Result<Response, PageError> {
    visitor.signed_in("/checkout")?;
    let missing = missing_fields(&form.address);
    let refused = if !missing.is_empty() {
        format!("Enter your {}.", missing.join(", "))
    } else {
        let key = if form.idempotency_key.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            form.idempotency_key.clone()
        };
        let method = if form.payment_method.is_empty() {
            "pm_card_visa"
        } else {
            form.payment_method.as_str()
        };
        match shop
            .gateway
            .checkout(visitor.caller(), &key, method, &form.address)
            .await
        {
            Ok(checkout) => return Ok(see_other(&format!("/checkout/{}", checkout.checkout_id))),
            Err(error) => form_error(error)?,
        }
    };
    let cart = shop.gateway.cart(visitor.caller()).await?;
    let chrome = Chrome::of(&shop, &visitor, Some(cart.item_count)).await;
    let page = checkout_page(
        chrome,
        &cart,
        form.address,
        &form.payment_method,
        Some(refused),
    );
    Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
}

/// The required address fields left empty, named as their labels are.
fn missing_fields(address: &Address) -> Vec<&'static str> {
    [
        ("full name", &address.name),
        ("address line 1", &address.line1),
        ("town or city", &address.city),
        ("postcode", &address.postal_code),
        ("country", &address.country),
    ]
    .into_iter()
    .filter(|(_, value)| value.trim().is_empty())
    .map(|(label, _)| label)
    .collect()
}

#[derive(Template)]
#[template(path = "confirmation.html")]
struct ConfirmationPage {
    chrome: Chrome,
    heading: String,
    checkout: Checkout,
    total: String,
    explanation: String,
    error: Option<String>,
    notice: Option<String>,
}

pub async fn confirmation(
    State(shop): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    visitor.signed_in(&format!("/checkout/{id}"))?;
    let (checkout, chrome) = tokio::join!(
        shop.gateway.checkout_status(visitor.caller(), &id),
        Chrome::of(&shop, &visitor, None)
    );
    let checkout = checkout?;
    let (heading, explanation) = match checkout.status.as_str() {
        "COMPLETED" => (
            "Thank you for your order",
            "Your payment went through. The order appears in your orders in a moment.",
        ),
        "FAILED" => (
            "Your order was not placed",
            "Nothing was charged, or the charge was refunded. Your cart still holds the items.",
        ),
        _ => (
            "Your order is being processed",
            "This takes a little longer than usual. Reload this page to see how it ends.",
        ),
    };
    let total = money::display(&checkout.total, &checkout.currency);
    let error = checkout.failure_reason.as_ref().map(|reason| {
        format!(
            "The checkout failed: {}.",
            reason.to_lowercase().replace('_', " ")
        )
    });
    let page = ConfirmationPage {
        chrome,
        heading: heading.to_owned(),
        checkout,
        total,
        explanation: explanation.to_owned(),
        error,
        notice: None,
    };
    Ok(render(StatusCode::OK, &page))
}
