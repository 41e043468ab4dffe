//! Cancelling an order, against a real PostgreSQL and Kafka (a database,
//! topics and consumer group of its own per test): the OrderStatusChanged a
//! cancel announces names what the payment and inventory services need to
//! refund and restock, and a cancel racing a redelivered CheckoutCompleted
//! neither revives the order nor makes a second one.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use storefront_runtime::testing::reason;
use support::*;

#[tokio::test]
async fn a_cancel_announces_the_checkout_its_charge_and_its_reservation() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let completed = laptop_and_mice(&owner);
    fx.complete(&completed).await;
    let order = wait_for_orders(&mut client, &owner, 1).await.remove(0);

    let cancelled = update(&mut client, &order.id, pb::OrderStatus::Cancelled)
        .await
        .expect("CONFIRMED -> CANCELLED is allowed");
    assert_eq!(status_of(&cancelled), pb::OrderStatus::Cancelled);

    let tap = fx.tap(&fx.order_topic);
    tap.next().await.order_created();
    let record = tap.next().await;
    assert_eq!(record.key, owner, "keyed by the user, like every event");
    let changed = record.status_changed();
    assert_eq!(
        (
            changed.order_id.as_str(),
            changed.from_status.as_str(),
            changed.to_status.as_str()
        ),
        (order.id.as_str(), "CONFIRMED", "CANCELLED")
    );
    assert_eq!(changed.checkout_id, completed.checkout_id);
    assert_eq!(changed.payment_id, completed.payment_id);
    assert_eq!(changed.reservation_id, completed.reservation_id);

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn an_order_from_processing_can_be_cancelled_and_a_cancelled_one_stays_so() {
    use pb::OrderStatus::*;
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let completed = laptop_and_mice(&owner);
    fx.complete(&completed).await;
    let order = wait_for_orders(&mut client, &owner, 1).await.remove(0);

    update(&mut client, &order.id, Processing)
        .await
        .expect("allowed");
    update(&mut client, &order.id, Cancelled)
        .await
        .expect("PROCESSING -> CANCELLED is allowed");
    for again in [Cancelled, Confirmed, Processing, Shipped] {
        let refused = update(&mut client, &order.id, again)
            .await
            .expect_err("a cancelled order is final");
        assert_eq!(reason(&refused), "INVALID_TRANSITION");
    }
    let db = fx.db().await;
    let announced: Vec<(String, String)> = sqlx::query_as(
        "SELECT payload->>'to_status', payload->>'checkout_id' FROM outbox \
         WHERE event_type = $1 ORDER BY id",
    )
    .bind(event_type::ORDER_STATUS_CHANGED)
    .fetch_all(&db)
    .await
    .expect("outbox rows");
    assert_eq!(
        announced,
        vec![
            ("PROCESSING".to_owned(), completed.checkout_id.clone()),
            ("CANCELLED".to_owned(), completed.checkout_id.clone()),
        ],
        "one event per change that happened, each naming the checkout"
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn a_cancel_racing_a_redelivered_checkout_keeps_one_cancelled_order() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let completed = laptop_and_mice(&owner);
    let original = fx.complete(&completed).await;
    let order = wait_for_orders(&mut client, &owner, 1).await.remove(0);

    // The same record again and again (a relay that republished it) and the
    // same checkout under new event ids, sent while the cancel is under way.
    let duplicates = async {
        for round in 0..10 {
            if round % 2 == 0 {
                fx.publish(&original).await;
            } else {
                fx.complete(&completed).await;
            }
        }
    };
    let cancel = {
        let mut client = client.clone();
        let id = order.id.clone();
        async move { update(&mut client, &id, pb::OrderStatus::Cancelled).await }
    };
    let ((), cancelled) = tokio::join!(duplicates, cancel);
    assert_eq!(
        status_of(&cancelled.expect("the cancel succeeds")),
        pb::OrderStatus::Cancelled
    );
    // And one more duplicate after the cancel committed.
    fx.publish(&Event {
        id: Uuid::now_v7(),
        ..original.clone()
    })
    .await;
    // Same key, same partition: once this order exists, every duplicate before it was handled.
    let marker = checkout(&owner, &[(3, "Keyboard", 8_999, 1)]);
    fx.complete(&marker).await;
    let orders = wait_for_orders(&mut client, &owner, 2).await;
    assert_eq!(orders[0].checkout_id, marker.checkout_id);

    let ours: Vec<_> = orders
        .iter()
        .filter(|o| o.checkout_id == completed.checkout_id)
        .collect();
    assert_eq!(ours.len(), 1, "one order for the checkout");
    assert_eq!(ours[0].id, order.id, "the same order, not a new one");
    assert_eq!(
        status_of(&get(&mut client, &order.id).await),
        pb::OrderStatus::Cancelled,
        "a redelivered CheckoutCompleted does not revive a cancelled order"
    );
    let db = fx.db().await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE checkout_id = $1")
        .bind(Uuid::parse_str(&completed.checkout_id).expect("uuid"))
        .fetch_one(&db)
        .await
        .expect("count orders");
    assert_eq!(rows, 1);
    assert_eq!(
        outbox_rows(&db, event_type::ORDER_CREATED).await,
        2,
        "OrderCreated once for the checkout, once for the marker"
    );
    let cancellations: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'checkout_id' FROM outbox WHERE event_type = $1 AND payload->>'to_status' = 'CANCELLED'",
    )
    .bind(event_type::ORDER_STATUS_CHANGED)
    .fetch_all(&db)
    .await
    .expect("outbox rows");
    assert_eq!(
        cancellations,
        vec![completed.checkout_id.clone()],
        "one cancellation, announced once, naming the checkout"
    );
    assert_eq!(
        fx.tap(&dead_letter_topic(&fx.checkout_topic)).length(),
        0,
        "a duplicate of a cancelled order's checkout is no error"
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}
