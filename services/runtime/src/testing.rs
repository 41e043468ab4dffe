//! Test support (feature `testing`): each test gets its own PostgreSQL
//! database on the local infrastructure (`make infra-up`) and its servers
//! listen on random loopback ports, so tests run in parallel.

// Test support: a failure here should stop the test with a clear message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::net::TcpListener;

/// The local infrastructure's admin URL (`DATABASE_ADMIN_URL`, else the default of `hack/infra-env.sh`).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://storefront:storefront@127.0.0.1:55432/postgres".to_owned())
}

/// The local Kafka (`KAFKA_BOOTSTRAP_SERVERS`, else the default of `hack/infra-env.sh`).
pub fn kafka_bootstrap_servers() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:59092".to_owned())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// Creates an empty database named `test_<label>_<random>` and returns its URL.
/// `make test` drops leftovers from earlier runs before it starts.
pub async fn fresh_database(label: &str) -> String {
    let admin = admin_database_url();
    let name = format!("test_{label}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("cannot reach PostgreSQL at {admin} (run `make infra-up`): {e}")
    });
    // The name is ours (a fixed prefix and a UUID), never user input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    with_database(&admin, &name)
}

/// A listener on a random loopback port and the `http://` URI that reaches it.
pub async fn loopback_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("listener address");
    (listener, format!("http://{addr}"))
}

/// A service started by a test on a random loopback port, on a Tokio runtime
/// of its own, so that [`kill`](TestServer::kill) can stop everything the
/// service runs at once — the server, every connection task with its
/// in-flight requests, and the service's background loops — as a crash would.
pub struct TestServer {
    pub uri: String,
    shutdown: crate::Shutdown,
    task: Option<tokio::task::JoinHandle<Result<(), crate::StartError>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Runs `run` on a fresh loopback listener and waits (30 s at most) until its
    /// health service answers SERVING; panics with the start-up error otherwise.
    pub async fn start<F, Fut>(run: F) -> TestServer
    where
        F: FnOnce(TcpListener, crate::Shutdown) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), crate::StartError>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let uri = format!(
            "http://{}",
            listener.local_addr().expect("listener address")
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the service");
        let shutdown = crate::Shutdown::new();
        let stop = shutdown.clone();
        let task = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener)?;
            run(listener, stop).await
        });
        let server = TestServer {
            uri,
            shutdown,
            task: Some(task),
            runtime: Some(runtime),
        };
        server.wait_serving().await;
        server
    }

    async fn wait_serving(&self) {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            assert!(
                !self.task.as_ref().is_some_and(|t| t.is_finished()),
                "service at {} stopped during start-up",
                self.uri
            );
            let mut client = HealthClient::new(self.channel());
            let answer = client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
            if answer.is_ok_and(|a| a.get_ref().status == serving) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "service at {} not serving after 30 s",
                self.uri
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A channel to the server with a 30 s deadline per call.
    pub fn channel(&self) -> tonic::transport::Channel {
        crate::client::plain_channel(&self.uri, std::time::Duration::from_secs(30))
            .expect("test server URI is valid")
    }

    /// Graceful stop: in-flight calls drain, then the service's result is returned.
    pub async fn stop(mut self) -> Result<(), crate::StartError> {
        self.shutdown.cancel();
        let task = self.task.take().expect("running service");
        task.await.expect("service task panicked")
    }

    /// Hard stop, as a crash would: every task of the service is dropped
    /// mid-work, its connections closed, uncommitted transactions rolled back
    /// by PostgreSQL.
    pub async fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        // Let the kernel see the sockets close before the test goes on.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // A runtime may not be dropped (blocking) inside another one.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The gRPC status `reason` of an error returned by a Storefront service.
pub fn reason(status: &tonic::Status) -> String {
    crate::error::reason_of(status).unwrap_or_default()
}

/// An `order-events` topic of one test (3 partitions, and its DLQ), with a
/// producer to play the orders service: what the payment and inventory
/// consumers of cancellations are tested against.
pub struct OrderEventsTopic {
    pub bootstrap: String,
    pub topic: String,
    /// A consumer group name of this test alone.
    pub group: String,
    producer: rdkafka::producer::FutureProducer,
}

impl OrderEventsTopic {
    pub const PARTITIONS: i32 = 3;

    /// Topic `test-<label>-orders-<random>` and group `test-<label>-<random>`.
    pub async fn new(label: &str) -> OrderEventsTopic {
        let bootstrap = kafka_bootstrap_servers();
        let suffix = uuid::Uuid::new_v4().simple();
        let topic = format!("test-{label}-orders-{suffix}");
        let admin = crate::kafka::admin(&bootstrap).expect("Kafka admin client");
        let dlq = crate::events::dead_letter_topic(&topic);
        for (name, partitions) in [(topic.as_str(), Self::PARTITIONS), (dlq.as_str(), 1)] {
            crate::kafka::ensure_topic(&admin, name, partitions, 1)
                .await
                .unwrap_or_else(|e| panic!("create topic {name} (run `make infra-up`): {e}"));
        }
        OrderEventsTopic {
            producer: crate::kafka::producer(&bootstrap).expect("producer"),
            group: format!("test-{label}-{suffix}"),
            bootstrap,
            topic,
        }
    }

    pub async fn publish(&self, event: &crate::events::Event) {
        crate::events::publish(&self.producer, &self.topic, event)
            .await
            .expect("publish to the order topic");
    }

    /// Publishes an OrderStatusChanged of `checkout_id`'s order, keyed by `user`.
    pub async fn status_changed(
        &self,
        user: &str,
        checkout_id: &str,
        from: &str,
        to: &str,
    ) -> crate::events::Event {
        let payload = storefront_proto::events::v1::OrderStatusChanged {
            order_id: uuid::Uuid::now_v7().to_string(),
            user_id: user.to_owned(),
            from_status: from.to_owned(),
            to_status: to.to_owned(),
            changed_at: "2026-12-01T10:00:00Z".into(),
            checkout_id: checkout_id.to_owned(),
            payment_id: String::new(),
            reservation_id: String::new(),
        };
        let event = crate::events::Event::new(
            crate::events::event_type::ORDER_STATUS_CHANGED,
            "/storefront/orders",
            user,
            &payload,
        )
        .expect("event");
        self.publish(&event).await;
        event
    }

    /// Publishes the cancellation of `checkout_id`'s order.
    pub async fn cancel(&self, user: &str, checkout_id: uuid::Uuid) -> crate::events::Event {
        self.status_changed(user, &checkout_id.to_string(), "CONFIRMED", "CANCELLED")
            .await
    }

    /// Records on the dead-letter topic (it has one partition).
    pub fn dead_letters(&self) -> i64 {
        use rdkafka::consumer::Consumer;
        let consumer = crate::kafka::consumer(&self.bootstrap, &format!("{}-tap", self.group))
            .expect("consumer");
        let (low, high) = consumer
            .fetch_watermarks(
                &crate::events::dead_letter_topic(&self.topic),
                0,
                std::time::Duration::from_secs(10),
            )
            .expect("watermarks");
        high - low
    }

    /// Per partition: the offset `group` committed and the end of the partition.
    pub fn committed(&self, group: &str) -> Vec<(i64, i64)> {
        use rdkafka::consumer::Consumer;
        use rdkafka::{Offset, TopicPartitionList};
        let wait = std::time::Duration::from_secs(10);
        let consumer = crate::kafka::consumer(&self.bootstrap, group).expect("consumer");
        let mut partitions = TopicPartitionList::new();
        for partition in 0..Self::PARTITIONS {
            partitions.add_partition(&self.topic, partition);
        }
        let committed = consumer
            .committed_offsets(partitions, wait)
            .expect("committed offsets");
        (0..Self::PARTITIONS)
            .map(|partition| {
                let offset = match committed
                    .find_partition(&self.topic, partition)
                    .map(|p| p.offset())
                {
                    Some(Offset::Offset(offset)) => offset,
                    _ => 0,
                };
                let (_, high) = consumer
                    .fetch_watermarks(&self.topic, partition, wait)
                    .expect("watermarks");
                (offset, high)
            })
            .collect()
    }

    /// Deletes the topic and its DLQ.
    pub async fn remove(self) {
        let admin = crate::kafka::admin(&self.bootstrap).expect("admin");
        let dlq = crate::events::dead_letter_topic(&self.topic);
        let _ = admin
            .delete_topics(
                &[self.topic.as_str(), dlq.as_str()],
                &rdkafka::admin::AdminOptions::new(),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres", "y"),
            "postgres://u:p@h:1/y"
        );
    }
}
