//! Payments in PostgreSQL. The unique checkout id makes a charge happen once
//! however often it is asked for; a row lock makes a refund happen once,
//! whether it is asked for by payment id (the Refund RPC) or by checkout (a
//! cancelled order).

use sqlx::{PgPool, Postgres, Row, Transaction};
use storefront_runtime::{Currency, Money};
use uuid::Uuid;

use crate::domain::{ChargeOrder, DeclineReason, Payment, PaymentStatus};
use crate::error::PaymentError;

const SELECT_BY_ID: &str = "SELECT id, checkout_id, user_id, amount_minor, currency, payment_method, status, \
     decline_reason FROM payments WHERE id = $1";
const SELECT_BY_CHECKOUT: &str = "SELECT id, checkout_id, user_id, amount_minor, currency, payment_method, status, \
     decline_reason FROM payments WHERE checkout_id = $1";
const LOCK_BY_CHECKOUT: &str = "SELECT id, checkout_id, user_id, amount_minor, currency, payment_method, status, \
     decline_reason FROM payments WHERE checkout_id = $1 FOR UPDATE";
const LOCK_BY_ID: &str = "SELECT id, checkout_id, user_id, amount_minor, currency, payment_method, status, \
     decline_reason FROM payments WHERE id = $1 FOR UPDATE";

#[derive(Clone)]
pub struct PaymentLedger {
    pool: PgPool,
}

impl PaymentLedger {
    pub fn new(pool: PgPool) -> Self {
        PaymentLedger { pool }
    }

    pub async fn by_checkout(&self, checkout_id: Uuid) -> Result<Option<Payment>, PaymentError> {
        let row = sqlx::query(SELECT_BY_CHECKOUT)
            .bind(checkout_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn get(&self, id: Uuid) -> Result<Payment, PaymentError> {
        let row = sqlx::query(SELECT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(from_row)
            .transpose()?
            .ok_or(PaymentError::NotFound(id))
    }

    /// Records the outcome of a charge. When a concurrent call recorded one
    /// first, that one is returned instead: a checkout is charged once.
    pub async fn record(
        &self,
        order: &ChargeOrder,
        decline: Option<DeclineReason>,
    ) -> Result<Payment, PaymentError> {
        let status = if decline.is_some() {
            PaymentStatus::Declined
        } else {
            PaymentStatus::Succeeded
        };
        let inserted = sqlx::query(
            "INSERT INTO payments (id, checkout_id, user_id, amount_minor, currency, payment_method, status, decline_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (checkout_id) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(order.checkout_id)
        .bind(&order.user_id)
        .bind(order.amount.minor())
        .bind(order.amount.currency().as_str())
        .bind(order.method.name())
        .bind(status.as_str())
        .bind(decline.map(DeclineReason::as_str))
        .execute(&self.pool)
        .await?;
        let recorded =
            self.by_checkout(order.checkout_id)
                .await?
                .ok_or(PaymentError::CorruptRow(format!(
                    "charge of checkout {} vanished",
                    order.checkout_id
                )))?;
        if inserted.rows_affected() == 0 && !recorded.matches(order) {
            return Err(PaymentError::ConflictingCharge(order.checkout_id));
        }
        Ok(recorded)
    }

    /// Refunds a successful charge once; a repeat returns the refunded payment.
    pub async fn refund(&self, id: Uuid) -> Result<Payment, PaymentError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(LOCK_BY_ID)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let payment = row
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or(PaymentError::NotFound(id))?;
        match refund_locked(tx, payment).await? {
            Refund::Refunded(payment) | Refund::AlreadyRefunded(payment) => Ok(payment),
            Refund::Declined(_) => Err(PaymentError::NotRefundable(id)),
        }
    }

    /// Refunds the charge of `checkout_id` in full, once: the row lock makes a
    /// concurrent call wait and then find it refunded. `None` when the
    /// checkout was never charged.
    pub async fn refund_checkout(&self, checkout_id: Uuid) -> Result<Option<Refund>, PaymentError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(LOCK_BY_CHECKOUT)
            .bind(checkout_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(payment) = row.as_ref().map(from_row).transpose()? else {
            tx.rollback().await?;
            return Ok(None);
        };
        refund_locked(tx, payment).await.map(Some)
    }
}

/// What asking for a refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// The charge is refunded now.
    Refunded(Payment),
    /// It had been refunded before; nothing changed.
    AlreadyRefunded(Payment),
    /// It was declined, so nothing was taken; nothing changed.
    Declined(Payment),
}

/// Refunds `payment`, whose row `tx` holds locked, and commits.
async fn refund_locked(
    mut tx: Transaction<'_, Postgres>,
    payment: Payment,
) -> Result<Refund, PaymentError> {
    match payment.status {
        PaymentStatus::Refunded => {
            tx.rollback().await?;
            Ok(Refund::AlreadyRefunded(payment))
        }
        PaymentStatus::Declined => {
            tx.rollback().await?;
            Ok(Refund::Declined(payment))
        }
        PaymentStatus::Succeeded => {
            // refunds.payment_id is UNIQUE: even a refund that slipped past
            // the lock could not be written twice.
            sqlx::query(
                "INSERT INTO refunds (id, payment_id, amount_minor, currency) VALUES ($1, $2, $3, $4)",
            )
            .bind(Uuid::now_v7())
            .bind(payment.id)
            .bind(payment.amount.minor())
            .bind(payment.amount.currency().as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE payments SET status = 'REFUNDED', updated_at = now() WHERE id = $1",
            )
            .bind(payment.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Refund::Refunded(Payment {
                status: PaymentStatus::Refunded,
                ..payment
            }))
        }
    }
}

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Payment, PaymentError> {
    let status: String = row.try_get("status")?;
    let decline: Option<String> = row.try_get("decline_reason")?;
    let currency: String = row.try_get("currency")?;
    let currency = Currency::try_from(currency.as_str()).map_err(PaymentError::CorruptRow)?;
    Ok(Payment {
        id: row.try_get("id")?,
        checkout_id: row.try_get("checkout_id")?,
        user_id: row.try_get("user_id")?,
        amount: Money::new(row.try_get("amount_minor")?, currency)
            .map_err(PaymentError::CorruptRow)?,
        method: row.try_get("payment_method")?,
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| PaymentError::CorruptRow(format!("status {status:?}")))?,
        decline_reason: match decline {
            None => None,
            Some(text) => Some(
                DeclineReason::parse(&text)
                    .ok_or_else(|| PaymentError::CorruptRow(format!("decline {text:?}")))?,
            ),
        },
    })
}
