//! OrderStatusChanged, consumed: an order cancelled means its checkout's
//! charge is refunded in full, once however often the event is delivered
//! (the refund and the payment's REFUNDED status commit together under the
//! payment's row lock, before the consumer commits the offset). A checkout
//! never charged, or whose charge was declined, has nothing to refund: a log
//! line, and the consumer moves on.

use storefront_runtime::StartError;
use storefront_runtime::consumer::cancellations::{self, Cancellation};
use storefront_runtime::consumer::{EventConsumer, EventHandler, HandlerError};
use storefront_runtime::events::Event;

use crate::config::OrderEventsConfig;
use crate::store::{PaymentLedger, Refund};

/// Joins the payment service's consumer group, or `None` when Kafka is switched off.
pub fn consumer(config: &OrderEventsConfig) -> Result<Option<EventConsumer>, StartError> {
    cancellations::join(
        &config.kafka_bootstrap,
        &config.consumer_group,
        &config.order_topic,
        "cancelled orders are not refunded",
    )
}

/// Refunds the charge of every cancelled order.
pub struct CancelledOrders {
    ledger: PaymentLedger,
}

impl CancelledOrders {
    pub fn new(ledger: PaymentLedger) -> Self {
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
        let refund = match self.ledger.refund_checkout(checkout_id).await {
            Ok(refund) => refund,
            Err(error) => {
                return Err(error.for_consumer(format!("OrderStatusChanged {}", event.id)));
            }
        };
        let order_id = order_id.as_str();
        let outcome = match &refund {
            Some(Refund::Refunded(payment)) => {
                tracing::info!(%checkout_id, order_id, payment_id = %payment.id, amount = %payment.amount, "cancelled order refunded");
                "refunded"
            }
            Some(Refund::AlreadyRefunded(payment)) => {
                tracing::info!(%checkout_id, order_id, payment_id = %payment.id, event_id = %event.id, "cancelled order was refunded already");
                "already_refunded"
            }
            Some(Refund::Declined(payment)) => {
                tracing::info!(%checkout_id, order_id, payment_id = %payment.id, "cancelled order's charge was declined; nothing to refund");
                "declined"
            }
            None => {
                tracing::warn!(%checkout_id, order_id, "cancelled order has no charge here; nothing to refund");
                "no_charge"
            }
        };
        metrics::counter!("payment_refunds_total", "trigger" => "order_cancelled", "outcome" => outcome)
            .increment(1);
        Ok(())
    }
}
