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
        None if is_unavailable(error) => tonic::Code::Unavailable,
        None => tonic::Code::Internal,
    }
}

/// True when the database could not be reached or no connection was free in time.
fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    ) || matches!(error, sqlx::Error::Database(db) if db.code().as_deref().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// The stable reason that goes with [`code_of`].
pub fn reason_of(error: &sqlx::Error) -> &'static str {
    match refusal(error) {
        Some(Refusal::Data) => "INVALID_DATA",
        Some(Refusal::Integrity) => "CONSTRAINT_VIOLATION",
        None if is_unavailable(error) => "DATABASE_UNAVAILABLE",
        None => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_database_s_own_faults_are_internal() {
        assert_eq!(code_of(&sqlx::Error::PoolTimedOut), tonic::Code::Unavailable);
        assert_eq!(reason_of(&sqlx::Error::PoolTimedOut), "DATABASE_UNAVAILABLE");
        assert_eq!(code_of(&sqlx::Error::RowNotFound), tonic::Code::Internal);
        assert_eq!(reason_of(&sqlx::Error::RowNotFound), "INTERNAL");
        let encode = sqlx::Error::Encode("value out of range".into());
        assert_eq!(code_of(&encode), tonic::Code::InvalidArgument);
        assert_eq!(reason_of(&encode), "INVALID_DATA");
    }
}
