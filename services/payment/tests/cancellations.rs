//! Refunds of cancelled orders: OrderStatusChanged events go in through a
//! real Kafka (a topic and consumer group of its own per test), charges are
//! made and read back through gRPC, refunds are counted in a real
//! PostgreSQL (a fresh database per test).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use storefront_payment::{Config, OrderEventsConfig, run_with_order_events};
use storefront_proto::common::v1::Money;
use storefront_proto::payment::v1 as pb;
use storefront_proto::payment::v1::payment_service_client::PaymentServiceClient;

use storefront_runtime::testing::{OrderEventsTopic, TestServer, fresh_database};
use tonic::transport::Channel;
use uuid::Uuid;

/// How long a test waits for an event to travel through Kafka and the service.
const PATIENCE: Duration = Duration::from_secs(60);

/// One test's world: its own database, order topic and consumer group.
struct Fixture {
    database_url: String,
    events: OrderEventsTopic,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture {
            database_url: fresh_database("payment_refunds").await,
            events: OrderEventsTopic::new("payment").await,
        }
    }

    /// A payment service refunding cancellations as consumer group `group`.
    async fn start_in(&self, group: &str) -> (TestServer, PaymentServiceClient<Channel>) {
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: self.database_url.clone(),
            db_max_connections: 10,
            failure_rate: 0.0,
            latency: Duration::ZERO,
        };
        let order_events = OrderEventsConfig {
            kafka_bootstrap: self.events.bootstrap.clone(),
            order_topic: self.events.topic.clone(),
            consumer_group: group.to_owned(),
        };
        let server = TestServer::start(|listener, shutdown| {
            run_with_order_events(config, order_events, listener, shutdown)
        })
        .await;
        let client = PaymentServiceClient::new(server.channel());
        (server, client)
    }

    async fn start(&self) -> (TestServer, PaymentServiceClient<Channel>) {
        self.start_in(&self.events.group).await
    }

    async fn db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url)
            .await
            .expect("test database")
    }

    /// Refund rows of `checkout_id`'s charge.
    async fn refunds(&self, checkout_id: Uuid) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM refunds JOIN payments ON payments.id = refunds.payment_id \
             WHERE payments.checkout_id = $1",
        )
        .bind(checkout_id)
        .fetch_one(&self.db().await)
        .await
        .expect("count refunds")
    }
}

fn user() -> String {
    format!("user-{}", Uuid::new_v4().simple())
}

async fn charge(
    client: &mut PaymentServiceClient<Channel>,
    user: &str,
    method: &str,
    minor: i64,
) -> pb::Payment {
    client
        .charge(pb::ChargeRequest {
            checkout_id: Uuid::new_v4().to_string(),
            user_id: user.to_owned(),
            amount: Some(Money {
                amount_minor: minor,
                currency: "USD".into(),
            }),
            payment_method: method.into(),
        })
        .await
        .expect("charge")
        .into_inner()
}

async fn payment(client: &mut PaymentServiceClient<Channel>, id: &str) -> pb::Payment {
    client
        .get_payment(pb::GetPaymentRequest {
            payment_id: id.to_owned(),
        })
        .await
        .expect("GetPayment")
        .into_inner()
}

fn status_of(payment: &pb::Payment) -> pb::PaymentStatus {
    pb::PaymentStatus::try_from(payment.status).expect("known status")
}

fn checkout_of(payment: &pb::Payment) -> Uuid {
    Uuid::parse_str(&payment.checkout_id).expect("checkout id")
}

/// Waits until payment `id` is REFUNDED.
async fn wait_refunded(client: &mut PaymentServiceClient<Channel>, id: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if status_of(&payment(client, id).await) == pb::PaymentStatus::Refunded {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "payment {id} not refunded after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_cancelled_order_is_refunded_in_full_once_however_often_it_is_announced() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let buyer = user();
    let charged = charge(&mut client, &buyer, "pm_card_visa", 138_996).await;
    assert_eq!(status_of(&charged), pb::PaymentStatus::Succeeded);
    let checkout = checkout_of(&charged);

    // Other changes of the order take no money back.
    fx.events
        .status_changed(&buyer, &charged.checkout_id, "CONFIRMED", "PROCESSING")
        .await;
    let cancelled = fx.events.cancel(&buyer, checkout).await;
    wait_refunded(&mut client, &charged.payment_id).await;
    let refund: (i64, String) =
        sqlx::query_as("SELECT amount_minor, currency FROM refunds WHERE payment_id = $1::uuid")
            .bind(&charged.payment_id)
            .fetch_one(&fx.db().await)
            .await
            .expect("the refund row");
    assert_eq!(refund, (138_996, "USD".to_owned()), "in full");

    // The very record again (a relay that republished it) and the same
    // cancellation under a new event id.
    fx.events.publish(&cancelled).await;
    fx.events.cancel(&buyer, checkout).await;
    // Same key, same partition: once this one is refunded, the repeats were handled.
    let marker = charge(&mut client, &buyer, "pm_card_visa", 2_999).await;
    fx.events.cancel(&buyer, checkout_of(&marker)).await;
    wait_refunded(&mut client, &marker.payment_id).await;

    assert_eq!(fx.refunds(checkout).await, 1, "one refund for the checkout");
    let again = payment(&mut client, &charged.payment_id).await;
    assert_eq!(status_of(&again), pb::PaymentStatus::Refunded);
    assert_eq!(fx.events.dead_letters(), 0, "a repeat is no error");

    server.stop().await.expect("clean stop");
    fx.events.remove().await;
}

#[tokio::test]
async fn cancellations_handled_at_once_by_two_consumers_refund_once() {
    let fx = Fixture::new().await;
    // Two members of different groups both receive every record, so each
    // cancellation is refunded by two handlers at the same moment.
    let (first, mut client) = fx.start_in(&format!("{}-a", fx.events.group)).await;
    let (second, _) = fx.start_in(&format!("{}-b", fx.events.group)).await;
    let mut charges = Vec::new();
    for _ in 0..5 {
        let buyer = user();
        let charged = charge(&mut client, &buyer, "pm_card_visa", 8_999).await;
        charges.push((buyer, charged));
    }
    // Each cancellation twice, back to back.
    let publishing = charges.iter().map(|(buyer, charged)| {
        let checkout = checkout_of(charged);
        let fx = &fx;
        async move {
            let event = fx.events.cancel(buyer, checkout).await;
            fx.events.publish(&event).await;
        }
    });
    futures::future::join_all(publishing).await;
    for (_, charged) in &charges {
        wait_refunded(&mut client, &charged.payment_id).await;
    }
    // Let both groups finish every copy before counting.
    let deadline = Instant::now() + PATIENCE;
    for group in [
        format!("{}-a", fx.events.group),
        format!("{}-b", fx.events.group),
    ] {
        loop {
            let handled = fx
                .events
                .committed(&group)
                .iter()
                .all(|(at, end)| at == end);
            if handled {
                break;
            }
            assert!(Instant::now() < deadline, "{group} never caught up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (_, charged) in &charges {
        assert_eq!(
            fx.refunds(checkout_of(charged)).await,
            1,
            "checkout {} refunded once",
            charged.checkout_id
        );
    }
    assert_eq!(fx.events.dead_letters(), 0);

    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");
    fx.events.remove().await;
}

#[tokio::test]
async fn nothing_to_refund_is_no_error_and_the_consumer_moves_on() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let buyer = user();
    let declined = charge(&mut client, &buyer, "pm_card_declined", 5_000).await;
    assert_eq!(status_of(&declined), pb::PaymentStatus::Declined);

    // All on one key, so one lane, in this order: a declined charge, a
    // checkout this service never charged, a refund done already by the
    // Refund RPC (the saga's compensation), and a cancellation that does
    // need a refund.
    fx.events.cancel(&buyer, checkout_of(&declined)).await;
    fx.events.cancel(&buyer, Uuid::new_v4()).await;
    let compensated = charge(&mut client, &buyer, "pm_card_visa", 1_000).await;
    client
        .refund(pb::RefundRequest {
            payment_id: compensated.payment_id.clone(),
        })
        .await
        .expect("refund");
    fx.events.cancel(&buyer, checkout_of(&compensated)).await;
    let charged = charge(&mut client, &buyer, "pm_card_visa", 7_000).await;
    fx.events.cancel(&buyer, checkout_of(&charged)).await;
    wait_refunded(&mut client, &charged.payment_id).await;

    let after = payment(&mut client, &declined.payment_id).await;
    assert_eq!(status_of(&after), pb::PaymentStatus::Declined);
    assert_eq!(fx.refunds(checkout_of(&declined)).await, 0);
    assert_eq!(fx.refunds(checkout_of(&compensated)).await, 1);
    assert_eq!(fx.refunds(checkout_of(&charged)).await, 1);
    assert_eq!(
        fx.events.dead_letters(),
        0,
        "nothing to refund is not a failure"
    );

    server.stop().await.expect("clean stop");
    let committed = fx.events.committed(&fx.events.group);
    assert!(
        committed.iter().all(|(at, end)| at == end),
        "every record's offset committed: {committed:?}"
    );
    assert_eq!(
        committed.iter().map(|(at, _)| at).sum::<i64>(),
        4,
        "four records handled"
    );
    fx.events.remove().await;
}

#[tokio::test]
async fn a_cancellation_without_its_checkout_is_dead_lettered_not_dropped() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let buyer = user();
    // An order announced before events named their checkout.
    fx.events
        .status_changed(&buyer, "", "CONFIRMED", "CANCELLED")
        .await;
    let charged = charge(&mut client, &buyer, "pm_card_visa", 7_000).await;
    fx.events.cancel(&buyer, checkout_of(&charged)).await;
    wait_refunded(&mut client, &charged.payment_id).await;
    assert_eq!(fx.events.dead_letters(), 1, "the one without a checkout id");

    server.stop().await.expect("clean stop");
    fx.events.remove().await;
}
