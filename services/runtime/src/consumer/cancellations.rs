//! What the payment and inventory services share as consumers of
//! `order-events`: joining their group (or running without Kafka), and
//! reading a cancellation out of an OrderStatusChanged.

use storefront_proto::events::v1::OrderStatusChanged;
use uuid::Uuid;

use super::{EventConsumer, HandlerError};
use crate::StartError;
use crate::error::parse_uuid;
use crate::events::{Event, event_type};

/// The order status that undoes a sale.
const CANCELLED: &str = "CANCELLED";

/// An order cancelled: whose checkout's charge and stock to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub checkout_id: Uuid,
    pub order_id: String,
}

/// The cancellation `event` announces; `None` for every other event. A
/// cancellation without its checkout cannot be undone here, so it goes to the
/// dead-letter topic for a person.
pub fn cancellation(event: &Event) -> Result<Option<Cancellation>, HandlerError> {
    if event.event_type != event_type::ORDER_STATUS_CHANGED {
        return Ok(None);
    }
    let changed: OrderStatusChanged = event
        .decode()
        .map_err(|e| HandlerError::Reject(format!("OrderStatusChanged {}: {e}", event.id)))?;
    if changed.to_status != CANCELLED {
        return Ok(None);
    }
    let checkout_id = parse_uuid("checkout_id", &changed.checkout_id)
        .map_err(|e| HandlerError::Reject(format!("OrderStatusChanged {}: {e}", event.id)))?;
    Ok(Some(Cancellation {
        checkout_id,
        order_id: changed.order_id,
    }))
}

/// Joins `group` on `topic`, or `None` when `bootstrap` is empty (Kafka
/// switched off: `off` says what the service then does not do).
pub fn join(
    bootstrap: &str,
    group: &str,
    topic: &str,
    off: &str,
) -> Result<Option<EventConsumer>, StartError> {
    if bootstrap.is_empty() {
        tracing::warn!("no Kafka bootstrap servers: {off}");
        return Ok(None);
    }
    let consumer = EventConsumer::new(bootstrap, group, &[topic])
        .map_err(|e| StartError::Config(format!("Kafka consumer for {bootstrap}: {e}")))?;
    tracing::info!(topic, group, "consuming order cancellations");
    Ok(Some(consumer))
}
