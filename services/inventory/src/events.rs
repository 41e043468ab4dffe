//! OrderStatusChanged, consumed: an order cancelled means the stock its
//! checkout's confirmed reservation deducted goes back on hand, once however
//! often the event is delivered (the stock and the reservation's RETURNED
//! status commit together under the reservation's row lock, before the
//! consumer commits the offset). A checkout without a confirmed reservation
//! here has nothing to return: a log line, and the consumer moves on.

use storefront_runtime::StartError;
use storefront_runtime::consumer::cancellations::{self, Cancellation};
use storefront_runtime::consumer::{EventConsumer, EventHandler, HandlerError};
use storefront_runtime::events::Event;

use crate::config::OrderEventsConfig;
use crate::store::{StockLedger, StockReturn};

/// Joins the inventory service's consumer group, or `None` when Kafka is switched off.
pub fn consumer(config: &OrderEventsConfig) -> Result<Option<EventConsumer>, StartError> {
    cancellations::join(
        &config.kafka_bootstrap,
        &config.consumer_group,
        &config.order_topic,
        "cancelled orders' stock is not returned",
    )
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
        let Some(Cancellation {
            checkout_id,
            order_id,
        }) = cancellations::cancellation(event)?
        else {
            return Ok(());
        };
        let returned = match self.ledger.return_stock(checkout_id).await {
            Ok(returned) => returned,
            Err(error) => {
                return Err(error.for_consumer(format!("OrderStatusChanged {}", event.id)));
            }
        };
        let order_id = order_id.as_str();
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
