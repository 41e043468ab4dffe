//! Backends that are down, failing or slow: 503 and 504, circuit breakers
//! that open on outages but never on business errors, and readiness.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Mode, ProductBackend, Shop};

#[tokio::test]
async fn a_backend_that_is_down_is_503() {
    let shop = Shop::builder().product(ProductBackend::Dead).start().await;
    let reply = shop.get("/api/v1/products/1", None).await;
    reply.problem(503, "service_unavailable");
    assert!(reply.header("retry-after").is_some());
    // Liveness does not depend on the backends.
    shop.get("/healthz", None).await.json(200);
    shop.stop().await;
}

#[tokio::test]
async fn the_breaker_opens_after_the_threshold_and_stops_calling() {
    let shop = Shop::builder()
        .config(|c| {
            c.breaker_failure_threshold = 3;
            c.breaker_open_duration = Duration::from_secs(60);
        })
        .start()
        .await;
    shop.product.knob.set(Mode::Unavailable);
    for attempt in 1..=3 {
        shop.get("/api/v1/products/1", None)
            .await
            .problem(503, "service_unavailable");
        assert_eq!(shop.product.knob.calls(), attempt);
    }
    // Open: failing fast, the backend is not called at all, even once it is back.
    shop.product.knob.set(Mode::Normal);
    for _ in 0..5 {
        let reply = shop.get("/api/v1/products/1", None).await;
        let problem = reply.problem(503, "service_unavailable");
        assert!(
            problem["detail"].as_str().unwrap().contains("circuit"),
            "{problem}"
        );
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((50..=60).contains(&retry), "{retry}");
    }
    assert_eq!(shop.product.knob.calls(), 3);
    // Other backends have breakers of their own.
    shop.get("/api/v1/cart", Some(&crate::support::token_for("a")))
        .await
        .json(200);
    shop.stop().await;
}

#[tokio::test]
async fn an_open_breaker_probes_again_and_closes() {
    let shop = Shop::builder()
        .config(|c| {
            c.breaker_failure_threshold = 2;
            c.breaker_open_duration = Duration::from_secs(1);
        })
        .start()
        .await;
    shop.product.knob.set(Mode::Unavailable);
    for _ in 0..2 {
        shop.get("/api/v1/products", None)
            .await
            .problem(503, "service_unavailable");
    }
    shop.product.knob.set(Mode::Normal);
    shop.get("/api/v1/products", None)
        .await
        .problem(503, "service_unavailable");
    assert_eq!(shop.product.knob.calls(), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    shop.get("/api/v1/products", None).await.json(200);
    shop.get("/api/v1/products/1", None).await.json(200);
    assert_eq!(
        shop.product.knob.calls(),
        4,
        "closed again: every call goes through"
    );
    shop.stop().await;
}

#[tokio::test]
async fn business_errors_never_open_the_breaker() {
    let shop = Shop::builder()
        .config(|c| {
            c.breaker_failure_threshold = 2;
            c.breaker_open_duration = Duration::from_secs(60);
        })
        .start()
        .await;
    for _ in 0..20 {
        shop.get("/api/v1/products/999", None)
            .await
            .problem(404, "product_not_found");
    }
    assert_eq!(
        shop.product.knob.calls(),
        20,
        "every request reached the backend"
    );
    shop.get("/api/v1/products/1", None).await.json(200);

    // Nor do the cart's and checkout's business answers.
    let alice = crate::support::token_for("alice");
    for _ in 0..5 {
        shop.send(
            reqwest::Method::DELETE,
            "/api/v1/cart/items/4",
            Some(&alice),
            None,
        )
        .await
        .problem(404, "item_not_found");
        let empty = shop
            .request(reqwest::Method::POST, "/api/v1/checkout", Some(&alice))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        crate::support::read(empty).await.problem(422, "cart_empty");
    }
    assert_eq!(shop.cart.knob.calls(), 5);
    assert_eq!(shop.checkout.knob.calls(), 5);
    shop.get("/api/v1/cart", Some(&alice)).await.json(200);
    shop.stop().await;
}

#[tokio::test]
async fn a_backend_slower_than_the_deadline_is_504() {
    let shop = Shop::builder()
        .config(|c| {
            c.backend_timeout = Duration::from_millis(300);
            c.breaker_failure_threshold = 2;
            c.breaker_open_duration = Duration::from_secs(60);
        })
        .start()
        .await;
    shop.product.knob.set(Mode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    shop.get("/api/v1/products/1", None)
        .await
        .problem(504, "gateway_timeout");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_millis(2000), "{waited:?}");
    // Timeouts count against the backend: the second opens the circuit.
    shop.get("/api/v1/products/1", None)
        .await
        .problem(504, "gateway_timeout");
    shop.get("/api/v1/products/1", None)
        .await
        .problem(503, "service_unavailable");
    assert_eq!(shop.product.knob.calls(), 2);
    shop.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_backends() {
    let mut shop = Shop::builder().product(ProductBackend::Real).start().await;
    let ready = shop.get("/readyz", None).await;
    let body = ready.json(200);
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["backends"],
        json!({"product": "SERVING", "cart": "SERVING", "checkout": "SERVING", "orders": "SERVING"})
    );

    shop.stop_cart().await;
    let down = shop.get("/readyz", None).await;
    let problem = down.problem(503, "not_ready");
    assert_eq!(problem["down"], json!(["cart"]));
    assert!(problem["detail"].as_str().unwrap().contains("cart"));
    shop.get("/healthz", None).await.json(200);
    shop.stop().await;
}

#[tokio::test]
async fn readiness_names_every_backend_down() {
    let shop = Shop::builder().product(ProductBackend::Dead).start().await;
    let down = shop.get("/readyz", None).await;
    assert_eq!(down.problem(503, "not_ready")["down"], json!(["product"]));
    shop.stop().await;
}
