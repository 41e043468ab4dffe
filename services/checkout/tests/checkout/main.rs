//! The checkout service against the real product, inventory and payment
//! services, PostgreSQL and Kafka (a fake cart service holds the carts): the
//! saga's outcomes, idempotency, its events, owner isolation, concurrency, and
//! recovery of sessions left mid-saga.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod concurrency;
mod recovery;
mod support;

use std::time::Duration;

use storefront_proto::checkout::v1 as pb;
use storefront_proto::events::v1 as events;
use storefront_runtime::events::event_type;
use storefront_runtime::testing::reason;
use support::{
    LAPTOP, LAPTOP_PRICE, MOUSE, MOUSE_PRICE, Options, Shop, address, session_of, status_of,
};
use tonic::Code;

#[tokio::test]
async fn a_checkout_completes_deducts_stock_charges_once_and_announces_it() {
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 1), (MOUSE, 2)]);

    let response = shop
        .checkout("ada", "order-1", "pm_card_visa")
        .await
        .expect("checkout");
    assert!(!response.replayed);
    let session = session_of(&response);
    assert_eq!(status_of(session), pb::CheckoutStatus::Completed);
    assert_eq!(session.user_id, "ada");
    assert_eq!(session.failure_reason, "");
    assert_eq!(session.decline_reason, "");
    // Priced by the catalog, not by the cart (whose prices are one cent).
    let total = LAPTOP_PRICE + 2 * MOUSE_PRICE;
    let money = session.total.as_ref().expect("total");
    assert_eq!(
        (money.amount_minor, money.currency.as_str()),
        (total, "USD")
    );
    let lines: Vec<_> = session
        .items
        .iter()
        .map(|i| {
            (
                i.product_id,
                i.name.as_str(),
                i.quantity,
                i.unit_price.as_ref().map(|m| m.amount_minor),
                i.line_total.as_ref().map(|m| m.amount_minor),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (LAPTOP, "Laptop", 1, Some(LAPTOP_PRICE), Some(LAPTOP_PRICE)),
            (MOUSE, "Mouse", 2, Some(MOUSE_PRICE), Some(2 * MOUSE_PRICE)),
        ]
    );

    // Stock deducted for good, nothing left reserved.
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (49, 0));
    let mouse = shop.stock(MOUSE).await;
    assert_eq!((mouse.on_hand, mouse.reserved), (198, 0));

    // Exactly one charge, for the total.
    let payments = shop.payments_of(&session.checkout_id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(
        (payments[0].1.as_str(), payments[0].2),
        ("SUCCEEDED", total)
    );

    // CheckoutCompleted on the topic, published right after the commit.
    let received = events.next(Duration::from_secs(30)).await;
    let event = &received.event;
    assert_eq!(event.event_type, event_type::CHECKOUT_COMPLETED);
    assert_eq!(event.source, "/storefront/checkout");
    assert_eq!(event.key, "ada");
    assert!(!event.id.is_nil());
    let lag_ms = received.record_ms - event.time.timestamp_millis();
    assert!(
        lag_ms < 1000,
        "the relay took {lag_ms} ms from commit to Kafka; NOTIFY should wake it at once"
    );
    let payload: events::CheckoutCompleted = event.decode().expect("CheckoutCompleted JSON");
    assert_eq!(payload.checkout_id, session.checkout_id);
    assert_eq!(payload.user_id, "ada");
    assert_eq!(payload.items, session.items);
    assert_eq!(payload.total, session.total);
    assert_eq!(payload.payment_id, payments[0].0);
    assert!(uuid::Uuid::parse_str(&payload.reservation_id).is_ok());
    assert_eq!(payload.shipping_address, Some(address()));
    assert!(chrono::DateTime::parse_from_rfc3339(&payload.completed_at).is_ok());
    events.assert_quiet(Duration::from_millis(500)).await;

    // The owner reads it back.
    let read = shop
        .get("ada", &session.checkout_id)
        .await
        .expect("GetCheckout");
    assert_eq!(&read, session);
    shop.stop().await;
}

#[tokio::test]
async fn events_reach_kafka_milliseconds_after_the_commit() {
    // The relay also polls once a second; woken by NOTIFY it is far quicker.
    // Five commits at unrelated moments all published within 500 ms would
    // happen by polling alone about once in thirty runs.
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    shop.carts.put("ada", &[(MOUSE, 1)]);
    let mut lags = Vec::new();
    for n in 0..5u64 {
        tokio::time::sleep(Duration::from_millis(137 * n)).await;
        let key = format!("order-{n}");
        shop.checkout("ada", &key, "").await.expect("checkout");
        let received = events.next(Duration::from_secs(30)).await;
        lags.push(received.record_ms - received.event.time.timestamp_millis());
    }
    assert!(lags.iter().all(|lag| *lag < 500), "lags in ms: {lags:?}");
    shop.stop().await;
}

#[tokio::test]
async fn a_repeated_key_replays_the_stored_session_and_keys_are_per_user() {
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 1)]);
    shop.carts.put("grace", &[(LAPTOP, 2)]);

    let first = shop.checkout("ada", "k-1", "").await.expect("first");
    let again = shop.checkout("ada", "k-1", "").await.expect("replay");
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.session, first.session);

    // Same key, another user: a checkout of its own.
    let other = shop.checkout("grace", "k-1", "").await.expect("grace");
    assert!(!other.replayed);
    let (ada, grace) = (session_of(&first), session_of(&other));
    assert_ne!(grace.checkout_id, ada.checkout_id);
    assert_eq!(status_of(grace), pb::CheckoutStatus::Completed);
    assert_eq!(grace.user_id, "grace");

    // Charged and deducted once per checkout, not per request.
    assert_eq!(shop.payments_of(&ada.checkout_id).await.len(), 1);
    assert_eq!(shop.payments_of(&grace.checkout_id).await.len(), 1);
    assert_eq!(shop.payment_count("SUCCEEDED").await, 2);
    assert_eq!(shop.stock(LAPTOP).await.on_hand, 50 - 1 - 2);
    assert_eq!(shop.session_count().await, 2);
    let published = events.take(2, Duration::from_secs(30)).await;
    let mut keys: Vec<_> = published.iter().map(|r| r.event.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["ada", "grace"]);
    events.assert_quiet(Duration::from_millis(500)).await;
    shop.stop().await;
}

#[tokio::test]
async fn a_declined_card_releases_the_stock_and_fails() {
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 3)]);

    let response = shop
        .checkout("ada", "declined", "pm_card_declined")
        .await
        .expect("a decline is an answer");
    let session = session_of(&response);
    assert_eq!(status_of(session), pb::CheckoutStatus::Failed);
    assert_eq!(session.failure_reason, "payment_declined");
    assert_eq!(session.decline_reason, "CARD_DECLINED");
    assert_eq!(
        session.total.as_ref().map(|m| m.amount_minor),
        Some(3 * LAPTOP_PRICE)
    );

    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (50, 0));
    let payments = shop.payments_of(&session.checkout_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].1, "DECLINED");

    let received = events.next(Duration::from_secs(30)).await;
    assert_eq!(received.event.event_type, event_type::CHECKOUT_FAILED);
    assert_eq!(received.event.key, "ada");
    let payload: events::CheckoutFailed = received.event.decode().expect("CheckoutFailed JSON");
    assert_eq!(payload.checkout_id, session.checkout_id);
    assert_eq!(payload.reason, "payment_declined");
    assert!(
        payload.detail.contains("CARD_DECLINED"),
        "{}",
        payload.detail
    );

    // The failure is the stored result too.
    let again = shop
        .checkout("ada", "declined", "pm_card_declined")
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.session, response.session);
    events.assert_quiet(Duration::from_millis(500)).await;
    shop.stop().await;
}

#[tokio::test]
async fn short_stock_fails_the_checkout_and_holds_nothing() {
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    shop.carts.put("ada", &[(MOUSE, 1), (LAPTOP, 51)]);

    let response = shop.checkout("ada", "greedy", "").await.expect("answer");
    let session = session_of(&response);
    assert_eq!(status_of(session), pb::CheckoutStatus::Failed);
    assert_eq!(session.failure_reason, "insufficient_stock");
    assert_eq!(session.decline_reason, "");
    for product in [LAPTOP, MOUSE] {
        assert_eq!(shop.stock(product).await.reserved, 0);
    }
    assert_eq!(shop.stock(LAPTOP).await.on_hand, 50);
    assert!(shop.payments_of(&session.checkout_id).await.is_empty());
    let received = events.next(Duration::from_secs(30)).await;
    let payload: events::CheckoutFailed = received.event.decode().expect("CheckoutFailed JSON");
    assert_eq!(
        (received.event.event_type.as_str(), payload.reason.as_str()),
        (event_type::CHECKOUT_FAILED, "insufficient_stock")
    );
    shop.stop().await;
}

#[tokio::test]
async fn an_empty_cart_is_refused_and_nothing_is_stored() {
    let shop = Shop::start(Options::default()).await;
    let status = shop
        .checkout("ada", "too-early", "")
        .await
        .expect_err("empty cart");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "CART_EMPTY");
    assert_eq!(shop.session_count().await, 0);

    // Nothing was stored under the key: once the cart is filled, it checks out.
    shop.carts.put("ada", &[(MOUSE, 1)]);
    let response = shop
        .checkout("ada", "too-early", "")
        .await
        .expect("checkout");
    assert!(!response.replayed);
    assert_eq!(
        status_of(session_of(&response)),
        pb::CheckoutStatus::Completed
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_product_missing_from_the_catalog_fails_the_checkout() {
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 1), (999, 1)]);

    let response = shop.checkout("ada", "ghost", "").await.expect("answer");
    let session = session_of(&response);
    assert_eq!(status_of(session), pb::CheckoutStatus::Failed);
    assert_eq!(session.failure_reason, "product_unavailable");
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (50, 0));
    assert!(shop.payments_of(&session.checkout_id).await.is_empty());
    let received = events.next(Duration::from_secs(30)).await;
    let payload: events::CheckoutFailed = received.event.decode().expect("CheckoutFailed JSON");
    assert_eq!(payload.reason, "product_unavailable");
    assert!(payload.detail.contains("999"), "{}", payload.detail);
    shop.stop().await;
}

#[tokio::test]
async fn an_unknown_payment_method_is_an_invalid_argument_and_releases_the_stock() {
    let shop = Shop::start(Options::default()).await;
    shop.carts.put("ada", &[(LAPTOP, 1)]);

    for attempt in ["first", "replay"] {
        let status = shop
            .checkout("ada", "bitcoin", "pm_bitcoin")
            .await
            .expect_err(attempt);
        assert_eq!(status.code(), Code::InvalidArgument, "{attempt}");
        assert_eq!(reason(&status), "INVALID_ARGUMENT");
        assert!(
            status.message().starts_with("payment_method: "),
            "{attempt}: {}",
            status.message()
        );
        assert!(
            status.message().contains("pm_bitcoin"),
            "{}",
            status.message()
        );
    }
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (50, 0));
    assert_eq!(shop.payment_count("SUCCEEDED").await, 0);
    shop.stop().await;
}

#[tokio::test]
async fn sessions_are_private_and_bad_requests_name_their_field() {
    let shop = Shop::start(Options::default()).await;
    shop.carts.put("ada", &[(MOUSE, 1)]);
    let response = shop.checkout("ada", "mine", "").await.expect("checkout");
    let id = &session_of(&response).checkout_id;

    // Another user cannot see it, nor tell it from a session that does not exist.
    for (user, checkout_id) in [
        ("grace", id.clone()),
        ("ada", uuid::Uuid::new_v4().to_string()),
    ] {
        let status = shop.get(user, &checkout_id).await.expect_err("not found");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(reason(&status), "CHECKOUT_NOT_FOUND");
    }
    assert_eq!(
        status_of(&shop.get("ada", id).await.expect("owner")),
        pb::CheckoutStatus::Completed
    );

    let invalid = |status: tonic::Status, field: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(reason(&status), "INVALID_ARGUMENT");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{field}: {}",
            status.message()
        );
    };
    invalid(
        shop.get("ada", "not-a-uuid").await.expect_err("malformed"),
        "checkout_id",
    );
    invalid(
        shop.get("ada", "").await.expect_err("missing"),
        "checkout_id",
    );
    invalid(shop.get("", id).await.expect_err("no user"), "user_id");
    invalid(
        shop.checkout("", "k", "").await.expect_err("no user"),
        "user_id",
    );
    invalid(
        shop.checkout(&"u".repeat(129), "k", "")
            .await
            .expect_err("long user"),
        "user_id",
    );
    invalid(
        shop.checkout("ada", "", "").await.expect_err("no key"),
        "idempotency_key",
    );
    invalid(
        shop.checkout("ada", &"k".repeat(256), "")
            .await
            .expect_err("long key"),
        "idempotency_key",
    );
    assert_eq!(shop.session_count().await, 1);
    shop.stop().await;
}
