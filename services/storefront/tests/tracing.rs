//! One OpenTelemetry trace across every hop: `storefront all` exports its
//! spans over OTLP/gRPC to a receiver inside the test, and the assertions are
//! made from the exported spans alone. Plus metrics that move and log lines
//! that carry the trace id.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use reqwest::{Method, StatusCode};
use support::{Options, Shop, http_get};

/// One exported span, flattened with its service's name.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    links: Vec<String>,
    attributes: HashMap<String, String>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/gRPC trace receiver that keeps what it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(Exported {
                        service: service.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// The spans of one trace received so far.
    fn trace(&self, trace_id: &str) -> Vec<Exported> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// Every span of a trace, a line each, for failure messages.
fn describe(spans: &[Exported]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} kind={} parent={}",
                s.service, s.name, s.span_id, s.kind, s.parent
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The environment that makes the shop export every span to `otlp`, quickly.
fn exporting_to(otlp: SocketAddr) -> Vec<(String, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{otlp}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("OTEL_TRACES_SAMPLER".into(), "always_on".into()),
    ]
}

async fn start_receiver() -> (Receiver, SocketAddr) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("OTLP receiver");
    });
    (receiver, addr)
}

/// The sum of a metric's samples whose labels contain `needle`.
fn metric(scrape: &str, name: &str, needle: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(needle)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const KIND_SERVER: i32 = SpanKind::Server as i32;
const KIND_CLIENT: i32 = SpanKind::Client as i32;
const KIND_PRODUCER: i32 = SpanKind::Producer as i32;
const KIND_CONSUMER: i32 = SpanKind::Consumer as i32;

#[tokio::test]
async fn one_checkout_is_one_trace_across_every_hop() {
    let (receiver, otlp) = start_receiver().await;
    let metrics = support::free_port();
    let mut shop = Shop::start(Options {
        one_process: true,
        metrics: Some(metrics),
        env: exporting_to(otlp),
        ..Options::default()
    })
    .await;
    let before = http_get(metrics, "/metrics");

    let token = shop.token("tracy");
    assert_eq!(
        shop.add_to_cart(&token, 1, 1).await.status,
        StatusCode::CREATED
    );
    // The customer looks at the cart (read through the cache; the checkout
    // itself reads the committed cart past it).
    let cart = shop.call(Method::GET, "/api/v1/cart", &token, None).await;
    assert_eq!(cart.status, StatusCode::OK);
    // The caller's trace: the gateway continues it.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let done = shop
        .call_with(
            Method::POST,
            "/api/v1/checkout",
            &token,
            Some(serde_json::json!({ "payment_method": "pm_card_visa" })),
            &[
                ("Idempotency-Key", "tracy-1"),
                ("traceparent", &traceparent),
                ("baggage", "tenant=e2e"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let checkout_id = done.body["checkout_id"].as_str().expect("id").to_owned();
    shop.wait_for_order(&token, &checkout_id).await;

    // Wait for the whole trace: both consumers' processing spans included.
    let spans: Vec<Exported> = support::eventually("the checkout's spans", 30, || {
        let receiver = receiver.clone();
        let trace_id = trace_id.clone();
        async move {
            let spans = receiver.trace(&trace_id);
            let consumers: BTreeSet<&str> = spans
                .iter()
                .filter(|s| s.kind == KIND_CONSUMER)
                .map(|s| s.service.as_str())
                .collect();
            (consumers.contains("storefront-orders") && consumers.contains("storefront-cart"))
                .then_some(spans)
        }
    })
    .await;
    let by_id: HashMap<&str, &Exported> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_of = |span: &Exported| by_id.get(span.parent.as_str()).copied();
    let describe = || describe(&spans);

    // Every service took part in the one trace.
    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    for service in [
        "gateway",
        "cart",
        "product",
        "checkout",
        "inventory",
        "payment",
        "orders",
    ] {
        assert!(
            services.contains(format!("storefront-{service}").as_str()),
            "no span of {service} in the trace:\n{}",
            describe()
        );
    }

    // The gateway's HTTP server span is the child of the caller's span.
    let http = spans
        .iter()
        .find(|s| s.service == "storefront-gateway" && s.kind == KIND_SERVER)
        .unwrap_or_else(|| panic!("no gateway server span:\n{}", describe()));
    assert_eq!(http.parent, caller_span, "{http:?}");
    assert_eq!(http.attr("http.request.method"), Some("POST"));
    assert_eq!(http.attr("http.route"), Some("/api/v1/checkout"));
    assert_eq!(http.attr("http.response.status_code"), Some("201"));

    // gateway → checkout → inventory and payment: each server span's parent
    // is a client span of the caller, with the rpc attributes.
    let server_called_by = |service: &str, method: &str, caller: &str| {
        let server = spans
            .iter()
            .find(|s| {
                s.service == format!("storefront-{service}")
                    && s.kind == KIND_SERVER
                    && s.attr("rpc.method") == Some(method)
            })
            .unwrap_or_else(|| panic!("no {service} {method} server span:\n{}", describe()));
        let client = parent_of(server).unwrap_or_else(|| {
            panic!("{service} {method} has no exported parent:\n{}", describe())
        });
        assert_eq!(client.kind, KIND_CLIENT, "{client:?}");
        assert_eq!(client.service, format!("storefront-{caller}"), "{client:?}");
        assert_eq!(client.attr("rpc.system"), Some("grpc"));
        assert_eq!(client.attr("rpc.method"), Some(method));
        assert_eq!(server.attr("rpc.system"), Some("grpc"));
        server
    };
    let checkout = server_called_by("checkout", "Checkout", "gateway");
    let mut ancestor = parent_of(checkout);
    while let Some(span) = ancestor.filter(|s| s.span_id != http.span_id) {
        ancestor = parent_of(span);
    }
    assert!(
        ancestor.is_some(),
        "checkout's call does not descend from the HTTP span"
    );
    let inventory = spans
        .iter()
        .find(|s| s.service == "storefront-inventory" && s.kind == KIND_SERVER)
        .expect("an inventory server span");
    let payment = spans
        .iter()
        .find(|s| s.service == "storefront-payment" && s.kind == KIND_SERVER)
        .expect("a payment server span");
    for server in [inventory, payment] {
        let client = parent_of(server).expect("an exported client span");
        assert_eq!(client.service, "storefront-checkout", "{client:?}");
        assert_eq!(client.kind, KIND_CLIENT);
    }

    // The checkout transaction → the relay's producer span → both consumers.
    let producers: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.kind == KIND_PRODUCER && s.service == "storefront-checkout")
        .collect();
    assert!(!producers.is_empty(), "no producer span:\n{}", describe());
    let producer = producers[0];
    assert_eq!(producer.attr("messaging.system"), Some("kafka"));
    assert_eq!(
        producer.attr("messaging.destination.name"),
        Some(shop.checkout_topic.as_str())
    );
    // Its parent is in checkout, a descendant of the Checkout RPC.
    let mut up = parent_of(producer);
    while let Some(span) = up.filter(|s| s.span_id != checkout.span_id) {
        up = parent_of(span);
    }
    assert!(
        up.is_some(),
        "the producer span does not descend from the Checkout RPC:\n{}",
        describe()
    );
    for service in ["storefront-orders", "storefront-cart"] {
        let consumer = spans
            .iter()
            .find(|s| s.kind == KIND_CONSUMER && s.service == service)
            .expect("a consumer span");
        assert_eq!(consumer.parent, producer.span_id, "{consumer:?}");
        assert!(consumer.links.contains(&producer.span_id), "{consumer:?}");
        assert_eq!(consumer.attr("messaging.system"), Some("kafka"));
        assert_eq!(consumer.attr("messaging.operation.type"), Some("process"));
    }

    // SQL and Redis client spans, with their attributes and no values.
    let sql: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.attr("db.system.name") == Some("postgresql"))
        .collect();
    assert!(
        sql.iter().any(|s| s.service == "storefront-checkout"
            && s.attr("db.operation.name") == Some("INSERT")
            && s.attr("db.collection.name") == Some("outbox")),
        "no outbox INSERT span:\n{}",
        describe()
    );
    assert!(
        sql.iter()
            .all(|s| s.kind == KIND_CLIENT && s.attr("db.query.text").is_none())
    );
    let services_with_sql: BTreeSet<&str> = sql.iter().map(|s| s.service.as_str()).collect();
    for service in [
        "storefront-inventory",
        "storefront-payment",
        "storefront-orders",
    ] {
        assert!(
            services_with_sql.contains(service),
            "no SQL span in {service}"
        );
    }
    // The catalog on SQLite (the product service's default store).
    assert!(
        spans.iter().any(|s| s.service == "storefront-product"
            && s.kind == KIND_CLIENT
            && s.attr("db.system.name") == Some("sqlite")
            && s.attr("db.operation.name") == Some("SELECT")
            && s.attr("db.collection.name") == Some("products")
            && s.attr("db.query.text").is_none()),
        "no SQLite span in the product service:\n{}",
        describe()
    );
    let redis = spans
        .iter()
        .find(|s| s.attr("db.system.name") == Some("redis"))
        .unwrap_or_else(|| panic!("no Redis span:\n{}", describe()));
    assert_eq!(redis.service, "storefront-cart");
    assert_eq!(redis.kind, KIND_CLIENT);
    assert!(matches!(
        redis.attr("db.operation.name"),
        Some("GET" | "SET" | "DEL")
    ));

    // Metrics moved with the traffic.
    let after = http_get(metrics, "/metrics");
    for (name, needle) in [
        ("http_server_requests_total", "route=\"/api/v1/checkout\""),
        ("rpc_server_requests_total", "rpc_method=\"Checkout\""),
        ("checkout_sagas_total", "outcome=\"completed\""),
        ("outbox_published_total", ""),
        ("cart_cache_requests_total", ""),
    ] {
        assert!(
            metric(&after, name, needle) > metric(&before, name, needle),
            "{name}{{{needle}}} did not move:\n{after}"
        );
    }

    assert!(after.contains("outbox_relay_lag_seconds_count"), "{after}");
    // Gauges refreshed every few seconds.
    support::eventually("the outbox backlog and consumer lag gauges", 20, || async {
        let scrape = http_get(metrics, "/metrics");
        (scrape.contains("outbox_backlog")
            && scrape.contains("kafka_consumer_lag{group=")
            && scrape.contains(&format!("topic=\"{}\"", shop.checkout_topic)))
        .then_some(())
    })
    .await;

    // Log lines written inside the checkout's spans carry its trace id.
    let status = shop.terminate("all");
    assert!(status.success(), "exit status {status}");
    let log = shop.log("all");
    let traced: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["trace_id"].as_str() == Some(trace_id.as_str()))
        .collect();
    assert!(!traced.is_empty(), "no log line with trace id {trace_id}");
    assert!(
        traced
            .iter()
            .all(|l| l["span_id"].as_str().is_some_and(|s| s.len() == 16))
    );
    assert!(
        traced.iter().any(|l| l["message"] == "request served"),
        "{traced:?}"
    );
    // Lines written outside any span carry no ids.
    assert!(
        log.lines()
            .any(|l| l.contains("\"stopped\"") && !l.contains("trace_id"))
    );
}

/// A checkout placed from the web page continues the browser's trace: the
/// web's server span is the caller's child, its gateway call a client span,
/// and the gateway and checkout spans hang below it in the same trace.
#[tokio::test]
async fn a_checkout_from_the_web_page_continues_the_browsers_trace() {
    let (receiver, otlp) = start_receiver().await;
    let shop = Shop::start(Options {
        one_process: true,
        env: exporting_to(otlp),
        ..Options::default()
    })
    .await;
    let mut browser = support::web::WebClient::new(&shop.web_base);
    browser.sign_in("Trace Ray").await;
    assert_eq!(
        browser.add_to_cart(2, 1).await.status,
        StatusCode::SEE_OTHER
    );
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let placed = browser
        .checkout("pm_card_visa", &[("traceparent", traceparent.as_str())])
        .await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);

    let spans: Vec<Exported> = support::eventually("the web checkout's spans", 30, || {
        let receiver = receiver.clone();
        let trace_id = trace_id.clone();
        async move {
            let spans = receiver.trace(&trace_id);
            // Each service exports on its own schedule: wait for the server
            // span of every hop asserted on below, not only the last one's.
            [
                "storefront-web",
                "storefront-gateway",
                "storefront-checkout",
            ]
            .iter()
            .all(|service| {
                spans
                    .iter()
                    .any(|s| s.service == *service && s.kind == KIND_SERVER)
            })
            .then_some(spans)
        }
    })
    .await;
    let describe = || describe(&spans);
    let by_id: HashMap<&str, &Exported> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let page = spans
        .iter()
        .find(|s| s.service == "storefront-web" && s.kind == KIND_SERVER)
        .unwrap_or_else(|| panic!("no web server span:\n{}", describe()));
    assert_eq!(page.parent, caller_span, "{page:?}");
    assert_eq!(page.attr("http.route"), Some("/checkout"));
    let gateway = spans
        .iter()
        .find(|s| {
            s.service == "storefront-gateway"
                && s.kind == KIND_SERVER
                && s.attr("http.route") == Some("/api/v1/checkout")
        })
        .unwrap_or_else(|| panic!("no gateway checkout span:\n{}", describe()));
    let call = by_id.get(gateway.parent.as_str()).unwrap_or_else(|| {
        panic!(
            "the gateway span's parent was not exported:\n{}",
            describe()
        )
    });
    assert_eq!(call.service, "storefront-web", "{call:?}");
    assert_eq!(call.kind, KIND_CLIENT, "{call:?}");
    assert_eq!(call.parent, page.span_id, "{call:?}");
}
