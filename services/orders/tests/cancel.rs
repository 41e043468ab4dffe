//! Cancelling an order, against a real PostgreSQL and Kafka (a database,
//! topics and consumer group of its own per test): the OrderStatusChanged a
//! cancel announces names what the payment and inventory services need to
//! refund and restock, and a cancel racing a redelivered CheckoutCompleted
//! neither revives the order nor makes a second one.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::FutureProducer;
use sqlx::PgPool;
use storefront_orders::{Config, run};
use storefront_proto::common::v1 as common;
use storefront_proto::events::v1 as ev;
use storefront_proto::orders::v1 as pb;
use storefront_proto::orders::v1::order_service_client::OrderServiceClient;
use storefront_runtime::events::{self, Event, dead_letter_topic, event_type};
use storefront_runtime::kafka;
use storefront_runtime::testing::{TestServer, fresh_database, kafka_bootstrap_servers, reason};
use tonic::transport::Channel;
use uuid::Uuid;

/// How long a test waits for an event to travel through Kafka and the service.
const PATIENCE: Duration = Duration::from_secs(60);

/// One test's world: its own database, topics and consumer group.
struct Fixture {
    bootstrap: String,
    database_url: String,
    checkout_topic: String,
    order_topic: String,
    group: String,
    producer: FutureProducer,
}

impl Fixture {
    async fn new() -> Fixture {
        let bootstrap = kafka_bootstrap_servers();
        let suffix = Uuid::new_v4().simple();
        let checkout_topic = format!("test-cancel-checkout-{suffix}");
        let order_topic = format!("test-cancel-order-{suffix}");
        let admin = kafka::admin(&bootstrap).expect("Kafka admin client");
        // One partition for the order topic, so a tap sees every event in order.
        for (topic, partitions) in [
            (checkout_topic.clone(), 3),
            (dead_letter_topic(&checkout_topic), 1),
            (order_topic.clone(), 1),
        ] {
            kafka::ensure_topic(&admin, &topic, partitions, 1)
                .await
                .unwrap_or_else(|e| panic!("create topic {topic} (run `make infra-up`): {e}"));
        }
        Fixture {
            producer: kafka::producer(&bootstrap).expect("producer"),
            database_url: fresh_database("orders_cancel").await,
            group: format!("test-cancel-{suffix}"),
            bootstrap,
            checkout_topic,
            order_topic,
        }
    }

    async fn start(&self) -> (TestServer, OrderServiceClient<Channel>) {
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: self.database_url.clone(),
            db_max_connections: 10,
            kafka_bootstrap: self.bootstrap.clone(),
            checkout_topic: self.checkout_topic.clone(),
            order_topic: self.order_topic.clone(),
            consumer_group: self.group.clone(),
            consumer_max_attempts: 3,
            consumer_retry_backoff: Duration::from_millis(10),
            consumer_retry_backoff_max: Duration::from_millis(100),
        };
        let server = TestServer::start(|listener, shutdown| run(config, listener, shutdown)).await;
        let client = OrderServiceClient::new(server.channel());
        (server, client)
    }

    async fn publish(&self, event: &Event) {
        events::publish(&self.producer, &self.checkout_topic, event)
            .await
            .expect("publish to the checkout topic");
    }

    /// Publishes `checkout` as a CheckoutCompleted event and returns the event.
    async fn complete(&self, checkout: &ev::CheckoutCompleted) -> Event {
        let event = Event::new(
            event_type::CHECKOUT_COMPLETED,
            "/storefront/checkout",
            &checkout.user_id,
            checkout,
        )
        .expect("event");
        self.publish(&event).await;
        event
    }

    /// Reads `topic` from its beginning, as a consumer group of its own.
    fn tap(&self, topic: &str) -> StreamConsumer {
        let group = format!("test-tap-{}", Uuid::new_v4().simple());
        let consumer = kafka::consumer(&self.bootstrap, &group).expect("tap consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        consumer
    }

    /// How many records the (single-partition) dead-letter topic holds.
    fn dead_letters(&self) -> i64 {
        let topic = dead_letter_topic(&self.checkout_topic);
        let (low, high) = self
            .tap(&topic)
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        high - low
    }

    async fn db(&self) -> PgPool {
        PgPool::connect(&self.database_url)
            .await
            .expect("test database")
    }

    async fn remove_topics(self) {
        let admin = kafka::admin(&self.bootstrap).expect("admin");
        let dlq = dead_letter_topic(&self.checkout_topic);
        let topics = [
            self.checkout_topic.as_str(),
            dlq.as_str(),
            self.order_topic.as_str(),
        ];
        let _ = admin.delete_topics(&topics, &AdminOptions::new()).await;
    }
}

/// The next record of a tap: its key, CloudEvents type and payload.
async fn next(tap: &StreamConsumer) -> (String, String, Vec<u8>) {
    let message: BorrowedMessage<'_> = tokio::time::timeout(PATIENCE, tap.recv())
        .await
        .unwrap_or_else(|_| panic!("no record within {PATIENCE:?}"))
        .expect("Kafka receive");
    let ce_type = message
        .headers()
        .and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "ce_type")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .unwrap_or_default();
    (
        String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
        ce_type,
        message.payload().unwrap_or_default().to_vec(),
    )
}

fn usd(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency: "USD".into(),
    })
}

/// A consistent CheckoutCompleted of `lines` (product id, name, unit price, quantity).
fn checkout(user: &str, lines: &[(i64, &str, i64, i32)]) -> ev::CheckoutCompleted {
    let items: Vec<common::LineItem> = lines
        .iter()
        .map(|&(product_id, name, unit, quantity)| common::LineItem {
            product_id,
            name: name.into(),
            unit_price: usd(unit),
            quantity,
            line_total: usd(unit * i64::from(quantity)),
        })
        .collect();
    let total = lines
        .iter()
        .map(|&(_, _, unit, quantity)| unit * i64::from(quantity))
        .sum();
    ev::CheckoutCompleted {
        checkout_id: Uuid::new_v4().to_string(),
        user_id: user.into(),
        items,
        total: usd(total),
        payment_id: Uuid::new_v4().to_string(),
        reservation_id: Uuid::new_v4().to_string(),
        shipping_address: None,
        completed_at: "2026-12-01T10:00:00Z".into(),
    }
}

fn laptop_and_mice(user: &str) -> ev::CheckoutCompleted {
    checkout(user, &[(1, "Laptop", 129_999, 1), (2, "Mouse", 2_999, 3)])
}

fn user() -> String {
    format!("user-{}", Uuid::new_v4().simple())
}

/// The user's orders, newest first, once there are at least `count`.
async fn wait_for_orders(
    client: &mut OrderServiceClient<Channel>,
    user: &str,
    count: usize,
) -> Vec<pb::Order> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let orders = client
            .list_orders(pb::ListOrdersRequest {
                user_id: user.into(),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .expect("ListOrders")
            .into_inner()
            .orders;
        if orders.len() >= count {
            return orders;
        }
        assert!(
            Instant::now() < deadline,
            "{user} has {} orders after {PATIENCE:?}, expected {count}",
            orders.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(client: &mut OrderServiceClient<Channel>, order_id: &str) -> pb::Order {
    client
        .get_order(pb::GetOrderRequest {
            order_id: order_id.into(),
            user_id: String::new(),
        })
        .await
        .expect("GetOrder")
        .into_inner()
}

async fn update(
    client: &mut OrderServiceClient<Channel>,
    order_id: &str,
    status: pb::OrderStatus,
) -> Result<pb::Order, tonic::Status> {
    client
        .update_order_status(pb::UpdateOrderStatusRequest {
            order_id: order_id.into(),
            status: status as i32,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn status_of(order: &pb::Order) -> pb::OrderStatus {
    pb::OrderStatus::try_from(order.status).expect("known status")
}

async fn outbox_rows(db: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(db)
        .await
        .expect("count outbox rows")
}

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
    let (_, created, _) = next(&tap).await;
    assert_eq!(created, event_type::ORDER_CREATED);
    let (key, ce_type, payload) = next(&tap).await;
    assert_eq!(key, owner, "keyed by the user, like every event");
    assert_eq!(ce_type, event_type::ORDER_STATUS_CHANGED);
    let changed: ev::OrderStatusChanged =
        serde_json::from_slice(&payload).expect("OrderStatusChanged JSON");
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
        fx.dead_letters(),
        0,
        "a duplicate of a cancelled order's checkout is no error"
    );

    server.stop().await.expect("clean stop");
    fx.remove_topics().await;
}
