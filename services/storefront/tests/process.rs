//! The `storefront` binary as `make run` runs it: `storefront all` as one
//! process serving every service and the gateway, with JSON logs, Prometheus
//! metrics, gRPC reflection (v1 and v1alpha) per port, and a clean exit on
//! SIGTERM; and one service alone with its reflection.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

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

    // Reflection, in both versions, lists on each port only what it serves.
    for (name, service) in GRPC_SERVICES {
        let [v1, v1alpha] = reflect(shop.addrs[name], service).await;
        assert_eq!(v1, expected_listing(service), "{name}: v1");
        assert_eq!(v1alpha, expected_listing(service), "{name}: v1alpha");
    }

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

/// The gRPC service each `storefront all` port serves.
const GRPC_SERVICES: [(&str, &str); 6] = [
    ("product", "storefront.product.v1.ProductService"),
    ("cart", "storefront.cart.v1.CartService"),
    ("inventory", "storefront.inventory.v1.InventoryService"),
    ("payment", "storefront.payment.v1.PaymentService"),
    ("orders", "storefront.orders.v1.OrderService"),
    ("checkout", "storefront.checkout.v1.CheckoutService"),
];

/// What reflection at `addr` should list when it serves `service`.
fn expected_listing(service: &str) -> BTreeSet<String> {
    [
        service,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Asks the server at `addr` through `grpc.reflection.v1` and through
/// `grpc.reflection.v1alpha` (as older grpcurl, Postman or grpcio-reflection
/// do) for its services, and for the file that defines `service`; returns
/// each version's listing.
async fn reflect(addr: SocketAddr, service: &str) -> [BTreeSet<String>; 2] {
    use tonic_reflection::pb::{v1, v1alpha};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    let ask = |request| {
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        async move {
            let mut answers = client
                .server_reflection_info(tokio_stream::once(v1::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                }))
                .await
                .expect("v1 reflection")
                .into_inner();
            answers
                .message()
                .await
                .expect("v1 answer")
                .and_then(|a| a.message_response)
                .expect("a v1 response")
        }
    };
    use v1::server_reflection_request::MessageRequest as V1Request;
    use v1::server_reflection_response::MessageResponse as V1Response;
    let V1Response::ListServicesResponse(listed) =
        ask(V1Request::ListServices(String::new())).await
    else {
        panic!("v1: not a service list");
    };
    let v1_listing = listed.service.into_iter().map(|s| s.name).collect();
    let V1Response::FileDescriptorResponse(file) =
        ask(V1Request::FileContainingSymbol(service.to_owned())).await
    else {
        panic!("v1: no file for {service}");
    };
    assert!(
        !file.file_descriptor_proto.is_empty(),
        "v1: empty file for {service}"
    );

    let ask = |request| {
        let mut client =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
        async move {
            let mut answers = client
                .server_reflection_info(tokio_stream::once(v1alpha::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                }))
                .await
                .expect("v1alpha reflection")
                .into_inner();
            answers
                .message()
                .await
                .expect("v1alpha answer")
                .and_then(|a| a.message_response)
                .expect("a v1alpha response")
        }
    };
    use v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let AlphaResponse::ListServicesResponse(listed) =
        ask(AlphaRequest::ListServices(String::new())).await
    else {
        panic!("v1alpha: not a service list");
    };
    let alpha_listing = listed.service.into_iter().map(|s| s.name).collect();
    let AlphaResponse::FileDescriptorResponse(file) =
        ask(AlphaRequest::FileContainingSymbol(service.to_owned())).await
    else {
        panic!("v1alpha: no file for {service}");
    };
    assert!(
        !file.file_descriptor_proto.is_empty(),
        "v1alpha: empty file for {service}"
    );
    [v1_listing, alpha_listing]
}

/// A child process killed when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `storefront product` alone: reflection in both versions lists the
/// catalog, health and reflection, nothing else.
#[tokio::test]
async fn a_single_service_lists_itself_through_both_reflection_versions() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let addr = support::free_port();
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args(["product", "--metrics-listen", "off", "--log-format", "text"])
            .args(["--product-listen", &addr.to_string()])
            .arg("--product-database-url")
            .arg(format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("catalog.db").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start storefront product"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "storefront product is not listening on {addr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let service = "storefront.product.v1.ProductService";
    let [v1, v1alpha] = reflect(addr, service).await;
    assert_eq!(v1, expected_listing(service), "v1");
    assert_eq!(v1alpha, expected_listing(service), "v1alpha");
}
