//! The stock ledger in PostgreSQL. Every transaction that touches stock rows
//! locks them in product-id order, so concurrent reservations, confirmations,
//! releases and the sweeper never deadlock, and a conditional UPDATE
//! (`on_hand - reserved >= quantity`) under the row lock means stock is never
//! oversold.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{Line, Reservation, ReservationStatus, ReserveOrder};
use crate::error::InventoryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: i64,
    pub on_hand: i64,
    pub reserved: i64,
}

#[derive(Clone)]
pub struct StockLedger {
    pool: PgPool,
}

/// What asking for a cancelled order's stock back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockReturn {
    /// The confirmed reservation's stock is back on hand now.
    Returned(Reservation),
    /// Nothing changed: the reservation is not confirmed (returned already,
    /// or never confirmed, so its stock was never deducted).
    Unchanged(Reservation),
    /// The checkout has no reservation here.
    NoReservation,
}

/// What to do with the stock a pending reservation holds when it ends.
#[derive(Debug, Clone, Copy)]
enum Settlement {
    /// Deduct it for good (Confirm).
    Deduct,
    /// Give it back to the available stock (Release, expiry).
    Return,
}

impl StockLedger {
    pub fn new(pool: PgPool) -> Self {
        StockLedger { pool }
    }

    /// Stock of the given products (unknown ids are left out), in id order.
    pub async fn levels(&self, product_ids: &[i64]) -> Result<Vec<StockLevel>, InventoryError> {
        let rows = sqlx::query(
            "SELECT product_id, on_hand, reserved FROM stock WHERE product_id = ANY($1) ORDER BY product_id",
        )
        .bind(product_ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StockLevel {
                    product_id: row.try_get("product_id")?,
                    on_hand: row.try_get("on_hand")?,
                    reserved: row.try_get("reserved")?,
                })
            })
            .collect()
    }

    /// Reserves every line or none. A second call for the same checkout returns
    /// the reservation the first one made, whatever its state now.
    pub async fn reserve(
        &self,
        order: &ReserveOrder,
        ttl: Duration,
    ) -> Result<Reservation, InventoryError> {
        if let Some(existing) = self.find_by_checkout(order.checkout_id).await? {
            return Ok(existing);
        }
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(5));
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        // Waits for a concurrent Reserve of the same checkout, then does nothing.
        let inserted = sqlx::query(
            "INSERT INTO reservations (id, checkout_id, status, expires_at) \
             VALUES ($1, $2, 'PENDING', now() + $3) \
             ON CONFLICT (checkout_id) DO NOTHING \
             RETURNING expires_at",
        )
        .bind(id)
        .bind(order.checkout_id)
        .bind(ttl)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(inserted) = inserted else {
            tx.rollback().await?;
            return self
                .find_by_checkout(order.checkout_id)
                .await?
                .ok_or(InventoryError::ReservationNotFound(order.checkout_id));
        };
        for line in &order.lines {
            let taken = sqlx::query(
                "UPDATE stock SET reserved = reserved + $2, updated_at = now() \
                 WHERE product_id = $1 AND on_hand - reserved >= $2",
            )
            .bind(line.product_id)
            .bind(i64::from(line.quantity))
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 0 {
                let error = shortage(&mut tx, *line).await?;
                tx.rollback().await?;
                return Err(error);
            }
            sqlx::query("INSERT INTO reservation_lines (reservation_id, product_id, quantity) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(line.product_id)
                .bind(line.quantity)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Reservation {
            id,
            checkout_id: order.checkout_id,
            status: ReservationStatus::Pending,
            lines: order.lines.clone(),
            expires_at: inserted.try_get("expires_at")?,
        })
    }

    /// Deducts the reserved stock for good. Idempotent once confirmed.
    pub async fn confirm(&self, id: Uuid) -> Result<Reservation, InventoryError> {
        let mut tx = self.pool.begin().await?;
        let reservation = lock(&mut tx, id).await?;
        match reservation.status {
            ReservationStatus::Confirmed => {
                tx.rollback().await?;
                Ok(reservation)
            }
            ReservationStatus::Released => Err(InventoryError::ReservationReleased(id)),
            ReservationStatus::Expired => Err(InventoryError::ReservationExpired(id)),
            // Its order was cancelled after it was confirmed: confirming it
            // again must not deduct the returned stock a second time.
            ReservationStatus::Returned => Err(InventoryError::ReservationReturned(id)),
            ReservationStatus::Pending if reservation.expires_at <= Utc::now() => {
                // Too late: expire it now rather than wait for the sweeper.
                settle(
                    &mut tx,
                    &reservation,
                    Settlement::Return,
                    ReservationStatus::Expired,
                )
                .await?;
                tx.commit().await?;
                Err(InventoryError::ReservationExpired(id))
            }
            ReservationStatus::Pending => {
                let confirmed = settle(
                    &mut tx,
                    &reservation,
                    Settlement::Deduct,
                    ReservationStatus::Confirmed,
                )
                .await?;
                tx.commit().await?;
                Ok(confirmed)
            }
        }
    }

    /// Returns the reserved stock. Idempotent: releasing a released or expired
    /// reservation changes nothing; a confirmed one cannot be released.
    pub async fn release(&self, id: Uuid) -> Result<Reservation, InventoryError> {
        let mut tx = self.pool.begin().await?;
        let reservation = lock(&mut tx, id).await?;
        match reservation.status {
            ReservationStatus::Released | ReservationStatus::Expired => {
                tx.rollback().await?;
                Ok(reservation)
            }
            ReservationStatus::Confirmed => Err(InventoryError::ReservationConfirmed(id)),
            ReservationStatus::Returned => Err(InventoryError::ReservationReturned(id)),
            ReservationStatus::Pending => {
                let released = settle(
                    &mut tx,
                    &reservation,
                    Settlement::Return,
                    ReservationStatus::Released,
                )
                .await?;
                tx.commit().await?;
                Ok(released)
            }
        }
    }

    /// Puts the stock of `checkout_id`'s confirmed reservation back on hand
    /// and marks it RETURNED, once: the reservation's row lock makes a
    /// concurrent call wait and then find it returned. Anything else (no
    /// reservation, one never confirmed, one returned already) changes
    /// nothing and says why.
    pub async fn return_stock(&self, checkout_id: Uuid) -> Result<StockReturn, InventoryError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, checkout_id, status, expires_at FROM reservations WHERE checkout_id = $1 FOR UPDATE",
        )
        .bind(checkout_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(StockReturn::NoReservation);
        };
        let mut reservation = from_row(&row)?;
        reservation.lines = lines_of(&mut tx, reservation.id).await?;
        if reservation.status != ReservationStatus::Confirmed {
            tx.rollback().await?;
            return Ok(StockReturn::Unchanged(reservation));
        }
        // Product order, like every other transaction that touches stock rows.
        for line in &reservation.lines {
            sqlx::query(
                "UPDATE stock SET on_hand = on_hand + $2, updated_at = now() WHERE product_id = $1",
            )
            .bind(line.product_id)
            .bind(i64::from(line.quantity))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE reservations SET status = $2, updated_at = now() WHERE id = $1")
            .bind(reservation.id)
            .bind(ReservationStatus::Returned.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(StockReturn::Returned(Reservation {
            status: ReservationStatus::Returned,
            ..reservation
        }))
    }

    pub async fn get(&self, id: Uuid) -> Result<Reservation, InventoryError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(
            "SELECT id, checkout_id, status, expires_at FROM reservations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(InventoryError::ReservationNotFound(id))?;
        let mut reservation = from_row(&row)?;
        reservation.lines = lines_of(&mut conn, id).await?;
        Ok(reservation)
    }

    async fn find_by_checkout(
        &self,
        checkout_id: Uuid,
    ) -> Result<Option<Reservation>, InventoryError> {
        let id: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM reservations WHERE checkout_id = $1")
                .bind(checkout_id)
                .fetch_optional(&self.pool)
                .await?;
        match id {
            Some(id) => self.get(id).await.map(Some),
            None => Ok(None),
        }
    }

    /// Expires one pending reservation past its deadline, if any, returning its
    /// stock. `SKIP LOCKED` lets several replicas sweep side by side.
    pub async fn expire_one(&self) -> Result<Option<Uuid>, InventoryError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, checkout_id, status, expires_at FROM reservations \
             WHERE status = 'PENDING' AND expires_at <= now() \
             ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut reservation = from_row(&row)?;
        reservation.lines = lines_of(&mut tx, reservation.id).await?;
        settle(
            &mut tx,
            &reservation,
            Settlement::Return,
            ReservationStatus::Expired,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(reservation.id))
    }
}

/// Why a line could not be reserved: the product is unknown or short.
async fn shortage(
    tx: &mut Transaction<'_, Postgres>,
    line: Line,
) -> Result<InventoryError, InventoryError> {
    let available: Option<i64> =
        sqlx::query_scalar("SELECT on_hand - reserved FROM stock WHERE product_id = $1")
            .bind(line.product_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match available {
        None => InventoryError::UnknownProduct(line.product_id),
        Some(available) => InventoryError::InsufficientStock {
            product_id: line.product_id,
            requested: i64::from(line.quantity),
            available,
        },
    })
}

/// Locks reservation `id` for the rest of the transaction and reads it whole.
async fn lock(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<Reservation, InventoryError> {
    let row = sqlx::query(
        "SELECT id, checkout_id, status, expires_at FROM reservations WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(InventoryError::ReservationNotFound(id))?;
    let mut reservation = from_row(&row)?;
    reservation.lines = lines_of(tx, id).await?;
    Ok(reservation)
}

/// Ends a pending reservation: moves its stock as `settlement` says (lines in
/// product order) and records `status`.
async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    reservation: &Reservation,
    settlement: Settlement,
    status: ReservationStatus,
) -> Result<Reservation, InventoryError> {
    let sql = match settlement {
        Settlement::Deduct => {
            "UPDATE stock SET on_hand = on_hand - $2, reserved = reserved - $2, updated_at = now() WHERE product_id = $1"
        }
        Settlement::Return => {
            "UPDATE stock SET reserved = reserved - $2, updated_at = now() WHERE product_id = $1"
        }
    };
    for line in &reservation.lines {
        sqlx::query(sql)
            .bind(line.product_id)
            .bind(i64::from(line.quantity))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE reservations SET status = $2, updated_at = now() WHERE id = $1")
        .bind(reservation.id)
        .bind(status.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(Reservation {
        status,
        ..reservation.clone()
    })
}

async fn lines_of(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Vec<Line>, InventoryError> {
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Line {
                product_id: row.try_get("product_id")?,
                quantity: row.try_get("quantity")?,
            })
        })
        .collect()
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Reservation, InventoryError> {
    let status: String = row.try_get("status")?;
    let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
    Ok(Reservation {
        id: row.try_get("id")?,
        checkout_id: row.try_get("checkout_id")?,
        status: ReservationStatus::parse(&status).ok_or(InventoryError::CorruptStatus(status))?,
        lines: Vec::new(),
        expires_at,
    })
}
