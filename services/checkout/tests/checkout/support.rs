//! A whole shop for one test: the real product (SQLite in a temp dir),
//! inventory and payment services on fresh PostgreSQL databases, a fake cart
//! service holding carts in memory, the checkout service under test, and a
//! Kafka topic of its own read from the beginning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use storefront_checkout::Config;
use storefront_proto::cart::v1 as cart;
use storefront_proto::cart::v1::cart_service_server::{CartService, CartServiceServer};
use storefront_proto::checkout::v1 as pb;
use storefront_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use storefront_proto::common::v1::{Money, ShippingAddress};
use storefront_proto::inventory::v1 as inventory;
use storefront_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use storefront_runtime::events::Event;
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::kafka;
use storefront_runtime::testing::{TestServer, fresh_database, kafka_bootstrap_servers};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub const LAPTOP: i64 = 1;
pub const MOUSE: i64 = 2;
pub const LAPTOP_PRICE: i64 = 129_999;
pub const MOUSE_PRICE: i64 = 2_999;

/// Carts by user: (product id, quantity) lines. Their names and prices are
/// deliberately wrong, so a test sees that checkout prices with the catalog.
#[derive(Clone, Default)]
pub struct FakeCarts {
    carts: Arc<Mutex<HashMap<String, CartLines>>>,
}

/// (product id, quantity) per line.
type CartLines = Vec<(i64, i32)>;

impl FakeCarts {
    pub fn put(&self, user_id: &str, lines: &[(i64, i32)]) {
        self.carts
            .lock()
            .unwrap()
            .insert(user_id.to_owned(), lines.to_vec());
    }
}

fn bogus_cents(cents: i64) -> Option<Money> {
    Some(Money {
        amount_minor: cents,
        currency: "USD".into(),
    })
}

#[tonic::async_trait]
impl CartService for FakeCarts {
    async fn get_cart(
        &self,
        request: Request<cart::GetCartRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        let request = request.into_inner();
        // This fake never takes checked-out lines away itself: each test sets
        // the cart it means, so every completed checkout counts as applied.
        let applied_checkout_ids = request.checkout_ids;
        let user_id = request.user_id;
        let lines = self
            .carts
            .lock()
            .unwrap()
            .get(&user_id)
            .cloned()
            .unwrap_or_default();
        let items: Vec<cart::CartItem> = lines
            .iter()
            .map(|&(product_id, quantity)| cart::CartItem {
                product_id,
                name: "name from the cart".into(),
                unit_price: bogus_cents(1),
                quantity,
                line_total: bogus_cents(i64::from(quantity)),
                added_at: None,
            })
            .collect();
        Ok(Response::new(cart::Cart {
            user_id,
            item_count: i32::try_from(items.len()).unwrap(),
            total: bogus_cents(1),
            items,
            updated_at: None,
            applied_checkout_ids,
        }))
    }

    async fn add_item(
        &self,
        _: Request<cart::AddItemRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        Err(Status::unimplemented("fake cart"))
    }

    async fn update_item(
        &self,
        _: Request<cart::UpdateItemRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        Err(Status::unimplemented("fake cart"))
    }

    async fn remove_item(
        &self,
        _: Request<cart::RemoveItemRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        Err(Status::unimplemented("fake cart"))
    }

    async fn clear_cart(
        &self,
        _: Request<cart::ClearCartRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        Err(Status::unimplemented("fake cart"))
    }
}

/// What a test may change about the shop.
#[derive(Debug, Clone)]
pub struct Options {
    pub reservation_ttl: Duration,
    pub sweep_interval: Duration,
    pub payment_latency: Duration,
    /// Point the checkout at a closed port instead of the payment service.
    pub payment_down: bool,
    pub backend_timeout: Duration,
    pub recovery_after: Duration,
    pub recovery_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reservation_ttl: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(5),
            payment_latency: Duration::ZERO,
            payment_down: false,
            // Generous: the machine is small and shared.
            backend_timeout: Duration::from_secs(20),
            recovery_after: Duration::from_secs(30),
            recovery_interval: Duration::from_secs(5),
        }
    }
}

pub struct Shop {
    pub carts: FakeCarts,
    pub checkout: CheckoutServiceClient<Channel>,
    pub inventory: InventoryServiceClient<Channel>,
    pub payments: PgPool,
    pub sessions: PgPool,
    pub topic: String,
    pub config: Config,
    payment_uri: String,
    checkout_server: Option<TestServer>,
    backends: Vec<TestServer>,
    _catalog_dir: tempfile::TempDir,
}

/// An address where nothing listens.
async fn closed_port() -> String {
    let (listener, uri) = storefront_runtime::testing::loopback_listener().await;
    drop(listener);
    uri
}

impl Shop {
    pub async fn start(options: Options) -> Shop {
        let catalog_dir = tempfile::tempdir().expect("temp dir");
        let product_config = storefront_product::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!(
                "sqlite://{}?mode=rwc",
                catalog_dir.path().join("catalog.db").display()
            ),
            db_max_connections: 4,
        };
        let inventory_db = fresh_database("checkout_inventory").await;
        let inventory_config = storefront_inventory::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: inventory_db,
            db_max_connections: 5,
            reservation_ttl: options.reservation_ttl,
            sweep_interval: options.sweep_interval,
        };
        let payment_db = fresh_database("checkout_payment").await;
        let payment_config = storefront_payment::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: payment_db.clone(),
            db_max_connections: 5,
            failure_rate: 0.0,
            latency: options.payment_latency,
        };
        let product = TestServer::start(|l, s| storefront_product::run(product_config, l, s)).await;
        let inventory =
            TestServer::start(|l, s| storefront_inventory::run(inventory_config, l, s)).await;
        let payment = TestServer::start(|l, s| storefront_payment::run(payment_config, l, s)).await;
        let carts = FakeCarts::default();
        let fake = carts.clone();
        let cart = TestServer::start(|l, s| {
            GrpcServer::new()
                .add_service(CartServiceServer::new(fake))
                .serve(l, s)
        })
        .await;

        let bootstrap = kafka_bootstrap_servers();
        let topic = format!("test-checkout-{}", uuid::Uuid::new_v4().simple());
        let admin = kafka::admin(&bootstrap).expect("Kafka admin client");
        kafka::ensure_topic(&admin, &topic, 1, 1)
            .await
            .expect("create the test topic (run `make infra-up`)");

        let checkout_db = fresh_database("checkout").await;
        let payment_uri = payment.uri.clone();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: checkout_db.clone(),
            db_max_connections: 10,
            cart_url: cart.uri.clone(),
            product_url: product.uri.clone(),
            inventory_url: inventory.uri.clone(),
            payment_url: if options.payment_down {
                closed_port().await
            } else {
                payment_uri.clone()
            },
            backend_timeout: options.backend_timeout,
            kafka_bootstrap: bootstrap,
            topic: topic.clone(),
            recovery_interval: options.recovery_interval,
            recovery_after: options.recovery_after,
        };
        let run_config = config.clone();
        let checkout_server =
            TestServer::start(|l, s| storefront_checkout::run(run_config, l, s)).await;
        let pool = |url: String| async move {
            PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await
                .expect("connect to a test database")
        };
        Shop {
            carts,
            checkout: CheckoutServiceClient::new(checkout_server.channel()),
            inventory: InventoryServiceClient::new(inventory.channel()),
            payments: pool(payment_db).await,
            sessions: pool(checkout_db).await,
            topic,
            config,
            payment_uri,
            checkout_server: Some(checkout_server),
            backends: vec![product, inventory, payment, cart],
            _catalog_dir: catalog_dir,
        }
    }

    /// Stops the checkout service and starts a new instance on the same
    /// database, reaching the real payment service, with `recovery_after`.
    pub async fn replace_checkout(&mut self, recovery_after: Duration) {
        if let Some(server) = self.checkout_server.take() {
            server.stop().await.expect("checkout stops cleanly");
        }
        self.config.payment_url = self.payment_uri.clone();
        self.config.recovery_after = recovery_after;
        self.config.recovery_interval = Duration::from_millis(200);
        let config = self.config.clone();
        let server = TestServer::start(|l, s| storefront_checkout::run(config, l, s)).await;
        self.checkout = CheckoutServiceClient::new(server.channel());
        self.checkout_server = Some(server);
    }

    /// Kills the checkout service as a crash would (see `TestServer::kill`):
    /// in-flight requests, the outbox relay and the recovery loop die at once.
    pub async fn crash_checkout(&mut self) {
        if let Some(server) = self.checkout_server.take() {
            server.kill().await;
        }
    }

    pub async fn checkout(
        &self,
        user_id: &str,
        key: &str,
        payment_method: &str,
    ) -> Result<pb::CheckoutResponse, Status> {
        let mut client = self.checkout.clone();
        client
            .checkout(pb::CheckoutRequest {
                user_id: user_id.into(),
                idempotency_key: key.into(),
                payment_method: payment_method.into(),
                shipping_address: Some(address()),
            })
            .await
            .map(Response::into_inner)
    }

    pub async fn get(
        &self,
        user_id: &str,
        checkout_id: &str,
    ) -> Result<pb::CheckoutSession, Status> {
        let mut client = self.checkout.clone();
        client
            .get_checkout(pb::GetCheckoutRequest {
                user_id: user_id.into(),
                checkout_id: checkout_id.into(),
                ..Default::default()
            })
            .await
            .map(Response::into_inner)
    }

    /// Polls until the session reaches `status` (30 s at most).
    pub async fn wait_for(
        &self,
        user_id: &str,
        checkout_id: &str,
        status: pb::CheckoutStatus,
    ) -> pb::CheckoutSession {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let session = self.get(user_id, checkout_id).await.expect("GetCheckout");
            if session.status == status as i32 {
                return session;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {checkout_id} still {:?} after 30 s",
                pb::CheckoutStatus::try_from(session.status)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stock(&self, product_id: i64) -> inventory::StockLevel {
        let mut client = self.inventory.clone();
        client
            .get_stock(inventory::GetStockRequest {
                product_ids: vec![product_id],
            })
            .await
            .expect("GetStock")
            .into_inner()
            .stock
            .pop()
            .expect("one stock level")
    }

    /// (payment id, status, amount) of every charge of `checkout_id`.
    pub async fn payments_of(&self, checkout_id: &str) -> Vec<(String, String, i64)> {
        let id = uuid::Uuid::parse_str(checkout_id).expect("checkout id is a UUID");
        sqlx::query_as::<_, (uuid::Uuid, String, i64)>(
            "SELECT id, status, amount_minor FROM payments WHERE checkout_id = $1",
        )
        .bind(id)
        .fetch_all(&self.payments)
        .await
        .expect("read payments")
        .into_iter()
        .map(|(id, status, amount)| (id.to_string(), status, amount))
        .collect()
    }

    /// Charges by status across the whole payment service.
    pub async fn payment_count(&self, status: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE status = $1")
            .bind(status)
            .fetch_one(&self.payments)
            .await
            .expect("count payments")
    }

    pub async fn refunds_of(&self, payment_id: &str) -> i64 {
        let id = uuid::Uuid::parse_str(payment_id).expect("payment id is a UUID");
        sqlx::query_scalar("SELECT count(*) FROM refunds WHERE payment_id = $1")
            .bind(id)
            .fetch_one(&self.payments)
            .await
            .expect("count refunds")
    }

    pub async fn session_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM checkout_sessions")
            .fetch_one(&self.sessions)
            .await
            .expect("count sessions")
    }

    /// A reader of the shop's topic from its first record.
    pub fn events(&self) -> Events {
        Events::from_beginning(&self.topic)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.checkout_server.take() {
            server.stop().await.expect("checkout stops cleanly");
        }
        for server in self.backends.drain(..) {
            server.stop().await.expect("backend stops cleanly");
        }
        let admin = kafka::admin(&kafka_bootstrap_servers()).expect("Kafka admin client");
        let _ = admin
            .delete_topics(&[&self.topic], &rdkafka::admin::AdminOptions::new())
            .await;
    }
}

pub fn address() -> ShippingAddress {
    ShippingAddress {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: String::new(),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

/// A record read back: the event and the broker timestamp (ms) of its record.
pub struct Received {
    pub event: Event,
    pub record_ms: i64,
}

/// Reads a topic's single partition from the beginning (assigned, not
/// subscribed: no consumer-group rebalance to wait for).
pub struct Events {
    consumer: StreamConsumer,
}

impl Events {
    fn from_beginning(topic: &str) -> Events {
        let consumer =
            kafka::consumer(&kafka_bootstrap_servers(), &format!("{topic}-reader")).unwrap();
        let mut partitions = TopicPartitionList::new();
        partitions
            .add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&partitions).expect("assign the partition");
        Events { consumer }
    }

    /// The next record, within `within`.
    pub async fn next(&self, within: Duration) -> Received {
        let message = tokio::time::timeout(within, self.consumer.recv())
            .await
            .expect("an event on the topic in time")
            .expect("Kafka record");
        Received {
            event: Event::from_message(&message).expect("a CloudEvents record"),
            record_ms: message.timestamp().to_millis().expect("record timestamp"),
        }
    }

    /// The next `count` records, within `within` in all.
    pub async fn take(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        let mut received = Vec::with_capacity(count);
        while received.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            received.push(self.next(left).await);
        }
        received
    }

    /// Nothing more arrives within `within`.
    pub async fn assert_quiet(&self, within: Duration) {
        if let Ok(message) = tokio::time::timeout(within, self.consumer.recv()).await {
            let event = message.ok().and_then(|m| Event::from_message(&m).ok());
            panic!("unexpected record on the topic: {event:?}");
        }
    }
}

pub fn status_of(session: &pb::CheckoutSession) -> pb::CheckoutStatus {
    pb::CheckoutStatus::try_from(session.status).expect("known status")
}

pub fn session_of(response: &pb::CheckoutResponse) -> &pb::CheckoutSession {
    response
        .session
        .as_ref()
        .expect("response carries the session")
}

/// The status of `user_id`'s only session, read from the checkout database.
pub async fn stored_status(sessions: &PgPool, user_id: &str) -> Option<(uuid::Uuid, String)> {
    sqlx::query_as("SELECT id, status FROM checkout_sessions WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(sessions)
        .await
        .expect("read the session")
}
