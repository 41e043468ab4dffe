//! A whole shop for end-to-end tests: every service as its own `storefront`
//! process on random loopback ports, with fresh databases, its own Kafka
//! topics and consumer groups and Redis key prefix, so tests run side by
//! side; plus the handles a fault test needs (kill and restart a service).

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod web;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use storefront_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use storefront_proto::inventory::v1::{GetStockRequest, StockLevel};
use storefront_runtime::kafka;
use storefront_runtime::testing::{fresh_database, kafka_bootstrap_servers};

pub const SERVICES: [&str; 8] = [
    "product",
    "inventory",
    "payment",
    "cart",
    "orders",
    "checkout",
    "gateway",
    "web",
];
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef";

/// A plain HTTP/1.0 GET (e.g. of a `/metrics` endpoint): the whole answer,
/// status line and headers included.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

/// A free loopback port below Linux's ephemeral range (32768-60999): the
/// services bind it later, and a port from the ephemeral range could be
/// taken meanwhile by any outgoing connection's local end. The port is free
/// now and never handed out twice by this test process: nothing holds it
/// until a service binds it, so two draws of the same free port (one shop
/// has seven) would otherwise both succeed and one service fail to start.
pub fn free_port() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !given.contains(&port) && TcpListener::bind(addr).is_ok() {
            given.push(port);
            return addr;
        }
    }
}

/// Settings a test may change before the shop starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra flags per service, e.g. `("payment", vec!["--payment-latency", "2s"])`.
    pub extra: Vec<(&'static str, Vec<String>)>,
    /// Laptops in stock (product 1); the seed's 50 when `None`.
    pub laptops: Option<i64>,
    /// Run every service in one `storefront all` process instead of one process each.
    pub one_process: bool,
    /// Where the Prometheus endpoint listens; off when `None`.
    pub metrics: Option<SocketAddr>,
    /// Extra environment variables for every process, e.g. `OTEL_*`.
    pub env: Vec<(String, String)>,
    /// The web's address, when a test must know it before the shop starts
    /// (an OpenID provider registers its redirect URI); a free port otherwise.
    pub web_listen: Option<SocketAddr>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Shop {
    pub base: String,
    /// The web storefront's address (`http://127.0.0.1:<port>`).
    pub web_base: String,
    pub http: reqwest::Client,
    pub checkout_topic: String,
    pub order_topic: String,
    pub addrs: HashMap<&'static str, SocketAddr>,
    pub databases: HashMap<&'static str, String>,
    args: HashMap<&'static str, Vec<String>>,
    children: HashMap<&'static str, Child>,
    metrics: String,
    env: Vec<(String, String)>,
    logs: tempfile::TempDir,
}

impl Drop for Shop {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}

impl Shop {
    pub async fn start(options: Options) -> Shop {
        let logs = tempfile::tempdir().expect("temp dir");
        let run = uuid::Uuid::new_v4().simple().to_string();
        let checkout_topic = format!("e2e-checkout-{run}");
        let order_topic = format!("e2e-order-{run}");
        let admin = kafka::admin(&kafka_bootstrap_servers()).expect("kafka admin");
        for topic in [&checkout_topic, &order_topic] {
            kafka::ensure_topic(&admin, topic, 3, 1)
                .await
                .expect("topic");
            kafka::ensure_topic(&admin, &format!("{topic}.dlq"), 1, 1)
                .await
                .expect("dlq topic");
        }
        let mut databases = HashMap::new();
        for service in ["cart", "inventory", "payment", "orders", "checkout"] {
            databases.insert(service, fresh_database(&format!("e2e_{service}")).await);
        }
        let catalog = format!(
            "sqlite://{}?mode=rwc",
            logs.path().join("catalog.db").display()
        );
        let addrs: HashMap<_, _> = SERVICES
            .iter()
            .map(|s| match (*s, options.web_listen) {
                ("web", Some(addr)) => (*s, addr),
                _ => (*s, free_port()),
            })
            .collect();
        let url = |s: &str| format!("http://{}", addrs[s]);
        let kafka = kafka_bootstrap_servers();
        let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into());
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut args: HashMap<&'static str, Vec<String>> = HashMap::new();
        args.insert(
            "product",
            strings(&[
                "product",
                "--product-listen",
                &addrs["product"].to_string(),
                "--product-database-url",
                &catalog,
            ]),
        );
        args.insert(
            "inventory",
            strings(&[
                "inventory",
                "--inventory-listen",
                &addrs["inventory"].to_string(),
                "--inventory-database-url",
                &databases["inventory"],
                "--inventory-kafka-bootstrap",
                &kafka,
                "--inventory-order-topic",
                &order_topic,
                "--inventory-consumer-group",
                &format!("e2e-inventory-{run}"),
            ]),
        );
        args.insert(
            "payment",
            strings(&[
                "payment",
                "--payment-listen",
                &addrs["payment"].to_string(),
                "--payment-database-url",
                &databases["payment"],
                "--payment-kafka-bootstrap",
                &kafka,
                "--payment-order-topic",
                &order_topic,
                "--payment-consumer-group",
                &format!("e2e-payment-{run}"),
            ]),
        );
        args.insert(
            "cart",
            strings(&[
                "cart",
                "--cart-listen",
                &addrs["cart"].to_string(),
                "--cart-database-url",
                &databases["cart"],
                "--cart-redis-url",
                &redis,
                "--cart-cache-prefix",
                &format!("e2e-{run}"),
                "--cart-product-url",
                &url("product"),
                "--cart-kafka-bootstrap",
                &kafka,
                "--cart-checkout-topic",
                &checkout_topic,
                "--cart-consumer-group",
                &format!("e2e-cart-{run}"),
            ]),
        );
        args.insert(
            "orders",
            strings(&[
                "orders",
                "--orders-listen",
                &addrs["orders"].to_string(),
                "--orders-database-url",
                &databases["orders"],
                "--orders-kafka-bootstrap",
                &kafka,
                "--orders-checkout-topic",
                &checkout_topic,
                "--orders-order-topic",
                &order_topic,
                "--orders-consumer-group",
                &format!("e2e-orders-{run}"),
            ]),
        );
        args.insert(
            "checkout",
            strings(&[
                "checkout",
                "--checkout-listen",
                &addrs["checkout"].to_string(),
                "--checkout-database-url",
                &databases["checkout"],
                "--checkout-cart-url",
                &url("cart"),
                "--checkout-product-url",
                &url("product"),
                "--checkout-inventory-url",
                &url("inventory"),
                "--checkout-payment-url",
                &url("payment"),
                "--checkout-kafka-bootstrap",
                &kafka,
                "--checkout-topic",
                &checkout_topic,
            ]),
        );
        args.insert(
            "gateway",
            strings(&[
                "gateway",
                "--gateway-listen",
                &addrs["gateway"].to_string(),
                "--gateway-product-url",
                &url("product"),
                "--gateway-cart-url",
                &url("cart"),
                "--gateway-checkout-url",
                &url("checkout"),
                "--gateway-orders-url",
                &url("orders"),
                "--jwt-secret",
                SECRET,
                // The web passes on its visitors' addresses.
                "--gateway-trusted-proxies",
                "127.0.0.1",
            ]),
        );
        args.insert(
            "web",
            strings(&[
                "web",
                "--web-listen",
                &addrs["web"].to_string(),
                "--web-gateway-url",
                &url("gateway"),
                "--web-public-url",
                &url("web"),
                "--web-dev-sign-in",
                "--web-jwt-secret",
                SECRET,
            ]),
        );
        for (service, extra) in &options.extra {
            args.get_mut(service)
                .expect("known service")
                .extend(extra.iter().cloned());
        }
        let mut shop = Shop {
            base: url("gateway"),
            web_base: url("web"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            checkout_topic,
            order_topic,
            addrs,
            databases,
            args,
            children: HashMap::new(),
            metrics: options
                .metrics
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            env: options.env.clone(),
            logs,
        };
        if options.one_process {
            // `storefront all` takes every service's flags (without their subcommands).
            let mut all = vec!["all".to_owned()];
            for service in SERVICES {
                all.extend(shop.args[service].iter().skip(1).cloned());
            }
            shop.args.insert("all", all);
            shop.spawn("all");
        } else {
            for service in SERVICES {
                shop.spawn(service);
            }
        }
        shop.wait_ready().await;
        if let Some(laptops) = options.laptops {
            shop.set_stock(1, laptops).await;
        }
        shop
    }

    fn spawn(&mut self, service: &'static str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.path().join(format!("{service}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args(&self.args[service])
            .env("METRICS_LISTEN", &self.metrics)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {service}: {e}"));
        self.children.insert(service, child);
    }

    /// Copies every process's log to `<target>/test-logs/<run>/` (beside
    /// the test binary's profile folder, so it follows `CARGO_TARGET_DIR`):
    /// a failed test's shop says afterwards what each service did.
    fn keep_logs(&self) {
        let Some(target) = target_dir() else {
            return;
        };
        let run = self.checkout_topic.trim_start_matches("e2e-checkout-");
        let kept = target.join("test-logs").join(run);
        let Ok(entries) = std::fs::read_dir(self.logs.path()) else {
            return;
        };
        if std::fs::create_dir_all(&kept).is_err() {
            return;
        }
        for entry in entries.flatten() {
            let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
        }
        eprintln!("the shop's logs are kept in {}", kept.display());
    }

    /// Everything a process logged.
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{service}.log"))).unwrap_or_default()
    }

    /// SIGTERM, then waits (20 s at most) for the process to exit.
    pub fn terminate(&mut self, service: &'static str) -> std::process::ExitStatus {
        let mut child = self.children.remove(service).expect("running process");
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(signalled.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{service} did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines a service logged, for failure messages.
    pub fn log_tail(&self, service: &str) -> String {
        let text = std::fs::read_to_string(self.logs.path().join(format!("{service}.log")))
            .unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        // The first error says why; the last lines say what it was doing.
        let first_error = lines
            .iter()
            .find(|l| l.contains("ERROR") || l.contains("Error:") || l.contains("panicked at"))
            .copied()
            .unwrap_or("");
        format!(
            "{first_error}\n...\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    /// Waits until the gateway reports every backend ready.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let exited: Vec<String> = self
                .children
                .iter_mut()
                .filter_map(|(service, child)| {
                    child
                        .try_wait()
                        .ok()
                        .flatten()
                        .map(|status| format!("{service} ({status})"))
                })
                .collect();
            if let Some(first) = exited.first() {
                let service = first.split(' ').next().unwrap_or_default();
                panic!(
                    "{first} exited during start-up:\n{}",
                    self.log_tail(service)
                );
            }
            let mut ready = true;
            for base in [&self.base, &self.web_base] {
                let answer = self.http.get(format!("{base}/readyz")).send().await;
                ready &= answer.is_ok_and(|r| r.status() == StatusCode::OK);
            }
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shop not ready within 60 s:\n{}",
                self.log_tail("gateway")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self, service: &'static str) {
        let mut child = self.children.remove(service).expect("running service");
        child.kill().expect("kill");
        child.wait().expect("reap");
    }

    /// Starts `service` again, with `extra` flags added, and waits until the shop is ready.
    pub async fn restart(&mut self, service: &'static str, extra: &[&str]) {
        if self.children.contains_key(service) {
            self.kill(service);
        }
        self.args
            .get_mut(service)
            .expect("known service")
            .extend(extra.iter().map(|s| (*s).to_owned()));
        self.spawn(service);
        self.wait_ready().await;
    }

    pub fn token(&self, user: &str) -> String {
        storefront_gateway::token(SECRET, user, false, Duration::from_secs(3600)).expect("token")
    }

    pub fn admin_token(&self, user: &str) -> String {
        storefront_gateway::token(SECRET, user, true, Duration::from_secs(3600)).expect("token")
    }

    /// A request as `token` (none when empty) with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("gateway reachable");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub async fn add_to_cart(&self, token: &str, product_id: i64, quantity: i64) -> Response {
        let body = serde_json::json!({ "product_id": product_id, "quantity": quantity });
        self.call(Method::POST, "/api/v1/cart/items", token, Some(body))
            .await
    }

    pub async fn checkout(&self, token: &str, key: &str, payment_method: &str) -> Response {
        let body = serde_json::json!({ "payment_method": payment_method });
        self.call_with(
            Method::POST,
            "/api/v1/checkout",
            token,
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
    }

    /// Polls `GET /api/v1/orders` until an order of `checkout_id` shows up.
    pub async fn wait_for_order(&self, token: &str, checkout_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let orders = self.call(Method::GET, "/api/v1/orders", token, None).await;
            assert_eq!(orders.status, StatusCode::OK, "{:?}", orders.body);
            let found: Vec<&Value> = orders.body["orders"]
                .as_array()
                .expect("orders")
                .iter()
                .filter(|o| o["checkout_id"] == checkout_id)
                .collect();
            assert!(
                found.len() <= 1,
                "more than one order for checkout {checkout_id}: {found:?}"
            );
            if let Some(order) = found.first() {
                return (*order).clone();
            }
            if Instant::now() >= deadline {
                let unpublished = self
                    .count(
                        "checkout",
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic = $1",
                        &self.checkout_topic,
                    )
                    .await;
                panic!(
                    "no order for checkout {checkout_id} within 60 s \
                     ({unpublished} checkout events unpublished)\n\
                     orders:\n{}\ncheckout:\n{}",
                    self.log_tail("orders"),
                    self.log_tail("checkout")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stock(&self, product_id: i64) -> StockLevel {
        let channel = storefront_runtime::client::channel(
            &format!("http://{}", self.addrs["inventory"]),
            Duration::from_secs(5),
        )
        .expect("channel");
        let mut client = InventoryServiceClient::new(channel);
        let answer = client
            .get_stock(GetStockRequest {
                product_ids: vec![product_id],
            })
            .await
            .expect("GetStock");
        answer.into_inner().stock.pop().expect("stock level")
    }

    async fn set_stock(&self, product_id: i64, on_hand: i64) {
        let pool = sqlx::PgPool::connect(&self.databases["inventory"])
            .await
            .expect("inventory database");
        sqlx::query("UPDATE stock SET on_hand = $2, reserved = 0 WHERE product_id = $1")
            .bind(product_id)
            .bind(on_hand)
            .execute(&pool)
            .await
            .expect("set stock");
    }

    /// Rows of `sql` (a count) in `service`'s database.
    pub async fn count(&self, service: &str, sql: &'static str, bind: &str) -> i64 {
        let pool = sqlx::PgPool::connect(&self.databases[service])
            .await
            .expect("database");
        sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(&pool)
            .await
            .expect("count")
    }
}

/// The target folder the test binary runs from
/// (`<target>/<profile>/deps/<test>-…`), so it follows `CARGO_TARGET_DIR`.
pub fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().nth(3).map(Path::to_path_buf)
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `seconds`.
pub async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
