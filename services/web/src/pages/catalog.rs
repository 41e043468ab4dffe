//! The catalog and a product's page (with its "Add to cart" form).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::{Chrome, PageError, Visitor, render};
use crate::AppState;
use crate::api::Product;
use crate::money;

/// A product as the pages show it.
pub struct ProductView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub price: String,
    pub image_url: String,
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> ProductView {
        ProductView {
            id: p.id,
            name: p.name.clone(),
            description: p.description.clone(),
            price: money::display(&p.price, &p.currency),
            image_url: p.image_url.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    chrome: Chrome,
    products: Vec<ProductView>,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Notice {
    #[serde(default)]
    signed_out: Option<String>,
}

pub async fn catalog(
    State(shop): State<AppState>,
    visitor: Visitor,
    Query(query): Query<Notice>,
) -> Result<Response, PageError> {
    let (products, chrome) = tokio::join!(
        shop.gateway.products(visitor.caller()),
        Chrome::of(&shop, &visitor, None)
    );
    let page = CatalogPage {
        chrome,
        products: products?.iter().map(ProductView::from).collect(),
        error: None,
        notice: query.signed_out.map(|_| "You have signed out.".to_owned()),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "product.html")]
pub struct ProductPage {
    pub chrome: Chrome,
    pub product: ProductView,
    pub quantity: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ProductQuery {
    #[serde(default)]
    added: Option<String>,
}

pub async fn product(
    State(shop): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<ProductQuery>,
) -> Result<Response, PageError> {
    let id = product_id(&id)?;
    let (product, chrome) = tokio::join!(
        shop.gateway.product(visitor.caller(), id),
        Chrome::of(&shop, &visitor, None)
    );
    let page = ProductPage {
        chrome,
        product: ProductView::from(&product?),
        quantity: "1".to_owned(),
        error: None,
        notice: query
            .added
            .map(|n| format!("Added {} to your cart.", quantity_words(&n))),
    };
    Ok(render(StatusCode::OK, &page))
}

/// A product id from a URL or form; anything else names no product.
pub fn product_id(text: &str) -> Result<i64, PageError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(PageError::NotFound)
}

fn quantity_words(n: &str) -> String {
    match n.parse::<u32>() {
        Ok(1) | Err(_) => "it".to_owned(),
        Ok(n) => format!("{n}"),
    }
}
