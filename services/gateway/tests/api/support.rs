//! The shop under test: the gateway on a random loopback port in front of
//! real tonic servers — the real product service on a temporary SQLite
//! catalog, and small in-memory cart, checkout and orders services (the real
//! ones live in their own crates) — plus an HTTP client and tokens.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;
use storefront_gateway::Config;
use storefront_proto::cart::v1 as cart;
use storefront_proto::cart::v1::cart_service_server::{CartService, CartServiceServer};
use storefront_proto::checkout::v1 as checkout;
use storefront_proto::checkout::v1::checkout_service_server::{
    CheckoutService, CheckoutServiceServer,
};
use storefront_proto::common::v1 as common;
use storefront_proto::orders::v1 as orders;
use storefront_proto::orders::v1::order_service_server::{OrderService, OrderServiceServer};
use storefront_proto::product::v1 as product;
use storefront_proto::product::v1::product_service_server::{ProductService, ProductServiceServer};
use storefront_runtime::grpc::GrpcServer;
use storefront_runtime::testing::{TestServer, loopback_listener};
use storefront_runtime::{ErrorCode, Shutdown, status_of};
use tonic::{Code, Request, Response, Status};

pub const SECRET: &str = "gateway-test-secret-0123456789abcdef0123";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An HS256 token from the gateway's own minting function.
pub fn token_for(user: &str) -> String {
    storefront_gateway::token(SECRET, user, false, Duration::from_secs(3600)).expect("token")
}

pub fn admin_token(user: &str) -> String {
    storefront_gateway::token(SECRET, user, true, Duration::from_secs(3600)).expect("token")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ---------------------------------------------------------------------------
// Errors as the real services build them: a code, a message naming the field,
// and a reason in a google.rpc.ErrorInfo detail.

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FakeError {
    code: Code,
    reason: &'static str,
    message: String,
}

impl ErrorCode for FakeError {
    fn code(&self) -> Code {
        self.code
    }
    fn reason(&self) -> &'static str {
        self.reason
    }
}

pub fn status(code: Code, reason: &'static str, message: impl Into<String>) -> Status {
    status_of(&FakeError {
        code,
        reason,
        message: message.into(),
    })
}

// ---------------------------------------------------------------------------
// A knob every fake turns before answering: how it behaves and how often it
// was called.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Unavailable,
    Slow(Duration),
}

#[derive(Debug)]
pub struct Knob {
    mode: Mutex<Mode>,
    calls: AtomicUsize,
}

impl Default for Knob {
    fn default() -> Self {
        Knob {
            mode: Mutex::new(Mode::Normal),
            calls: AtomicUsize::new(0),
        }
    }
}

impl Knob {
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn gate(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Normal => Ok(()),
            Mode::Unavailable => Err(Status::unavailable("fake backend is down")),
            Mode::Slow(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

fn usd(minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor: minor,
        currency: "USD".into(),
    })
}

fn timestamp(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// The seeded catalog: id, name, price in cents, stock.
const CATALOG: [(i64, &str, i64, i32); 5] = [
    (1, "Laptop", 129_999, 50),
    (2, "Mouse", 2_999, 200),
    (3, "Keyboard", 8_999, 100),
    (4, "Monitor", 39_999, 75),
    (5, "Headphones", 24_999, 150),
];

fn catalog_entry(id: i64) -> Option<(i64, &'static str, i64, i32)> {
    CATALOG.iter().copied().find(|(pid, ..)| *pid == id)
}

// ---------------------------------------------------------------------------
// Product: a fake for resilience tests (the catalog tests use the real one).

#[derive(Debug, Default)]
pub struct FakeProduct {
    pub knob: Knob,
}

fn product_proto(id: i64) -> Option<product::Product> {
    catalog_entry(id).map(|(id, name, price, _)| product::Product {
        id,
        name: name.into(),
        description: format!("A {name}"),
        price: usd(price),
        image_url: String::new(),
    })
}

#[tonic::async_trait]
impl ProductService for FakeProduct {
    async fn get_product(
        &self,
        request: Request<product::GetProductRequest>,
    ) -> Result<Response<product::Product>, Status> {
        self.knob.gate().await?;
        let id = request.get_ref().product_id;
        product_proto(id).map(Response::new).ok_or_else(|| {
            status(
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                format!("product {id} not found"),
            )
        })
    }

    async fn get_products(
        &self,
        _: Request<product::GetProductsRequest>,
    ) -> Result<Response<product::GetProductsResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn list_products(
        &self,
        _: Request<product::ListProductsRequest>,
    ) -> Result<Response<product::ListProductsResponse>, Status> {
        self.knob.gate().await?;
        Ok(Response::new(product::ListProductsResponse {
            products: CATALOG
                .iter()
                .filter_map(|(id, ..)| product_proto(*id))
                .collect(),
            next_page_token: String::new(),
        }))
    }

    async fn validate_products(
        &self,
        _: Request<product::ValidateProductsRequest>,
    ) -> Result<Response<product::ValidateProductsResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }
}

// ---------------------------------------------------------------------------
// Cart: in memory, with the design's rules (and a small line limit so the
// limit is reachable with the five seeded products).

/// Distinct products a fake cart holds.
pub const FAKE_CART_LIMIT: usize = 3;

#[derive(Debug, Clone)]
struct Line {
    product_id: i64,
    name: &'static str,
    unit_price: i64,
    quantity: i32,
    added_at: i64,
}

#[derive(Debug, Default)]
pub struct CartStore {
    carts: Mutex<HashMap<String, Vec<Line>>>,
}

impl CartStore {
    fn lines(&self, user: &str) -> Vec<Line> {
        self.carts
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// (product id, quantity) of a user's cart, for assertions.
    pub fn quantities(&self, user: &str) -> Vec<(i64, i32)> {
        self.lines(user)
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct FakeCart {
    pub knob: Knob,
    pub store: Arc<CartStore>,
}

fn cart_proto(user: &str, lines: &[Line]) -> cart::Cart {
    let total: i64 = lines
        .iter()
        .map(|l| l.unit_price * i64::from(l.quantity))
        .sum();
    cart::Cart {
        user_id: user.into(),
        items: lines
            .iter()
            .map(|l| cart::CartItem {
                product_id: l.product_id,
                name: l.name.into(),
                unit_price: usd(l.unit_price),
                quantity: l.quantity,
                line_total: usd(l.unit_price * i64::from(l.quantity)),
                added_at: timestamp(l.added_at),
            })
            .collect(),
        item_count: lines.iter().map(|l| l.quantity).sum(),
        // An empty cart carries no total: the gateway shows "0.00" USD.
        total: if lines.is_empty() { None } else { usd(total) },
        updated_at: if lines.is_empty() {
            None
        } else {
            timestamp(now_secs() as i64)
        },
        ..Default::default()
    }
}

fn check_quantity(quantity: i32) -> Result<(), Status> {
    if (1..=99).contains(&quantity) {
        Ok(())
    } else {
        Err(status(
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
            format!("quantity: must be between 1 and 99, got {quantity}"),
        ))
    }
}

fn item_not_found(product_id: i64) -> Status {
    status(
        Code::NotFound,
        "ITEM_NOT_FOUND",
        format!("product {product_id} is not in the cart"),
    )
}

#[tonic::async_trait]
impl CartService for FakeCart {
    async fn get_cart(
        &self,
        request: Request<cart::GetCartRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        self.knob.gate().await?;
        let user = &request.get_ref().user_id;
        Ok(Response::new(cart_proto(user, &self.store.lines(user))))
    }

    async fn add_item(
        &self,
        request: Request<cart::AddItemRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        self.knob.gate().await?;
        let r = request.into_inner();
        check_quantity(r.quantity)?;
        let Some((id, name, price, _)) = catalog_entry(r.product_id) else {
            return Err(status(
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                format!("product {} not found", r.product_id),
            ));
        };
        let mut carts = self.store.carts.lock().unwrap();
        let lines = carts.entry(r.user_id.clone()).or_default();
        let distinct = lines.len();
        match lines.iter_mut().find(|l| l.product_id == id) {
            Some(line) => {
                let merged = line.quantity + r.quantity;
                if merged > 99 {
                    return Err(status(
                        Code::InvalidArgument,
                        "INVALID_ARGUMENT",
                        format!("quantity: the line would hold {merged}, at most 99"),
                    ));
                }
                line.quantity = merged;
            }
            None if distinct >= FAKE_CART_LIMIT => {
                return Err(status(
                    Code::FailedPrecondition,
                    "CART_LIMIT_EXCEEDED",
                    format!("a cart holds at most {FAKE_CART_LIMIT} products"),
                ));
            }
            None => lines.push(Line {
                product_id: id,
                name,
                unit_price: price,
                quantity: r.quantity,
                added_at: now_secs() as i64,
            }),
        }
        Ok(Response::new(cart_proto(&r.user_id, lines)))
    }

    async fn update_item(
        &self,
        request: Request<cart::UpdateItemRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        self.knob.gate().await?;
        let r = request.into_inner();
        check_quantity(r.quantity)?;
        let mut carts = self.store.carts.lock().unwrap();
        let lines = carts.entry(r.user_id.clone()).or_default();
        let line = lines
            .iter_mut()
            .find(|l| l.product_id == r.product_id)
            .ok_or_else(|| item_not_found(r.product_id))?;
        line.quantity = r.quantity;
        Ok(Response::new(cart_proto(&r.user_id, lines)))
    }

    async fn remove_item(
        &self,
        request: Request<cart::RemoveItemRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        self.knob.gate().await?;
        let r = request.into_inner();
        let mut carts = self.store.carts.lock().unwrap();
        let lines = carts.entry(r.user_id.clone()).or_default();
        let before = lines.len();
        lines.retain(|l| l.product_id != r.product_id);
        if lines.len() == before {
            return Err(item_not_found(r.product_id));
        }
        Ok(Response::new(cart_proto(&r.user_id, lines)))
    }

    async fn clear_cart(
        &self,
        request: Request<cart::ClearCartRequest>,
    ) -> Result<Response<cart::Cart>, Status> {
        self.knob.gate().await?;
        let user = request.into_inner().user_id;
        self.store.carts.lock().unwrap().remove(&user);
        Ok(Response::new(cart_proto(&user, &[])))
    }
}

// ---------------------------------------------------------------------------
// Checkout: sessions in memory, idempotent per (user, key), priced from the
// fake cart. Payment methods as in the design, plus two test-only ones:
// `pm_test_slow` (answers after 500 ms) and `pm_test_product_unavailable`.

#[derive(Debug, Default)]
pub struct FakeCheckout {
    pub knob: Knob,
    pub carts: Arc<CartStore>,
    sessions: Mutex<HashMap<(String, String), checkout::CheckoutSession>>,
    in_flight: Mutex<HashSet<(String, String)>>,
}

impl FakeCheckout {
    fn decide(
        &self,
        request: &checkout::CheckoutRequest,
        lines: &[Line],
    ) -> (checkout::CheckoutStatus, &'static str, &'static str) {
        let short = lines
            .iter()
            .any(|l| catalog_entry(l.product_id).is_some_and(|(.., stock)| l.quantity > stock));
        if short {
            return (checkout::CheckoutStatus::Failed, "insufficient_stock", "");
        }
        match request.payment_method.as_str() {
            "pm_card_declined" => (
                checkout::CheckoutStatus::Failed,
                "payment_declined",
                "CARD_DECLINED",
            ),
            "pm_card_insufficient_funds" => (
                checkout::CheckoutStatus::Failed,
                "payment_declined",
                "NO_FUNDS",
            ),
            "pm_test_product_unavailable" => {
                (checkout::CheckoutStatus::Failed, "product_unavailable", "")
            }
            _ => (checkout::CheckoutStatus::Completed, "", ""),
        }
    }

    fn run(
        &self,
        request: &checkout::CheckoutRequest,
    ) -> Result<checkout::CheckoutSession, Status> {
        let lines = self.carts.lines(&request.user_id);
        if lines.is_empty() {
            return Err(status(
                Code::FailedPrecondition,
                "CART_EMPTY",
                "the cart is empty",
            ));
        }
        let (state, failure, decline) = self.decide(request, &lines);
        if state == checkout::CheckoutStatus::Completed {
            self.carts.carts.lock().unwrap().remove(&request.user_id);
        }
        let now = now_secs() as i64;
        Ok(checkout::CheckoutSession {
            checkout_id: uuid::Uuid::new_v4().to_string(),
            user_id: request.user_id.clone(),
            status: state as i32,
            items: lines
                .iter()
                .map(|l| common::LineItem {
                    product_id: l.product_id,
                    name: l.name.into(),
                    unit_price: usd(l.unit_price),
                    quantity: l.quantity,
                    line_total: usd(l.unit_price * i64::from(l.quantity)),
                })
                .collect(),
            total: usd(lines
                .iter()
                .map(|l| l.unit_price * i64::from(l.quantity))
                .sum()),
            failure_reason: failure.into(),
            decline_reason: decline.into(),
            created_at: timestamp(now),
            updated_at: timestamp(now),
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl CheckoutService for FakeCheckout {
    async fn checkout(
        &self,
        request: Request<checkout::CheckoutRequest>,
    ) -> Result<Response<checkout::CheckoutResponse>, Status> {
        self.knob.gate().await?;
        let request = request.into_inner();
        if request.idempotency_key.is_empty() {
            return Err(status(
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
                "idempotency_key: is required",
            ));
        }
        let key = (request.user_id.clone(), request.idempotency_key.clone());
        if let Some(session) = self.sessions.lock().unwrap().get(&key) {
            return Ok(Response::new(checkout::CheckoutResponse {
                session: Some(session.clone()),
                replayed: true,
            }));
        }
        if !self.in_flight.lock().unwrap().insert(key.clone()) {
            return Err(status(
                Code::Aborted,
                "CHECKOUT_IN_PROGRESS",
                "a checkout with this idempotency key is in progress",
            ));
        }
        if request.payment_method == "pm_test_slow" {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let outcome = self.run(&request);
        self.in_flight.lock().unwrap().remove(&key);
        let session = outcome?;
        self.sessions.lock().unwrap().insert(key, session.clone());
        Ok(Response::new(checkout::CheckoutResponse {
            session: Some(session),
            replayed: false,
        }))
    }

    async fn list_checkouts(
        &self,
        request: Request<checkout::ListCheckoutsRequest>,
    ) -> Result<Response<checkout::ListCheckoutsResponse>, Status> {
        self.knob.gate().await?;
        let wanted = request.into_inner().status;
        let sessions = self
            .sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.status == wanted)
            .cloned()
            .collect();
        Ok(Response::new(checkout::ListCheckoutsResponse { sessions }))
    }

    async fn get_checkout(
        &self,
        request: Request<checkout::GetCheckoutRequest>,
    ) -> Result<Response<checkout::CheckoutSession>, Status> {
        self.knob.gate().await?;
        let r = request.into_inner();
        let sessions = self.sessions.lock().unwrap();
        let found = if r.checkout_id.is_empty() {
            sessions.get(&(r.user_id.clone(), r.idempotency_key.clone()))
        } else {
            sessions
                .values()
                .find(|s| s.checkout_id == r.checkout_id && s.user_id == r.user_id)
        };
        found.cloned().map(Response::new).ok_or_else(|| {
            status(
                Code::NotFound,
                "CHECKOUT_NOT_FOUND",
                format!("checkout {} not found", r.checkout_id),
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Orders: in memory, seeded by the tests, with the design's transitions.

#[derive(Debug, Default)]
pub struct FakeOrders {
    pub knob: Knob,
    orders: Mutex<Vec<orders::Order>>,
}

impl FakeOrders {
    /// Adds a CONFIRMED order of `user` (a laptop and two mice) created at `created_at`.
    pub fn seed(&self, user: &str, created_at: i64) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.orders.lock().unwrap().push(orders::Order {
            id: id.clone(),
            checkout_id: uuid::Uuid::new_v4().to_string(),
            user_id: user.into(),
            status: orders::OrderStatus::Confirmed as i32,
            items: vec![
                common::LineItem {
                    product_id: 1,
                    name: "Laptop".into(),
                    unit_price: usd(129_999),
                    quantity: 1,
                    line_total: usd(129_999),
                },
                common::LineItem {
                    product_id: 2,
                    name: "Mouse".into(),
                    unit_price: usd(2_999),
                    quantity: 2,
                    line_total: usd(5_998),
                },
            ],
            total: usd(135_997),
            shipping_address: None,
            created_at: timestamp(created_at),
            updated_at: timestamp(created_at),
        });
        id
    }

    pub fn status_of(&self, id: &str) -> Option<orders::OrderStatus> {
        self.orders
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.id == id)
            .and_then(|o| orders::OrderStatus::try_from(o.status).ok())
    }
}

fn order_not_found(id: &str) -> Status {
    status(
        Code::NotFound,
        "ORDER_NOT_FOUND",
        format!("order {id} not found"),
    )
}

#[tonic::async_trait]
impl OrderService for FakeOrders {
    async fn get_order(
        &self,
        request: Request<orders::GetOrderRequest>,
    ) -> Result<Response<orders::Order>, Status> {
        self.knob.gate().await?;
        let r = request.into_inner();
        self.orders
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.id == r.order_id && (r.user_id.is_empty() || o.user_id == r.user_id))
            .cloned()
            .map(Response::new)
            .ok_or_else(|| order_not_found(&r.order_id))
    }

    async fn list_orders(
        &self,
        request: Request<orders::ListOrdersRequest>,
    ) -> Result<Response<orders::ListOrdersResponse>, Status> {
        self.knob.gate().await?;
        let user = request.into_inner().user_id;
        let mut mine: Vec<_> = self
            .orders
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.user_id == user)
            .cloned()
            .collect();
        mine.sort_by_key(|o| std::cmp::Reverse(o.created_at.map(|t| t.seconds)));
        Ok(Response::new(orders::ListOrdersResponse {
            orders: mine,
            next_page_token: String::new(),
        }))
    }

    async fn update_order_status(
        &self,
        request: Request<orders::UpdateOrderStatusRequest>,
    ) -> Result<Response<orders::Order>, Status> {
        use orders::OrderStatus::*;
        self.knob.gate().await?;
        let r = request.into_inner();
        let mut all = self.orders.lock().unwrap();
        let order = all
            .iter_mut()
            .find(|o| o.id == r.order_id)
            .ok_or_else(|| order_not_found(&r.order_id))?;
        let from = orders::OrderStatus::try_from(order.status).unwrap_or(Unspecified);
        let to = orders::OrderStatus::try_from(r.status).unwrap_or(Unspecified);
        let allowed = matches!(
            (from, to),
            (Confirmed, Processing)
                | (Processing, Shipped)
                | (Shipped, Delivered)
                | (Confirmed | Processing, Cancelled)
        );
        if !allowed {
            return Err(status(
                Code::FailedPrecondition,
                "INVALID_TRANSITION",
                format!("an order cannot go from {from:?} to {to:?}"),
            ));
        }
        order.status = to as i32;
        Ok(Response::new(order.clone()))
    }
}

// ---------------------------------------------------------------------------
// The shop.

/// The tests' gateway settings, every backend at `backend`: generous limits,
/// HS256 with [`SECRET`] and RS256 with the fixture key.
pub fn config(backend: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        product_url: backend.to_owned(),
        cart_url: backend.to_owned(),
        checkout_url: backend.to_owned(),
        orders_url: backend.to_owned(),
        backend_timeout: Duration::from_secs(3),
        checkout_timeout: Duration::from_secs(5),
        catalog_ttl: Duration::from_secs(1),
        jwt_secret: Some(SECRET.to_owned()),
        jwt_public_key_file: Some(fixture("rsa-public.pem")),
        jwt_issuer: None,
        jwt_audience: None,
        oidc_issuer: None,
        oidc_audience: None,
        oidc_jwks_refresh: Duration::from_secs(300),
        rate_limit_per_user: 1000.0,
        rate_limit_per_user_burst: 1000,
        rate_limit_per_ip: 1000.0,
        rate_limit_per_ip_burst: 1000,
        cors_allowed_origins: vec!["*".to_owned()],
        trusted_proxies: Vec::new(),
        breaker_failure_threshold: 5,
        breaker_open_duration: Duration::from_secs(10),
        max_connections: 1000,
        idle_timeout: Duration::from_secs(30),
    }
}

/// Which product service the gateway talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductBackend {
    /// The real service on a temporary SQLite catalog.
    Real,
    /// [`FakeProduct`], whose knob the test turns.
    Fake,
    /// An address where nothing listens.
    Dead,
}

pub struct ShopBuilder {
    product: ProductBackend,
    tweak: Box<dyn FnOnce(&mut Config)>,
}

/// A loopback address where nothing listens (the port was bound, then freed).
async fn dead_address() -> String {
    let (listener, uri) = loopback_listener().await;
    drop(listener);
    uri
}

async fn serve<S>(service: S) -> TestServer
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    TestServer::start(move |listener, shutdown| {
        GrpcServer::new()
            .add_service(service)
            .serve(listener, shutdown)
    })
    .await
}

impl ShopBuilder {
    pub fn product(mut self, product: ProductBackend) -> Self {
        self.product = product;
        self
    }

    /// Changes the gateway's configuration before it starts.
    pub fn config(mut self, tweak: impl FnOnce(&mut Config) + 'static) -> Self {
        self.tweak = Box::new(tweak);
        self
    }

    pub async fn start(self) -> Shop {
        let fake_product = Arc::new(FakeProduct::default());
        let mut catalog_dir = None;
        let mut product_server = None;
        let product_url = match self.product {
            ProductBackend::Real => {
                let dir = tempfile::tempdir().expect("temp dir");
                let config = storefront_product::Config {
                    listen: "127.0.0.1:0".parse().expect("address"),
                    database_url: format!(
                        "sqlite://{}?mode=rwc",
                        dir.path().join("catalog.db").display()
                    ),
                    db_max_connections: 2,
                };
                let server = TestServer::start(|listener, shutdown| {
                    storefront_product::run(config, listener, shutdown)
                })
                .await;
                let uri = server.uri.clone();
                catalog_dir = Some(dir);
                product_server = Some(server);
                uri
            }
            ProductBackend::Fake => {
                let server = serve(ProductServiceServer::from_arc(fake_product.clone())).await;
                let uri = server.uri.clone();
                product_server = Some(server);
                uri
            }
            ProductBackend::Dead => dead_address().await,
        };

        let carts = Arc::new(CartStore::default());
        let fake_cart = Arc::new(FakeCart {
            knob: Knob::default(),
            store: carts.clone(),
        });
        let fake_checkout = Arc::new(FakeCheckout {
            carts: carts.clone(),
            ..FakeCheckout::default()
        });
        let fake_orders = Arc::new(FakeOrders::default());
        let cart_server = serve(CartServiceServer::from_arc(fake_cart.clone())).await;
        let checkout_server = serve(CheckoutServiceServer::from_arc(fake_checkout.clone())).await;
        let orders_server = serve(OrderServiceServer::from_arc(fake_orders.clone())).await;

        let mut config = config(&product_url);
        config.cart_url = cart_server.uri.clone();
        config.checkout_url = checkout_server.uri.clone();
        config.orders_url = orders_server.uri.clone();
        (self.tweak)(&mut config);

        let (listener, base) = loopback_listener().await;
        let shutdown = Shutdown::new();
        let gateway = tokio::spawn(storefront_gateway::run(config, listener, shutdown.clone()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client");
        let shop = Shop {
            base,
            http,
            product: fake_product,
            cart: fake_cart,
            checkout: fake_checkout,
            orders: fake_orders,
            carts,
            servers: Servers {
                product: product_server,
                cart: Some(cart_server),
                checkout: checkout_server,
                orders: orders_server,
            },
            shutdown,
            gateway,
            _catalog_dir: catalog_dir,
        };
        shop.wait_healthy().await;
        shop
    }
}

struct Servers {
    product: Option<TestServer>,
    cart: Option<TestServer>,
    checkout: TestServer,
    orders: TestServer,
}

pub struct Shop {
    pub base: String,
    pub http: reqwest::Client,
    pub product: Arc<FakeProduct>,
    pub cart: Arc<FakeCart>,
    pub checkout: Arc<FakeCheckout>,
    pub orders: Arc<FakeOrders>,
    pub carts: Arc<CartStore>,
    servers: Servers,
    shutdown: Shutdown,
    gateway: tokio::task::JoinHandle<Result<(), storefront_runtime::StartError>>,
    _catalog_dir: Option<tempfile::TempDir>,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a success status and a JSON body; returns the body.
    pub fn json(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text
        );
        &self.body
    }

    /// Asserts an RFC 9457 problem document with `status` and `code`; returns it.
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let body = &self.body;
        assert_eq!(body["code"], code, "{}", self.text);
        assert_eq!(body["status"], status, "{}", self.text);
        assert_eq!(
            body["type"],
            format!("https://storefront.dev/problems/{code}")
        );
        assert!(
            body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            self.text
        );
        let request_id = self.header("x-request-id").expect("X-Request-ID header");
        assert_eq!(body["request_id"], request_id, "{}", self.text);
        body
    }
}

pub async fn read(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        body,
    }
}

impl Shop {
    pub fn builder() -> ShopBuilder {
        ShopBuilder {
            product: ProductBackend::Fake,
            tweak: Box::new(|_| {}),
        }
    }

    /// The shop with default settings and a fake product service.
    pub async fn start() -> Shop {
        Shop::builder().start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn wait_healthy(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                !self.gateway.is_finished(),
                "gateway stopped during start-up"
            );
            if let Ok(answer) = self.http.get(self.url("/healthz")).send().await
                && answer.status().is_success()
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway not healthy after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        read(
            self.request(reqwest::Method::GET, path, token)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = self.request(method, path, token);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        read(builder.send().await.expect("request")).await
    }

    /// Sends raw bytes as JSON.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let builder = self
            .request(method, path, token)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        read(builder.send().await.expect("request")).await
    }

    /// The real product service's SQLite file (`ProductBackend::Real`).
    pub fn catalog_db(&self) -> Option<std::path::PathBuf> {
        self._catalog_dir
            .as_ref()
            .map(|dir| dir.path().join("catalog.db"))
    }

    /// Stops the fake cart service (its port then refuses connections).
    pub async fn stop_cart(&mut self) {
        if let Some(server) = self.servers.cart.take() {
            server.stop().await.expect("cart stops cleanly");
        }
    }

    /// Stops the gateway (graceful) and every backend.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.gateway)
            .await
            .expect("gateway stops within 10 s")
            .expect("gateway task");
        stopped.expect("gateway ran cleanly");
        let servers = self.servers;
        if let Some(server) = servers.product {
            server.stop().await.expect("product stops");
        }
        if let Some(server) = servers.cart {
            server.stop().await.expect("cart stops");
        }
        servers.checkout.stop().await.expect("checkout stops");
        servers.orders.stop().await.expect("orders stops");
    }
}
