//! OrderStatusChanged, consumed: an order cancelled means the stock its
//! checkout's confirmed reservation deducted goes back on hand, once however
//! often the event is delivered (the stock and the reservation's RETURNED
//! status commit together under the reservation's row lock, before the
//! consumer commits the offset). A checkout without a confirmed reservation
//! here has nothing to return: a log line, and the consumer moves on.

use storefront_proto::events::v1::OrderStatusChanged;
use storefront_runtime::StartError;
use storefront_runtime::consumer::{EventConsumer, EventHandler, HandlerError};
use storefront_runtime::error::parse_uuid;
use storefront_runtime::events::{Event, event_type};

use crate::config::OrderEventsConfig;
use crate::store::{StockLedger, StockReturn};

/// The order status that puts the stock back.
const CANCELLED: &str = "CANCELLED";

/// Joins the inventory's consumer group, or `None` when Kafka is switched off.
pub fn consumer(config: &OrderEventsConfig) -> Result<Option<EventConsumer>, StartError> {
    if config.kafka_bootstrap.is_empty() {
        tracing::warn!("no Kafka bootstrap servers: cancelled orders' stock is not returned");
        return Ok(None);
    }
    let consumer = EventConsumer::new(
        &config.kafka_bootstrap,
        &config.consumer_group,
        &[config.order_topic.as_str()],
    )
    .map_err(|e| {
        StartError::Config(format!(
            "Kafka consumer for {}: {e}",
            config.kafka_bootstrap
        ))
    })?;
    tracing::info!(
        topic = %config.order_topic,
        group = %config.consumer_group,
        "returning the stock of cancelled orders"
    );
    Ok(Some(consumer))
}

/// Returns the stock of every cancelled order.
pub struct CancelledOrders {
    ledger: StockLedger,
}

impl CancelledOrders {
    pub fn new(ledger: StockLedger) -> Self {
        CancelledOrders { ledger }
    }
}

impl EventHandler for CancelledOrders {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        if event.event_type != event_type::ORDER_STATUS_CHANGED {
            return Ok(());
        }
        let changed: OrderStatusChanged = event
            .decode()
            .map_err(|e| HandlerError::Reject(format!("OrderStatusChanged {}: {e}", event.id)))?;
        if changed.to_status != CANCELLED {
            return Ok(());
        }
        // Without its checkout a cancellation cannot be restocked: a person
        // looks at it in the dead-letter topic.
        let checkout_id = parse_uuid("checkout_id", &changed.checkout_id)
            .map_err(|e| HandlerError::Reject(format!("OrderStatusChanged {}: {e}", event.id)))?;
        let returned = match self.ledger.return_stock(checkout_id).await {
            Ok(returned) => returned,
            Err(error) => {
                return Err(error.for_consumer(format!("OrderStatusChanged {}", event.id)));
            }
        };
        let order_id = changed.order_id.as_str();
        let outcome = match &returned {
            StockReturn::Returned(reservation) => {
                let units: i64 = reservation
                    .lines
                    .iter()
                    .map(|l| i64::from(l.quantity))
                    .sum();
                tracing::info!(%checkout_id, order_id, reservation_id = %reservation.id, units, "cancelled order's stock returned");
                "returned"
            }
            StockReturn::Unchanged(reservation) => {
                tracing::info!(%checkout_id, order_id, reservation_id = %reservation.id, status = reservation.status.as_str(), event_id = %event.id, "cancelled order's reservation is not confirmed; nothing to return");
                reservation.status.as_str()
            }
            StockReturn::NoReservation => {
                tracing::warn!(%checkout_id, order_id, "cancelled order has no reservation here; nothing to return");
                "no_reservation"
            }
        };
        metrics::counter!("inventory_stock_returns_total", "outcome" => outcome).increment(1);
        Ok(())
    }
}
