//! What every orders test starts with: a fixture of its own (a fresh
//! database, topics and consumer group), the service on a random port, and
//! readers for the topics it writes.

// Each test binary uses its own share of these helpers.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub use std::collections::HashMap;
pub use std::time::{Duration, Instant};

pub use rdkafka::Message;
pub use rdkafka::admin::AdminOptions;
pub use rdkafka::consumer::{Consumer, StreamConsumer};
pub use rdkafka::message::{BorrowedMessage, Headers};
pub use rdkafka::producer::FutureProducer;
pub use sqlx::PgPool;
pub use storefront_orders::{Config, run};
pub use storefront_proto::common::v1 as common;
pub use storefront_proto::events::v1 as ev;
pub use storefront_proto::orders::v1 as pb;
pub use storefront_proto::orders::v1::order_service_client::OrderServiceClient;
pub use storefront_runtime::events::{self, Event, dead_letter_topic, event_type};
pub use storefront_runtime::kafka;
pub use storefront_runtime::testing::{TestServer, fresh_database, kafka_bootstrap_servers};
pub use tonic::transport::Channel;
pub use uuid::Uuid;

/// How long a test waits for an event to travel through Kafka and the service.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One test's world: its own database, topics and consumer group.
pub struct Fixture {
    pub bootstrap: String,
    pub database_url: String,
    pub checkout_topic: String,
    pub order_topic: String,
    pub group: String,
    pub producer: FutureProducer,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let bootstrap = kafka_bootstrap_servers();
        let suffix = Uuid::new_v4().simple();
        let checkout_topic = format!("test-orders-checkout-{suffix}");
        let order_topic = format!("test-orders-order-{suffix}");
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
            bootstrap,
            database_url: fresh_database("orders").await,
            checkout_topic,
            order_topic,
            group: format!("test-orders-{suffix}"),
        }
    }

    pub fn config(&self) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: self.database_url.clone(),
            db_max_connections: 10,
            kafka_bootstrap: self.bootstrap.clone(),
            checkout_topic: self.checkout_topic.clone(),
            order_topic: self.order_topic.clone(),
            consumer_group: self.group.clone(),
            // Few and short retries: a failing record reaches the DLQ in
            // 30 ms instead of the production 3 s.
            consumer_max_attempts: 3,
            consumer_retry_backoff: Duration::from_millis(10),
            consumer_retry_backoff_max: Duration::from_millis(100),
        }
    }

    pub async fn start_with(&self, config: Config) -> (TestServer, OrderServiceClient<Channel>) {
        let server = TestServer::start(|listener, shutdown| run(config, listener, shutdown)).await;
        let client = OrderServiceClient::new(server.channel());
        (server, client)
    }

    pub async fn start(&self) -> (TestServer, OrderServiceClient<Channel>) {
        self.start_with(self.config()).await
    }

    pub async fn publish(&self, event: &Event) {
        events::publish(&self.producer, &self.checkout_topic, event)
            .await
            .expect("publish to the checkout topic");
    }

    /// Publishes `checkout` as a CheckoutCompleted event and returns the event.
    pub async fn complete(&self, checkout: &ev::CheckoutCompleted) -> Event {
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

    pub fn tap(&self, topic: &str) -> Tap {
        Tap::new(&self.bootstrap, topic)
    }

    pub async fn db(&self) -> PgPool {
        PgPool::connect(&self.database_url)
            .await
            .expect("test database")
    }

    /// Deletes the test's topics (best effort; a failed test leaves them for inspection).
    pub async fn remove_topics(self) {
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

pub fn usd(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency: "USD".into(),
    })
}

pub fn address() -> common::ShippingAddress {
    common::ShippingAddress {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: "Flat 2".into(),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

/// A consistent CheckoutCompleted of `lines` (product id, name, unit price, quantity).
pub fn checkout(user: &str, lines: &[(i64, &str, i64, i32)]) -> ev::CheckoutCompleted {
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
    let total = items
        .iter()
        .map(|i| i.line_total.as_ref().unwrap().amount_minor)
        .sum();
    ev::CheckoutCompleted {
        checkout_id: Uuid::new_v4().to_string(),
        user_id: user.into(),
        items,
        total: usd(total),
        payment_id: Uuid::new_v4().to_string(),
        reservation_id: Uuid::new_v4().to_string(),
        shipping_address: Some(address()),
        completed_at: "2026-11-23T10:00:00Z".into(),
    }
}

pub fn laptop_and_mice(user: &str) -> ev::CheckoutCompleted {
    checkout(user, &[(1, "Laptop", 129_999, 1), (2, "Mouse", 2_999, 3)])
}

pub fn user() -> String {
    format!("user-{}", Uuid::new_v4().simple())
}

pub async fn list(
    client: &mut OrderServiceClient<Channel>,
    user: &str,
    page_size: i32,
    page_token: &str,
) -> pb::ListOrdersResponse {
    client
        .list_orders(pb::ListOrdersRequest {
            user_id: user.into(),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .expect("ListOrders")
        .into_inner()
}

/// The user's orders, newest first, once there are at least `count`.
pub async fn wait_for_orders(
    client: &mut OrderServiceClient<Channel>,
    user: &str,
    count: usize,
) -> Vec<pb::Order> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let orders = list(client, user, 100, "").await.orders;
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

pub async fn get(client: &mut OrderServiceClient<Channel>, order_id: &str) -> pb::Order {
    client
        .get_order(pb::GetOrderRequest {
            order_id: order_id.into(),
            user_id: String::new(),
        })
        .await
        .expect("GetOrder")
        .into_inner()
}

pub async fn update(
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

pub fn status_of(order: &pb::Order) -> pb::OrderStatus {
    pb::OrderStatus::try_from(order.status).expect("known status")
}

/// A record read back from Kafka.
pub struct Record {
    pub key: String,
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn from_message(message: &BorrowedMessage<'_>) -> Record {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (h.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn order_created(&self) -> ev::OrderCreated {
        assert_eq!(self.header("ce_type"), event_type::ORDER_CREATED);
        serde_json::from_slice(&self.payload).expect("OrderCreated JSON")
    }

    pub fn status_changed(&self) -> ev::OrderStatusChanged {
        assert_eq!(self.header("ce_type"), event_type::ORDER_STATUS_CHANGED);
        serde_json::from_slice(&self.payload).expect("OrderStatusChanged JSON")
    }
}

/// Reads a topic from its beginning, as a consumer group of its own.
pub struct Tap {
    pub consumer: StreamConsumer,
    pub topic: String,
}

impl Tap {
    pub fn new(bootstrap: &str, topic: &str) -> Tap {
        let group = format!("test-tap-{}", Uuid::new_v4().simple());
        let consumer = kafka::consumer(bootstrap, &group).expect("tap consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        Tap {
            consumer,
            topic: topic.to_owned(),
        }
    }

    pub async fn next(&self) -> Record {
        let message = tokio::time::timeout(PATIENCE, self.consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("no record on {} within {PATIENCE:?}", self.topic))
            .expect("Kafka receive");
        Record::from_message(&message)
    }

    /// How many records the (single-partition) topic holds.
    pub fn length(&self) -> i64 {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        high - low
    }
}

pub async fn outbox_rows(db: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(db)
        .await
        .expect("count outbox rows")
}
