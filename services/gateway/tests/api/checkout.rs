//! Checkout: outcomes, idempotency and replays, and the checkout service's errors.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Reply, Shop, read, token_for};

async fn fill_cart(shop: &Shop, token: &str, lines: &[(i64, i64)]) {
    for (product, quantity) in lines {
        shop.send(
            Method::POST,
            "/api/v1/cart/items",
            Some(token),
            Some(json!({"product_id": product, "quantity": quantity})),
        )
        .await
        .json(201);
    }
}

async fn checkout(shop: &Shop, token: &str, key: Option<&str>, body: Value) -> Reply {
    let mut request = shop
        .request(Method::POST, "/api/v1/checkout", Some(token))
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    read(request.send().await.expect("request")).await
}

#[tokio::test]
async fn a_completed_checkout_is_201_and_readable_by_its_owner_only() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    fill_cart(&shop, &alice, &[(1, 1), (2, 2)]).await;

    let reply = checkout(
        &shop,
        &alice,
        Some("order-1"),
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let body = reply.json(201).clone();
    let id = body["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(body["total"], "1359.97");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    assert_eq!(reply.header("idempotent-replayed"), None);
    assert!(
        shop.carts.quantities("alice").is_empty(),
        "checked-out lines left the cart"
    );

    let read_back = shop
        .get(&format!("/api/v1/checkout/{id}"), Some(&alice))
        .await;
    let session = read_back.json(200);
    assert_eq!(session["checkout_id"], id.as_str());
    assert_eq!(session["status"], "COMPLETED");
    assert_eq!(session["total"], "1359.97");
    assert_eq!(session["currency"], "USD");
    assert!(session.get("failure_reason").is_none());

    shop.get(
        &format!("/api/v1/checkout/{id}"),
        Some(&token_for("mallory")),
    )
    .await
    .problem(404, "checkout_not_found");
    shop.get("/api/v1/checkout/not-a-uuid", Some(&alice))
        .await
        .problem(400, "invalid_checkout_id");
    shop.stop().await;
}

#[tokio::test]
async fn a_repeated_key_replays_the_stored_answer() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    fill_cart(&shop, &alice, &[(3, 1)]).await;

    let first = checkout(&shop, &alice, Some("key-A"), json!({})).await;
    let first_body = first.json(201).clone();
    let again = checkout(&shop, &alice, Some("key-A"), json!({})).await;
    assert_eq!(again.json(201), &first_body, "same status, same body");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // The key may come in the body instead; header and body agree here.
    let by_body = checkout(&shop, &alice, None, json!({"idempotency_key": "key-A"})).await;
    assert_eq!(by_body.json(201), &first_body);
    assert_eq!(by_body.header("idempotent-replayed"), Some("true"));
    checkout(
        &shop,
        &alice,
        Some("key-A"),
        json!({"idempotency_key": "key-B"}),
    )
    .await
    .problem(400, "invalid_idempotency_key");
    shop.stop().await;
}

#[tokio::test]
async fn idempotency_keys_are_required_and_bounded() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    fill_cart(&shop, &alice, &[(3, 1)]).await;
    checkout(&shop, &alice, None, json!({}))
        .await
        .problem(400, "missing_idempotency_key");
    // No body at all, no header.
    let bare = shop
        .request(Method::POST, "/api/v1/checkout", Some(&alice))
        .send()
        .await
        .unwrap();
    read(bare).await.problem(400, "missing_idempotency_key");
    checkout(&shop, &alice, None, json!({"idempotency_key": ""}))
        .await
        .problem(400, "missing_idempotency_key");
    checkout(&shop, &alice, Some(&"k".repeat(256)), json!({}))
        .await
        .problem(400, "invalid_idempotency_key");
    assert_eq!(shop.checkout.knob.calls(), 0);
    // 255 characters is fine, and so is a request without a body.
    let longest = shop
        .request(Method::POST, "/api/v1/checkout", Some(&alice))
        .header("Idempotency-Key", "k".repeat(255))
        .send()
        .await
        .unwrap();
    read(longest).await.json(201);
    shop.stop().await;
}

#[tokio::test]
async fn an_empty_cart_cannot_be_checked_out() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    checkout(&shop, &alice, Some("empty"), json!({}))
        .await
        .problem(422, "cart_empty");
    shop.stop().await;
}

#[tokio::test]
async fn a_declined_payment_is_402_with_the_reason_and_replays_as_such() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    fill_cart(&shop, &alice, &[(4, 1)]).await;
    let body = json!({
        "payment_method": "pm_card_declined",
        "shipping_address": {"name": "Alice", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
    });
    let reply = checkout(&shop, &alice, Some("decline-1"), body.clone()).await;
    let problem = reply.problem(402, "payment_declined").clone();
    let id = problem["checkout_id"]
        .as_str()
        .expect("checkout_id")
        .to_owned();
    assert_eq!(problem["reason"], "CARD_DECLINED");
    assert_eq!(reply.header("idempotent-replayed"), None);

    let again = checkout(&shop, &alice, Some("decline-1"), body).await;
    let replayed = again.problem(402, "payment_declined");
    assert_eq!(replayed["checkout_id"], id.as_str());
    assert_eq!(replayed["reason"], "CARD_DECLINED");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let session = shop
        .get(&format!("/api/v1/checkout/{id}"), Some(&alice))
        .await;
    let session = session.json(200);
    assert_eq!(session["status"], "FAILED");
    assert_eq!(session["failure_reason"], "payment_declined");
    assert_eq!(session["total"], "399.99");
    shop.stop().await;
}

#[tokio::test]
async fn stock_shortage_is_409_and_other_failures_422() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    fill_cart(&shop, &alice, &[(1, 60)]).await;
    let short = checkout(&shop, &alice, Some("short"), json!({})).await;
    let problem = short.problem(409, "insufficient_stock");
    assert!(uuid::Uuid::parse_str(problem["checkout_id"].as_str().unwrap()).is_ok());

    let bob = token_for("bob");
    fill_cart(&shop, &bob, &[(2, 1)]).await;
    let other = checkout(
        &shop,
        &bob,
        Some("gone"),
        json!({"payment_method": "pm_test_product_unavailable"}),
    )
    .await;
    let problem = other.problem(422, "product_unavailable");
    assert!(problem["checkout_id"].is_string());
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_repeat_is_409_and_checkout_has_its_own_deadline() {
    // Ordinary calls must answer within 200 ms; Checkout gets 5 s, and the
    // slow payment method takes 500 ms.
    let shop = Shop::builder()
        .config(|c| {
            c.backend_timeout = Duration::from_millis(200);
            c.checkout_timeout = Duration::from_secs(5);
        })
        .start()
        .await;
    let alice = token_for("alice");
    fill_cart(&shop, &alice, &[(5, 1)]).await;
    let body = json!({"payment_method": "pm_test_slow"});
    let first = checkout(&shop, &alice, Some("dup"), body.clone());
    let second = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        checkout(&shop, &alice, Some("dup"), body.clone()).await
    };
    let (first, second) = tokio::join!(first, second);
    // Whichever reached the service first runs the saga; the other is refused.
    let (done, refused) = if first.status == 201 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(done.json(201)["status"], "COMPLETED");
    refused.problem(409, "checkout_in_progress");
    shop.stop().await;
}

#[tokio::test]
async fn checkout_needs_a_signed_in_user() {
    let shop = Shop::start().await;
    let reply = read(
        shop.request(Method::POST, "/api/v1/checkout", None)
            .header("Idempotency-Key", "k")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.problem(401, "missing_token");
    shop.get(&format!("/api/v1/checkout/{}", uuid::Uuid::new_v4()), None)
        .await
        .problem(401, "missing_token");
    shop.stop().await;
}
