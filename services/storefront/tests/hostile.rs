//! Hostile input on every route and field, against the real shop: NUL and
//! other control characters, invalid UTF-8, huge and negative numbers, far
//! dates, overlong strings. No answer may be a 5xx, and no circuit may open:
//! the breakers are set to open on the first backend fault, and afterwards an
//! ordinary customer still buys.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Options, Shop, http_get};

/// Strings a user can send in any text field.
fn hostile_strings() -> Vec<String> {
    vec![
        "\u{0}".into(),
        "a\u{0}b".into(),
        "\u{7}\u{1b}[31m".into(),
        "line\nbreak\r\n".into(),
        "\u{9b}\u{85}".into(),
        "\u{feff}\u{202e}".into(),
        "x".repeat(10_000),
        "é".repeat(300),
        "'; DROP TABLE orders; --".into(),
        "%00".into(),
        "\\u0000".into(),
        "".into(),
        " ".into(),
    ]
}

/// Numbers a user can send in any numeric field.
fn hostile_numbers() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e308),
        json!(-1e308),
        json!(0.5),
        json!("1"),
        json!(null),
        json!([1]),
        json!({"n": 1}),
        json!(true),
    ]
}

/// Path segments a user can put where an id goes.
fn hostile_segments() -> Vec<String> {
    vec![
        "0".into(),
        "-1".into(),
        "9223372036854775808".into(),
        "99999999999999999999999".into(),
        "1e3".into(),
        "%00".into(),
        "%FF%FE".into(),
        "%0A".into(),
        "x".repeat(5000),
        "00000000-0000-0000-0000-000000000000".into(),
        "ffffffff-ffff-ffff-ffff-ffffffffffff".into(),
    ]
}

/// Order page tokens: well-formed ones for times PostgreSQL cannot store,
/// and malformed ones.
fn hostile_page_tokens() -> Vec<String> {
    let nil = "0".repeat(32);
    vec![
        format!("{:016x}{nil}", i64::MIN as u64),
        format!("{:016x}{nil}", u64::MAX >> 1),
        format!("{:016x}{nil}", (-62_135_596_800_000_000_i64 - 1) as u64),
        "g".repeat(48),
        "%00".into(),
        "x".repeat(2000),
    ]
}

struct Barrage<'a> {
    shop: &'a Shop,
    token: String,
    admin: String,
    sent: usize,
    server_errors: Vec<String>,
}

impl Barrage<'_> {
    async fn send(&mut self, method: Method, path: &str, token: bool, body: Option<Value>) {
        let token = if token {
            self.token.clone()
        } else {
            String::new()
        };
        let answer = self
            .shop
            .call_with(method.clone(), path, &token, body.clone(), &[])
            .await;
        self.check(format!("{method} {path} {body:?}"), answer.status);
    }

    async fn send_raw(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Vec<u8>,
    ) {
        let mut request = self
            .shop
            .http
            .request(method.clone(), format!("{}{path}", self.shop.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(
                *name,
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let status = request
            .body(body.clone())
            .send()
            .await
            .expect("gateway")
            .status();
        self.check(
            format!("{method} {path} raw {:?}", String::from_utf8_lossy(&body)),
            status,
        );
    }

    fn check(&mut self, what: String, status: StatusCode) {
        self.sent += 1;
        if status.is_server_error() {
            let what: String = what.chars().take(300).collect();
            self.server_errors.push(format!("{status} for {what}"));
        }
    }
}

#[tokio::test]
async fn no_hostile_value_on_any_route_gives_a_5xx_or_opens_a_circuit() {
    let metrics = support::free_port();
    let lenient = |rate: &str| vec![rate.to_owned(), "100000".to_owned()];
    let mut gateway = Vec::new();
    for flag in [
        "--gateway-rate-limit-per-user",
        "--gateway-rate-limit-per-user-burst",
        "--gateway-rate-limit-per-ip",
        "--gateway-rate-limit-per-ip-burst",
    ] {
        gateway.extend(lenient(flag));
    }
    // One backend fault is enough to open a circuit.
    gateway.extend([
        "--gateway-breaker-failure-threshold".to_owned(),
        "1".to_owned(),
    ]);
    let shop = Shop::start(Options {
        one_process: true,
        metrics: Some(metrics),
        extra: vec![("gateway", gateway)],
        ..Options::default()
    })
    .await;
    let mut barrage = Barrage {
        shop: &shop,
        token: shop.token("mallory"),
        admin: shop.admin_token("root"),
        sent: 0,
        server_errors: Vec::new(),
    };
    // Something in the cart, so checkouts reach the saga and the database.
    let added = shop.add_to_cart(&barrage.token, 2, 1).await;
    assert_eq!(added.status, StatusCode::CREATED);

    for segment in hostile_segments() {
        for (method, path, token) in [
            (Method::GET, format!("/api/v1/products/{segment}"), false),
            (
                Method::DELETE,
                format!("/api/v1/cart/items/{segment}"),
                true,
            ),
            (Method::GET, format!("/api/v1/checkout/{segment}"), true),
            (Method::GET, format!("/api/v1/orders/{segment}"), true),
        ] {
            barrage.send(method, &path, token, None).await;
        }
        barrage
            .send(
                Method::PUT,
                &format!("/api/v1/cart/items/{segment}"),
                true,
                Some(json!({"quantity": 1})),
            )
            .await;
    }
    for number in hostile_numbers() {
        for body in [
            json!({"product_id": number, "quantity": 1}),
            json!({"product_id": 2, "quantity": number}),
        ] {
            barrage
                .send(Method::POST, "/api/v1/cart/items", true, Some(body))
                .await;
        }
        barrage
            .send(
                Method::PUT,
                "/api/v1/cart/items/2",
                true,
                Some(json!({"quantity": number})),
            )
            .await;
        let size = number.to_string();
        barrage
            .send(
                Method::GET,
                &format!("/api/v1/orders?page_size={size}"),
                true,
                None,
            )
            .await;
    }
    for text in hostile_strings() {
        let key = format!("k-{}", uuid::Uuid::new_v4());
        let address = |field: &str| {
            let mut address = json!({"name": "A", "line1": "1 Road", "city": "C", "postal_code": "1", "country": "US"});
            address[field] = json!(text);
            address
        };
        let mut bodies = vec![
            json!({"payment_method": text, "idempotency_key": key}),
            json!({"idempotency_key": text}),
        ];
        for field in ["name", "line1", "line2", "city", "postal_code", "country"] {
            bodies.push(json!({"idempotency_key": format!("{key}-{field}"), "shipping_address": address(field)}));
        }
        for body in bodies {
            barrage
                .send(Method::POST, "/api/v1/checkout", true, Some(body))
                .await;
        }
        let encoded: String = url_encode(&text);
        barrage
            .send(
                Method::GET,
                &format!("/api/v1/orders?page_token={encoded}"),
                true,
                None,
            )
            .await;
        barrage
            .send(
                Method::GET,
                &format!("/api/v1/admin/checkouts?status={encoded}"),
                true,
                None,
            )
            .await;
        let admin = barrage.admin.clone();
        let answer = shop
            .call(
                Method::PATCH,
                "/api/v1/orders/00000000-0000-0000-0000-000000000001",
                &admin,
                Some(json!({"status": text})),
            )
            .await;
        barrage.check(format!("PATCH order status {text:?}"), answer.status);
    }
    for token in hostile_page_tokens() {
        barrage
            .send(
                Method::GET,
                &format!("/api/v1/orders?page_token={token}"),
                true,
                None,
            )
            .await;
    }
    // Bytes that are not UTF-8, in bodies and headers.
    for body in [
        b"{\"payment_method\": \"\xff\xfe\"}".to_vec(),
        b"\xff\xff\xff".to_vec(),
        b"{\"quantity\": 1".to_vec(),
    ] {
        barrage
            .send_raw(
                Method::POST,
                "/api/v1/checkout",
                &[("idempotency-key", b"raw-1")],
                body.clone(),
            )
            .await;
        barrage
            .send_raw(Method::POST, "/api/v1/cart/items", &[], body)
            .await;
    }
    barrage
        .send_raw(
            Method::POST,
            "/api/v1/checkout",
            &[("idempotency-key", b"\xff\xfe\x80")],
            b"{}".to_vec(),
        )
        .await;
    barrage
        .send_raw(
            Method::POST,
            "/api/v1/checkout",
            &[("idempotency-key", &[b'k'; 4000])],
            b"{}".to_vec(),
        )
        .await;

    assert!(barrage.sent > 250, "only {} requests sent", barrage.sent);
    assert!(
        barrage.server_errors.is_empty(),
        "{} of {} hostile requests got a 5xx:\n{}",
        barrage.server_errors.len(),
        barrage.sent,
        barrage.server_errors.join("\n")
    );
    // Every circuit is closed (gauge 0), and an ordinary customer buys.
    let scrape = http_get(metrics, "/metrics");
    let states: Vec<&str> = scrape
        .lines()
        .filter(|line| line.starts_with("circuit_breaker_state{"))
        .collect();
    assert!(!states.is_empty(), "no breaker gauges in:\n{scrape}");
    for state in &states {
        assert!(state.ends_with(" 0"), "a circuit is not closed: {state}");
    }
    let ben = shop.token("ben");
    shop.add_to_cart(&ben, 1, 1).await;
    let bought = shop.checkout(&ben, "ordinary", "pm_card_visa").await;
    assert_eq!(bought.status, StatusCode::CREATED, "{:?}", bought.body);
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
