//! The inventory service against a real PostgreSQL (one fresh database per
//! test), through its gRPC API.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use storefront_inventory::{Config, run};
use storefront_proto::inventory::v1 as pb;
use storefront_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use storefront_runtime::testing::{TestServer, fresh_database, reason};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

fn config(database_url: &str, ttl: Duration, sweep: Duration) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url.to_owned(),
        db_max_connections: 10,
        reservation_ttl: ttl,
        sweep_interval: sweep,
    }
}

async fn start_with(
    database_url: &str,
    ttl: Duration,
    sweep: Duration,
) -> (TestServer, InventoryServiceClient<Channel>) {
    let config = config(database_url, ttl, sweep);
    let server = TestServer::start(|listener, shutdown| run(config, listener, shutdown)).await;
    let client = InventoryServiceClient::new(server.channel());
    (server, client)
}

async fn start() -> (TestServer, InventoryServiceClient<Channel>) {
    let db = fresh_database("inventory").await;
    start_with(&db, Duration::from_secs(300), Duration::from_secs(5)).await
}

fn reserve_request(checkout_id: Uuid, lines: &[(i64, i32)]) -> pb::ReserveRequest {
    pb::ReserveRequest {
        checkout_id: checkout_id.to_string(),
        lines: lines
            .iter()
            .map(|&(product_id, quantity)| pb::ReservationLine {
                product_id,
                quantity,
            })
            .collect(),
    }
}

async fn stock(client: &mut InventoryServiceClient<Channel>, product_id: i64) -> pb::StockLevel {
    let answer = client
        .get_stock(pb::GetStockRequest {
            product_ids: vec![product_id],
        })
        .await
        .expect("GetStock");
    answer.into_inner().stock.pop().expect("one stock level")
}

fn status_of(reservation: &pb::Reservation) -> pb::ReservationStatus {
    pb::ReservationStatus::try_from(reservation.status).expect("known status")
}

#[tokio::test]
async fn seeded_stock_is_reported() {
    let (server, mut client) = start().await;
    let answer = client
        .get_stock(pb::GetStockRequest {
            product_ids: vec![1, 2, 3, 4, 5],
        })
        .await
        .expect("GetStock")
        .into_inner();
    let on_hand: Vec<_> = answer
        .stock
        .iter()
        .map(|s| (s.product_id, s.on_hand, s.available))
        .collect();
    assert_eq!(
        on_hand,
        vec![
            (1, 50, 50),
            (2, 200, 200),
            (3, 100, 100),
            (4, 75, 75),
            (5, 150, 150)
        ]
    );
    let unknown = client
        .get_stock(pb::GetStockRequest {
            product_ids: vec![1, 999],
        })
        .await;
    let status = unknown.expect_err("unknown product");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("999"), "{}", status.message());
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn reserve_is_all_or_nothing() {
    let (server, mut client) = start().await;
    let status = client
        .reserve(reserve_request(Uuid::new_v4(), &[(1, 10), (2, 500)]))
        .await
        .expect_err("product 2 is short");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "INSUFFICIENT_STOCK");
    assert!(
        status.message().contains("product 2"),
        "{}",
        status.message()
    );
    assert_eq!(
        stock(&mut client, 1).await.reserved,
        0,
        "line 1 must not stay reserved"
    );
    assert_eq!(stock(&mut client, 2).await.reserved, 0);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn reserve_is_idempotent_per_checkout() {
    let (server, mut client) = start().await;
    let checkout = Uuid::new_v4();
    let first = client
        .reserve(reserve_request(checkout, &[(3, 4), (1, 2)]))
        .await
        .expect("reserve")
        .into_inner();
    let second = client
        .reserve(reserve_request(checkout, &[(3, 4), (1, 2)]))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(first.reservation_id, second.reservation_id);
    assert_eq!(status_of(&second), pb::ReservationStatus::Pending);
    assert_eq!(
        first
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect::<Vec<_>>(),
        vec![(1, 2), (3, 4)]
    );
    assert_eq!(
        stock(&mut client, 3).await.reserved,
        4,
        "reserved once, not twice"
    );
    assert_eq!(stock(&mut client, 1).await.reserved, 2);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn confirm_deducts_for_good_and_is_idempotent() {
    let (server, mut client) = start().await;
    let reservation = client
        .reserve(reserve_request(Uuid::new_v4(), &[(4, 5)]))
        .await
        .expect("reserve")
        .into_inner();
    let id = reservation.reservation_id.clone();
    for _ in 0..2 {
        let confirmed = client
            .confirm(pb::ConfirmRequest {
                reservation_id: id.clone(),
            })
            .await
            .expect("confirm");
        assert_eq!(
            status_of(confirmed.get_ref()),
            pb::ReservationStatus::Confirmed
        );
    }
    let level = stock(&mut client, 4).await;
    assert_eq!(
        (level.on_hand, level.reserved, level.available),
        (70, 0, 70)
    );
    let status = client
        .release(pb::ReleaseRequest { reservation_id: id })
        .await
        .expect_err("confirmed");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "RESERVATION_CONFIRMED");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn release_twice_returns_stock_once() {
    let (server, mut client) = start().await;
    let reservation = client
        .reserve(reserve_request(Uuid::new_v4(), &[(5, 7)]))
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!(stock(&mut client, 5).await.available, 143);
    for _ in 0..2 {
        let released = client
            .release(pb::ReleaseRequest {
                reservation_id: reservation.reservation_id.clone(),
            })
            .await
            .expect("release is idempotent");
        assert_eq!(
            status_of(released.get_ref()),
            pb::ReservationStatus::Released
        );
    }
    let level = stock(&mut client, 5).await;
    assert_eq!((level.on_hand, level.reserved), (150, 0));
    let status = client
        .confirm(pb::ConfirmRequest {
            reservation_id: reservation.reservation_id,
        })
        .await
        .expect_err("released");
    assert_eq!(reason(&status), "RESERVATION_RELEASED");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn sweeper_expires_unconfirmed_reservations() {
    let db = fresh_database("inventory").await;
    let (server, mut client) =
        start_with(&db, Duration::from_secs(1), Duration::from_millis(100)).await;
    let reservation = client
        .reserve(reserve_request(Uuid::new_v4(), &[(1, 20)]))
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!(stock(&mut client, 1).await.reserved, 20);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let current = client
            .get_reservation(pb::GetReservationRequest {
                reservation_id: reservation.reservation_id.clone(),
            })
            .await
            .expect("get reservation")
            .into_inner();
        if status_of(&current) == pb::ReservationStatus::Expired {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reservation never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stock(&mut client, 1).await.reserved,
        0,
        "expiry returns the stock"
    );
    let status = client
        .confirm(pb::ConfirmRequest {
            reservation_id: reservation.reservation_id,
        })
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "RESERVATION_EXPIRED");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn confirm_after_expiry_fails_even_before_the_sweep() {
    let db = fresh_database("inventory").await;
    let (server, mut client) =
        start_with(&db, Duration::from_millis(500), Duration::from_secs(3600)).await;
    let reservation = client
        .reserve(reserve_request(Uuid::new_v4(), &[(2, 3)]))
        .await
        .expect("reserve")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = client
        .confirm(pb::ConfirmRequest {
            reservation_id: reservation.reservation_id.clone(),
        })
        .await
        .expect_err("expired");
    assert_eq!(reason(&status), "RESERVATION_EXPIRED");
    let level = stock(&mut client, 2).await;
    assert_eq!(
        (level.on_hand, level.reserved),
        (200, 0),
        "stock returned, nothing deducted"
    );
    let released = client
        .release(pb::ReleaseRequest {
            reservation_id: reservation.reservation_id,
        })
        .await
        .expect("releasing an expired reservation is a no-op");
    assert_eq!(
        status_of(released.get_ref()),
        pb::ReservationStatus::Expired
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let (server, mut client) = start().await;
    let cases: Vec<(pb::ReserveRequest, Code, &str)> = vec![
        (
            reserve_request(Uuid::new_v4(), &[(1, 0)]),
            Code::InvalidArgument,
            "lines.quantity",
        ),
        (
            reserve_request(Uuid::new_v4(), &[(1, -4)]),
            Code::InvalidArgument,
            "lines.quantity",
        ),
        (
            reserve_request(Uuid::new_v4(), &[]),
            Code::InvalidArgument,
            "lines",
        ),
        (
            reserve_request(Uuid::new_v4(), &[(0, 1)]),
            Code::InvalidArgument,
            "lines.product_id",
        ),
        (
            reserve_request(Uuid::new_v4(), &[(999, 1)]),
            Code::NotFound,
            "999",
        ),
        (
            pb::ReserveRequest {
                checkout_id: "order-1".into(),
                ..reserve_request(Uuid::new_v4(), &[(1, 1)])
            },
            Code::InvalidArgument,
            "checkout_id",
        ),
    ];
    for (request, code, needle) in cases {
        let status = client.reserve(request.clone()).await.expect_err("refused");
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{request:?}: message {:?} lacks {needle}",
            status.message()
        );
    }
    let unknown = Uuid::new_v4().to_string();
    let status = client
        .confirm(pb::ConfirmRequest {
            reservation_id: unknown.clone(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::NotFound, "RESERVATION_NOT_FOUND")
    );
    let status = client
        .release(pb::ReleaseRequest {
            reservation_id: unknown,
        })
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .release(pb::ReleaseRequest {
            reservation_id: "42".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("reservation_id"),
        "{}",
        status.message()
    );
    assert_eq!(
        stock(&mut client, 1).await.reserved,
        0,
        "no refused request reserved anything"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn two_hundred_concurrent_reservations_never_oversell() {
    let (server, client) = start().await;
    let attempts = (0..200).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .reserve(reserve_request(Uuid::new_v4(), &[(1, 1)]))
                .await
        })
    });
    let (mut reserved, mut refused) = (0, 0);
    for attempt in futures::future::join_all(attempts).await {
        match attempt.expect("task") {
            Ok(_) => reserved += 1,
            Err(status) if reason(&status) == "INSUFFICIENT_STOCK" => refused += 1,
            Err(status) => panic!("unexpected error {status:?}"),
        }
    }
    assert_eq!((reserved, refused), (50, 150));
    let level = stock(&mut client.clone(), 1).await;
    assert_eq!(
        (level.on_hand, level.reserved, level.available),
        (50, 50, 0)
    );
    server.stop().await.expect("clean stop");
}

/// A replica killed mid-load and replaced: callers retry with the same
/// checkout id, as the checkout saga does. Every acknowledged reservation
/// survives and none is made twice.
#[tokio::test]
async fn a_killed_service_loses_no_committed_reservation() {
    let db = fresh_database("inventory").await;
    let (first, client) = start_with(&db, Duration::from_secs(300), Duration::from_secs(5)).await;
    let checkouts: Vec<Uuid> = (0..150).map(|_| Uuid::new_v4()).collect();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = checkouts.iter().map(|&checkout| {
        let (mut client, acked) = (client.clone(), acked.clone());
        tokio::spawn(async move {
            let answer = client
                .reserve(reserve_request(checkout, &[(2, 1)]))
                .await
                .ok()
                .map(|r| r.into_inner());
            if answer.is_some() {
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            answer
        })
    });
    let load = tokio::spawn(futures::future::join_all(load));
    // Kill once some calls are acknowledged while the rest are in flight.
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.kill().await;
    let acknowledged: Vec<_> = load
        .await
        .expect("load")
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let before = acknowledged.iter().flatten().count();
    assert!(
        (10..150).contains(&before),
        "the kill must land mid-load: {before} of 150 acknowledged"
    );

    let (second, mut client) =
        start_with(&db, Duration::from_secs(300), Duration::from_secs(5)).await;
    for (checkout, before) in checkouts.iter().zip(&acknowledged) {
        let after = client
            .reserve(reserve_request(*checkout, &[(2, 1)]))
            .await
            .expect("retry")
            .into_inner();
        if let Some(before) = before {
            assert_eq!(
                before.reservation_id, after.reservation_id,
                "an acknowledged reservation changed"
            );
        }
    }
    let level = stock(&mut client, 2).await;
    assert_eq!(level.reserved, 150, "each checkout reserved exactly once");
    println!("acknowledged before the kill: {before} of 150");
    second.stop().await.expect("clean stop");
}
