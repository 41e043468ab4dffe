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
