//! The payment service against a real PostgreSQL (one fresh database per
//! test), through its gRPC API.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sqlx::Connection;
use storefront_payment::{Config, run};
use storefront_proto::common::v1::Money;
use storefront_proto::payment::v1 as pb;
use storefront_proto::payment::v1::payment_service_client::PaymentServiceClient;
use storefront_runtime::testing::{TestServer, fresh_database, reason};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

fn config(database_url: &str, failure_rate: f64, latency: Duration) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url.to_owned(),
        db_max_connections: 10,
        failure_rate,
        latency,
    }
}

async fn start_with(
    db: &str,
    failure_rate: f64,
    latency: Duration,
) -> (TestServer, PaymentServiceClient<Channel>) {
    let config = config(db, failure_rate, latency);
    let server = TestServer::start(|listener, shutdown| run(config, listener, shutdown)).await;
    let client = PaymentServiceClient::new(server.channel());
    (server, client)
}

async fn start() -> (TestServer, PaymentServiceClient<Channel>, String) {
    let db = fresh_database("payment").await;
    let (server, client) = start_with(&db, 0.0, Duration::ZERO).await;
    (server, client, db)
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        amount_minor: minor,
        currency: "USD".into(),
    })
}

fn charge(checkout_id: Uuid, method: &str, minor: i64) -> pb::ChargeRequest {
    pb::ChargeRequest {
        checkout_id: checkout_id.to_string(),
        user_id: "user-1".into(),
        amount: usd(minor),
        payment_method: method.into(),
    }
}

fn status_of(payment: &pb::Payment) -> pb::PaymentStatus {
    pb::PaymentStatus::try_from(payment.status).expect("known status")
}

async fn payment_rows(db: &str, checkout_id: Uuid) -> i64 {
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    count_payments(&mut conn, checkout_id).await
}

async fn count_payments(conn: &mut sqlx::PgConnection, checkout_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments WHERE checkout_id = $1")
        .bind(checkout_id)
        .fetch_one(conn)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_charge_twice_is_one_charge() {
    let (server, mut client, db) = start().await;
    let checkout = Uuid::new_v4();
    let first = client
        .charge(charge(checkout, "pm_card_visa", 129_999))
        .await
        .expect("charge")
        .into_inner();
    assert_eq!(status_of(&first), pb::PaymentStatus::Succeeded);
    assert_eq!(first.amount, usd(129_999));
    let second = client
        .charge(charge(checkout, "pm_card_visa", 129_999))
        .await
        .expect("repeat")
        .into_inner();
    assert_eq!(first.payment_id, second.payment_id);
    assert_eq!(payment_rows(&db, checkout).await, 1);
    let conflicting = client
        .charge(charge(checkout, "pm_card_visa", 1))
        .await
        .expect_err("other amount");
    assert_eq!(
        (conflicting.code(), reason(&conflicting).as_str()),
        (Code::FailedPrecondition, "CONFLICTING_CHARGE")
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_default_method_is_the_succeeding_visa() {
    let (server, mut client, _) = start().await;
    let payment = client
        .charge(charge(Uuid::new_v4(), "", 2999))
        .await
        .expect("charge")
        .into_inner();
    assert_eq!(status_of(&payment), pb::PaymentStatus::Succeeded);
    assert_eq!(payment.payment_method, "pm_card_visa");
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn test_methods_decline_deterministically() {
    let (server, mut client, _) = start().await;
    let cases = [
        ("pm_card_declined", pb::DeclineReason::CardDeclined),
        ("pm_card_insufficient_funds", pb::DeclineReason::NoFunds),
        ("pm_card_expired", pb::DeclineReason::CardExpired),
        ("pm_card_cvc_fail", pb::DeclineReason::InvalidCvc),
    ];
    for (method, expected) in cases {
        let checkout = Uuid::new_v4();
        for _ in 0..2 {
            let payment = client
                .charge(charge(checkout, method, 8999))
                .await
                .expect("a decline is an answer")
                .into_inner();
            assert_eq!(status_of(&payment), pb::PaymentStatus::Declined, "{method}");
            assert_eq!(
                pb::DeclineReason::try_from(payment.decline_reason),
                Ok(expected),
                "{method}"
            );
        }
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn refund_is_idempotent_and_checked() {
    let (server, mut client, _) = start().await;
    let payment = client
        .charge(charge(Uuid::new_v4(), "pm_card_visa", 500))
        .await
        .expect("charge")
        .into_inner();
    for _ in 0..2 {
        let refunded = client
            .refund(pb::RefundRequest {
                payment_id: payment.payment_id.clone(),
            })
            .await
            .expect("refund")
            .into_inner();
        assert_eq!(status_of(&refunded), pb::PaymentStatus::Refunded);
        assert_eq!(refunded.payment_id, payment.payment_id);
    }
    let unknown = client
        .refund(pb::RefundRequest {
            payment_id: Uuid::new_v4().to_string(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(
        (unknown.code(), reason(&unknown).as_str()),
        (Code::NotFound, "PAYMENT_NOT_FOUND")
    );
    let malformed = client
        .refund(pb::RefundRequest {
            payment_id: "ch_123".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("payment_id"),
        "{}",
        malformed.message()
    );
    let declined = client
        .charge(charge(Uuid::new_v4(), "pm_card_declined", 500))
        .await
        .expect("charge")
        .into_inner();
    let status = client
        .refund(pb::RefundRequest {
            payment_id: declined.payment_id,
        })
        .await
        .expect_err("declined");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::FailedPrecondition, "NOT_REFUNDABLE")
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_charges_are_refused_with_the_field_named() {
    let (server, mut client, _) = start().await;
    let good = charge(Uuid::new_v4(), "pm_card_visa", 100);
    let cases = vec![
        (
            pb::ChargeRequest {
                checkout_id: "abc".into(),
                ..good.clone()
            },
            "checkout_id",
        ),
        (
            pb::ChargeRequest {
                checkout_id: String::new(),
                ..good.clone()
            },
            "checkout_id",
        ),
        (
            pb::ChargeRequest {
                user_id: " ".into(),
                ..good.clone()
            },
            "user_id",
        ),
        (
            pb::ChargeRequest {
                amount: None,
                ..good.clone()
            },
            "amount",
        ),
        (
            pb::ChargeRequest {
                amount: usd(0),
                ..good.clone()
            },
            "amount",
        ),
        (
            pb::ChargeRequest {
                amount: usd(-5),
                ..good.clone()
            },
            "amount",
        ),
        (
            pb::ChargeRequest {
                amount: Some(Money {
                    amount_minor: 100,
                    currency: "dollars".into(),
                }),
                ..good.clone()
            },
            "amount",
        ),
        (
            pb::ChargeRequest {
                payment_method: "pm_bitcoin".into(),
                ..good.clone()
            },
            "payment_method",
        ),
    ];
    for (request, field) in cases {
        let status = client.charge(request.clone()).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        assert!(
            status.message().starts_with(field),
            "{request:?}: {:?} should name {field}",
            status.message()
        );
    }
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_provider_outage_charges_nothing_and_a_retry_succeeds() {
    let db = fresh_database("payment").await;
    let (down, mut client) = start_with(&db, 1.0, Duration::ZERO).await;
    let checkout = Uuid::new_v4();
    let status = client
        .charge(charge(checkout, "pm_card_visa", 700))
        .await
        .expect_err("outage");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "PROVIDER_UNAVAILABLE")
    );
    assert_eq!(payment_rows(&db, checkout).await, 0);
    down.stop().await.expect("clean stop");
    let (up, mut client) = start_with(&db, 0.0, Duration::ZERO).await;
    let payment = client
        .charge(charge(checkout, "pm_card_visa", 700))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(status_of(&payment), pb::PaymentStatus::Succeeded);
    up.stop().await.expect("clean stop");
}

#[tokio::test]
async fn latency_is_simulated() {
    let db = fresh_database("payment").await;
    let (server, mut client) = start_with(&db, 0.0, Duration::from_millis(300)).await;
    let started = Instant::now();
    client
        .charge(charge(Uuid::new_v4(), "pm_card_visa", 100))
        .await
        .expect("charge");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_charges_of_one_checkout_charge_once() {
    let (server, client, db) = start().await;
    let checkout = Uuid::new_v4();
    let calls = (0..20).map(|_| {
        let mut client = client.clone();
        tokio::spawn(async move { client.charge(charge(checkout, "pm_card_visa", 2500)).await })
    });
    let ids: std::collections::HashSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("charge").into_inner().payment_id)
        .collect();
    assert_eq!(ids.len(), 1, "every caller sees the one charge");
    assert_eq!(payment_rows(&db, checkout).await, 1);
    server.stop().await.expect("clean stop");
}

/// A replica killed mid-load and replaced: callers retry with the same
/// checkout id. Every acknowledged charge survives and none is made twice.
#[tokio::test]
async fn a_killed_service_loses_no_committed_charge() {
    let db = fresh_database("payment").await;
    let (first, client) = start_with(&db, 0.0, Duration::ZERO).await;
    let checkouts: Vec<Uuid> = (0..150).map(|_| Uuid::new_v4()).collect();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = checkouts.iter().map(|&checkout| {
        let (mut client, acked) = (client.clone(), acked.clone());
        tokio::spawn(async move {
            let answer = client
                .charge(charge(checkout, "pm_card_visa", 1000))
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

    let (second, mut client) = start_with(&db, 0.0, Duration::ZERO).await;
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    for (checkout, before) in checkouts.iter().zip(&acknowledged) {
        let after = client
            .charge(charge(*checkout, "pm_card_visa", 1000))
            .await
            .expect("retry")
            .into_inner();
        if let Some(before) = before {
            assert_eq!(
                before.payment_id, after.payment_id,
                "an acknowledged charge changed"
            );
        }
        assert_eq!(count_payments(&mut conn, *checkout).await, 1);
    }
    println!("acknowledged before the kill: {before} of 150");
    second.stop().await.expect("clean stop");
}
