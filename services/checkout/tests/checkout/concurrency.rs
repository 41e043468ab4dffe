//! Many buyers for little stock: the saga never oversells, never charges a
//! buyer who got nothing, and leaves no stock reserved.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use storefront_proto::checkout::v1 as pb;
use storefront_runtime::events::event_type;
use storefront_runtime::testing::reason;
use tonic::Code;

use crate::support::{LAPTOP, Options, Shop, session_of, status_of};

#[tokio::test]
async fn a_hundred_buyers_for_fifty_laptops() {
    let shop = Shop::start(Options::default()).await;
    let events = shop.events();
    let users: Vec<String> = (0..100).map(|i| format!("buyer-{i:03}")).collect();
    for user in &users {
        shop.carts.put(user, &[(LAPTOP, 1)]);
    }

    let answers = futures::future::join_all(
        users
            .iter()
            .map(|user| shop.checkout(user, "one-laptop", "pm_card_visa")),
    )
    .await;
    let mut completed = 0;
    let mut short = 0;
    for (user, answer) in users.iter().zip(answers) {
        let response = answer.unwrap_or_else(|status| panic!("{user}: {status:?}"));
        let session = session_of(&response);
        match status_of(session) {
            pb::CheckoutStatus::Completed => completed += 1,
            pb::CheckoutStatus::Failed => {
                assert_eq!(session.failure_reason, "insufficient_stock", "{user}");
                short += 1;
            }
            other => panic!("{user}: session ended {other:?}"),
        }
    }
    assert_eq!((completed, short), (50, 50));

    let laptop = shop.stock(LAPTOP).await;
    assert_eq!((laptop.on_hand, laptop.reserved), (0, 0));
    assert_eq!(shop.payment_count("SUCCEEDED").await, 50);
    assert_eq!(shop.payment_count("DECLINED").await, 0);
    assert_eq!(shop.session_count().await, 100);

    // One event per session, each of the right kind.
    let published = events.take(100, Duration::from_secs(60)).await;
    let announced_completed = published
        .iter()
        .filter(|r| r.event.event_type == event_type::CHECKOUT_COMPLETED)
        .count();
    assert_eq!(announced_completed, 50);
    let mut keys: Vec<_> = published.iter().map(|r| r.event.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, users);
    shop.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_one_checkout() {
    let shop = Shop::start(Options::default()).await;
    shop.carts.put("ada", &[(LAPTOP, 1)]);
    let answers = futures::future::join_all(
        (0..8).map(|_| shop.checkout("ada", "double-click", "pm_card_visa")),
    )
    .await;
    let mut ids = Vec::new();
    let mut fresh = 0;
    for answer in answers {
        match answer {
            Ok(response) => {
                fresh += usize::from(!response.replayed);
                let session = session_of(&response);
                assert_eq!(status_of(session), pb::CheckoutStatus::Completed);
                ids.push(session.checkout_id.clone());
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert_eq!(reason(&status), "CHECKOUT_IN_PROGRESS");
            }
        }
    }
    assert_eq!(fresh, 1, "exactly one request ran the saga");
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(shop.session_count().await, 1);
    assert_eq!(shop.payment_count("SUCCEEDED").await, 1);
    assert_eq!(shop.stock(LAPTOP).await.on_hand, 49);
    shop.stop().await;
}
