//! The product service through its gRPC API, on SQLite (the default) and on a
//! real PostgreSQL, plus the health and reflection services every Storefront
//! server offers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use storefront_product::{Config, run};
use storefront_proto::product::v1 as pb;
use storefront_proto::product::v1::product_service_client::ProductServiceClient;
use storefront_runtime::testing::{TestServer, fresh_database, reason};
use tonic::Code;
use tonic::transport::Channel;

async fn start(database_url: String) -> (TestServer, ProductServiceClient<Channel>) {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url,
        db_max_connections: 4,
    };
    let server = TestServer::start(|listener, shutdown| run(config, listener, shutdown)).await;
    let client = ProductServiceClient::new(server.channel());
    (server, client)
}

fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("catalog.db").display()
    );
    (dir, url)
}

/// The seeded catalog and every RPC's happy and unhappy paths.
async fn exercise_catalog(client: &mut ProductServiceClient<Channel>) {
    let all = client
        .list_products(pb::ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    let summary: Vec<_> = all
        .products
        .iter()
        .map(|p| {
            (
                p.id,
                p.name.as_str(),
                p.price
                    .as_ref()
                    .map(|m| (m.amount_minor, m.currency.as_str())),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "Laptop", Some((129_999, "USD"))),
            (2, "Mouse", Some((2_999, "USD"))),
            (3, "Keyboard", Some((8_999, "USD"))),
            (4, "Monitor", Some((39_999, "USD"))),
            (5, "Headphones", Some((24_999, "USD"))),
        ]
    );
    assert_eq!(all.next_page_token, "");

    // Paging: 2 + 2 + 1.
    let mut token = String::new();
    let mut pages = Vec::new();
    loop {
        let page = client
            .list_products(pb::ListProductsRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("page")
            .into_inner();
        pages.push(page.products.iter().map(|p| p.id).collect::<Vec<_>>());
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, vec![vec![1, 2], vec![3, 4], vec![5]]);

    let laptop = client
        .get_product(pb::GetProductRequest { product_id: 1 })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(laptop.name, "Laptop");
    assert!(!laptop.description.is_empty() && !laptop.image_url.is_empty());

    let missing = client
        .get_product(pb::GetProductRequest { product_id: 999 })
        .await
        .expect_err("unknown");
    assert_eq!(
        (missing.code(), reason(&missing).as_str()),
        (Code::NotFound, "PRODUCT_NOT_FOUND")
    );
    for bad in [0, -1] {
        let status = client
            .get_product(pb::GetProductRequest { product_id: bad })
            .await
            .expect_err("malformed");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("product_id"),
            "{}",
            status.message()
        );
    }

    let batch = client
        .get_products(pb::GetProductsRequest {
            product_ids: vec![3, 42, 1, 3],
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(
        batch.products.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![3, 1]
    );
    assert_eq!(batch.missing_ids, vec![42]);

    let validation = client
        .validate_products(pb::ValidateProductsRequest {
            product_ids: vec![2, 77],
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(!validation.all_exist);
    assert_eq!(
        validation
            .results
            .iter()
            .map(|r| (r.product_id, r.exists))
            .collect::<Vec<_>>(),
        vec![(2, true), (77, false)]
    );
    assert_eq!(
        validation.results[0]
            .product
            .as_ref()
            .map(|p| p.name.as_str()),
        Some("Mouse")
    );
    let valid = client
        .validate_products(pb::ValidateProductsRequest {
            product_ids: vec![5, 4],
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(valid.all_exist);

    let empty = client
        .get_products(pb::GetProductsRequest {
            product_ids: vec![],
        })
        .await
        .expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(
        empty.message().starts_with("product_ids"),
        "{}",
        empty.message()
    );
    let too_many = client
        .validate_products(pb::ValidateProductsRequest {
            product_ids: (1..=101).collect(),
        })
        .await
        .expect_err("too many");
    assert_eq!(too_many.code(), Code::InvalidArgument);
    let bad_token = client
        .list_products(pb::ListProductsRequest {
            page_size: 2,
            page_token: "xyz".into(),
        })
        .await
        .expect_err("bad token");
    assert!(
        bad_token.message().starts_with("page_token"),
        "{}",
        bad_token.message()
    );
    let bad_size = client
        .list_products(pb::ListProductsRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect_err("bad size");
    assert!(
        bad_size.message().starts_with("page_size"),
        "{}",
        bad_size.message()
    );
}

#[tokio::test]
async fn catalog_on_sqlite() {
    let (_dir, url) = sqlite_url();
    let (server, mut client) = start(url.clone()).await;
    exercise_catalog(&mut client).await;
    server.stop().await.expect("clean stop");
    // A restart finds the catalog as it was: migrations and seed are idempotent.
    let (server, mut client) = start(url).await;
    exercise_catalog(&mut client).await;
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn catalog_on_postgres() {
    let url = fresh_database("product").await;
    let (server, mut client) = start(url.clone()).await;
    exercise_catalog(&mut client).await;
    server.stop().await.expect("clean stop");
    let (server, mut client) = start(url).await;
    exercise_catalog(&mut client).await;
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let (_dir, url) = sqlite_url();
    let (server, _) = start(url).await;
    let mut health = HealthClient::new(server.channel());
    let answer = health
        .check(HealthCheckRequest {
            service: "storefront.product.v1.ProductService".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);

    let mut reflection = ServerReflectionClient::new(server.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("stream")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"storefront.product.v1.ProductService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    server.stop().await.expect("clean stop");
}
