//! The load: concurrent clients, each cycling through its own users, fill a
//! cart and check it out through the gateway as a real client would — the
//! same Idempotency-Key again on a 5xx, a 429 or no answer; a new key for a
//! new attempt (after `checkout_in_progress`, or when the retries of an
//! attempt are spent); a 202 polled until the session ends. Some checkouts
//! pay with a declining card, and some race an edit of the cart. Every
//! answer is recorded. Bounded by a number of carts and a time limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client_log::{ClientRecord, Op};
use crate::report::Checkouts;

/// Test cards that the payment simulator declines.
const DECLINING_CARDS: [&str; 4] = [
    "pm_card_declined",
    "pm_card_insufficient_funds",
    "pm_card_expired",
    "pm_card_cvc_fail",
];
/// Tries of one key (one attempt) before the client gives it up.
const TRIES_PER_KEY: u32 = 5;
/// Attempts (keys) per cart before the client gives the cart up.
const ATTEMPTS_PER_CART: u32 = 3;
/// How long a 202 is polled before the client stops waiting.
const POLL_FOR: Duration = Duration::from_secs(30);
/// Past the time limit, carts under way get this long to finish.
const GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct DriveConfig {
    pub gateway: String,
    pub jwt_secret: String,
    /// Carts to check out in all.
    pub checkouts: u64,
    /// No new cart is started after this.
    pub duration: Duration,
    pub concurrency: usize,
    pub users: usize,
    pub products: Vec<i64>,
    pub decline_ratio: f64,
    pub race_ratio: f64,
    /// Names users apart from other runs against the same shop.
    pub run_id: String,
    pub seed: u64,
    pub request_timeout: Duration,
    /// Set (by SIGINT or SIGTERM) to start no new cart; those under way finish.
    pub stop: Arc<AtomicBool>,
}

pub struct Driven {
    pub records: Vec<ClientRecord>,
    pub checkouts: Checkouts,
}

/// How a cart's checkout ended for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Completed,
    Failed(String),
    CartEmpty,
    Unresolved(String),
}

struct Client {
    config: DriveConfig,
    http: reqwest::Client,
    started: Instant,
    hard_stop: Instant,
    records: std::sync::Mutex<Vec<ClientRecord>>,
    tally: std::sync::Mutex<Checkouts>,
    next_cart: AtomicU64,
}

/// Who is asking, for the record.
#[derive(Clone)]
struct Who {
    user: String,
    token: String,
    cart: String,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<String> {
        self.body["code"].as_str().map(str::to_owned)
    }
    fn retryable(&self) -> bool {
        self.status == 0 || self.status == 429 || self.status >= 500
    }
}

pub async fn drive(config: DriveConfig, started: Instant) -> anyhow::Result<Driven> {
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()?;
    let client = Arc::new(Client {
        hard_stop: started + config.duration + GRACE,
        config,
        http,
        started,
        records: std::sync::Mutex::default(),
        tally: std::sync::Mutex::default(),
        next_cart: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..client.config.concurrency)
        .map(|worker| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.work(worker).await })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let records = std::mem::take(&mut *client.records.lock().map_err(|_| poisoned())?);
    let checkouts = std::mem::take(&mut *client.tally.lock().map_err(|_| poisoned())?);
    Ok(Driven { records, checkouts })
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("a client task panicked")
}

impl Client {
    async fn work(self: Arc<Self>, worker: usize) -> anyhow::Result<()> {
        let mut rng = StdRng::seed_from_u64(
            self.config.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let per_worker = (self.config.users / self.config.concurrency).max(1);
        let tokens: Vec<(String, String)> = (0..per_worker)
            .map(|j| {
                let user = format!("soak-{}-{worker}-{j}", self.config.run_id);
                let ttl = self.config.duration + GRACE + Duration::from_secs(3600);
                let token = storefront_gateway::token(&self.config.jwt_secret, &user, false, ttl)?;
                Ok((user, token))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut round = 0usize;
        loop {
            let n = self.next_cart.fetch_add(1, Ordering::Relaxed);
            if n >= self.config.checkouts
                || self.started.elapsed() >= self.config.duration
                || self.config.stop.load(Ordering::Acquire)
            {
                return Ok(());
            }
            let (user, token) = &tokens[round % tokens.len()];
            round += 1;
            let who = Who {
                user: user.clone(),
                token: token.clone(),
                cart: format!("cart-{n}"),
            };
            self.one_cart(&who, &mut rng).await;
        }
    }

    /// Empties the cart, fills it, checks it out; tallies how it ended.
    async fn one_cart(self: &Arc<Self>, who: &Who, rng: &mut StdRng) {
        self.retrying(who, Op::CartClear, Method::DELETE, "/api/v1/cart", None)
            .await;
        let count = rng.random_range(1..=3usize);
        let lines: Vec<i64> = self
            .config
            .products
            .choose_multiple(rng, count)
            .copied()
            .collect();
        let mut filled = 0;
        for product in &lines {
            let body = json!({ "product_id": product, "quantity": rng.random_range(1..=3) });
            let answer = self
                .retrying(
                    who,
                    Op::CartAdd,
                    Method::POST,
                    "/api/v1/cart/items",
                    Some(body),
                )
                .await;
            if answer.status == 201 {
                filled += 1;
            }
        }
        if filled == 0 {
            return; // Never reached a checkout: not counted as one.
        }
        let card = if rng.random_bool(self.config.decline_ratio) {
            DECLINING_CARDS
                .choose(rng)
                .copied()
                .unwrap_or("pm_card_declined")
        } else {
            "pm_card_visa"
        };
        let race = rng.random_bool(self.config.race_ratio).then(|| {
            let edit = rng.random_range(0..3u8);
            let product = *self.config.products.choose(rng).unwrap_or(&1);
            let delay = Duration::from_millis(rng.random_range(0..40));
            (edit, product, lines.clone(), delay)
        });
        let (ending, keys) = self.checkout(who, card, race, rng).await;
        let Ok(mut tally) = self.tally.lock() else {
            return;
        };
        tally.attempted += 1;
        tally.keys_used += u64::from(keys);
        let code = match &ending {
            Ending::Completed => {
                tally.completed += 1;
                "completed".to_owned()
            }
            Ending::Failed(code) => {
                tally.failed += 1;
                code.clone()
            }
            Ending::CartEmpty => {
                tally.cart_empty += 1;
                "cart_empty".to_owned()
            }
            Ending::Unresolved(why) => {
                tally.unresolved += 1;
                format!("unresolved_{why}")
            }
        };
        *tally.by_code.entry(code).or_default() += 1;
    }

    /// The checkout of a filled cart: attempts (keys), each tried a few times.
    async fn checkout(
        self: &Arc<Self>,
        who: &Who,
        card: &str,
        race: Option<(u8, i64, Vec<i64>, Duration)>,
        rng: &mut StdRng,
    ) -> (Ending, u32) {
        let mut race = race;
        let mut last = "no_answer".to_owned();
        for attempt in 1..=ATTEMPTS_PER_CART {
            let key = uuid::Uuid::new_v4().to_string();
            if let Some((edit, product, lines, delay)) = race.take() {
                // The edit goes out while the checkout is in flight.
                let (client, who) = (Arc::clone(self), who.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    client.edit(&who, edit, product, &lines).await;
                });
            }
            // 0.5 + 1 + 2 + 4 s: a key outlives a process restart.
            let mut backoff = Duration::from_millis(500);
            for _ in 0..TRIES_PER_KEY {
                let body = json!({ "payment_method": card });
                let answer = self
                    .send(
                        who,
                        Op::Checkout,
                        Method::POST,
                        "/api/v1/checkout",
                        Some(body),
                        Some(&key),
                    )
                    .await;
                let code = answer.code();
                match (answer.status, code.as_deref()) {
                    (201, _) => return (Ending::Completed, attempt),
                    (202, _) => match self.poll(who, &key, &answer).await {
                        Some(ending) => return (ending, attempt),
                        None => {
                            last = "still_running".to_owned();
                            break;
                        }
                    },
                    // Another checkout of this cart is in flight: follow it,
                    // as its Location says, rather than start one more.
                    (409, Some("checkout_in_progress"))
                        if answer.body["checkout_id"].is_string() =>
                    {
                        match self.poll(who, &key, &answer).await {
                            Some(ending) => return (ending, attempt),
                            None => {
                                last = "still_running".to_owned();
                                break;
                            }
                        }
                    }
                    (409, Some("checkout_in_progress")) => {
                        last = "checkout_in_progress".to_owned();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                    (422, Some("cart_empty")) => return (Ending::CartEmpty, attempt),
                    (402 | 409 | 422, code) => {
                        return (
                            Ending::Failed(code.unwrap_or("checkout_failed").to_owned()),
                            attempt,
                        );
                    }
                    _ if answer.retryable() => {
                        last = if answer.status == 0 {
                            "no_answer".to_owned()
                        } else {
                            answer.status.to_string()
                        };
                        if Instant::now() >= self.hard_stop {
                            return (Ending::Unresolved(last), attempt);
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(4));
                    }
                    (status, code) => {
                        return (
                            Ending::Unresolved(format!("{status}_{}", code.unwrap_or("?"))),
                            attempt,
                        );
                    }
                }
            }
            if Instant::now() >= self.hard_stop {
                return (Ending::Unresolved(last), attempt);
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        }
        (Ending::Unresolved(last), ATTEMPTS_PER_CART)
    }

    /// Polls a session that answered 202 until it ends; `None` if it did not in time.
    async fn poll(&self, who: &Who, key: &str, accepted: &Answer) -> Option<Ending> {
        let id = accepted.body["checkout_id"].as_str()?.to_owned();
        let path = format!("/api/v1/checkout/{id}");
        let until = Instant::now() + POLL_FOR;
        while Instant::now() < until && Instant::now() < self.hard_stop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let answer = self
                .send(who, Op::CheckoutPoll, Method::GET, &path, None, Some(key))
                .await;
            match answer.body["status"].as_str() {
                Some("COMPLETED") if answer.status == 200 => return Some(Ending::Completed),
                Some("FAILED") if answer.status == 200 => {
                    let reason = answer.body["failure_reason"].as_str().unwrap_or("failed");
                    return Some(Ending::Failed(reason.to_lowercase()));
                }
                _ => {}
            }
        }
        None
    }

    /// A cart edit racing a checkout: add a product, change a line, or drop one.
    async fn edit(&self, who: &Who, edit: u8, product: i64, lines: &[i64]) {
        match (edit, lines) {
            (1, [first, ..]) => {
                let path = format!("/api/v1/cart/items/{first}");
                self.send(
                    who,
                    Op::CartEdit,
                    Method::PUT,
                    &path,
                    Some(json!({ "quantity": 2 })),
                    None,
                )
                .await;
            }
            (2, [first, _, ..]) => {
                let path = format!("/api/v1/cart/items/{first}");
                self.send(who, Op::CartEdit, Method::DELETE, &path, None, None)
                    .await;
            }
            _ => {
                let body = json!({ "product_id": product, "quantity": 1 });
                self.send(
                    who,
                    Op::CartEdit,
                    Method::POST,
                    "/api/v1/cart/items",
                    Some(body),
                    None,
                )
                .await;
            }
        }
    }

    /// A cart request, tried again (bounded) on a 5xx, a 429 or no answer.
    async fn retrying(
        &self,
        who: &Who,
        op: Op,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut backoff = Duration::from_millis(250);
        let mut tries = 0;
        loop {
            let answer = self
                .send(who, op, method.clone(), path, body.clone(), None)
                .await;
            tries += 1;
            if !answer.retryable() || tries >= 6 || Instant::now() >= self.hard_stop {
                return answer;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(4));
        }
    }

    /// One request; its answer is recorded whatever it is.
    async fn send(
        &self,
        who: &Who,
        op: Op,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.config.gateway))
            .bearer_auth(&who.token);
        if let Some(key) = key.filter(|_| op == Op::Checkout) {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let sent = Instant::now();
        let (status, body) = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (status.as_u16(), body)
            }
            Err(_) => (0, Value::Null),
        };
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let answer = Answer { status, body };
        let record = ClientRecord {
            op,
            status,
            checkout_id: answer.body["checkout_id"].as_str().map(str::to_owned),
            session_status: answer.body["status"]
                .as_str()
                .filter(|_| status < 300)
                .map(str::to_owned),
            code: answer.code(),
            user: who.user.clone(),
            cart: Some(who.cart.clone()),
            key: key.map(str::to_owned),
            cart_lines: cart_lines(op, status, &answer.body),
            at_s: (sent - self.started).as_secs_f64(),
            latency_ms,
        };
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
        answer
    }
}

/// What a cart write that succeeded left in the cart: product → quantity.
fn cart_lines(op: Op, status: u16, body: &Value) -> std::collections::BTreeMap<i64, i64> {
    let write = matches!(op, Op::CartAdd | Op::CartEdit | Op::CartClear);
    if !write || !(200..300).contains(&status) {
        return std::collections::BTreeMap::new();
    }
    body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| Some((item["product_id"].as_i64()?, item["quantity"].as_i64()?)))
        .collect()
}
