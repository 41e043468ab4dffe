//! One database and one login role per service, made over SQL with the
//! admin credentials, idempotently: a role or database that exists is kept
//! (its password is set to the one in the service's Secret, the source of
//! truth), and only the role may connect to its database.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

/// How long a connection to the server may take before the databases are
/// reported unreachable (and retried later).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the server is and who administers it.
#[derive(Clone, Debug)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: String,
    pub ssl_mode: PgSslMode,
}

/// One service's database and the role that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    /// Both the database's and the role's name.
    pub name: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot reach PostgreSQL at {host}:{port}: {source}")]
    Unreachable {
        host: String,
        port: u16,
        source: sqlx::Error,
    },
    #[error("PostgreSQL refused {what}: {source}")]
    Sql { what: String, source: sqlx::Error },
}

impl ProvisionError {
    /// The condition reason this failure is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            ProvisionError::Unreachable { .. } => "PostgresUnreachable",
            ProvisionError::Sql { .. } => "PostgresError",
        }
    }
}

impl Server {
    pub fn options(&self, user: &str, password: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(user)
            .password(password)
            .database(database)
            .ssl_mode(self.ssl_mode)
            .disable_statement_logging()
    }

    /// The URL a service connects with (its own role and database).
    pub fn url(&self, db: &Database) -> String {
        let ssl = match self.ssl_mode {
            PgSslMode::Disable => "disable",
            PgSslMode::Require => "require",
            _ => "prefer",
        };
        format!(
            "postgres://{}:{}@{}:{}/{}?sslmode={ssl}",
            db.name, db.password, self.host, self.port, db.name
        )
    }
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a quoted SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

async fn execute(conn: &mut PgConnection, what: &str, sql: String) -> Result<(), ProvisionError> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|source| ProvisionError::Sql {
            what: what.to_owned(),
            source,
        })
}

const ROLE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";
const DATABASE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)";

/// Whether the role or database (`kind`) `name` exists, by `query`.
async fn exists(
    conn: &mut PgConnection,
    query: &'static str,
    kind: &str,
    name: &str,
) -> Result<bool, ProvisionError> {
    sqlx::query_scalar(query)
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(|source| ProvisionError::Sql {
            what: format!("looking up {kind} {name}"),
            source,
        })
}

/// Makes each database and role exist with the given password, owned by
/// that role, connectable by that role only.
pub async fn provision(server: &Server, databases: &[Database]) -> Result<(), ProvisionError> {
    let options = server.options(&server.admin_user, &server.admin_password, "postgres");
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut))
        .map_err(|source| ProvisionError::Unreachable {
            host: server.host.clone(),
            port: server.port,
            source,
        })?;
    for db in databases {
        let role_exists = exists(&mut conn, ROLE_EXISTS, "role", &db.name).await?;
        let verb = if role_exists { "ALTER" } else { "CREATE" };
        execute(
            &mut conn,
            &format!("{verb} ROLE {}", db.name),
            format!(
                "{verb} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}",
                ident(&db.name),
                literal(&db.password)
            ),
        )
        .await?;
        let db_exists = exists(&mut conn, DATABASE_EXISTS, "database", &db.name).await?;
        if !db_exists {
            // The admin role must be a member of the new owner to hand the
            // database over (PostgreSQL 16+ for a non-superuser admin).
            execute(
                &mut conn,
                &format!("GRANT {} TO the admin role", db.name),
                format!("GRANT {} TO CURRENT_USER", ident(&db.name)),
            )
            .await?;
            let created = execute(
                &mut conn,
                &format!("CREATE DATABASE {}", db.name),
                format!(
                    "CREATE DATABASE {} OWNER {}",
                    ident(&db.name),
                    ident(&db.name)
                ),
            )
            .await;
            // Two operators racing (or a retry after a lost answer) may find
            // it made meanwhile: that is success.
            if let Err(error) = created
                && !exists(&mut conn, DATABASE_EXISTS, "database", &db.name)
                    .await
                    .unwrap_or(false)
            {
                return Err(error);
            }
        }
        execute(
            &mut conn,
            &format!("REVOKE CONNECT ON DATABASE {}", db.name),
            format!(
                "REVOKE ALL ON DATABASE {0} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {0} TO {0}",
                ident(&db.name)
            ),
        )
        .await?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// A new random password: 32 letters and digits.
pub fn generate_password() -> String {
    use rand::Rng as _;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("sf_a_b"), "\"sf_a_b\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn passwords_are_long_and_plain() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
