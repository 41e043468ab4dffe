//! Sessions left mid-saga are finished by the recovery loop: completed with
//! exactly one charge, or compensated; a reservation that expires during
//! payment is refunded; a live request keeps its session from recovery.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use storefront_proto::checkout::v1 as pb;
use storefront_proto::events::v1 as events;
use storefront_runtime::events::event_type;
use storefront_runtime::testing::reason;
use tonic::Code;

use crate::support::{LAPTOP, LAPTOP_PRICE, Options, Shop, session_of, status_of, stored_status};

/// Checks out while the payment service is unreachable: the caller is told
/// UNAVAILABLE and the session waits, reserved and pending payment.
async fn strand(shop: &Shop, user: &str, payment_method: &str) -> String {
    let status = shop
        .checkout(user, "stranded", payment_method)
        .await
        .expect_err("payment is unreachable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "CHECKOUT_PENDING");
    let (checkout_id,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM checkout_sessions WHERE user_id = $1")
            .bind(user)
            .fetch_one(&shop.sessions)
            .await
            .expect("the session is stored");
    let checkout_id = checkout_id.to_string();
    assert!(
        status.message().contains(&checkout_id),
        "{}",
        status.message()
    );
    let session = shop.get(user, &checkout_id).await.expect("GetCheckout");
    assert_eq!(status_of(&session), pb::CheckoutStatus::PaymentPending);
    assert_eq!(shop.stock(LAPTOP).await.reserved, 1, "stock stays held");

    // Still in progress: a retry with the key is told so, and runs nothing.
    let retry = shop
        .checkout(user, "stranded", payment_method)
        .await
        .expect_err("in progress");
    assert_eq!(retry.code(), Code::Aborted);
    assert_eq!(reason(&retry), "CHECKOUT_IN_PROGRESS");
    checkout_id
}

#[tokio::test]
async fn a_session_stranded_by_a_payment_outage_is_completed_by_recovery() {
    let mut shop = Shop::start(Options {
        payment_down: true,
        ..Options::default()
    })
    .await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 1)]);
    let checkout_id = strand(&shop, "ada", "pm_card_visa").await;
    assert_eq!(shop.payment_count("SUCCEEDED").await, 0);

    // A new instance that reaches payment takes the session over.
    shop.replace_checkout(Duration::from_millis(500)).await;
    let session = shop
        .wait_for("ada", &checkout_id, pb::CheckoutStatus::Completed)
        .await;
    assert_eq!(session.failure_reason, "");
    let payments = shop.payments_of(&checkout_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (payments[0].1.as_str(), payments[0].2),
        ("SUCCEEDED", LAPTOP_PRICE)
    );
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (49, 0));

    let received = events.next(Duration::from_secs(30)).await;
    assert_eq!(received.event.event_type, event_type::CHECKOUT_COMPLETED);
    let payload: events::CheckoutCompleted = received.event.decode().unwrap();
    assert_eq!(
        (payload.checkout_id.as_str(), payload.payment_id.as_str()),
        (checkout_id.as_str(), payments[0].0.as_str())
    );
    events.assert_quiet(Duration::from_millis(500)).await;

    // Now the key replays the finished session.
    let replay = shop
        .checkout("ada", "stranded", "pm_card_visa")
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(session_of(&replay).checkout_id, checkout_id);
    assert_eq!(
        status_of(session_of(&replay)),
        pb::CheckoutStatus::Completed
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_checkout_that_crashes_mid_charge_is_completed_with_one_charge() {
    let mut shop = Shop::start(Options {
        payment_latency: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 1)]);
    let request = {
        let mut client = shop.checkout.clone();
        tokio::spawn(async move {
            client
                .checkout(pb::CheckoutRequest {
                    user_id: "ada".into(),
                    idempotency_key: "crash".into(),
                    payment_method: "pm_card_visa".into(),
                    shipping_address: None,
                })
                .await
        })
    };
    // Wait until the charge is under way, then die in the middle of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let checkout_id = loop {
        if let Some((id, status)) = stored_status(&shop.sessions, "ada").await
            && status == "PAYMENT_PENDING"
        {
            break id.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached PAYMENT_PENDING"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    shop.crash_checkout().await;
    let lost = request.await.expect("request task");
    assert!(
        lost.is_err(),
        "the crashed instance cannot answer: {lost:?}"
    );
    let stored = stored_status(&shop.sessions, "ada").await.map(|(_, s)| s);
    assert_eq!(stored.as_deref(), Some("PAYMENT_PENDING"));

    shop.replace_checkout(Duration::from_millis(500)).await;
    shop.wait_for("ada", &checkout_id, pb::CheckoutStatus::Completed)
        .await;
    let payments = shop.payments_of(&checkout_id).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0].1, "SUCCEEDED");
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (49, 0));
    let received = events.next(Duration::from_secs(30)).await;
    assert_eq!(received.event.event_type, event_type::CHECKOUT_COMPLETED);
    events.assert_quiet(Duration::from_millis(500)).await;
    shop.stop().await;
}

#[tokio::test]
async fn a_stranded_session_whose_card_is_declined_is_compensated_by_recovery() {
    let mut shop = Shop::start(Options {
        payment_down: true,
        ..Options::default()
    })
    .await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 1)]);
    let checkout_id = strand(&shop, "ada", "pm_card_insufficient_funds").await;

    shop.replace_checkout(Duration::from_millis(500)).await;
    let session = shop
        .wait_for("ada", &checkout_id, pb::CheckoutStatus::Failed)
        .await;
    assert_eq!(session.failure_reason, "payment_declined");
    assert_eq!(session.decline_reason, "NO_FUNDS");
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (50, 0));
    let payments = shop.payments_of(&checkout_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].1, "DECLINED");

    let received = events.next(Duration::from_secs(30)).await;
    assert_eq!(received.event.event_type, event_type::CHECKOUT_FAILED);
    let payload: events::CheckoutFailed = received.event.decode().unwrap();
    assert_eq!(payload.reason, "payment_declined");
    events.assert_quiet(Duration::from_millis(500)).await;
    shop.stop().await;
}

#[tokio::test]
async fn a_reservation_that_expires_during_payment_is_refunded() {
    // The reservation lasts 1 s; the provider takes 2.5 s to charge.
    let shop = Shop::start(Options {
        reservation_ttl: Duration::from_secs(1),
        sweep_interval: Duration::from_millis(200),
        payment_latency: Duration::from_millis(2500),
        ..Options::default()
    })
    .await;
    let events = shop.events();
    shop.carts.put("ada", &[(LAPTOP, 2)]);

    let response = shop.checkout("ada", "slow", "").await.expect("answer");
    let session = session_of(&response);
    assert_eq!(status_of(session), pb::CheckoutStatus::Failed);
    assert_eq!(session.failure_reason, "reservation_expired");

    // The charge went through and was refunded once; no stock was taken.
    let payments = shop.payments_of(&session.checkout_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (payments[0].1.as_str(), payments[0].2),
        ("REFUNDED", 2 * LAPTOP_PRICE)
    );
    assert_eq!(shop.refunds_of(&payments[0].0).await, 1);
    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (50, 0));

    let received = events.next(Duration::from_secs(30)).await;
    assert_eq!(received.event.event_type, event_type::CHECKOUT_FAILED);
    let payload: events::CheckoutFailed = received.event.decode().unwrap();
    assert_eq!(payload.reason, "reservation_expired");
    shop.stop().await;
}

#[tokio::test]
async fn a_live_request_keeps_its_session_from_recovery() {
    // Recovery takes over sessions untouched for 1.5 s and looks every
    // 100 ms, while the charge alone takes 3 s: only the live request's lease
    // renewals keep recovery away.
    let shop = Shop::start(Options {
        payment_latency: Duration::from_secs(3),
        recovery_after: Duration::from_millis(1500),
        recovery_interval: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    shop.carts.put("ada", &[(LAPTOP, 1)]);
    let response = shop
        .checkout("ada", "patient", "")
        .await
        .expect("the live request finishes its own session");
    let session = session_of(&response);
    assert!(!response.replayed);
    assert_eq!(status_of(session), pb::CheckoutStatus::Completed);
    assert_eq!(shop.payments_of(&session.checkout_id).await.len(), 1);
    assert_eq!(shop.stock(LAPTOP).await.on_hand, 49);
    shop.stop().await;
}

#[tokio::test]
async fn a_session_whose_participants_answer_unexpectedly_ends_needing_a_person() {
    let mut shop = Shop::start(Options {
        payment_down: true,
        ..Options::default()
    })
    .await;
    shop.carts.put("eve", &[(LAPTOP, 1)]);
    let checkout_id = strand(&shop, "eve", "pm_card_visa").await;
    // As if it had been charged by a payment that the payment service does
    // not know, for a reservation the inventory does not know: Confirm
    // answers NOT_FOUND, and so does the Refund that compensation tries.
    let ghost_payment = uuid::Uuid::new_v4();
    sqlx::query(
        "UPDATE checkout_sessions SET status = 'PAYMENT_COMPLETED', payment_id = $2, \
         reservation_id = $3 WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(&checkout_id).unwrap())
    .bind(ghost_payment)
    .bind(uuid::Uuid::new_v4())
    .execute(&shop.sessions)
    .await
    .expect("rewrite the session");

    shop.replace_checkout(Duration::from_millis(500)).await;
    let session = shop
        .wait_for("eve", &checkout_id, pb::CheckoutStatus::NeedsAttention)
        .await;
    assert!(
        session.attention_reason.contains("payment"),
        "{}",
        session.attention_reason
    );
    // Final: recovery leaves it alone from now on.
    let touched = |shop: &Shop| {
        let pool = shop.sessions.clone();
        let id = uuid::Uuid::parse_str(&checkout_id).unwrap();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT updated_at FROM checkout_sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = touched(&shop).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        touched(&shop).await,
        before,
        "recovery retook a final session"
    );

    // Admins find it, and it does not hold the user's cart.
    let mut client = shop.checkout.clone();
    let listed = client
        .list_checkouts(pb::ListCheckoutsRequest {
            status: pb::CheckoutStatus::NeedsAttention as i32,
            page_size: 0,
        })
        .await
        .expect("ListCheckouts")
        .into_inner();
    assert_eq!(
        listed
            .sessions
            .iter()
            .map(|s| s.checkout_id.as_str())
            .collect::<Vec<_>>(),
        vec![checkout_id.as_str()]
    );
    let next = shop
        .checkout("eve", "after-attention", "pm_card_visa")
        .await
        .expect("checkout");
    assert_eq!(status_of(session_of(&next)), pb::CheckoutStatus::Completed);
}
