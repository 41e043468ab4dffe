//! One cart is bought at most once, whatever the idempotency keys: two
//! checkouts of one cart at once, a retry with a new key after the first
//! completed but before the cart took its lines out, and a checkout that
//! outlives the client's patience all end with one order and one charge, and
//! every answer that is not the outcome says where to look.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::{Options, Shop, eventually};

fn slow_payment(latency: &str) -> Options {
    Options {
        extra: vec![("payment", vec!["--payment-latency".into(), latency.into()])],
        ..Options::default()
    }
}

async fn charges(shop: &Shop, user: &str) -> i64 {
    shop.count(
        "payment",
        "SELECT count(*) FROM payments WHERE user_id = $1 AND status = 'SUCCEEDED'",
        user,
    )
    .await
}

#[tokio::test]
async fn two_keys_at_once_buy_the_cart_once_and_the_second_names_the_first() {
    let shop = Shop::start(slow_payment("1500ms")).await;
    let ada = shop.token("ada");
    shop.add_to_cart(&ada, 2, 3).await;

    let (first, second) = tokio::join!(
        shop.checkout(&ada, "double-submit-1", "pm_card_visa"),
        async {
            // Let the first one store its session before the second arrives.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            shop.checkout(&ada, "double-submit-2", "pm_card_visa").await
        }
    );
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let first_id = first.body["checkout_id"].as_str().expect("id").to_owned();
    assert_eq!(second.status, StatusCode::CONFLICT, "{:?}", second.body);
    assert_eq!(second.body["code"], "checkout_in_progress");
    assert_eq!(second.body["checkout_id"], first_id.as_str());
    assert_eq!(
        second.header("location"),
        Some(format!("/api/v1/checkout/{first_id}").as_str())
    );

    shop.wait_for_order(&ada, &first_id).await;
    assert_eq!(charges(&shop, "ada").await, 1);
    let orders = shop.call(Method::GET, "/api/v1/orders", &ada, None).await;
    assert_eq!(orders.body["orders"].as_array().map(Vec::len), Some(1));
    // 200 - 3 mice: sold once.
    assert_eq!(shop.stock(2).await.available, 197);
}

#[tokio::test]
async fn a_new_key_right_after_a_completed_checkout_does_not_buy_the_cart_again() {
    // The cart takes the lines out only when CheckoutCompleted arrives from
    // Kafka; a second checkout sent at once with a new key must not see them.
    let shop = Shop::start(Options::default()).await;
    let bea = shop.token("bea");
    shop.add_to_cart(&bea, 3, 1).await;
    let first = shop.checkout(&bea, "first", "pm_card_visa").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let again = shop.checkout(&bea, "second", "pm_card_visa").await;
    // Either the cart already shows the lines gone (cart_empty), or the
    // checkout sees them as bought; never a second purchase.
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        again.body
    );
    assert_eq!(again.body["code"], "cart_empty");
    assert_eq!(charges(&shop, "bea").await, 1);

    // What is added afterwards is bought normally.
    let first_id = first.body["checkout_id"].as_str().unwrap();
    shop.wait_for_order(&bea, first_id).await;
    eventually("the cart to be cleared", 30, || async {
        let cart = shop.call(Method::GET, "/api/v1/cart", &bea, None).await;
        (cart.body["items"] == Value::Array(vec![])).then_some(())
    })
    .await;
    shop.add_to_cart(&bea, 3, 2).await;
    let third = shop.checkout(&bea, "third", "pm_card_visa").await;
    assert_eq!(third.status, StatusCode::CREATED, "{:?}", third.body);
    assert_eq!(third.body["total"], "179.98");
    assert_eq!(charges(&shop, "bea").await, 2);
}

#[tokio::test]
async fn a_checkout_slower_than_the_gateway_answers_202_with_where_to_look() {
    let mut options = slow_payment("2500ms");
    options.extra.push((
        "gateway",
        vec!["--gateway-checkout-timeout".into(), "1s".into()],
    ));
    let shop = Shop::start(options).await;
    let cy = shop.token("cy");
    shop.add_to_cart(&cy, 1, 1).await;

    let slow = shop.checkout(&cy, "slow-1", "pm_card_visa").await;
    assert_eq!(slow.status, StatusCode::ACCEPTED, "{:?}", slow.body);
    let id = slow.body["checkout_id"].as_str().expect("id").to_owned();
    assert_eq!(
        slow.header("location"),
        Some(format!("/api/v1/checkout/{id}").as_str())
    );
    // A panicking client retries with a new key: told about the first one.
    let retry = shop.checkout(&cy, "slow-2", "pm_card_visa").await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{:?}", retry.body);
    assert_eq!(retry.body["checkout_id"], id.as_str());

    let done = eventually("the slow checkout to complete", 30, || async {
        let session = shop
            .call(Method::GET, &format!("/api/v1/checkout/{id}"), &cy, None)
            .await;
        (session.body["status"] == "COMPLETED").then_some(session)
    })
    .await;
    assert_eq!(done.body["total"], "1299.99");
    shop.wait_for_order(&cy, &id).await;
    assert_eq!(charges(&shop, "cy").await, 1);
}

#[tokio::test]
async fn checkout_prices_the_committed_cart_not_an_older_cached_copy() {
    let shop = Shop::start(Options::default()).await;
    let dee = shop.token("dee");
    shop.add_to_cart(&dee, 2, 1).await;
    // Reading fills the cache with one mouse.
    let cached = shop.call(Method::GET, "/api/v1/cart", &dee, None).await;
    assert_eq!(cached.body["total"], "29.99");
    // A committed change the cache has not seen (as when another cart replica
    // wrote while a slow cache fill of this one was in flight).
    let pool = sqlx::PgPool::connect(&shop.databases["cart"])
        .await
        .expect("cart database");
    sqlx::query(
        "UPDATE carts SET items = jsonb_set(items, '{0,quantity}', '3') WHERE user_id = $1",
    )
    .bind("dee")
    .execute(&pool)
    .await
    .expect("change the stored cart");
    let stale = shop.call(Method::GET, "/api/v1/cart", &dee, None).await;
    assert_eq!(
        stale.body["total"], "29.99",
        "the cache still holds the old cart"
    );

    let bought = shop.checkout(&dee, "committed", "pm_card_visa").await;
    assert_eq!(bought.status, StatusCode::CREATED, "{:?}", bought.body);
    assert_eq!(bought.body["total"], "89.97", "priced from PostgreSQL");
    assert_eq!(shop.stock(2).await.available, 197);
}
