//! Records the orders service cannot turn into orders, through a real Kafka
//! and PostgreSQL: each reaches `<topic>.dlq` with its reason — at once when
//! it can never succeed, after its bounded retries when the database keeps
//! refusing it — and the records behind it on its partition still become
//! orders.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use rdkafka::producer::FutureRecord;
use support::*;

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_later_events_still_processed() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();

    // Not JSON at all.
    let mut not_json = Event::new(
        event_type::CHECKOUT_COMPLETED,
        "/storefront/checkout",
        &owner,
        &(),
    )
    .expect("event");
    not_json.payload = b"this is not JSON".to_vec();
    fx.publish(&not_json).await;
    // JSON without the fields an order needs.
    let missing = Event::new(
        event_type::CHECKOUT_COMPLETED,
        "/storefront/checkout",
        &owner,
        &serde_json::json!({ "user_id": owner }),
    )
    .expect("event");
    fx.publish(&missing).await;
    // Money that does not add up.
    let mut bad_total = laptop_and_mice(&owner);
    bad_total.total = usd(1);
    fx.complete(&bad_total).await;
    // A record that is no CloudEvent (no ce_* headers).
    fx.producer
        .send(
            FutureRecord::to(&fx.checkout_topic)
                .key(&owner)
                .payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("publish a bare record");
    // Not the orders service's business: skipped, not dead-lettered.
    let failed = Event::new(
        event_type::CHECKOUT_FAILED,
        "/storefront/checkout",
        &owner,
        &ev::CheckoutFailed {
            checkout_id: Uuid::new_v4().to_string(),
            user_id: owner.clone(),
            reason: "PAYMENT_DECLINED".into(),
            detail: "card declined".into(),
            failed_at: "2026-11-23T10:00:00Z".into(),
        },
    )
    .expect("event");
    fx.publish(&failed).await;
    // And a good one after all of them (same key, same partition).
    let good = laptop_and_mice(&owner);
    fx.complete(&good).await;

    let orders = wait_for_orders(&mut client, &owner, 1).await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].checkout_id, good.checkout_id);

    let dlq = fx.tap(&dead_letter_topic(&fx.checkout_topic));
    assert_eq!(dlq.length(), 4, "the four poison records, nothing else");
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let record = dlq.next().await;
        assert_eq!(record.key, owner);
        assert_eq!(record.header("dlq_topic"), fx.checkout_topic);
        assert_eq!(record.header("dlq_group"), fx.group);
        reasons.push((
            record.header("dlq_reason").to_owned(),
            String::from_utf8_lossy(&record.payload).into_owned(),
        ));
    }
    let expected = [
        ("not the expected JSON", "this is not JSON"),
        ("checkout_id: is required", ""),
        ("total: must be the sum of the line totals", ""),
        ("lacks CloudEvents header", "{}"),
    ];
    for ((reason, payload), (needle, expected_payload)) in reasons.iter().zip(expected) {
        assert!(
            reason.contains(needle),
            "reason {reason:?} lacks {needle:?}"
        );
        if !expected_payload.is_empty() {
            assert_eq!(payload, expected_payload, "the original payload is kept");
        }
    }

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

/// A checkout the database refuses for a reason outside SQLSTATE classes 22
/// and 23 (here a trigger's RAISE EXCEPTION, P0001 — as a rule added by a
/// later migration, or a revoked privilege, 42501, would) fails on every
/// attempt: after its bounded retries it goes to the DLQ with the reason,
/// and the next checkout on the same partition becomes an order.
#[tokio::test]
async fn a_checkout_the_database_keeps_refusing_is_dead_lettered_after_its_retries() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let db = fx.db().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_recalled() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
             IF NEW.name = 'Recalled gadget' THEN \
                 RAISE EXCEPTION 'product % is recalled', NEW.product_id; \
             END IF; \
             RETURN NEW; \
         END $$; \
         CREATE TRIGGER refuse_recalled BEFORE INSERT ON order_items \
             FOR EACH ROW EXECUTE FUNCTION refuse_recalled();",
    )
    .execute(&db)
    .await
    .expect("the refusing trigger");
    let owner = user();
    let refused = checkout(&owner, &[(9, "Recalled gadget", 1_000, 1)]);
    let refused_event = fx.complete(&refused).await;
    let good = laptop_and_mice(&owner);
    fx.complete(&good).await;

    let orders = wait_for_orders(&mut client, &owner, 1).await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].checkout_id, good.checkout_id);

    let dlq = fx.tap(&dead_letter_topic(&fx.checkout_topic));
    let record = dlq.next().await;
    assert_eq!(record.key, owner);
    let reason = record.header("dlq_reason");
    assert!(reason.contains("product 9 is recalled"), "{reason}");
    assert!(
        reason.contains(&format!("CheckoutCompleted {}", refused_event.id)),
        "{reason}"
    );
    assert_eq!(record.header("dlq_error_class"), "failed");
    assert_eq!(record.header("dlq_attempts"), "3");
    let payload: ev::CheckoutCompleted =
        serde_json::from_slice(&record.payload).expect("the original payload");
    assert_eq!(payload.checkout_id, refused.checkout_id);
    assert_eq!(dlq.length(), 1, "only the refused checkout");

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}
