//! Checkout sessions in PostgreSQL. Every change of a session is guarded by
//! its lease token, so a live request and the recovery loop never both move
//! one session; a session's end and its event commit in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use storefront_proto::common::v1::ShippingAddress;
use storefront_runtime::events::Event;
use storefront_runtime::{Currency, Money, outbox};
use uuid::Uuid;

use crate::domain::{CheckoutId, IdempotencyKey, LineItem, Quantity, Session, UserId};
use crate::error::CheckoutError;
use crate::saga::machine::{Failure, FailureReason, SagaState, Status};

/// Who may move a session: the token of one live request or one recovery run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease(Uuid);

impl Lease {
    /// A token no one else holds.
    pub fn fresh() -> Self {
        Lease(Uuid::new_v4())
    }
}

/// Every column a [`Session`] is read from, in one place.
macro_rules! session_columns {
    () => {
        "id, user_id, idempotency_key, status, payment_method, shipping_address, items, \
         total_minor, currency, reservation_id, payment_id, failure_reason, failure_detail, \
         decline_reason, reservation_released, payment_refunded, attention_reason, created_at, \
         updated_at"
    };
}

const SELECT_BY_KEY: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM checkout_sessions WHERE user_id = $1 AND idempotency_key = $2"
);

const SELECT_OF_USER: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM checkout_sessions WHERE id = $1 AND user_id = $2"
);

const INSERT: &str = "INSERT INTO checkout_sessions (id, user_id, idempotency_key, status, \
     payment_method, shipping_address, items, total_minor, currency, failure_reason, \
     failure_detail, lease_token) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (user_id, idempotency_key) DO NOTHING \
     RETURNING created_at, updated_at";

const SAVE: &str = "UPDATE checkout_sessions SET status = $3, reservation_id = $4, \
     payment_id = $5, failure_reason = $6, failure_detail = $7, decline_reason = $8, \
     reservation_released = $9, payment_refunded = $10, attention_reason = $11, \
     updated_at = now() \
     WHERE id = $1 AND lease_token = $2 AND status NOT IN ('COMPLETED', 'FAILED', 'NEEDS_ATTENTION') \
     RETURNING updated_at";

const RENEW: &str = "UPDATE checkout_sessions SET updated_at = now() \
     WHERE id = $1 AND lease_token = $2 AND status NOT IN ('COMPLETED', 'FAILED', 'NEEDS_ATTENTION')";

/// Takes over unfinished sessions nobody has touched for `$2` seconds. Rows a
/// live request or another replica is changing right now are skipped.
const CLAIM_STALLED: &str = concat!(
    "UPDATE checkout_sessions SET lease_token = $1, updated_at = now() \
     FROM (SELECT id AS stalled_id FROM checkout_sessions \
           WHERE status NOT IN ('COMPLETED', 'FAILED', 'NEEDS_ATTENTION') \
             AND updated_at < now() - make_interval(secs => $2) \
           ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS stalled \
     WHERE id = stalled.stalled_id RETURNING ",
    session_columns!()
);

/// The unique index that keeps one checkout in flight per user's cart.
const ONE_IN_FLIGHT: &str = "checkout_sessions_one_in_flight";
/// The user's session in flight or, if it has ended meanwhile, the one
/// touched last: where the caller should look.
const IN_FLIGHT_OR_LAST: &str = "SELECT id FROM checkout_sessions WHERE user_id = $1 \
     ORDER BY status NOT IN ('COMPLETED', 'FAILED', 'NEEDS_ATTENTION') DESC, updated_at DESC \
     LIMIT 1";
/// The user's checkouts that completed lately: their lines may still be in
/// the cart until the cart has applied their CheckoutCompleted. The window
/// is far shorter than the cart's memory of applied checkouts (30 days).
const RECENTLY_COMPLETED: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM checkout_sessions WHERE user_id = $1 AND status = 'COMPLETED' \
      AND updated_at > now() - interval '1 day' ORDER BY updated_at DESC LIMIT 50"
);
/// A checkout of the user that completed lately and is not among `$2`.
const COMPLETED_SINCE: &str = "SELECT id FROM checkout_sessions WHERE user_id = $1 \
     AND status = 'COMPLETED' AND updated_at > now() - interval '1 day' \
     AND id <> ALL($2) LIMIT 1";
const OF_STATUS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM checkout_sessions WHERE status = $1 ORDER BY updated_at DESC LIMIT $2"
);

/// A line item as stored in the `items` JSONB column (the currency is the session's).
#[derive(Debug, Serialize, Deserialize)]
struct StoredLine {
    product_id: i64,
    name: String,
    unit_price_minor: i64,
    quantity: i32,
    line_total_minor: i64,
}

/// Whether an insert created the session, found one under the same key, or
/// found the user's cart taken by another checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Created,
    KeyTaken,
    /// Another checkout of this cart is in flight, or completed after the
    /// cart was read (so the lines read may hold what it bought).
    CartBusy(CheckoutId),
}

#[derive(Clone)]
pub struct SessionStore {
    pool: PgPool,
    topic: String,
}

impl SessionStore {
    /// Sessions in `pool`; their events go to `topic`.
    pub fn new(pool: PgPool, topic: String) -> Self {
        SessionStore { pool, topic }
    }

    pub async fn by_key(
        &self,
        user_id: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Session>, CheckoutError> {
        let row = sqlx::query(SELECT_BY_KEY)
            .bind(user_id.as_str())
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The session `id` if it belongs to `user_id`.
    pub async fn of_user(
        &self,
        user_id: &UserId,
        id: CheckoutId,
    ) -> Result<Option<Session>, CheckoutError> {
        let row = sqlx::query(SELECT_OF_USER)
            .bind(id.uuid())
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Stores a new session held by `lease`, with `event` in the same
    /// transaction (a session that fails at once). Its timestamps are set from
    /// the database.
    /// `known_completed` are the user's recently completed checkouts that the
    /// cart read accounted for; one completed since then makes the cart busy.
    pub async fn insert(
        &self,
        session: &mut Session,
        lease: Lease,
        event: Option<&Event>,
        known_completed: &[CheckoutId],
    ) -> Result<Inserted, CheckoutError> {
        let items: Vec<StoredLine> = session.items.iter().map(stored_line).collect();
        let failure = session.saga.failure.as_ref();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(INSERT)
            .bind(session.id.uuid())
            .bind(session.user_id.as_str())
            .bind(session.idempotency_key.as_str())
            .bind(session.saga.status.as_str())
            .bind(&session.payment_method)
            .bind(session.shipping_address.as_ref().map(Json))
            .bind(Json(items))
            .bind(session.total.minor())
            .bind(session.total.currency().as_str())
            .bind(failure.map(|f| f.reason.as_str()))
            .bind(failure.map(|f| f.detail.as_str()))
            .bind(lease.0)
            .fetch_optional(&mut *tx)
            .await;
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => {
                tx.rollback().await?;
                return Ok(Inserted::KeyTaken);
            }
            Err(sqlx::Error::Database(db)) if db.constraint() == Some(ONE_IN_FLIGHT) => {
                tx.rollback().await?;
                let first: Option<Uuid> = sqlx::query_scalar(IN_FLIGHT_OR_LAST)
                    .bind(session.user_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                // The index held an unfinished session of this user a moment
                // ago, so there is a session to name.
                let first = first.ok_or_else(|| {
                    CheckoutError::Corrupt("the session in flight vanished".into())
                })?;
                return Ok(Inserted::CartBusy(CheckoutId::from(first)));
            }
            Err(error) => return Err(error.into()),
        };
        let known: Vec<Uuid> = known_completed.iter().map(|id| id.uuid()).collect();
        let completed_since: Option<Uuid> = sqlx::query_scalar(COMPLETED_SINCE)
            .bind(session.user_id.as_str())
            .bind(&known)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(other) = completed_since {
            tx.rollback().await?;
            return Ok(Inserted::CartBusy(CheckoutId::from(other)));
        }
        if let Some(event) = event {
            outbox::enqueue(&mut tx, &self.topic, event).await?;
        }
        tx.commit().await?;
        session.created_at = row.try_get("created_at")?;
        session.updated_at = row.try_get("updated_at")?;
        Ok(Inserted::Created)
    }

    /// The user's checkouts completed in the last day, newest first.
    pub async fn recently_completed(
        &self,
        user_id: &UserId,
    ) -> Result<Vec<Session>, CheckoutError> {
        let rows = sqlx::query(RECENTLY_COMPLETED)
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Up to `limit` sessions in `status`, most recently touched first.
    pub async fn of_status(
        &self,
        status: Status,
        limit: i64,
    ) -> Result<Vec<Session>, CheckoutError> {
        let rows = sqlx::query(OF_STATUS)
            .bind(status.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many sessions are in `status`.
    pub async fn count_in(&self, status: Status) -> Result<i64, CheckoutError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM checkout_sessions WHERE status = $1")
                .bind(status.as_str())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Records `session`'s saga state, and `event` in the same transaction.
    /// `false` when `lease` no longer holds the session (recovery took it over).
    pub async fn save(
        &self,
        session: &mut Session,
        lease: Lease,
        event: Option<&Event>,
    ) -> Result<bool, CheckoutError> {
        let saga = &session.saga;
        let failure = saga.failure.as_ref();
        let save = sqlx::query(SAVE)
            .bind(session.id.uuid())
            .bind(lease.0)
            .bind(saga.status.as_str())
            .bind(saga.reservation_id)
            .bind(saga.payment_id)
            .bind(failure.map(|f| f.reason.as_str()))
            .bind(failure.map(|f| f.detail.as_str()))
            .bind(failure.and_then(|f| f.decline_reason.as_deref()))
            .bind(saga.released)
            .bind(saga.refunded)
            .bind(saga.attention.as_deref());
        let Some(event) = event else {
            // One statement is its own transaction, committed (and durable)
            // before it answers: no BEGIN and COMMIT round trips.
            let Some(row) = save.fetch_optional(&self.pool).await? else {
                return Ok(false);
            };
            session.updated_at = row.try_get("updated_at")?;
            return Ok(true);
        };
        let mut tx = self.pool.begin().await?;
        let row = save.fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        outbox::enqueue(&mut tx, &self.topic, event).await?;
        tx.commit().await?;
        session.updated_at = row.try_get("updated_at")?;
        Ok(true)
    }

    /// Renews `lease` on an unfinished session; `false` when it was lost.
    pub async fn renew(&self, id: CheckoutId, lease: Lease) -> Result<bool, CheckoutError> {
        let done = sqlx::query(RENEW)
            .bind(id.uuid())
            .bind(lease.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands up to `limit` unfinished sessions untouched for `stalled_for` to `lease`.
    pub async fn claim_stalled(
        &self,
        lease: Lease,
        stalled_for: Duration,
        limit: i64,
    ) -> Result<Vec<Session>, CheckoutError> {
        let rows = sqlx::query(CLAIM_STALLED)
            .bind(lease.0)
            .bind(stalled_for.as_secs_f64())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }
}

fn stored_line(item: &LineItem) -> StoredLine {
    StoredLine {
        product_id: item.product_id,
        name: item.name.clone(),
        unit_price_minor: item.unit_price.minor(),
        quantity: item.quantity.get(),
        line_total_minor: item.line_total.minor(),
    }
}

fn corrupt(id: Uuid, what: impl std::fmt::Display) -> CheckoutError {
    CheckoutError::Corrupt(format!("session {id}: {what}"))
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Session, CheckoutError> {
    let id: Uuid = row.try_get("id")?;
    let currency: String = row.try_get("currency")?;
    let currency = Currency::try_from(currency.as_str()).map_err(|e| corrupt(id, e))?;
    let money = |minor: i64| Money::new(minor, currency).map_err(|e| corrupt(id, e));
    let Json(lines): Json<Vec<StoredLine>> = row.try_get("items")?;
    let items = lines
        .into_iter()
        .map(|line| {
            Ok(LineItem {
                product_id: line.product_id,
                name: line.name,
                unit_price: money(line.unit_price_minor)?,
                quantity: Quantity::new(line.quantity).map_err(|e| corrupt(id, e))?,
                line_total: money(line.line_total_minor)?,
            })
        })
        .collect::<Result<Vec<_>, CheckoutError>>()?;
    let status: String = row.try_get("status")?;
    let status = Status::parse(&status).ok_or_else(|| corrupt(id, format!("status {status:?}")))?;
    let failure_reason: Option<String> = row.try_get("failure_reason")?;
    let failure = match failure_reason {
        None => None,
        Some(reason) => Some(Failure {
            reason: FailureReason::parse(&reason)
                .ok_or_else(|| corrupt(id, format!("failure reason {reason:?}")))?,
            decline_reason: row.try_get("decline_reason")?,
            detail: row
                .try_get::<Option<String>, _>("failure_detail")?
                .unwrap_or_default(),
        }),
    };
    let user_id: String = row.try_get("user_id")?;
    let key: String = row.try_get("idempotency_key")?;
    let shipping: Option<Json<ShippingAddress>> = row.try_get("shipping_address")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    Ok(Session {
        id: CheckoutId::from(id),
        user_id: UserId::parse("user_id", &user_id).map_err(|e| corrupt(id, e))?,
        idempotency_key: IdempotencyKey::parse(&key).map_err(|e| corrupt(id, e))?,
        payment_method: row.try_get("payment_method")?,
        shipping_address: shipping.map(|Json(address)| address),
        items,
        total: money(row.try_get("total_minor")?)?,
        saga: SagaState {
            status,
            reservation_id: row.try_get("reservation_id")?,
            payment_id: row.try_get("payment_id")?,
            failure,
            released: row.try_get("reservation_released")?,
            refunded: row.try_get("payment_refunded")?,
            attention: row.try_get("attention_reason")?,
        },
        created_at,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn outbox_migration_is_the_runtime_schema() {
        let migration = include_str!("../migrations/20261124000002_outbox.sql");
        assert!(
            migration.contains(storefront_runtime::outbox::SCHEMA),
            "migrations/20261124000002_outbox.sql must hold storefront_runtime::outbox::SCHEMA verbatim"
        );
    }
}
