//! Carts in PostgreSQL: one row per user, its lines a JSONB array. Every write
//! locks the row first (`SELECT ... FOR UPDATE`, creating it if need be), so
//! concurrent writes to one cart queue up instead of overwriting each other.
//! A cart past its `expires_at` reads as empty even before the sweeper
//! deletes it.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use storefront_runtime::StartError;

use crate::domain::{Cart, CartLine, CheckedOut, UserId};
use crate::error::CartError;

const SELECT_LIVE: &str = "SELECT items, updated_at, expires_at FROM carts \
     WHERE user_id = $1 AND expires_at > now()";
const LOCK: &str = "SELECT items, updated_at, expires_at, expires_at > now() AS live \
     FROM carts WHERE user_id = $1 FOR UPDATE";
/// A placeholder row to lock, for a user without one; it is born expired
/// (empty) and only outlives the transaction if the write succeeds.
const CREATE: &str = "INSERT INTO carts (user_id, expires_at) VALUES ($1, now()) \
     ON CONFLICT (user_id) DO NOTHING";
const SAVE: &str = "UPDATE carts SET items = $2, updated_at = now(), expires_at = now() + $3 \
     WHERE user_id = $1 RETURNING updated_at, expires_at";
/// Waits for a concurrent transaction recording the same checkout, then does nothing.
const MARK_PROCESSED: &str = "INSERT INTO processed_checkouts (checkout_id, user_id) \
     VALUES ($1, $2) ON CONFLICT (checkout_id) DO NOTHING";
/// `SKIP LOCKED`: carts being written are left alone (their write moves the
/// expiry), and several replicas can sweep side by side.
const DELETE_EXPIRED: &str = "DELETE FROM carts WHERE user_id IN ( \
         SELECT user_id FROM carts WHERE expires_at <= now() \
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
     RETURNING user_id";
/// The live cart (if any) and which of `$2` it has applied, in one statement
/// and so one snapshot: `apply_checkout` changes both in one transaction.
const SELECT_CONSISTENT: &str = "SELECT carts.items, carts.updated_at, carts.expires_at, \
         ARRAY(SELECT checkout_id FROM processed_checkouts \
               WHERE user_id = $1 AND checkout_id = ANY($2)) AS applied \
     FROM (SELECT 1) AS one \
     LEFT JOIN carts ON carts.user_id = $1 AND carts.expires_at > now()";
const PRUNE_PROCESSED: &str = "DELETE FROM processed_checkouts WHERE processed_at < now() - $1";

/// What a CheckoutCompleted did to its cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clearing {
    /// Checked-out lines were taken out.
    Cleared,
    /// None of the checked-out products was in the cart any more.
    NothingToClear,
    /// The checkout had been applied before: nothing changed this time.
    AlreadyProcessed,
}

#[derive(Clone)]
pub struct CartStore {
    pool: PgPool,
    idle_expiry: chrono::Duration,
}

impl CartStore {
    pub fn new(pool: PgPool, idle_expiry: Duration) -> Result<Self, StartError> {
        let idle_expiry = chrono::Duration::from_std(idle_expiry)
            .map_err(|e| StartError::Config(format!("--cart-idle-expiry: {e}")))?;
        Ok(CartStore { pool, idle_expiry })
    }

    /// The user's cart as stored (empty when there is none or it has expired).
    pub async fn load(&self, user: &UserId) -> Result<Cart, CartError> {
        metrics::counter!("cart_db_loads_total").increment(1);
        let row = sqlx::query(SELECT_LIVE)
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => cart_from_row(user, &row),
            None => Ok(Cart::empty(user.clone())),
        }
    }

    /// The user's cart as committed, and which of `checkouts` it has already
    /// applied, both read in one snapshot: a checkout applied after the
    /// lines were read cannot be reported as not applied, nor the reverse.
    /// One statement, one round trip: checkouts call this under load.
    pub async fn load_consistent(
        &self,
        user: &UserId,
        checkouts: &[uuid::Uuid],
    ) -> Result<(Cart, Vec<uuid::Uuid>), CartError> {
        metrics::counter!("cart_db_loads_total").increment(1);
        let row = sqlx::query(SELECT_CONSISTENT)
            .bind(user.as_str())
            .bind(checkouts)
            .fetch_one(&self.pool)
            .await?;
        let applied: Vec<uuid::Uuid> = row.try_get("applied")?;
        let stored: Option<Json<Vec<CartLine>>> = row.try_get("items")?;
        let cart = match stored {
            Some(_) => cart_from_row(user, &row)?,
            None => Cart::empty(user.clone()),
        };
        Ok((cart, applied))
    }

    /// Applies `change` to the user's cart under its row lock and saves the
    /// result, moving the expiry forward. Nothing is saved if `change` fails.
    pub async fn update<F>(&self, user: &UserId, change: F) -> Result<Cart, CartError>
    where
        F: FnOnce(&mut Cart) -> Result<(), CartError>,
    {
        let mut tx = self.pool.begin().await?;
        let mut cart = match lock(&mut tx, user).await? {
            Some(cart) => cart,
            None => {
                sqlx::query(CREATE)
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await?;
                lock(&mut tx, user)
                    .await?
                    .unwrap_or_else(|| Cart::empty(user.clone()))
            }
        };
        change(&mut cart)?;
        save(&mut tx, &mut cart, self.idle_expiry).await?;
        tx.commit().await?;
        Ok(cart)
    }

    /// Takes a checkout's lines out of its cart, recording the checkout in the
    /// same transaction so that a redelivered event changes nothing.
    pub async fn apply_checkout(&self, checkout: &CheckedOut) -> Result<Clearing, CartError> {
        let mut tx = self.pool.begin().await?;
        let first_time = sqlx::query(MARK_PROCESSED)
            .bind(checkout.checkout_id)
            .bind(checkout.user_id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !first_time {
            tx.rollback().await?;
            return Ok(Clearing::AlreadyProcessed);
        }
        let mut clearing = Clearing::NothingToClear;
        if let Some(mut cart) = lock(&mut tx, &checkout.user_id).await?
            && cart.take_checked_out(&checkout.lines)
        {
            save(&mut tx, &mut cart, self.idle_expiry).await?;
            clearing = Clearing::Cleared;
        }
        tx.commit().await?;
        Ok(clearing)
    }

    /// Deletes up to `batch` expired carts and says whose they were.
    pub async fn delete_expired(&self, batch: i64) -> Result<Vec<UserId>, CartError> {
        let users: Vec<String> = sqlx::query_scalar(DELETE_EXPIRED)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
        // The table's CHECK keeps every stored id valid.
        Ok(users
            .iter()
            .filter_map(|user| UserId::parse("user_id", user).ok())
            .collect())
    }

    /// Forgets checkouts processed longer than `age` ago.
    pub async fn prune_processed(&self, age: chrono::Duration) -> Result<u64, CartError> {
        let pruned = sqlx::query(PRUNE_PROCESSED)
            .bind(age)
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }
}

/// Locks the user's cart row for the rest of the transaction; `None` when
/// there is no row. An expired cart comes back empty: it starts over.
async fn lock(conn: &mut PgConnection, user: &UserId) -> Result<Option<Cart>, CartError> {
    let Some(row) = sqlx::query(LOCK)
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let live: bool = row.try_get("live")?;
    if live {
        cart_from_row(user, &row).map(Some)
    } else {
        Ok(Some(Cart::empty(user.clone())))
    }
}

async fn save(
    conn: &mut PgConnection,
    cart: &mut Cart,
    idle_expiry: chrono::Duration,
) -> Result<(), CartError> {
    let row = sqlx::query(SAVE)
        .bind(cart.user_id.as_str())
        .bind(Json(&cart.lines))
        .bind(idle_expiry)
        .fetch_one(&mut *conn)
        .await?;
    cart.updated_at = Some(row.try_get("updated_at")?);
    cart.expires_at = Some(row.try_get("expires_at")?);
    Ok(())
}

fn cart_from_row(user: &UserId, row: &PgRow) -> Result<Cart, CartError> {
    let Json(lines): Json<Vec<CartLine>> = row.try_get("items")?;
    Ok(Cart {
        user_id: user.clone(),
        lines,
        updated_at: Some(row.try_get("updated_at")?),
        expires_at: Some(row.try_get("expires_at")?),
    })
}
