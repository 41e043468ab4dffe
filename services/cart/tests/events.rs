//! CheckoutCompleted through a real Kafka (a topic of its own per test):
//! checked-out lines leave the cart and later ones stay, a redelivered event
//! changes nothing, and a poison record goes to `<topic>.dlq` without
//! stopping the events behind it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
use storefront_proto::events::v1::{CheckoutCompleted, CheckoutFailed};
use storefront_proto::{LineItem, Money};
use storefront_runtime::events::{Event, dead_letter_topic, event_type, publish};
use storefront_runtime::kafka;
use storefront_runtime::testing::kafka_bootstrap_servers;
use support::*;
use uuid::Uuid;

const SOURCE: &str = "/storefront/checkout";

/// A fresh topic (3 partitions) and its dead-letter topic.
async fn topic() -> String {
    let topic = format!("test-cart-{}", Uuid::new_v4().simple());
    let admin = kafka::admin(&kafka_bootstrap_servers()).expect("admin client");
    kafka::ensure_topic(&admin, &topic, 3, 1)
        .await
        .expect("create topic");
    kafka::ensure_topic(&admin, &dead_letter_topic(&topic), 1, 1)
        .await
        .expect("create dead-letter topic");
    topic
}

async fn delete_topic(topic: &str) {
    let admin = kafka::admin(&kafka_bootstrap_servers()).expect("admin client");
    let dlq = dead_letter_topic(topic);
    let _ = admin
        .delete_topics(&[topic, dlq.as_str()], &rdkafka::admin::AdminOptions::new())
        .await;
}

async fn start(topic: &str) -> Shop {
    Shop::start_with(|config| {
        config.kafka_bootstrap = kafka_bootstrap_servers();
        config.kafka_topic = topic.to_owned();
        config.kafka_group = format!("{topic}-cart");
    })
    .await
}

fn completed(checkout_id: Uuid, user: &str, items: &[(i64, i32)]) -> Event {
    let payload = CheckoutCompleted {
        checkout_id: checkout_id.to_string(),
        user_id: user.to_owned(),
        items: items
            .iter()
            .map(|&(product_id, quantity)| LineItem {
                product_id,
                quantity,
                ..LineItem::default()
            })
            .collect(),
        total: Some(Money {
            amount_minor: 1,
            currency: "USD".to_owned(),
        }),
        completed_at: "2026-11-24T10:00:00Z".to_owned(),
        ..CheckoutCompleted::default()
    };
    Event::new(event_type::CHECKOUT_COMPLETED, SOURCE, user, &payload).expect("event")
}

async fn send(topic: &str, events: &[Event]) {
    let producer = kafka::producer(&kafka_bootstrap_servers()).expect("producer");
    for event in events {
        publish(&producer, topic, event).await.expect("published");
    }
}

#[tokio::test]
async fn checkout_completed_takes_out_only_the_checked_out_lines() {
    let topic = topic().await;
    let shop = start(&topic).await;
    let mut client = shop.client.clone();
    let user = "user-checkout";
    add(&mut client, user, 1, 2).await.expect("add");
    add(&mut client, user, 2, 1).await.expect("add");
    // The checkout buys 2 laptops and a mouse; then, before the event
    // arrives, a keyboard and another laptop go in.
    add(&mut client, user, 3, 1)
        .await
        .expect("add after checkout");
    add(&mut client, user, 1, 1)
        .await
        .expect("add again after checkout");
    let before = get(&mut client, user).await.expect("get (cached)");
    assert_eq!(lines(&before), vec![(1, 3), (2, 1), (3, 1)]);

    send(
        &topic,
        &[completed(Uuid::new_v4(), user, &[(1, 2), (2, 1)])],
    )
    .await;
    let cart = wait_for_cart(&mut client, user, "checked-out lines removed", |cart| {
        lines(cart) != lines(&before)
    })
    .await;
    assert_eq!(lines(&cart), vec![(1, 1), (3, 1)]);
    assert_eq!(cart.item_count, 2);
    shop.stop().await;
    delete_topic(&topic).await;
}

#[tokio::test]
async fn a_redelivered_checkout_changes_nothing() {
    let topic = topic().await;
    let shop = start(&topic).await;
    let mut client = shop.client.clone();
    let user = "user-duplicate";
    add(&mut client, user, 1, 5).await.expect("add");
    add(&mut client, user, 2, 1).await.expect("add");

    let checkout = Uuid::new_v4();
    let failed = Event::new(
        event_type::CHECKOUT_FAILED,
        SOURCE,
        user,
        &CheckoutFailed {
            checkout_id: Uuid::new_v4().to_string(),
            user_id: user.to_owned(),
            reason: "CARD_DECLINED".to_owned(),
            ..CheckoutFailed::default()
        },
    )
    .expect("event");
    let first = completed(checkout, user, &[(1, 2)]);
    // The same event again (as a redelivery would bring it), then a marker
    // checkout: one user's events share a partition, so they arrive in order.
    send(
        &topic,
        &[
            failed,
            first.clone(),
            first,
            completed(checkout, user, &[(1, 2)]),
            completed(Uuid::new_v4(), user, &[(2, 1)]),
        ],
    )
    .await;
    let cart = wait_for_cart(&mut client, user, "marker checkout applied", |cart| {
        !lines(cart).iter().any(|&(product, _)| product == 2)
    })
    .await;
    assert_eq!(
        lines(&cart),
        vec![(1, 3)],
        "2 laptops taken out once, not three times"
    );

    let mut db = shop.database().await;
    let processed: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_checkouts")
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(processed, 2);
    shop.stop().await;
    delete_topic(&topic).await;
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_the_next_event_is_processed() {
    let topic = topic().await;
    let shop = start(&topic).await;
    let mut client = shop.client.clone();
    let user = "user-poison";
    add(&mut client, user, 1, 1).await.expect("add");
    add(&mut client, user, 2, 2).await.expect("add");

    let mut not_json = completed(Uuid::new_v4(), user, &[(1, 1)]);
    not_json.payload = b"not json".to_vec();
    let mut bad_id = completed(Uuid::new_v4(), user, &[(1, 1)]);
    bad_id.payload = br#"{"checkout_id":"nope","user_id":"user-poison","items":[]}"#.to_vec();
    send(
        &topic,
        &[not_json, bad_id, completed(Uuid::new_v4(), user, &[(2, 2)])],
    )
    .await;
    let cart = wait_for_cart(
        &mut client,
        user,
        "the good event behind the poison",
        |cart| lines(cart) == vec![(1, 1)],
    )
    .await;
    assert_eq!(cart.item_count, 1);

    let dlq = dead_letter_topic(&topic);
    let reader = kafka::consumer(&kafka_bootstrap_servers(), &format!("{topic}-dlq-reader"))
        .expect("consumer");
    reader.subscribe(&[dlq.as_str()]).expect("subscribe");
    let mut dead = Vec::new();
    {
        let mut records = reader.stream();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while dead.len() < 2 {
            let record = tokio::time::timeout_at(deadline, records.next())
                .await
                .expect("two dead letters within 60 s")
                .expect("stream open")
                .expect("no consumer error");
            let header = |name: &str| {
                record
                    .headers()
                    .and_then(|headers| headers.iter().find(|h| h.key == name))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            dead.push((
                record.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                header("dlq_reason"),
                header("dlq_topic"),
                header("dlq_group"),
            ));
        }
    }
    assert_eq!(dead[0].0, b"not json");
    assert!(dead[0].1.contains("JSON"), "reason: {}", dead[0].1);
    assert!(dead[1].1.contains("checkout_id"), "reason: {}", dead[1].1);
    for (_, _, from, group) in &dead {
        assert_eq!(from, &topic);
        assert_eq!(group, &format!("{topic}-cart"));
    }
    shop.stop().await;
    delete_topic(&topic).await;
}
