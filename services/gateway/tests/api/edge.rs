//! What every request gets at the edge: request ids, body limits, problem
//! documents for unknown routes and methods, rate limits, CORS, and an
//! OpenAPI document that matches the router.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Shop, read, token_for};

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let shop = Shop::start().await;
    let echoed = read(
        shop.request(Method::GET, "/api/v1/products", None)
            .header("X-Request-ID", "req-abc-123")
            .send()
            .await
            .unwrap(),
    )
    .await;
    echoed.json(200);
    assert_eq!(echoed.header("x-request-id"), Some("req-abc-123"));

    let first = shop.get("/healthz", None).await;
    let second = shop.get("/healthz", None).await;
    let (a, b) = (
        first.header("x-request-id").expect("generated id"),
        second.header("x-request-id").expect("generated id"),
    );
    assert!(uuid::Uuid::parse_str(a).is_ok(), "{a}");
    assert_ne!(a, b);

    // Problem documents name the request they answer.
    let problem = read(
        shop.request(Method::GET, "/api/v1/cart", None)
            .header("X-Request-ID", "trace-me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        problem.problem(401, "missing_token")["request_id"],
        "trace-me"
    );
    shop.stop().await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let shop = Shop::start().await;
    let alice = token_for("alice");
    let padding = "x".repeat(65 * 1024);
    let big = json!({"product_id": 1, "quantity": 1, "padding": padding}).to_string();
    assert!(big.len() > 64 * 1024);
    shop.send_raw(Method::POST, "/api/v1/cart/items", Some(&alice), big)
        .await
        .problem(413, "payload_too_large");
    assert_eq!(shop.cart.knob.calls(), 0);

    // Just under the limit is read as usual.
    let padding = "x".repeat(63 * 1024);
    let fits = json!({"product_id": 1, "quantity": 1, "padding": padding}).to_string();
    shop.send_raw(Method::POST, "/api/v1/cart/items", Some(&alice), fits)
        .await
        .json(201);

    // A body streamed without a Content-Length is cut off where it is read.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(Ok(b"{\"padding\":\"".to_vec()))
            .chain(std::iter::repeat_with(|| Ok(vec![b'x'; 8 * 1024])).take(9))
            .chain(std::iter::once(Ok(b"\"}".to_vec())))
            .collect();
    let stream = futures::stream::iter(chunks);
    shop.send_raw(
        Method::POST,
        "/api/v1/cart/items",
        Some(&alice),
        reqwest::Body::wrap_stream(stream),
    )
    .await
    .problem(413, "payload_too_large");
    shop.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let shop = Shop::start().await;
    let reply = shop.get("/api/v1/nothing-here", None).await;
    let problem = reply.problem(404, "route_not_found");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here")
    );
    shop.get("/", None).await.problem(404, "route_not_found");

    let wrong = shop
        .send(Method::DELETE, "/api/v1/products", None, None)
        .await;
    wrong.problem(405, "method_not_allowed");
    assert!(
        wrong.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?}",
        wrong.headers
    );
    shop.send(
        Method::POST,
        "/api/v1/orders/1",
        Some(&token_for("a")),
        None,
    )
    .await
    .problem(405, "method_not_allowed");
    shop.stop().await;
}

#[tokio::test]
async fn anonymous_callers_are_limited_per_address() {
    let shop = Shop::builder()
        .config(|c| {
            c.rate_limit_per_ip = 0.1;
            c.rate_limit_per_ip_burst = 3;
            // Every admitted request reaches the product service.
            c.catalog_ttl = Duration::ZERO;
        })
        .start()
        .await;
    for _ in 0..3 {
        shop.get("/api/v1/products", None).await.json(200);
    }
    let limited = shop.get("/api/v1/products", None).await;
    limited.problem(429, "rate_limited");
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=10).contains(&retry), "one token every 10 s: {retry}");
    assert_eq!(
        shop.product.knob.calls(),
        3,
        "the limited request went nowhere"
    );
    // Probes are never limited.
    shop.get("/healthz", None).await.json(200);
    // A signed-in user has a bucket of their own.
    shop.get("/api/v1/cart", Some(&token_for("alice")))
        .await
        .json(200);
    shop.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let shop = Shop::builder()
        .config(|c| {
            c.rate_limit_per_ip = 0.1;
            c.rate_limit_per_ip_burst = 2;
            c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("network")];
        })
        .start()
        .await;
    let from = |client: &'static str| {
        let request = shop
            .request(Method::GET, "/api/v1/products", None)
            // What the caller claims (left) is not believed; the proxy's entry is.
            .header("x-forwarded-for", format!("203.0.113.250, {client}"));
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(from("198.51.100.1").await, 200);
    assert_eq!(from("198.51.100.1").await, 200);
    assert_eq!(from("198.51.100.1").await, 429);
    // Another client behind the same proxy has a bucket of its own.
    assert_eq!(from("198.51.100.2").await, 200);
    shop.stop().await;
}

#[tokio::test]
async fn signed_in_users_are_limited_each_on_their_own() {
    let shop = Shop::builder()
        .config(|c| {
            c.rate_limit_per_user = 0.1;
            c.rate_limit_per_user_burst = 2;
        })
        .start()
        .await;
    let alice = token_for("alice");
    for _ in 0..2 {
        shop.get("/api/v1/cart", Some(&alice)).await.json(200);
    }
    let limited = shop.get("/api/v1/cart", Some(&alice)).await;
    limited.problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    shop.get("/api/v1/cart", Some(&token_for("bob")))
        .await
        .json(200);
    shop.stop().await;
}

#[tokio::test]
async fn browsers_get_cors_answers() {
    let shop = Shop::start().await;
    let preflight = read(
        shop.request(Method::OPTIONS, "/api/v1/cart/items", None)
            .header("Origin", "https://shop.example")
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, 200, "{}", preflight.text);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight.header("x-request-id").is_some());
    let simple = read(
        shop.request(Method::GET, "/api/v1/products", None)
            .header("Origin", "https://shop.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(simple.header("access-control-allow-origin"), Some("*"));
    let exposed = simple
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    shop.stop().await;
}

/// A concrete path for a template: `{id}` of orders and checkouts is a UUID.
fn concrete(template: &str) -> String {
    let uuid = uuid::Uuid::new_v4().to_string();
    template
        .replace("/orders/{id}", &format!("/orders/{uuid}"))
        .replace("/checkout/{id}", &format!("/checkout/{uuid}"))
        .replace("{id}", "1")
        .replace("{product_id}", "1")
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_router() {
    let shop = Shop::start().await;
    let reply = shop.get("/openapi.json", None).await;
    let doc = reply.json(200).clone();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = storefront_gateway::endpoints()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    assert_eq!(described, served, "openapi.json and the router disagree");

    // And the live router answers every documented operation (with any
    // answer but "no such route" or "no such method").
    let admin = crate::support::admin_token("ops");
    for (method, template) in &described {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body: Option<Value> =
            matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let reply = shop
            .send(method.clone(), &concrete(template), Some(&admin), body)
            .await;
        let code = reply.body["code"].as_str().unwrap_or_default();
        assert!(
            reply.status != 405 && code != "route_not_found",
            "{method} {template} is documented but not routed: {} {}",
            reply.status,
            reply.text
        );
    }
    shop.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let shop = Shop::builder()
        .config(|c| c.backend_timeout = Duration::from_secs(5))
        .start()
        .await;
    shop.product
        .knob
        .set(crate::support::Mode::Slow(Duration::from_millis(400)));
    let url = shop.url("/api/v1/products/1");
    let http = shop.http.clone();
    let in_flight =
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) });
    // Stop only once the request is inside the gateway, waiting on the backend.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shop.product.knob.calls() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shop.stop().await;
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
}

#[tokio::test]
async fn a_client_that_declares_a_body_and_sends_nothing_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shop = Shop::builder()
        .config(|c| {
            c.checkout_timeout = Duration::from_millis(500);
            c.idle_timeout = Duration::from_secs(1);
        })
        .start()
        .await;
    let addr = shop.base.trim_start_matches("http://").to_owned();
    let token = token_for("slow");
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /api/v1/cart/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stalled.push(stream);
    }
    // Each is closed once nothing moved for the idle timeout, not held on.
    let started = std::time::Instant::now();
    for mut stream in stalled {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "a stalled connection was still open after 10 s"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The gateway still serves everyone else.
    let answer = shop.get("/api/v1/products", None).await;
    assert_eq!(answer.status, 200);
    shop.stop().await;
}

#[tokio::test]
async fn an_idle_timeout_shorter_than_the_checkout_deadline_is_refused_at_start() {
    let mut config = crate::support::config("http://127.0.0.1:9");
    config.idle_timeout = Duration::from_secs(5);
    config.checkout_timeout = Duration::from_secs(15);
    let (listener, _) = storefront_runtime::testing::loopback_listener().await;
    let error = storefront_gateway::run(config, listener, storefront_runtime::Shutdown::default())
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("--gateway-idle-timeout"),
        "{error}"
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_at_its_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shop = Shop::builder()
        .config(|c| c.idle_timeout = Duration::from_secs(60))
        .start()
        .await;
    let addr = shop.base.trim_start_matches("http://").to_owned();
    let token = token_for("trickle");
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/cart/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // One byte every half second keeps the connection busy, never idle.
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(20) {
        let _ = stream.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => break,
            Err(_) => {}
        }
        if answer.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    shop.stop().await;
}
