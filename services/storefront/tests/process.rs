//! The `storefront` binary as an operator runs it: `storefront all` as a real
//! process on loopback ports, serving every service, JSON logs, Prometheus
//! metrics, and a clean exit on SIGTERM.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use storefront_proto::product::v1::GetProductRequest;
use storefront_proto::product::v1::product_service_client::ProductServiceClient;
use storefront_runtime::testing::fresh_database;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// Kills the child if the test fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

async fn wait_serving(addr: SocketAddr, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel =
        storefront_runtime::client::channel(&format!("http://{addr}"), Duration::from_secs(5))
            .expect("channel");
    loop {
        let answer = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await;
        if answer.is_ok_and(|a| a.get_ref().status == ServingStatus::Serving as i32) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} at {addr} not serving within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    body
}

#[tokio::test]
async fn storefront_all_serves_every_service_and_stops_on_sigterm() {
    let catalog_dir = tempfile::tempdir().expect("temp dir");
    let (product, inventory, payment, metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .arg("all")
        .args(["--product-listen", &product.to_string()])
        .args(["--inventory-listen", &inventory.to_string()])
        .args(["--payment-listen", &payment.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .env(
            "PRODUCT_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                catalog_dir.path().join("catalog.db").display()
            ),
        )
        .env("INVENTORY_DATABASE_URL", fresh_database("process").await)
        .env("PAYMENT_DATABASE_URL", fresh_database("process").await)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start storefront all");
    let mut running = Running(child);

    wait_serving(product, "storefront.product.v1.ProductService").await;
    wait_serving(inventory, "storefront.inventory.v1.InventoryService").await;
    wait_serving(payment, "storefront.payment.v1.PaymentService").await;

    let channel =
        storefront_runtime::client::channel(&format!("http://{product}"), Duration::from_secs(5))
            .expect("channel");
    let laptop = ProductServiceClient::new(channel)
        .get_product(GetProductRequest { product_id: 1 })
        .await
        .expect("GetProduct")
        .into_inner();
    assert_eq!(laptop.name, "Laptop");

    let scrape = http_get(metrics, "/metrics");
    assert!(
        scrape.starts_with("HTTP/1.0 200") || scrape.starts_with("HTTP/1.1 200"),
        "{scrape}"
    );
    let line = scrape
        .lines()
        .find(|l| {
            l.starts_with("rpc_server_requests_total{") && l.contains("rpc_method=\"GetProduct\"")
        })
        .unwrap_or_else(|| panic!("no GetProduct counter in:\n{scrape}"));
    assert!(
        line.contains("grpc_code=\"0\"") && line.ends_with(" 1"),
        "{line}"
    );

    let pid = running.0.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "storefront did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");

    let stdout = running.0.stdout.take().expect("stdout");
    let lines: Vec<serde_json::Value> = BufReader::new(stdout)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("log line")).expect("every log line is JSON"))
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
