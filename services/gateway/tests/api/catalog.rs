//! The catalog routes against the real product service.

use std::time::{Duration, Instant};

use crate::support::{ProductBackend, Shop};

async fn shop() -> Shop {
    Shop::builder().product(ProductBackend::Real).start().await
}

#[tokio::test]
async fn products_list_shows_decimal_prices() {
    let shop = shop().await;
    let reply = shop.get("/api/v1/products", None).await;
    let body = reply.json(200);
    let products = body["products"].as_array().expect("products array");
    let summary: Vec<_> = products
        .iter()
        .map(|p| {
            (
                p["id"].as_i64().unwrap(),
                p["name"].as_str().unwrap().to_owned(),
                p["price"].as_str().unwrap().to_owned(),
                p["currency"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "Laptop".into(), "1299.99".into(), "USD".into()),
            (2, "Mouse".into(), "29.99".into(), "USD".into()),
            (3, "Keyboard".into(), "89.99".into(), "USD".into()),
            (4, "Monitor".into(), "399.99".into(), "USD".into()),
            (5, "Headphones".into(), "249.99".into(), "USD".into()),
        ]
    );
    for product in products {
        let keys: Vec<_> = product.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys.len(),
            6,
            "exactly id, name, description, price, currency, image_url: {product}"
        );
        assert!(product["description"].is_string());
        assert!(product["image_url"].is_string());
    }
    assert!(
        body.get("next_page_token").is_none(),
        "one page holds the catalog"
    );
    shop.stop().await;
}

#[tokio::test]
async fn products_page_with_a_token() {
    let shop = shop().await;
    let first = shop.get("/api/v1/products?page_size=2", None).await;
    let body = first.json(200);
    let ids: Vec<_> = body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    let token = body["next_page_token"].as_str().expect("a next page");
    let second = shop
        .get(
            &format!("/api/v1/products?page_size=2&page_token={token}"),
            None,
        )
        .await;
    let ids: Vec<_> = second.json(200)["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4]);
    shop.get("/api/v1/products?page_size=0", None)
        .await
        .problem(400, "invalid_request");
    shop.get("/api/v1/products?page_size=lots", None)
        .await
        .problem(400, "invalid_request");
    shop.stop().await;
}

#[tokio::test]
async fn one_product_and_its_errors() {
    let shop = shop().await;
    let reply = shop.get("/api/v1/products/2", None).await;
    let body = reply.json(200);
    assert_eq!(body["id"], 2);
    assert_eq!(body["name"], "Mouse");
    assert_eq!(body["price"], "29.99");
    assert_eq!(body["currency"], "USD");

    let missing = shop.get("/api/v1/products/999", None).await;
    let problem = missing.problem(404, "product_not_found");
    assert!(problem["detail"].as_str().unwrap().contains("999"));

    for bad in ["abc", "0", "-3", "1.5", "99999999999999999999"] {
        shop.get(&format!("/api/v1/products/{bad}"), None)
            .await
            .problem(400, "invalid_product_id");
    }
    shop.stop().await;
}

/// The list is reused for `--gateway-catalog-ttl`: a conditional request
/// with its ETag is answered 304, and a change in the product database shows
/// (with a new ETag) once the TTL has passed.
#[tokio::test]
async fn the_list_is_reused_for_its_ttl_with_an_etag_and_a_change_shows_after_it() {
    let ttl = Duration::from_secs(2);
    let shop = Shop::builder()
        .product(ProductBackend::Real)
        .config(move |c| c.catalog_ttl = ttl)
        .start()
        .await;
    let first = shop.get("/api/v1/products", None).await;
    let fetched = Instant::now();
    assert_eq!(first.json(200)["products"][0]["price"], "1299.99");
    assert_eq!(first.header("cache-control"), Some("public, max-age=2"));
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let db = shop.catalog_db().expect("the real product service");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("catalog database");
    sqlx::query("UPDATE products SET price_minor = 119999 WHERE id = 1")
        .execute(&pool)
        .await
        .expect("price change");

    let if_none_match = |etag: String| {
        shop.request(reqwest::Method::GET, "/api/v1/products", None)
            .header("if-none-match", etag)
            .send()
    };
    let conditional = if_none_match(etag.clone()).await.expect("request");
    let again = shop.get("/api/v1/products", None).await;
    // Both asked within the TTL (unless this machine stalled for a second).
    if fetched.elapsed() < ttl / 2 {
        assert_eq!(conditional.status(), 304);
        assert_eq!(conditional.headers()["etag"], etag.as_str());
        assert_eq!(again.json(200)["products"][0]["price"], "1299.99");
    }

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let changed = if_none_match(etag.clone()).await.expect("request");
    assert_eq!(changed.status(), 200, "the catalog changed: a full answer");
    let new_etag = changed.headers()["etag"].to_str().expect("etag").to_owned();
    assert_ne!(new_etag, etag);
    let body: serde_json::Value = changed.json().await.expect("json");
    assert_eq!(body["products"][0]["price"], "1199.99");
    pool.close().await;
    shop.stop().await;
}
