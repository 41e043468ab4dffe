//! The events of the orders service: CheckoutCompleted comes in and becomes an
//! order; OrderCreated and OrderStatusChanged go out through the outbox.

use chrono::{DateTime, SecondsFormat, Utc};
use storefront_proto::events::v1::{CheckoutCompleted, OrderCreated, OrderStatusChanged};
use storefront_runtime::consumer::{EventHandler, HandlerError};
use storefront_runtime::events::{Event, EventError, event_type};

use crate::domain::{NewOrder, Order, OrderStatus};
use crate::store::OrderBook;

/// The `ce_source` of every event this service produces.
pub const SOURCE: &str = "/storefront/orders";

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// OrderCreated for a new order, keyed by its user.
pub fn order_created(order: &Order) -> Result<Event, EventError> {
    let payload = OrderCreated {
        order_id: order.id.to_string(),
        checkout_id: order.checkout_id.to_string(),
        user_id: order.user_id.clone(),
        items: order.items.iter().map(Into::into).collect(),
        total: Some(order.total.into()),
        created_at: rfc3339(order.created_at),
    };
    Event::new(event_type::ORDER_CREATED, SOURCE, &order.user_id, &payload)
}

/// OrderStatusChanged for `order`, which was `from` until now. It names the
/// order's checkout (and its charge and reservation when known), so that the
/// payment and inventory services can act on a cancellation without asking
/// the orders service anything.
pub fn status_changed(order: &Order, from: OrderStatus) -> Result<Event, EventError> {
    let id_text = |id: Option<uuid::Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    let payload = OrderStatusChanged {
        order_id: order.id.to_string(),
        user_id: order.user_id.clone(),
        from_status: from.as_str().to_owned(),
        to_status: order.status.as_str().to_owned(),
        changed_at: rfc3339(order.updated_at),
        checkout_id: order.checkout_id.to_string(),
        payment_id: id_text(order.payment_id),
        reservation_id: id_text(order.reservation_id),
    };
    Event::new(
        event_type::ORDER_STATUS_CHANGED,
        SOURCE,
        &order.user_id,
        &payload,
    )
}

/// Turns each CheckoutCompleted into an order. The order and its OrderCreated
/// commit together before the handler returns, so the consumer commits the
/// offset only once both are durable; a redelivery finds the order and does
/// nothing. Other checkout events (CheckoutFailed) are not the orders
/// service's business.
pub struct CheckoutEvents {
    book: OrderBook,
}

impl CheckoutEvents {
    pub fn new(book: OrderBook) -> Self {
        CheckoutEvents { book }
    }
}

impl EventHandler for CheckoutEvents {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != event_type::CHECKOUT_COMPLETED {
            tracing::debug!(event_id = %event.id, event_type = %event.event_type, "not for orders; skipped");
            return Ok(());
        }
        let completed: CheckoutCompleted = event
            .decode()
            .map_err(|e| HandlerError::Reject(format!("CheckoutCompleted {}: {e}", event.id)))?;
        let new = NewOrder::try_from(&completed)
            .map_err(|e| HandlerError::Reject(format!("CheckoutCompleted {}: {e}", event.id)))?;
        match self.book.create(&new).await {
            Ok(Some(order)) => {
                metrics::counter!("orders_created_total").increment(1);
                tracing::info!(
                    order_id = %order.id,
                    checkout_id = %order.checkout_id,
                    total = %order.total,
                    "order created"
                );
                Ok(())
            }
            Ok(None) => {
                metrics::counter!("orders_duplicate_checkouts_total").increment(1);
                tracing::info!(checkout_id = %new.checkout_id, event_id = %event.id, "checkout already has its order");
                Ok(())
            }
            Err(error) => Err(error.for_consumer(format_args!("CheckoutCompleted {}", event.id))),
        }
    }
}
