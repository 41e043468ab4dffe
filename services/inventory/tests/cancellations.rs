//! Stock of cancelled orders: OrderStatusChanged events go in through a real
//! Kafka (a topic and consumer group of its own per test), reservations are
//! made and confirmed through gRPC against a real PostgreSQL (a fresh
//! database per test), and the stock is read back through GetStock.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use storefront_inventory::{Config, OrderEventsConfig, run_with_order_events};
use storefront_proto::inventory::v1 as pb;
use storefront_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use storefront_runtime::events::Event;
use storefront_runtime::testing::{OrderEventsTopic, TestServer, fresh_database, reason};
use tonic::Code;
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
            database_url: fresh_database("inventory_returns").await,
            events: OrderEventsTopic::new("inventory").await,
        }
    }

    /// An inventory returning cancelled orders' stock as consumer group `group`.
    async fn start_in(&self, group: &str) -> (TestServer, InventoryServiceClient<Channel>) {
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            database_url: self.database_url.clone(),
            db_max_connections: 10,
            reservation_ttl: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(5),
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
        let client = InventoryServiceClient::new(server.channel());
        (server, client)
    }

    async fn start(&self) -> (TestServer, InventoryServiceClient<Channel>) {
        self.start_in(&self.events.group).await
    }

    /// Publishes the cancellation of `checkout_id`'s order, keyed by `user`.
    async fn cancel(&self, user: &str, checkout_id: &str) -> Event {
        self.events
            .status_changed(user, checkout_id, "CONFIRMED", "CANCELLED")
            .await
    }

    /// Whether `group` has committed the offset of every record on the topic.
    fn caught_up(&self, group: &str) -> bool {
        self.events
            .committed(group)
            .iter()
            .all(|(committed, end)| committed == end)
    }

    async fn wait_caught_up(&self, group: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.caught_up(group) {
            assert!(Instant::now() < deadline, "{group} never caught up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn user() -> String {
    format!("user-{}", Uuid::new_v4().simple())
}

/// Reserves `lines` (product, quantity) for a new checkout; confirms it when asked.
async fn reserve(
    client: &mut InventoryServiceClient<Channel>,
    lines: &[(i64, i32)],
    confirm: bool,
) -> pb::Reservation {
    let reservation = client
        .reserve(pb::ReserveRequest {
            checkout_id: Uuid::new_v4().to_string(),
            lines: lines
                .iter()
                .map(|&(product_id, quantity)| pb::ReservationLine {
                    product_id,
                    quantity,
                })
                .collect(),
        })
        .await
        .expect("Reserve")
        .into_inner();
    if !confirm {
        return reservation;
    }
    client
        .confirm(pb::ConfirmRequest {
            reservation_id: reservation.reservation_id,
        })
        .await
        .expect("Confirm")
        .into_inner()
}

async fn reservation(client: &mut InventoryServiceClient<Channel>, id: &str) -> pb::Reservation {
    client
        .get_reservation(pb::GetReservationRequest {
            reservation_id: id.to_owned(),
        })
        .await
        .expect("GetReservation")
        .into_inner()
}

fn status_of(reservation: &pb::Reservation) -> pb::ReservationStatus {
    pb::ReservationStatus::try_from(reservation.status).expect("known status")
}

/// (on_hand, reserved) of each product, in id order.
async fn levels(client: &mut InventoryServiceClient<Channel>, ids: &[i64]) -> Vec<(i64, i64)> {
    client
        .get_stock(pb::GetStockRequest {
            product_ids: ids.to_vec(),
        })
        .await
        .expect("GetStock")
        .into_inner()
        .stock
        .iter()
        .map(|level| (level.on_hand, level.reserved))
        .collect()
}

/// Waits until reservation `id` is RETURNED.
async fn wait_returned(client: &mut InventoryServiceClient<Channel>, id: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if status_of(&reservation(client, id).await) == pb::ReservationStatus::Returned {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reservation {id} not returned after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_cancelled_order_puts_its_stock_back_once_however_often_it_is_announced() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let products = [1, 2, 3];
    let start = levels(&mut client, &products).await;
    let buyer = user();
    let confirmed = reserve(&mut client, &[(1, 2), (2, 3)], true).await;
    assert_eq!(status_of(&confirmed), pb::ReservationStatus::Confirmed);
    let deducted = levels(&mut client, &products).await;
    assert_eq!(
        deducted,
        vec![
            (start[0].0 - 2, start[0].1),
            (start[1].0 - 3, start[1].1),
            start[2]
        ]
    );

    let cancelled = fx.cancel(&buyer, &confirmed.checkout_id).await;
    wait_returned(&mut client, &confirmed.reservation_id).await;
    assert_eq!(
        levels(&mut client, &products).await,
        start,
        "back to where it started"
    );

    // The very record again and the same cancellation under a new event id.
    fx.events.publish(&cancelled).await;
    fx.cancel(&buyer, &confirmed.checkout_id).await;
    // Same key, same partition: once this one is returned, the repeats were handled.
    let marker = reserve(&mut client, &[(3, 1)], true).await;
    fx.cancel(&buyer, &marker.checkout_id).await;
    wait_returned(&mut client, &marker.reservation_id).await;
    assert_eq!(
        levels(&mut client, &products).await,
        start,
        "a repeated cancellation adds nothing"
    );
    assert_eq!(fx.events.dead_letters(), 0, "a repeat is no error");

    // A returned reservation is final: the saga's calls change nothing.
    for refused in [
        client
            .confirm(pb::ConfirmRequest {
                reservation_id: confirmed.reservation_id.clone(),
            })
            .await
            .expect_err("returned stock is not deducted again"),
        client
            .release(pb::ReleaseRequest {
                reservation_id: confirmed.reservation_id.clone(),
            })
            .await
            .expect_err("returned stock is not returned again"),
    ] {
        assert_eq!(
            (refused.code(), reason(&refused).as_str()),
            (Code::FailedPrecondition, "RESERVATION_RETURNED")
        );
    }
    assert_eq!(levels(&mut client, &products).await, start);

    server.stop().await.expect("clean stop");
    fx.events.remove().await;
}

#[tokio::test]
async fn cancellations_handled_at_once_by_two_consumers_return_the_stock_once() {
    let fx = Fixture::new().await;
    // Two members of different groups both receive every record, so each
    // cancellation is handled by two consumers at the same moment.
    let groups = [
        format!("{}-a", fx.events.group),
        format!("{}-b", fx.events.group),
    ];
    let (first, mut client) = fx.start_in(&groups[0]).await;
    let (second, _) = fx.start_in(&groups[1]).await;
    let start = levels(&mut client, &[2]).await;
    let mut reservations = Vec::new();
    for _ in 0..5 {
        reservations.push((user(), reserve(&mut client, &[(2, 4)], true).await));
    }
    assert_eq!(
        levels(&mut client, &[2]).await,
        vec![(start[0].0 - 20, start[0].1)]
    );
    let publishing = reservations.iter().map(|(buyer, reservation)| {
        let fx = &fx;
        async move {
            let event = fx.cancel(buyer, &reservation.checkout_id).await;
            fx.events.publish(&event).await;
        }
    });
    futures::future::join_all(publishing).await;
    for (_, reservation) in &reservations {
        wait_returned(&mut client, &reservation.reservation_id).await;
    }
    for group in &groups {
        fx.wait_caught_up(group).await;
    }
    assert_eq!(
        levels(&mut client, &[2]).await,
        start,
        "four copies of each cancellation, one return each"
    );
    assert_eq!(fx.events.dead_letters(), 0);

    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");
    fx.events.remove().await;
}

#[tokio::test]
async fn nothing_to_return_is_no_error_and_the_consumer_moves_on() {
    let fx = Fixture::new().await;
    let (server, mut client) = fx.start().await;
    let products = [4, 5];
    let start = levels(&mut client, &products).await;
    let buyer = user();
    // All on one key, so one lane, in this order: a reservation never
    // confirmed (its stock was never deducted), one released by the saga, a
    // checkout this service never saw, and one that does need its stock back.
    let pending = reserve(&mut client, &[(4, 1)], false).await;
    let released = reserve(&mut client, &[(5, 2)], false).await;
    client
        .release(pb::ReleaseRequest {
            reservation_id: released.reservation_id.clone(),
        })
        .await
        .expect("Release");
    fx.cancel(&buyer, &pending.checkout_id).await;
    fx.cancel(&buyer, &released.checkout_id).await;
    fx.cancel(&buyer, &Uuid::new_v4().to_string()).await;
    // An order announced before events named their checkout: dead-lettered.
    fx.cancel(&buyer, "").await;
    let confirmed = reserve(&mut client, &[(5, 1)], true).await;
    fx.cancel(&buyer, &confirmed.checkout_id).await;
    wait_returned(&mut client, &confirmed.reservation_id).await;

    assert_eq!(
        status_of(&reservation(&mut client, &pending.reservation_id).await),
        pb::ReservationStatus::Pending,
        "a pending reservation is the sweeper's, not the cancellation's"
    );
    assert_eq!(
        status_of(&reservation(&mut client, &released.reservation_id).await),
        pb::ReservationStatus::Released
    );
    assert_eq!(
        levels(&mut client, &products).await,
        vec![(start[0].0, start[0].1 + 1), start[1]],
        "only the pending reservation still holds stock; nothing was added"
    );
    assert_eq!(
        fx.events.dead_letters(),
        1,
        "only the one without a checkout id"
    );
    fx.wait_caught_up(&fx.events.group).await;

    server.stop().await.expect("clean stop");
    fx.events.remove().await;
}
