//! What every cart test starts: the real product service on a temporary
//! SQLite catalog, and the cart service on a fresh PostgreSQL database with a
//! Redis key prefix of its own, so tests run in parallel.

// Each test binary uses its own share of these helpers.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use sqlx::Connection;
use storefront_cart::{Config, run};
use storefront_proto::cart::v1 as pb;
use storefront_proto::cart::v1::cart_service_client::CartServiceClient;
use storefront_runtime::testing::{TestServer, fresh_database, reason};
use tonic::transport::Channel;
use tonic::{Code, Status};

pub type Client = CartServiceClient<Channel>;

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".to_owned())
}

/// A loopback port nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("address").port()
}

/// The cart's settings for a test: Kafka off, a unique cache prefix, a
/// generous Redis deadline (tests that want a short one set it).
pub fn config(database_url: &str, product_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url.to_owned(),
        db_max_connections: 10,
        redis_url: redis_url(),
        cache_prefix: format!("test:cart:{}:", uuid::Uuid::new_v4().simple()),
        cache_ttl: Duration::from_secs(15 * 60),
        cache_jitter: Duration::from_secs(5 * 60),
        cache_timeout: Duration::from_secs(2),
        product_url: product_url.to_owned(),
        product_timeout: Duration::from_secs(10),
        kafka_bootstrap: String::new(),
        kafka_topic: "checkout-events".to_owned(),
        kafka_group: "cart".to_owned(),
        consumer_max_attempts: 3,
        consumer_retry_backoff: Duration::from_millis(10),
        consumer_retry_backoff_max: Duration::from_millis(100),
        idle_expiry: Duration::from_secs(90 * 24 * 3600),
        sweep_interval: Duration::from_secs(3600),
    }
}

pub struct Shop {
    pub cart: TestServer,
    pub product: TestServer,
    pub client: Client,
    pub config: Config,
    pub catalog_url: String,
    _catalog_dir: tempfile::TempDir,
}

impl Shop {
    pub async fn start() -> Shop {
        Shop::start_with(|_| {}).await
    }

    /// Starts the product service, then the cart with `adjust`ed settings.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Shop {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("catalog.db").display()
        );
        let product_config = storefront_product::Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: catalog_url.clone(),
            db_max_connections: 4,
        };
        let product = TestServer::start(|listener, shutdown| {
            storefront_product::run(product_config, listener, shutdown)
        })
        .await;
        let database_url = fresh_database("cart").await;
        let mut config = config(&database_url, &product.uri);
        adjust(&mut config);
        let cart_config = config.clone();
        let cart =
            TestServer::start(|listener, shutdown| run(cart_config, listener, shutdown)).await;
        let client = CartServiceClient::new(cart.channel());
        Shop {
            cart,
            product,
            client,
            config,
            catalog_url,
            _catalog_dir: dir,
        }
    }

    /// Adds products `ids` (1 USD each) to the catalog, beyond the five seeded.
    pub async fn stock_catalog(&self, ids: std::ops::RangeInclusive<i64>) {
        let mut conn = sqlx::SqliteConnection::connect(&self.catalog_url)
            .await
            .expect("open the catalog");
        for id in ids {
            sqlx::query(
                "INSERT INTO products (id, name, description, price_minor, currency, image_url) \
                 VALUES (?, ?, '', 100, 'USD', '')",
            )
            .bind(id)
            .bind(format!("Product {id}"))
            .execute(&mut conn)
            .await
            .expect("insert product");
        }
    }

    /// A connection to the cart's own database.
    pub async fn database(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.config.database_url)
            .await
            .expect("connect to the cart database")
    }

    /// The user's cache entry as Redis holds it.
    pub async fn cached(&self, user: &str) -> Option<String> {
        let mut redis = redis_connection().await;
        redis::cmd("GET")
            .arg(format!("{}{user}", self.config.cache_prefix))
            .query_async(&mut redis)
            .await
            .expect("GET")
    }

    /// Milliseconds left to the user's cache entry (negative when there is none).
    pub async fn cache_ttl_ms(&self, user: &str) -> i64 {
        let mut redis = redis_connection().await;
        redis::cmd("PTTL")
            .arg(format!("{}{user}", self.config.cache_prefix))
            .query_async(&mut redis)
            .await
            .expect("PTTL")
    }

    pub async fn stop(self) {
        self.cart.stop().await.expect("cart stops cleanly");
        self.product.stop().await.expect("product stops cleanly");
    }
}

pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("reach Redis (run `make infra-up`)")
}

pub async fn get(client: &mut Client, user: &str) -> Result<pb::Cart, Status> {
    client
        .get_cart(pb::GetCartRequest {
            user_id: user.to_owned(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn add(
    client: &mut Client,
    user: &str,
    product_id: i64,
    quantity: i32,
) -> Result<pb::Cart, Status> {
    client
        .add_item(pb::AddItemRequest {
            user_id: user.to_owned(),
            product_id,
            quantity,
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn update(
    client: &mut Client,
    user: &str,
    product_id: i64,
    quantity: i32,
) -> Result<pb::Cart, Status> {
    client
        .update_item(pb::UpdateItemRequest {
            user_id: user.to_owned(),
            product_id,
            quantity,
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn remove(client: &mut Client, user: &str, product_id: i64) -> Result<pb::Cart, Status> {
    client
        .remove_item(pb::RemoveItemRequest {
            user_id: user.to_owned(),
            product_id,
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn clear(client: &mut Client, user: &str) -> Result<pb::Cart, Status> {
    client
        .clear_cart(pb::ClearCartRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// (product id, quantity) of each line, sorted by product.
pub fn lines(cart: &pb::Cart) -> Vec<(i64, i32)> {
    let mut lines: Vec<_> = cart
        .items
        .iter()
        .map(|item| (item.product_id, item.quantity))
        .collect();
    lines.sort_unstable();
    lines
}

/// (minor units, currency) of a money field.
pub fn money(money: Option<&storefront_proto::Money>) -> (i64, &str) {
    let money = money.expect("money is set");
    (money.amount_minor, money.currency.as_str())
}

/// Asserts an INVALID_ARGUMENT that names `field`.
pub fn assert_invalid(result: Result<pb::Cart, Status>, field: &str) {
    let status = result.expect_err("invalid request must fail");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(&status), "INVALID_ARGUMENT");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "message names {field}: {}",
        status.message()
    );
}

/// Asserts an error with `code` and `expected` reason.
pub fn assert_refused(result: Result<pb::Cart, Status>, code: Code, expected: &str) -> Status {
    let status = result.expect_err("request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected, "{status:?}");
    status
}

/// Polls GetCart until `done` holds (60 s at most).
pub async fn wait_for_cart(
    client: &mut Client,
    user: &str,
    what: &str,
    done: impl Fn(&pb::Cart) -> bool,
) -> pb::Cart {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let cart = get(client, user).await.expect("GetCart");
        if done(&cart) {
            return cart;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {:?} after 60 s",
            lines(&cart)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
