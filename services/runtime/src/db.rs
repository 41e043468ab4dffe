//! PostgreSQL connection pools. Start-up waits (bounded) for the database, so
//! a service and its database may start in either order.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::StartError;

/// How long start-up keeps retrying an unreachable database.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// A pool of at most `max_connections` to `url`, retrying for up to 30 s.
pub async fn pg_pool(url: &str, max_connections: u32) -> Result<PgPool, StartError> {
    let options = PgConnectOptions::from_str(url)?;
    let deadline = Instant::now() + CONNECT_PATIENCE;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(error) if Instant::now() < deadline && is_transient(&error) => {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        || matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57P03"))
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
/// exception) or 23 (integrity constraint violation). The same data is
/// refused again however often it is sent.
pub fn is_data_refused(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")))
}

/// True when `error` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
