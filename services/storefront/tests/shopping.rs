//! The shopping flow, black-box through the REST gateway, with every service
//! running as its own `storefront` process on real PostgreSQL, Redis and Kafka.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Options, Shop, eventually};

fn problem_code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn browsing_carts_and_their_errors() {
    let shop = Shop::start(Options::default()).await;

    let products = shop.call(Method::GET, "/api/v1/products", "", None).await;
    assert_eq!(products.status, StatusCode::OK);
    let list = products.body["products"].as_array().expect("products");
    assert_eq!(list.len(), 5);
    assert_eq!(list[0]["name"], "Laptop");
    assert_eq!(list[0]["price"], "1299.99");
    assert_eq!(list[0]["currency"], "USD");
    assert!(products.header("x-request-id").is_some());

    let one = shop.call(Method::GET, "/api/v1/products/4", "", None).await;
    assert_eq!(
        (one.status, one.body["name"].as_str()),
        (StatusCode::OK, Some("Monitor"))
    );
    let missing = shop
        .call(Method::GET, "/api/v1/products/999", "", None)
        .await;
    assert_eq!(
        (missing.status, problem_code(&missing.body)),
        (StatusCode::NOT_FOUND, "product_not_found")
    );
    let bad = shop
        .call(Method::GET, "/api/v1/products/abc", "", None)
        .await;
    assert_eq!(
        (bad.status, problem_code(&bad.body)),
        (StatusCode::BAD_REQUEST, "invalid_product_id")
    );

    let alice = shop.token("alice");
    let empty = shop.call(Method::GET, "/api/v1/cart", &alice, None).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(empty.body["total"], "0.00");

    let added = shop.add_to_cart(&alice, 2, 2).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    let added = shop.add_to_cart(&alice, 2, 1).await;
    assert_eq!(added.body["items"][0]["quantity"], 3, "adding adds");
    assert_eq!(added.body["items"][0]["line_total"], "89.97");
    shop.add_to_cart(&alice, 3, 1).await;
    let updated = shop
        .call(
            Method::PUT,
            "/api/v1/cart/items/2",
            &alice,
            Some(json!({"quantity": 5})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["item_count"], 6);
    assert_eq!(updated.body["total"], "239.94");
    let removed = shop
        .call(Method::DELETE, "/api/v1/cart/items/3", &alice, None)
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(removed.body["items"].as_array().map(Vec::len), Some(1));

    for (body, code) in [
        (json!({"product_id": 1, "quantity": 0}), "invalid_quantity"),
        (
            json!({"product_id": 1, "quantity": 100}),
            "invalid_quantity",
        ),
        (
            json!({"product_id": -1, "quantity": 1}),
            "invalid_product_id",
        ),
        (json!({"quantity": 1}), "invalid_product_id"),
        (json!([1, 1]), "invalid_request"),
    ] {
        let refused = shop
            .call(
                Method::POST,
                "/api/v1/cart/items",
                &alice,
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (refused.status, problem_code(&refused.body)),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
    }
    let unknown = shop.add_to_cart(&alice, 999, 1).await;
    assert_eq!(
        (unknown.status, problem_code(&unknown.body)),
        (StatusCode::NOT_FOUND, "product_not_found")
    );
    let not_in_cart = shop
        .call(
            Method::PUT,
            "/api/v1/cart/items/4",
            &alice,
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(
        (not_in_cart.status, problem_code(&not_in_cart.body)),
        (StatusCode::NOT_FOUND, "item_not_found")
    );
    let not_in_cart = shop
        .call(Method::DELETE, "/api/v1/cart/items/4", &alice, None)
        .await;
    assert_eq!(not_in_cart.status, StatusCode::NOT_FOUND);

    let cleared = shop
        .call(Method::DELETE, "/api/v1/cart", &alice, None)
        .await;
    assert_eq!(
        (cleared.status, cleared.body["items"].clone()),
        (StatusCode::OK, json!([]))
    );
}

#[tokio::test]
async fn checkout_creates_an_order_and_clears_only_the_checked_out_lines() {
    let shop = Shop::start(Options::default()).await;
    let bob = shop.token("bob");
    shop.add_to_cart(&bob, 1, 1).await;
    shop.add_to_cart(&bob, 2, 2).await;

    let done = shop.checkout(&bob, "bob-key-1", "pm_card_visa").await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(done.body["status"], "COMPLETED");
    assert_eq!(done.body["total"], "1359.97");
    assert_eq!(done.body["currency"], "USD");
    let checkout_id = done.body["checkout_id"]
        .as_str()
        .expect("checkout id")
        .to_owned();

    // Added after the checkout: must survive the clearing.
    shop.add_to_cart(&bob, 5, 1).await;

    let order = shop.wait_for_order(&bob, &checkout_id).await;
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["total"], "1359.97");
    assert_eq!(order["items"].as_array().map(Vec::len), Some(2));
    let order_id = order["id"].as_str().expect("order id").to_owned();
    let fetched = shop
        .call(
            Method::GET,
            &format!("/api/v1/orders/{order_id}"),
            &bob,
            None,
        )
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["checkout_id"], checkout_id.as_str());

    let cart = eventually("the checked-out lines to leave the cart", 60, || async {
        let cart = shop.call(Method::GET, "/api/v1/cart", &bob, None).await;
        let ids: Vec<i64> = cart.body["items"]
            .as_array()?
            .iter()
            .filter_map(|i| i["product_id"].as_i64())
            .collect();
        (ids == vec![5]).then_some(cart.body)
    })
    .await;
    assert_eq!(cart["total"], "249.99");

    let status = shop
        .call(
            Method::GET,
            &format!("/api/v1/checkout/{checkout_id}"),
            &bob,
            None,
        )
        .await;
    assert_eq!(
        (status.status, status.body["status"].as_str()),
        (StatusCode::OK, Some("COMPLETED"))
    );

    // Stock: 49 laptops left, nothing held.
    let laptops = shop.stock(1).await;
    assert_eq!((laptops.on_hand, laptops.reserved), (49, 0));

    // Another user sees none of it.
    let eve = shop.token("eve");
    let hidden = shop
        .call(
            Method::GET,
            &format!("/api/v1/checkout/{checkout_id}"),
            &eve,
            None,
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let hidden = shop
        .call(
            Method::GET,
            &format!("/api/v1/orders/{order_id}"),
            &eve,
            None,
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let none = shop.call(Method::GET, "/api/v1/orders", &eve, None).await;
    assert_eq!(none.body["orders"], json!([]));
    let bad = shop
        .call(Method::GET, "/api/v1/orders/not-a-uuid", &bob, None)
        .await;
    assert_eq!(
        (bad.status, problem_code(&bad.body)),
        (StatusCode::BAD_REQUEST, "invalid_order_id")
    );

    // Orders move only along the allowed transitions, and only for admins.
    let path = format!("/api/v1/orders/{order_id}");
    let forbidden = shop
        .call(
            Method::PATCH,
            &path,
            &bob,
            Some(json!({"status": "SHIPPED"})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let admin = shop.admin_token("ops");
    let skip = shop
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"status": "DELIVERED"})),
        )
        .await;
    assert_eq!(
        (skip.status, problem_code(&skip.body)),
        (StatusCode::CONFLICT, "invalid_transition")
    );
    for next in ["PROCESSING", "SHIPPED", "DELIVERED"] {
        let moved = shop
            .call(Method::PATCH, &path, &admin, Some(json!({"status": next})))
            .await;
        assert_eq!(
            (moved.status, moved.body["status"].as_str()),
            (StatusCode::OK, Some(next)),
            "{:?}",
            moved.body
        );
    }
    let back = shop
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"status": "CANCELLED"})),
        )
        .await;
    assert_eq!(back.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn cancelling_an_order_refunds_its_payment_and_returns_its_stock() {
    let shop = Shop::start(Options::default()).await;
    let (mice, keyboards) = (shop.stock(2).await, shop.stock(3).await);
    let carol = shop.token("carol");
    shop.add_to_cart(&carol, 2, 2).await;
    shop.add_to_cart(&carol, 3, 1).await;
    let done = shop.checkout(&carol, "carol-key-1", "pm_card_visa").await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let checkout_id = done.body["checkout_id"]
        .as_str()
        .expect("checkout id")
        .to_owned();
    let order = shop.wait_for_order(&carol, &checkout_id).await;
    let order_id = order["id"].as_str().expect("order id").to_owned();
    assert_eq!(
        (shop.stock(2).await.on_hand, shop.stock(3).await.on_hand),
        (mice.on_hand - 2, keyboards.on_hand - 1),
        "the checkout took the stock"
    );
    let refunded =
        "SELECT count(*) FROM payments WHERE checkout_id = $1::uuid AND status = 'REFUNDED'";
    assert_eq!(shop.count("payment", refunded, &checkout_id).await, 0);

    let path = format!("/api/v1/orders/{order_id}");
    let admin = shop.admin_token("ops");
    let cancelled = shop
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"status": "CANCELLED"})),
        )
        .await;
    assert_eq!(
        (cancelled.status, cancelled.body["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED")),
        "{:?}",
        cancelled.body
    );

    eventually("the payment to be refunded", 60, || async {
        (shop.count("payment", refunded, &checkout_id).await == 1).then_some(())
    })
    .await;
    eventually("the stock to come back", 60, || async {
        let back = (shop.stock(2).await, shop.stock(3).await);
        (back.0 == mice && back.1 == keyboards).then_some(())
    })
    .await;
    let again = shop
        .call(
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"status": "CANCELLED"})),
        )
        .await;
    assert_eq!(
        (again.status, problem_code(&again.body)),
        (StatusCode::CONFLICT, "invalid_transition"),
        "a cancelled order stays cancelled"
    );
    // Nothing arrives late to refund or restock a second time.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let refunds = "SELECT count(*) FROM refunds JOIN payments ON payments.id = refunds.payment_id \
         WHERE payments.checkout_id = $1::uuid";
    assert_eq!(shop.count("payment", refunds, &checkout_id).await, 1);
    assert_eq!(
        (shop.stock(2).await, shop.stock(3).await),
        (mice, keyboards)
    );
    let fetched = shop.call(Method::GET, &path, &carol, None).await;
    assert_eq!(fetched.body["status"], "CANCELLED");
}

#[tokio::test]
async fn idempotency_keys_replay_per_user() {
    let shop = Shop::start(Options::default()).await;
    let (carol, dave) = (shop.token("carol"), shop.token("dave"));
    shop.add_to_cart(&carol, 3, 1).await;
    shop.add_to_cart(&dave, 3, 1).await;

    let first = shop.checkout(&carol, "shared-key", "pm_card_visa").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.header("idempotent-replayed").is_none());
    let again = shop.checkout(&carol, "shared-key", "pm_card_visa").await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body, "a replay returns the original body");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let other = shop.checkout(&dave, "shared-key", "pm_card_visa").await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_ne!(
        other.body["checkout_id"], first.body["checkout_id"],
        "same key, other user: another checkout"
    );
    assert_eq!(
        shop.stock(3).await.on_hand,
        98,
        "two keyboards sold, not three"
    );

    let missing_key = shop
        .call(Method::POST, "/api/v1/checkout", &carol, Some(json!({})))
        .await;
    assert_eq!(
        (missing_key.status, problem_code(&missing_key.body)),
        (StatusCode::BAD_REQUEST, "missing_idempotency_key")
    );
    let body_key = shop
        .call(
            Method::POST,
            "/api/v1/checkout",
            &carol,
            Some(json!({"idempotency_key": "shared-key"})),
        )
        .await;
    assert_eq!(
        body_key.body, first.body,
        "the key may come in the body too"
    );
}

#[tokio::test]
async fn declines_stock_shortages_and_empty_carts() {
    let shop = Shop::start(Options::default()).await;
    let frank = shop.token("frank");
    shop.add_to_cart(&frank, 4, 2).await;
    let declined = shop.checkout(&frank, "frank-1", "pm_card_declined").await;
    assert_eq!(
        declined.status,
        StatusCode::PAYMENT_REQUIRED,
        "{:?}",
        declined.body
    );
    assert_eq!(problem_code(&declined.body), "payment_declined");
    assert_eq!(declined.body["reason"], "CARD_DECLINED");
    let checkout_id = declined.body["checkout_id"]
        .as_str()
        .expect("checkout id")
        .to_owned();
    let monitors = shop.stock(4).await;
    assert_eq!(
        (monitors.on_hand, monitors.reserved),
        (75, 0),
        "the reservation was released"
    );
    let cart = shop.call(Method::GET, "/api/v1/cart", &frank, None).await;
    assert_eq!(
        cart.body["item_count"], 2,
        "a declined checkout keeps the cart"
    );
    let failed = shop
        .call(
            Method::GET,
            &format!("/api/v1/checkout/{checkout_id}"),
            &frank,
            None,
        )
        .await;
    assert_eq!(failed.body["status"], "FAILED");
    assert_eq!(failed.body["failure_reason"], "payment_declined");

    let grace = shop.token("grace");
    shop.add_to_cart(&grace, 1, 60).await;
    let short = shop.checkout(&grace, "grace-1", "pm_card_visa").await;
    assert_eq!(
        (short.status, problem_code(&short.body)),
        (StatusCode::CONFLICT, "insufficient_stock")
    );
    assert_eq!(shop.stock(1).await.reserved, 0);

    let henry = shop.token("henry");
    let empty = shop.checkout(&henry, "henry-1", "pm_card_visa").await;
    assert_eq!(
        (empty.status, problem_code(&empty.body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "cart_empty")
    );
}

#[tokio::test]
async fn authentication_limits_and_unknown_routes() {
    let shop = Shop::start(Options {
        extra: vec![(
            "gateway",
            vec![
                "--gateway-rate-limit-per-user".into(),
                "1".into(),
                "--gateway-rate-limit-per-user-burst".into(),
                "5".into(),
            ],
        )],
        ..Options::default()
    })
    .await;
    let none = shop.call(Method::GET, "/api/v1/cart", "", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.header("www-authenticate")
            .map(|v| v.starts_with("Bearer")),
        Some(true)
    );
    let now = chrono::Utc::now().timestamp();
    let sign = |secret: &str, claims: Value| {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign")
    };
    let valid = sign(support::SECRET, json!({"sub": "ivan", "exp": now + 600}));
    assert_eq!(
        shop.call(Method::GET, "/api/v1/cart", &valid, None)
            .await
            .status,
        StatusCode::OK
    );
    let expired = sign(support::SECRET, json!({"sub": "ivan", "exp": now - 3600}));
    assert_eq!(
        shop.call(Method::GET, "/api/v1/cart", &expired, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let no_exp = sign(support::SECRET, json!({"sub": "ivan"}));
    assert_eq!(
        shop.call(Method::GET, "/api/v1/cart", &no_exp, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let forged = sign(
        "another-secret-entirely-0123456789",
        json!({"sub": "ivan", "exp": now + 600, "roles": ["admin"]}),
    );
    assert_eq!(
        shop.call(Method::GET, "/api/v1/cart", &forged, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims =
            b64.encode(json!({"sub": "ivan", "exp": now + 600, "roles": ["admin"]}).to_string());
        format!("{header}.{claims}.")
    };
    assert_eq!(
        shop.call(Method::GET, "/api/v1/cart", &unsigned, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let unknown = shop.call(Method::GET, "/api/v1/nowhere", "", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.header("content-type"),
        Some("application/problem+json")
    );
    let wrong_method = shop.call(Method::PUT, "/api/v1/products", "", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);

    let judy = shop.token("judy");
    let huge = json!({"product_id": 1, "quantity": 1, "padding": "x".repeat(70 * 1024)});
    let too_big = shop
        .call(Method::POST, "/api/v1/cart/items", &judy, Some(huge))
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);

    let mut limited = None;
    for _ in 0..20 {
        let answer = shop.call(Method::GET, "/api/v1/cart", &judy, None).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the burst of 5 is exceeded within 20 requests");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
}
