//! The `storefront` binary as `make run` runs it: `storefront all` as one
//! process serving every service and the gateway, with JSON logs, Prometheus
//! metrics, and a clean exit on SIGTERM.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use reqwest::{Method, StatusCode};
use support::{Options, Shop, http_get};

#[tokio::test]
async fn storefront_all_serves_the_shop_and_stops_on_sigterm() {
    let metrics = support::free_port();
    let mut shop = Shop::start(Options {
        one_process: true,
        metrics: Some(metrics),
        ..Options::default()
    })
    .await;

    // The whole flow through the one process.
    let token = shop.token("pat");
    assert_eq!(
        shop.add_to_cart(&token, 1, 1).await.status,
        StatusCode::CREATED
    );
    let done = shop.checkout(&token, "pat-1", "pm_card_visa").await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let checkout_id = done.body["checkout_id"]
        .as_str()
        .expect("checkout id")
        .to_owned();
    shop.wait_for_order(&token, &checkout_id).await;
    let products = shop.call(Method::GET, "/api/v1/products", "", None).await;
    assert_eq!(products.status, StatusCode::OK);

    let scrape = http_get(metrics, "/metrics");
    assert!(
        scrape.starts_with("HTTP/1.0 200") || scrape.starts_with("HTTP/1.1 200"),
        "{scrape}"
    );
    let counter = |prefix: &str, needle: &str| {
        scrape
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains(needle))
            .unwrap_or_else(|| panic!("no {prefix} with {needle} in:\n{scrape}"))
            .to_owned()
    };
    let rpc = counter("rpc_server_requests_total{", "rpc_method=\"Checkout\"");
    assert!(
        rpc.contains("grpc_code=\"0\"") && rpc.ends_with(" 1"),
        "{rpc}"
    );
    counter("http_server_requests_total{", "/api/v1/products");
    counter("checkout_sagas_total{", "outcome=\"completed\"");
    counter("orders_created_total", "");

    // `storefront healthcheck`, as container health checks run it: gRPC
    // health for a service, an HTTP GET for the gateway's /readyz.
    let healthcheck = |target: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args(["healthcheck", &target])
            .output()
            .expect("run storefront healthcheck")
    };
    let grpc = healthcheck(format!("http://{}", shop.addrs["product"]));
    assert!(
        grpc.status.success(),
        "{}",
        String::from_utf8_lossy(&grpc.stderr)
    );
    let http = healthcheck(format!("http://{}/readyz", shop.addrs["gateway"]));
    assert!(
        http.status.success(),
        "{}",
        String::from_utf8_lossy(&http.stderr)
    );
    let missing = healthcheck(format!("http://{}/no-such-page", shop.addrs["gateway"]));
    assert!(!missing.status.success(), "a 404 is not healthy");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HTTP 404"));

    let status = shop.terminate("all");
    assert!(status.success(), "exit status {status}");
    let log = shop.log("all");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l.get("level").is_some() && l.get("timestamp").is_some())
    );
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(
        messages.contains(&"shutdown signal received; draining"),
        "{messages:?}"
    );
    assert!(messages.contains(&"stopped"), "{messages:?}");
}

/// A port already taken is a start-up error that names the service and the
/// address, with exit code 1 and every other service stopped — not a panic.
/// (`storefront all` is the case where other services already run when the
/// sixth one fails to bind.)
#[test]
fn a_taken_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let checkout = taken.local_addr().expect("address");
    let port = || support::free_port().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["all", "--metrics-listen", "off", "--log-format", "text"])
        .args(["--gateway-listen", &port()])
        .args(["--product-listen", &port()])
        .args(["--cart-listen", &port()])
        .args(["--inventory-listen", &port()])
        .args(["--payment-listen", &port()])
        .args(["--orders-listen", &port()])
        .args(["--checkout-listen", &checkout.to_string()])
        // The services that start first may create files (the catalog's SQLite).
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run storefront all");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("checkout: cannot listen on {checkout}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
