//! The bare-framework reference for GET /api/v1/products: an axum `Router`
//! with one handler that builds the same five products per request and
//! answers them as JSON of the gateway's shape — no middleware, no backend,
//! no cache. `make bench` drives it with the same load generator, pinned the
//! same way, in the same run as the gateway, and reports the gateway's
//! throughput as a ratio of this one's.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Serialize)]
struct Product {
    id: i64,
    name: String,
    description: String,
    price: String,
    currency: String,
    image_url: String,
}

#[derive(Serialize)]
struct Products {
    products: Vec<Product>,
}

/// The seed catalog's five products (DESIGN.md), made anew for each request
/// as a handler reading them from somewhere would.
const SEED: [(i64, &str, &str, &str, &str); 5] = [
    (
        1,
        "Laptop",
        "14-inch laptop, 16 GB memory, 512 GB SSD",
        "1299.99",
        "laptop",
    ),
    (2, "Mouse", "Wireless optical mouse", "29.99", "mouse"),
    (
        3,
        "Keyboard",
        "Mechanical keyboard, tenkeyless",
        "89.99",
        "keyboard",
    ),
    (4, "Monitor", "27-inch 4K monitor", "399.99", "monitor"),
    (
        5,
        "Headphones",
        "Noise-cancelling over-ear headphones",
        "249.99",
        "headphones",
    ),
];

async fn products() -> Json<Products> {
    Json(Products {
        products: SEED
            .iter()
            .map(|(id, name, description, price, image)| Product {
                id: *id,
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                price: (*price).to_owned(),
                currency: "USD".to_owned(),
                image_url: format!("/images/{image}.svg"),
            })
            .collect(),
    })
}

/// Serves the reference on `addr` until the process is stopped.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/api/v1/products", get(products));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare axum reference on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
