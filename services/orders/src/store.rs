//! The order book in PostgreSQL. Every change to an order and the event that
//! announces it are written in one transaction (the outbox), so an event is
//! published exactly when its change committed. A status change locks the
//! order row first, so two concurrent changes cannot both pass the check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use storefront_proto::common::v1::ShippingAddress;
use storefront_runtime::{Currency, Money, outbox};
use uuid::Uuid;

use crate::domain::{LineItem, NewOrder, Order, OrderId, OrderStatus, PageRequest, UserId};
use crate::error::OrdersError;
use crate::events;

#[derive(Clone)]
pub struct OrderBook {
    pool: PgPool,
    /// Where OrderCreated and OrderStatusChanged go.
    order_topic: String,
}

impl OrderBook {
    pub fn new(pool: PgPool, order_topic: String) -> Self {
        OrderBook { pool, order_topic }
    }

    /// Records the order of a completed checkout and enqueues its OrderCreated.
    /// `None` when the checkout already has its order: a redelivered event
    /// changes nothing.
    pub async fn create(&self, new: &NewOrder) -> Result<Option<Order>, OrdersError> {
        let id = OrderId::generate();
        let mut tx = self.pool.begin().await?;
        // A concurrent insert of the same checkout waits here, then does nothing.
        let inserted = sqlx::query(
            "INSERT INTO orders (id, checkout_id, user_id, status, total_minor, currency, shipping_address, payment_id, reservation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (checkout_id) DO NOTHING \
             RETURNING created_at, updated_at",
        )
        .bind(id.get())
        .bind(new.checkout_id)
        .bind(new.user_id.as_str())
        .bind(OrderStatus::Confirmed.as_str())
        .bind(new.total.minor())
        .bind(new.total.currency().as_str())
        .bind(new.shipping_address.as_ref().map(Json))
        .bind(new.payment_id)
        .bind(new.reservation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(inserted) = inserted else {
            tx.rollback().await?;
            return Ok(None);
        };
        let count = new.items.len();
        let mut positions = Vec::with_capacity(count);
        let mut product_ids = Vec::with_capacity(count);
        let mut names = Vec::with_capacity(count);
        let mut unit_prices = Vec::with_capacity(count);
        let mut quantities = Vec::with_capacity(count);
        let mut line_totals = Vec::with_capacity(count);
        for (position, item) in (0_i32..).zip(&new.items) {
            positions.push(position);
            product_ids.push(item.product_id);
            names.push(item.name.as_str());
            unit_prices.push(item.unit_price.minor());
            quantities.push(item.quantity);
            line_totals.push(item.line_total.minor());
        }
        sqlx::query(
            "INSERT INTO order_items (order_id, position, product_id, name, unit_price_minor, quantity, line_total_minor) \
             SELECT $1, item.* FROM UNNEST($2::INTEGER[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::INTEGER[], $7::BIGINT[]) AS item",
        )
        .bind(id.get())
        .bind(&positions)
        .bind(&product_ids)
        .bind(&names)
        .bind(&unit_prices)
        .bind(&quantities)
        .bind(&line_totals)
        .execute(&mut *tx)
        .await?;
        let order = Order {
            id,
            checkout_id: new.checkout_id,
            payment_id: new.payment_id,
            reservation_id: new.reservation_id,
            user_id: new.user_id.as_str().to_owned(),
            status: OrderStatus::Confirmed,
            items: new.items.clone(),
            total: new.total,
            shipping_address: new.shipping_address.clone(),
            created_at: inserted.try_get("created_at")?,
            updated_at: inserted.try_get("updated_at")?,
        };
        outbox::enqueue(&mut tx, &self.order_topic, &events::order_created(&order)?).await?;
        tx.commit().await?;
        Ok(Some(order))
    }

    pub async fn get(&self, id: OrderId) -> Result<Order, OrdersError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(
            "SELECT id, checkout_id, payment_id, reservation_id, user_id, status, total_minor, currency, shipping_address, created_at, updated_at \
             FROM orders WHERE id = $1",
        )
        .bind(id.get())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(OrdersError::NotFound(id))?;
        let mut orders = vec![from_row(&row)?];
        attach_items(&mut conn, &mut orders).await?;
        orders.pop().ok_or(OrdersError::NotFound(id))
    }

    /// One page of `user`'s orders, newest first, and whether more follow.
    pub async fn list(
        &self,
        user: &UserId,
        page: PageRequest,
    ) -> Result<(Vec<Order>, bool), OrdersError> {
        // One more than asked tells whether another page follows.
        let limit = i64::from(page.size) + 1;
        let mut conn = self.pool.acquire().await?;
        let rows = match page.after {
            None => {
                sqlx::query(
                    "SELECT id, checkout_id, payment_id, reservation_id, user_id, status, total_minor, currency, shipping_address, created_at, updated_at \
                     FROM orders WHERE user_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                .bind(user.as_str())
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
            Some(after) => {
                sqlx::query(
                    "SELECT id, checkout_id, payment_id, reservation_id, user_id, status, total_minor, currency, shipping_address, created_at, updated_at \
                     FROM orders WHERE user_id = $1 AND (created_at, id) < ($2, $3) \
                     ORDER BY created_at DESC, id DESC LIMIT $4",
                )
                .bind(user.as_str())
                .bind(after.created_at)
                .bind(after.id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        let mut orders = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        let more = orders.len() > page.size as usize;
        orders.truncate(page.size as usize);
        attach_items(&mut conn, &mut orders).await?;
        Ok((orders, more))
    }

    /// Moves order `id` to `to` if the life cycle allows it, and enqueues its
    /// OrderStatusChanged in the same transaction.
    pub async fn change_status(&self, id: OrderId, to: OrderStatus) -> Result<Order, OrdersError> {
        let mut tx = self.pool.begin().await?;
        // The row lock makes a concurrent change wait and then see our status.
        let row = sqlx::query(
            "SELECT id, checkout_id, payment_id, reservation_id, user_id, status, total_minor, currency, shipping_address, created_at, updated_at \
             FROM orders WHERE id = $1 FOR UPDATE",
        )
        .bind(id.get())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(OrdersError::NotFound(id))?;
        let current = from_row(&row)?;
        let from = current.status;
        if !from.can_become(to) {
            tx.rollback().await?;
            return Err(OrdersError::InvalidTransition { id, from, to });
        }
        let updated_at: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1 RETURNING updated_at",
        )
        .bind(id.get())
        .bind(to.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let mut orders = vec![Order {
            status: to,
            updated_at,
            ..current
        }];
        attach_items(&mut tx, &mut orders).await?;
        let order = orders.pop().ok_or(OrdersError::NotFound(id))?;
        outbox::enqueue(
            &mut tx,
            &self.order_topic,
            &events::status_changed(&order, from)?,
        )
        .await?;
        tx.commit().await?;
        Ok(order)
    }
}

/// Reads the lines of `orders` (in the currency of their order) in one query.
async fn attach_items(conn: &mut PgConnection, orders: &mut [Order]) -> Result<(), OrdersError> {
    if orders.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id.get()).collect();
    let rows = sqlx::query(
        "SELECT order_id, product_id, name, unit_price_minor, quantity, line_total_minor \
         FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, position",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut index: HashMap<Uuid, &mut Order> = orders.iter_mut().map(|o| (o.id.get(), o)).collect();
    for row in &rows {
        let order_id: Uuid = row.try_get("order_id")?;
        let Some(order) = index.get_mut(&order_id) else {
            continue;
        };
        let currency = order.total.currency();
        order.items.push(LineItem {
            product_id: row.try_get("product_id")?,
            name: row.try_get("name")?,
            unit_price: money(row.try_get("unit_price_minor")?, currency)?,
            quantity: row.try_get("quantity")?,
            line_total: money(row.try_get("line_total_minor")?, currency)?,
        });
    }
    Ok(())
}

fn money(minor: i64, currency: Currency) -> Result<Money, OrdersError> {
    Money::new(minor, currency).map_err(OrdersError::Corrupt)
}

/// An order row without its lines.
fn from_row(row: &sqlx::postgres::PgRow) -> Result<Order, OrdersError> {
    let status: String = row.try_get("status")?;
    let currency: String = row.try_get("currency")?;
    let currency = Currency::try_from(currency.as_str()).map_err(OrdersError::Corrupt)?;
    let shipping_address: Option<Json<ShippingAddress>> = row.try_get("shipping_address")?;
    let id: Uuid = row.try_get("id")?;
    Ok(Order {
        id: id.into(),
        checkout_id: row.try_get("checkout_id")?,
        payment_id: row.try_get("payment_id")?,
        reservation_id: row.try_get("reservation_id")?,
        user_id: row.try_get("user_id")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| OrdersError::Corrupt(format!("unknown order status {status:?}")))?,
        items: Vec::new(),
        total: money(row.try_get("total_minor")?, currency)?,
        shipping_address: shipping_address.map(|Json(address)| address),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_migration_carries_the_runtime_outbox_schema() {
        let migration = include_str!("../migrations/20261123000001_orders.sql");
        assert!(
            migration.contains(storefront_runtime::outbox::SCHEMA),
            "copy storefront_runtime::outbox::SCHEMA into the migration"
        );
    }
}
