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

/// True when `error` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
