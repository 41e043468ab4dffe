//! The orders service against a real PostgreSQL (one fresh database per test)
//! and a real Kafka (topics and consumer groups of its own per test):
//! CheckoutCompleted events go in through Kafka, orders come out through gRPC,
//! and OrderCreated / OrderStatusChanged are read back from the order topic.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use storefront_runtime::testing::reason;
use support::*;
use tonic::Code;

#[tokio::test]
async fn a_completed_checkout_becomes_a_confirmed_order() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let completed = laptop_and_mice(&owner);
    fx.complete(&completed).await;

    let listed = wait_for_orders(&mut client, &owner, 1).await;
    assert_eq!(listed.len(), 1);
    let order = get(&mut client, &listed[0].id).await;
    assert_eq!(order, listed[0], "GetOrder and ListOrders agree");
    assert!(Uuid::parse_str(&order.id).is_ok(), "{}", order.id);
    assert_eq!(order.checkout_id, completed.checkout_id);
    assert_eq!(order.user_id, owner);
    assert_eq!(status_of(&order), pb::OrderStatus::Confirmed);
    let lines: Vec<_> = order
        .items
        .iter()
        .map(|i| {
            (
                i.product_id,
                i.name.as_str(),
                i.unit_price.clone().unwrap(),
                i.quantity,
                i.line_total.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (1, "Laptop", usd(129_999).unwrap(), 1, usd(129_999).unwrap()),
            (2, "Mouse", usd(2_999).unwrap(), 3, usd(8_997).unwrap()),
        ]
    );
    assert_eq!(order.total, usd(138_996));
    assert_eq!(order.shipping_address, Some(address()));
    let (created, updated) = (order.created_at.unwrap(), order.updated_at.unwrap());
    assert!(created.seconds > 1_700_000_000, "{created:?}");
    assert_eq!(created, updated, "never changed yet");

    // The owner sees it; anyone else is told it does not exist.
    let mine = client
        .get_order(pb::GetOrderRequest {
            order_id: order.id.clone(),
            user_id: owner.clone(),
        })
        .await
        .expect("the owner's order");
    assert_eq!(mine.get_ref().id, order.id);
    let status = client
        .get_order(pb::GetOrderRequest {
            order_id: order.id.clone(),
            user_id: "someone-else".into(),
        })
        .await
        .expect_err("not their order");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::NotFound, "ORDER_NOT_FOUND")
    );
    assert!(
        list(&mut client, "someone-else", 0, "")
            .await
            .orders
            .is_empty(),
        "another user lists nothing"
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn order_created_is_published_with_the_user_as_key() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let completed = laptop_and_mice(&owner);
    fx.complete(&completed).await;
    let order = wait_for_orders(&mut client, &owner, 1).await.remove(0);

    let record = fx.tap(&fx.order_topic).next().await;
    assert_eq!(record.key, owner);
    assert_eq!(record.header("ce_type"), event_type::ORDER_CREATED);
    assert_eq!(record.header("ce_source"), "/storefront/orders");
    assert_eq!(record.header("ce_specversion"), "1.0");
    assert_eq!(record.header("content-type"), "application/json");
    assert!(
        Uuid::parse_str(record.header("ce_id")).is_ok(),
        "{:?}",
        record.headers
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(record.header("ce_time")).is_ok(),
        "{:?}",
        record.headers
    );
    let created = record.order_created();
    assert_eq!(created.order_id, order.id);
    assert_eq!(created.checkout_id, completed.checkout_id);
    assert_eq!(created.user_id, owner);
    assert_eq!(created.items, completed.items);
    assert_eq!(created.total, usd(138_996));
    let created_at = chrono::DateTime::parse_from_rfc3339(&created.created_at).expect("RFC 3339");
    let stamp = order.created_at.unwrap();
    assert_eq!(
        (
            created_at.timestamp(),
            created_at.timestamp_subsec_nanos() as i32
        ),
        (stamp.seconds, stamp.nanos),
        "the event tells the order's creation time"
    );
    // Published rows are marked, so they are never sent again.
    let db = fx.db().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&db)
                .await
                .expect("count");
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outbox row never marked published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn a_redelivered_checkout_makes_one_order_and_one_event() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let first = laptop_and_mice(&owner);
    let event = fx.complete(&first).await;
    // The very same record again (a redelivery), and the same checkout under a
    // new event id (a producer that retried).
    fx.publish(&event).await;
    fx.complete(&first).await;
    // Same key, same partition: once this one is an order, the repeats were handled.
    let marker = checkout(&owner, &[(3, "Keyboard", 8_999, 2)]);
    fx.complete(&marker).await;

    let orders = wait_for_orders(&mut client, &owner, 2).await;
    let checkouts: Vec<_> = orders.iter().map(|o| o.checkout_id.as_str()).collect();
    assert_eq!(
        checkouts,
        vec![marker.checkout_id.as_str(), first.checkout_id.as_str()]
    );

    let tap = fx.tap(&fx.order_topic);
    let mut created = Vec::new();
    loop {
        let event = tap.next().await.order_created();
        created.push(event.checkout_id.clone());
        if event.checkout_id == marker.checkout_id {
            break;
        }
    }
    assert_eq!(
        created,
        vec![first.checkout_id.clone(), marker.checkout_id.clone()],
        "one OrderCreated per checkout"
    );
    let db = fx.db().await;
    assert_eq!(outbox_rows(&db, event_type::ORDER_CREATED).await, 2);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db)
        .await
        .expect("count orders");
    assert_eq!(rows, 2);
    assert_eq!(
        fx.tap(&dead_letter_topic(&fx.checkout_topic)).length(),
        0,
        "a duplicate is no error"
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn list_orders_is_newest_first_and_pages() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let other = user();
    let mut published = Vec::new();
    for i in 0..5_i64 {
        let completed = checkout(&owner, &[(i + 1, "Thing", 1_000 * (i + 1), 1)]);
        fx.complete(&completed).await;
        published.push(completed.checkout_id);
    }
    fx.complete(&laptop_and_mice(&other)).await;

    let all = wait_for_orders(&mut client, &owner, 5).await;
    let newest_first: Vec<_> = published.iter().rev().cloned().collect();
    let listed: Vec<_> = all.iter().map(|o| o.checkout_id.clone()).collect();
    assert_eq!(listed, newest_first);
    assert!(all.iter().all(|o| o.items.len() == 1 && o.user_id == owner));
    assert_eq!(wait_for_orders(&mut client, &other, 1).await.len(), 1);

    // Pages of two: 2 + 2 + 1, the same orders in the same order.
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(&mut client, &owner, 2, &token).await;
        sizes.push(page.orders.len());
        paged.extend(page.orders.iter().map(|o| o.checkout_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(paged, newest_first);
    let exact = list(&mut client, &owner, 5, "").await;
    assert_eq!(exact.orders.len(), 5);
    assert!(
        exact.next_page_token.is_empty(),
        "no token when nothing follows"
    );
    let default = list(&mut client, &owner, 0, "").await;
    assert_eq!(
        default.orders.len(),
        5,
        "page_size 0 means the default (20)"
    );

    for (request, field) in [
        (
            pb::ListOrdersRequest {
                user_id: String::new(),
                ..Default::default()
            },
            "user_id",
        ),
        (
            pb::ListOrdersRequest {
                user_id: owner.clone(),
                page_size: 101,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListOrdersRequest {
                user_id: owner.clone(),
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            pb::ListOrdersRequest {
                user_id: owner.clone(),
                page_size: 2,
                page_token: "not-a-token".into(),
            },
            "page_token",
        ),
    ] {
        let status = client
            .list_orders(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert!(
            status.message().contains(field),
            "{request:?}: {:?} lacks {field}",
            status.message()
        );
    }

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn every_allowed_transition_succeeds() {
    use pb::OrderStatus::*;
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    for _ in 0..3 {
        fx.complete(&laptop_and_mice(&owner)).await;
    }
    let orders = wait_for_orders(&mut client, &owner, 3).await;
    let paths: [(&str, &[pb::OrderStatus]); 3] = [
        (&orders[0].id, &[Processing, Shipped, Delivered]),
        (&orders[1].id, &[Cancelled]),
        (&orders[2].id, &[Processing, Cancelled]),
    ];
    for (id, path) in paths {
        let mut last_update = get(&mut client, id).await.updated_at.unwrap();
        for &status in path {
            let order = update(&mut client, id, status)
                .await
                .unwrap_or_else(|e| panic!("{id} -> {status:?}: {e:?}"));
            assert_eq!(status_of(&order), status);
            assert_eq!(order.items.len(), 2, "the whole order comes back");
            let updated = order.updated_at.unwrap();
            assert!(
                (updated.seconds, updated.nanos) > (last_update.seconds, last_update.nanos),
                "updated_at moves"
            );
            last_update = updated;
            assert_eq!(status_of(&get(&mut client, id).await), status, "stored");
        }
    }

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn forbidden_transitions_and_bad_requests_are_refused() {
    use pb::OrderStatus::*;
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    for _ in 0..3 {
        fx.complete(&laptop_and_mice(&owner)).await;
    }
    let orders = wait_for_orders(&mut client, &owner, 3).await;
    let (confirmed, delivered, cancelled) = (&orders[0].id, &orders[1].id, &orders[2].id);
    for status in [Processing, Shipped, Delivered] {
        update(&mut client, delivered, status)
            .await
            .expect("allowed");
    }
    update(&mut client, cancelled, Cancelled)
        .await
        .expect("allowed");

    let forbidden = [
        (confirmed, Confirmed, "CONFIRMED", "CONFIRMED"),
        (confirmed, Shipped, "CONFIRMED", "SHIPPED"),
        (confirmed, Delivered, "CONFIRMED", "DELIVERED"),
        (delivered, Delivered, "DELIVERED", "DELIVERED"),
        (delivered, Cancelled, "DELIVERED", "CANCELLED"),
        (delivered, Shipped, "DELIVERED", "SHIPPED"),
        (delivered, Confirmed, "DELIVERED", "CONFIRMED"),
        (cancelled, Cancelled, "CANCELLED", "CANCELLED"),
        (cancelled, Processing, "CANCELLED", "PROCESSING"),
        (cancelled, Confirmed, "CANCELLED", "CONFIRMED"),
    ];
    for (id, status, from, to) in forbidden {
        let error = update(&mut client, id, status)
            .await
            .expect_err("forbidden");
        assert_eq!(
            (error.code(), reason(&error).as_str()),
            (Code::FailedPrecondition, "INVALID_TRANSITION"),
            "{from} -> {to}"
        );
        let message = error.message();
        assert!(
            message.contains(&format!("from {from} to {to}")),
            "{message:?}"
        );
    }
    for (id, status) in [
        (confirmed, Confirmed),
        (delivered, Delivered),
        (cancelled, Cancelled),
    ] {
        assert_eq!(
            status_of(&get(&mut client, id).await),
            status,
            "a refused change changes nothing"
        );
    }

    // Malformed or unknown input.
    let status = update(&mut client, confirmed, Unspecified)
        .await
        .expect_err("UNSPECIFIED");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("status"), "{}", status.message());
    let status = client
        .update_order_status(pb::UpdateOrderStatusRequest {
            order_id: confirmed.clone(),
            status: 42,
        })
        .await
        .expect_err("unknown enum value");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("status"), "{}", status.message());
    for bad in ["", "42", "not-a-uuid"] {
        let status = update(&mut client, bad, Processing)
            .await
            .expect_err("malformed");
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            status.message().contains("order_id"),
            "{}",
            status.message()
        );
        let status = client
            .get_order(pb::GetOrderRequest {
                order_id: bad.into(),
                user_id: String::new(),
            })
            .await
            .expect_err("malformed");
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            status.message().contains("order_id"),
            "{}",
            status.message()
        );
    }
    let unknown = Uuid::new_v4().to_string();
    let status = update(&mut client, &unknown, Processing)
        .await
        .expect_err("unknown");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::NotFound, "ORDER_NOT_FOUND")
    );
    let status = client
        .get_order(pb::GetOrderRequest {
            order_id: unknown,
            user_id: String::new(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::NotFound, "ORDER_NOT_FOUND")
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn concurrent_updates_cannot_both_pass_the_check() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    fx.complete(&laptop_and_mice(&owner)).await;
    let order = wait_for_orders(&mut client, &owner, 1).await.remove(0);

    let attempts = (0..20).map(|_| {
        let mut client = client.clone();
        let id = order.id.clone();
        async move { update(&mut client, &id, pb::OrderStatus::Processing).await }
    });
    let results = futures::future::join_all(attempts).await;
    let passed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(passed, 1, "exactly one CONFIRMED -> PROCESSING");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(reason(refused), "INVALID_TRANSITION", "{refused:?}");
        assert!(refused.message().contains("from PROCESSING to PROCESSING"));
    }
    let db = fx.db().await;
    assert_eq!(
        outbox_rows(&db, event_type::ORDER_STATUS_CHANGED).await,
        1,
        "one change, one event"
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn status_changes_are_announced_in_order() {
    use pb::OrderStatus::*;
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let owner = user();
    let first = laptop_and_mice(&owner);
    fx.complete(&first).await;
    let second = laptop_and_mice(&owner);
    fx.complete(&second).await;
    let orders = wait_for_orders(&mut client, &owner, 2).await;
    let (a, b) = (orders[1].id.clone(), orders[0].id.clone());
    assert_eq!(orders[1].checkout_id, first.checkout_id);

    update(&mut client, &a, Processing).await.expect("allowed");
    update(&mut client, &a, Delivered)
        .await
        .expect_err("forbidden");
    update(&mut client, &a, Shipped).await.expect("allowed");
    update(&mut client, &a, Shipped)
        .await
        .expect_err("forbidden");
    update(&mut client, &a, Delivered).await.expect("allowed");
    update(&mut client, &a, Cancelled)
        .await
        .expect_err("forbidden");
    update(&mut client, &b, Cancelled).await.expect("allowed");

    let tap = fx.tap(&fx.order_topic);
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let record = tap.next().await;
        assert_eq!(record.key, owner);
        if record.header("ce_type") == event_type::ORDER_CREATED {
            seen.push((
                record.order_created().order_id,
                "created".into(),
                String::new(),
            ));
        } else {
            let changed = record.status_changed();
            assert_eq!(changed.user_id, owner);
            assert!(chrono::DateTime::parse_from_rfc3339(&changed.changed_at).is_ok());
            seen.push((changed.order_id, changed.from_status, changed.to_status));
        }
    }
    let expected: Vec<(String, String, String)> = [
        (&a, "created", ""),
        (&b, "created", ""),
        (&a, "CONFIRMED", "PROCESSING"),
        (&a, "PROCESSING", "SHIPPED"),
        (&a, "SHIPPED", "DELIVERED"),
        (&b, "CONFIRMED", "CANCELLED"),
    ]
    .into_iter()
    .map(|(id, from, to)| (id.clone(), from.to_owned(), to.to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(tap.length(), 6, "refused changes announce nothing");

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

/// `events_consumed_total{group, outcome="ok"}` in the process's metrics.
fn handled(rendered: &str, group: &str) -> u64 {
    let group = format!("group=\"{group}\"");
    rendered
        .lines()
        .filter(|line| {
            line.starts_with("events_consumed_total{")
                && line.contains(&group)
                && line.contains("outcome=\"ok\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn a_restarted_service_resumes_after_the_committed_offsets() {
    let metrics = storefront_runtime::metrics::recorder().expect("metrics recorder");
    let fx = Fixture::new().await;
    let owner = user();

    let (server, mut client) = fx.start().await;
    fx.complete(&laptop_and_mice(&owner)).await;
    fx.complete(&laptop_and_mice(&owner)).await;
    wait_for_orders(&mut client, &owner, 2).await;
    let deadline = Instant::now() + PATIENCE;
    while handled(&metrics.render(), &fx.group) < 2 {
        assert!(Instant::now() < deadline, "two events never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await.expect("clean stop");

    // Published while no consumer runs; same key, so the same partition as the first two.
    let third = laptop_and_mice(&owner);
    fx.complete(&third).await;
    let (server, mut client) = fx.start().await;
    let orders = wait_for_orders(&mut client, &owner, 3).await;
    assert_eq!(orders[0].checkout_id, third.checkout_id);
    let deadline = Instant::now() + PATIENCE;
    while handled(&metrics.render(), &fx.group) < 3 {
        assert!(Instant::now() < deadline, "third event never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Had the new instance started from the beginning, it would have handled
    // the first two again before the third.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        handled(&metrics.render(), &fx.group),
        3,
        "only the new event is handled after the restart"
    );
    assert_eq!(list(&mut client, &owner, 0, "").await.orders.len(), 3);
    let db = fx.db().await;
    assert_eq!(outbox_rows(&db, event_type::ORDER_CREATED).await, 3);

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}

#[tokio::test]
async fn a_change_made_while_kafka_is_down_waits_in_the_outbox() {
    let fx = Fixture::new().await;
    let owner = user();
    let tap = fx.tap(&fx.order_topic);

    let (server, mut client) = fx.start().await;
    fx.complete(&laptop_and_mice(&owner)).await;
    let order = wait_for_orders(&mut client, &owner, 1).await.remove(0);
    assert_eq!(tap.next().await.order_created().order_id, order.id);
    server.stop().await.expect("clean stop");

    // Nothing listens on port 1: the relay cannot publish.
    let unreachable = Config {
        kafka_bootstrap: "127.0.0.1:1".into(),
        ..fx.config()
    };
    let (server, mut client) = fx.start_with(unreachable).await;
    let changed = update(&mut client, &order.id, pb::OrderStatus::Processing)
        .await
        .expect("the change itself needs only the database");
    assert_eq!(status_of(&changed), pb::OrderStatus::Processing);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = fx.db().await;
    let published: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT published_at FROM outbox WHERE event_type = $1")
            .bind(event_type::ORDER_STATUS_CHANGED)
            .fetch_one(&db)
            .await
            .expect("the event is in the outbox");
    assert_eq!(published, None, "not published while Kafka is unreachable");
    let stopping = Instant::now();
    server.stop().await.expect("clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "stop took {:?}",
        stopping.elapsed()
    );

    // Kafka is back: the waiting event goes out.
    let (server, _client) = fx.start().await;
    let changed = tap.next().await.status_changed();
    assert_eq!(
        (
            changed.order_id.as_str(),
            changed.from_status.as_str(),
            changed.to_status.as_str()
        ),
        (order.id.as_str(), "CONFIRMED", "PROCESSING")
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let published: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT published_at FROM outbox WHERE event_type = $1")
                .bind(event_type::ORDER_STATUS_CHANGED)
                .fetch_one(&db)
                .await
                .expect("outbox row");
        if published.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "row never marked published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}
