//! PostgreSQL connection pools. Start-up waits (bounded) for the database, so
//! a service and its database may start in either order.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::StartError;

/// How long start-up keeps retrying by default.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// How long start-up waits for its database: `DATABASE_CONNECT_PATIENCE`
/// (`4m`, `90s`…; the operator sets it within its pods' startup probe),
/// else 30 s.
pub fn connect_patience() -> Duration {
    std::env::var("DATABASE_CONNECT_PATIENCE")
        .ok()
        .and_then(|text| humantime::parse_duration(text.trim()).ok())
        .unwrap_or(CONNECT_PATIENCE)
}

/// A pool of at most `max_connections` to `url`, retrying for up to
/// [`connect_patience`] while the database is unreachable, starting, or
/// not yet provisioned (its role or database missing).
pub async fn pg_pool(url: &str, max_connections: u32) -> Result<PgPool, StartError> {
    pg_pool_within(url, max_connections, connect_patience()).await
}

/// [`pg_pool`] with the patience given.
pub async fn pg_pool_within(
    url: &str,
    max_connections: u32,
    patience: Duration,
) -> Result<PgPool, StartError> {
    let options = PgConnectOptions::from_str(url)?;
    let deadline = Instant::now() + patience;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(error) if Instant::now() < deadline && is_transient(&error) => {
                tracing::warn!(%error, "database not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Worth waiting for at start-up: no connection, a server starting up
/// (57P03), or a role or database that does not exist yet (28000, 28P01,
/// 3D000) — a managed shop's services start beside its PostgreSQL, before
/// the operator has made their roles and databases. Anything else, and
/// these after the patience, fails the start with the server's message.
fn is_transient(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        || matches!(error, sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("57P03" | "28000" | "28P01" | "3D000")))
}

/// True when `error` says the database cannot be reached or cannot work
/// right now — the connection refused, lost or timed out, the pool
/// exhausted or closed, the server shutting down or out of resources, or a
/// failover that left the pool on a read-only standby — rather than that
/// this statement failed. Only waiting helps, and every statement would fail
/// alike.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unreachable_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a server that cannot serve anyone at the moment.
fn unreachable_sqlstate(code: &str) -> bool {
    // 08: connection exception; 53: insufficient resources (disk full, out
    // of memory, too many connections); 58: system error (I/O error).
    ["08", "53", "58"].iter().any(|class| code.starts_with(class))
        // admin_shutdown, crash_shutdown, cannot_connect_now; read-only
        // transaction (the pool reached a standby after a failover).
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

/// True when the database refused the data itself: SQLSTATE class 22 (data
/// exception, or a value sqlx cannot encode) or 23 (integrity constraint
/// violation). The same data is
/// refused again however often it is sent.
pub fn is_data_refused(error: &sqlx::Error) -> bool {
    refusal(error).is_some()
}

/// True when `error` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// How PostgreSQL refused a statement because of the values in it, by
/// SQLSTATE class: such a refusal is the caller's (a NUL in a string, a time
/// out of range, a broken constraint), it would repeat on every retry, and it
/// says nothing about the database's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Class 22, data exception (and values sqlx could not encode at all).
    Data,
    /// Class 23, integrity constraint violation.
    Integrity,
}

/// The refusal `error` is, if it is one; `None` for the database's own faults
/// (unreachable, pool exhausted, a broken statement, a row we cannot decode).
pub fn refusal(error: &sqlx::Error) -> Option<Refusal> {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if code.starts_with("22") => Some(Refusal::Data),
            Some(code) if code.starts_with("23") => Some(Refusal::Integrity),
            _ => None,
        },
        sqlx::Error::Encode(_) => Some(Refusal::Data),
        _ => None,
    }
}

/// The gRPC code of a database error: INVALID_ARGUMENT for data the database
/// refused, FAILED_PRECONDITION for a broken constraint, UNAVAILABLE when it
/// cannot be reached (or no connection is free), INTERNAL otherwise.
/// Every service maps its database errors through this, so no value a user
/// sends can come back as INTERNAL (and open a caller's circuit breaker).
pub fn code_of(error: &sqlx::Error) -> tonic::Code {
    match refusal(error) {
        Some(Refusal::Data) => tonic::Code::InvalidArgument,
        Some(Refusal::Integrity) => tonic::Code::FailedPrecondition,
        // Overloaded or unreachable: worth a retry, and a 503 to the client.
        None if is_unreachable(error) => tonic::Code::Unavailable,
        None => tonic::Code::Internal,
    }
}

/// The stable reason that goes with [`code_of`].
pub fn reason_of(error: &sqlx::Error) -> &'static str {
    match refusal(error) {
        Some(Refusal::Data) => "INVALID_DATA",
        Some(Refusal::Integrity) => "CONSTRAINT_VIOLATION",
        None if is_unreachable(error) => "DATABASE_UNAVAILABLE",
        None => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client sends a server that accepts TLS: PostgreSQL's 8-byte
    /// SSLRequest, answered `S`, then the first byte of what follows (0x16
    /// opens a TLS handshake record, the ClientHello).
    async fn first_bytes_after_ssl_request(
        url: String,
        listener: tokio::net::TcpListener,
    ) -> Option<u8> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.ok()?;
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await.ok()?;
            // Length 8, code 80877103: SSLRequest.
            if request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                return None;
            }
            socket.write_all(b"S").await.ok()?;
            let mut next = [0u8; 1];
            socket.read_exact(&mut next).await.ok()?;
            Some(next[0])
        });
        let options = PgConnectOptions::from_str(&url).ok()?;
        // The handshake never completes (the server only listens): the
        // client's attempt is what counts.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(options),
        )
        .await;
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .ok()?
            .ok()?
    }

    #[tokio::test]
    async fn sslmode_require_and_prefer_start_tls_with_a_server_that_offers_it() {
        for mode in ["require", "prefer"] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let url = format!("postgres://cart:secret@127.0.0.1:{port}/cart?sslmode={mode}");
            assert_eq!(
                first_bytes_after_ssl_request(url, listener).await,
                Some(0x16),
                "sslmode={mode}: no TLS ClientHello"
            );
        }
        let options = PgConnectOptions::from_str("postgres://a:b@db/x?sslmode=require")
            .expect("sslmode=require parses");
        assert!(matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::Require
        ));
    }

    #[test]
    fn connection_trouble_is_unreachable_and_statement_trouble_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unreachable(&sqlx::Error::Io(refused)));
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(is_unreachable(&sqlx::Error::PoolClosed));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert!(!is_unreachable(&sqlx::Error::Decode("bad".into())));
        assert!(!is_unreachable(&sqlx::Error::Protocol("odd".into())));
        for code in [
            "08006", "08001", "53300", "53100", "58030", "57P01", "57P03", "25006",
        ] {
            assert!(unreachable_sqlstate(code), "{code}");
        }
        // Syntax or privilege (42), a raised exception (P0), a serialization
        // failure (40), an object in the wrong state (55): this statement.
        for code in [
            "42501", "42P01", "P0001", "40001", "55000", "22003", "23505",
        ] {
            assert!(!unreachable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn only_the_database_s_own_faults_are_internal() {
        assert_eq!(
            code_of(&sqlx::Error::PoolTimedOut),
            tonic::Code::Unavailable
        );
        assert_eq!(
            reason_of(&sqlx::Error::PoolTimedOut),
            "DATABASE_UNAVAILABLE"
        );
        assert_eq!(code_of(&sqlx::Error::RowNotFound), tonic::Code::Internal);
        assert_eq!(reason_of(&sqlx::Error::RowNotFound), "INTERNAL");
        let encode = sqlx::Error::Encode("value out of range".into());
        assert_eq!(code_of(&encode), tonic::Code::InvalidArgument);
        assert_eq!(reason_of(&encode), "INVALID_DATA");
    }
}
